//! The `[[listen]]` keys: the address, `redirect_https` for a plain listener, `proxy_protocol`
//! with the `trusted_proxies` that may send it, and `[listen.tls]` (certificate files,
//! `min_version`, `alpn`, `hsts`) for a TLS one.
//!
//! Owns: their names, defaults and shape rules. Must never: read a certificate file (that is
//! `tls::certs`, at start and at reload); it keeps each pair's line so that those errors can name
//! the key and line too.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    address: Spanned<String>,
    #[serde(default = "no")]
    redirect_https: Spanned<bool>,
    #[serde(default = "no")]
    proxy_protocol: Spanned<bool>,
    trusted_proxies: Option<Spanned<Vec<String>>>,
    tls: Option<RawTls>,
}

fn no() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certs: Spanned<Vec<Spanned<RawCertPair>>>,
    min_version: Option<Spanned<String>>,
    alpn: Option<Spanned<Vec<String>>>,
    hsts: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertPair {
    cert: String,
    key: String,
}

/// One listener.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub address: SocketAddr,
    /// Answer every request with a 301 to the same host and target on https.
    pub redirect_https: bool,
    pub tls: Option<TlsConfig>,
    /// `proxy_protocol = true`: every connection must begin with a PROXY header
    /// (`proxy_protocol`), sent from one of these addresses (the listener's `trusted_proxies`).
    pub proxy_protocol: Option<std::sync::Arc<[crate::trust::Net]>>,
}

/// The lowest TLS version a listener accepts (Apache's `SSLProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// A TLS listener's settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The certificates; the first is served when the client names no host or an unknown one.
    pub certs: Vec<CertFiles>,
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in order of preference (only `http/1.1` is spoken).
    pub alpn: Vec<String>,
    /// The `Strict-Transport-Security` value added to every response, if any.
    pub hsts: Option<String>,
    /// The same as a header line (`Strict-Transport-Security: ...\r\n`), or empty.
    pub hsts_header: String,
}

/// A certificate chain file and its key file, with where the pair was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The key path for messages, e.g. `listen[0].tls.certs[1]`.
    pub key_name: String,
    pub line: usize,
}

impl Validator<'_> {
    pub(super) fn listeners(&self, raw: &[RawListen]) -> Result<Vec<ListenConfig>, ConfigError> {
        let mut out = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let listen = self.listener(i, l)?;
            let same = out
                .iter()
                .position(|o: &ListenConfig| o.address == listen.address);
            if let Some(j) = same.filter(|_| listen.address.port() != 0) {
                return self.err(
                    l.address.span(),
                    format!("listen[{i}].address"),
                    format!("{} is already listen[{j}].address", listen.address),
                );
            }
            out.push(listen);
        }
        if out.is_empty() {
            return self.err(
                0..0,
                "listen".into(),
                "at least one [[listen]] address is required".into(),
            );
        }
        Ok(out)
    }

    fn listener(&self, i: usize, l: &RawListen) -> Result<ListenConfig, ConfigError> {
        let Ok(address) = l.address.get_ref().parse::<SocketAddr>() else {
            return self.err(
                l.address.span(),
                format!("listen[{i}].address"),
                format!(
                    "\"{}\" is not an ip:port address (e.g. \"127.0.0.1:8080\")",
                    l.address.get_ref()
                ),
            );
        };
        let tls = match &l.tls {
            Some(t) => Some(self.tls(i, t)?),
            None => None,
        };
        let redirect_https = *l.redirect_https.get_ref();
        if redirect_https && tls.is_some() {
            return self.err(
                l.redirect_https.span(),
                format!("listen[{i}].redirect_https"),
                "a TLS listener cannot redirect to https (it is https): remove the key".into(),
            );
        }
        Ok(ListenConfig {
            address,
            redirect_https,
            tls,
            proxy_protocol: self.proxy_protocol(i, l)?,
        })
    }

    /// `proxy_protocol` and the listener's `trusted_proxies`: one needs the other.
    fn proxy_protocol(
        &self,
        i: usize,
        l: &RawListen,
    ) -> Result<Option<std::sync::Arc<[crate::trust::Net]>>, ConfigError> {
        let key = format!("listen[{i}].trusted_proxies");
        match (*l.proxy_protocol.get_ref(), &l.trusted_proxies) {
            (false, None) => Ok(None),
            (false, Some(t)) => self.err(t.span(), key, "only a listener with proxy_protocol = true takes trusted_proxies (who may send the PROXY header); X-Forwarded-* senders are [server] trusted_proxies".into()),
            (true, None) => self.err(l.proxy_protocol.span(), format!("listen[{i}].proxy_protocol"), "name who may send the PROXY header: trusted_proxies = [\"10.0.0.0/24\"] on this listener (the balancer in front)".into()),
            (true, Some(t)) if t.get_ref().is_empty() => self.err(t.span(), key, "empty: no connection could be accepted; name the balancer in front".into()),
            (true, Some(t)) => {
                let mut nets = Vec::new();
                for text in t.get_ref() {
                    match crate::trust::Net::parse(text) {
                        Ok(n) => nets.push(n),
                        Err(why) => return self.err(t.span(), key, why),
                    }
                }
                Ok(Some(nets.into()))
            }
        }
    }

    fn tls(&self, i: usize, t: &RawTls) -> Result<TlsConfig, ConfigError> {
        let key = |k: &str| format!("listen[{i}].tls.{k}");
        if t.certs.get_ref().is_empty() {
            return self.err(
                t.certs.span(),
                key("certs"),
                "give at least one { cert = \"...\", key = \"...\" } pair".into(),
            );
        }
        let mut certs = Vec::new();
        for (j, pair) in t.certs.get_ref().iter().enumerate() {
            let p = pair.get_ref();
            if p.cert.is_empty() || p.key.is_empty() {
                return self.err(
                    pair.span(),
                    key(&format!("certs[{j}]")),
                    "`cert` and `key` must both be file paths".into(),
                );
            }
            certs.push(CertFiles {
                cert: PathBuf::from(&p.cert),
                key: PathBuf::from(&p.key),
                key_name: key(&format!("certs[{j}]")),
                line: super::line_of(self.text, pair.span().start),
            });
        }
        let min_version = match &t.min_version {
            None => TlsVersion::V1_2,
            Some(v) => match v.get_ref().as_str() {
                "1.2" => TlsVersion::V1_2,
                "1.3" => TlsVersion::V1_3,
                other => {
                    return self.err(
                        v.span(),
                        key("min_version"),
                        format!("\"{other}\": ringlb speaks TLS \"1.2\" and \"1.3\""),
                    )
                }
            },
        };
        let alpn = match &t.alpn {
            None => vec!["http/1.1".to_string()],
            Some(list) => {
                if let Some(bad) = list.get_ref().iter().find(|p| *p != "http/1.1") {
                    return self.err(
                        list.span(),
                        key("alpn"),
                        format!("\"{bad}\": only \"http/1.1\" is spoken (HTTP/2 is not built)"),
                    );
                }
                list.get_ref().clone()
            }
        };
        let hsts = match &t.hsts {
            None => None,
            Some(h) => {
                let v = h.get_ref();
                let valid = v.starts_with("max-age=")
                    && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                if !valid {
                    return self.err(
                        h.span(),
                        key("hsts"),
                        "write the header's value, starting with max-age= (e.g. \"max-age=31536000\")"
                            .into(),
                    );
                }
                Some(v.clone())
            }
        };
        let hsts_header = hsts.as_ref().map_or(String::new(), |v| {
            format!("Strict-Transport-Security: {v}\r\n")
        });
        Ok(TlsConfig {
            certs,
            min_version,
            alpn,
            hsts,
            hsts_header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::error_of;
    use super::super::Config;
    use super::*;

    const BASE: &str = "[[balancer]]\nname = \"b\"\nmembers = [{ url = \"http://127.0.0.1:9\" }]\n";

    fn with(listen: &str) -> String {
        format!("{listen}\n{BASE}")
    }

    #[test]
    fn tls_listener_parses_with_defaults() {
        let text = with(
            "[[listen]]\naddress = \"127.0.0.1:8443\"\n[listen.tls]\ncerts = [ { cert = \"a.pem\", key = \"a.key\" },\n  { cert = \"b.pem\", key = \"b.key\" } ]\n[[listen]]\naddress = \"127.0.0.1:8080\"\nredirect_https = true\n",
        );
        let c = Config::parse(&text).unwrap();
        let tls = c.listen[0].tls.as_ref().unwrap();
        assert_eq!(tls.certs.len(), 2);
        assert_eq!(tls.certs[1].key_name, "listen[0].tls.certs[1]");
        assert_eq!(tls.certs[1].line, 5);
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        assert_eq!(tls.alpn, vec!["http/1.1".to_string()]);
        assert_eq!(tls.hsts, None);
        assert!(c.listen[1].redirect_https && c.listen[1].tls.is_none());
    }

    #[test]
    fn proxy_protocol_needs_the_senders_and_they_need_it() {
        let l = "[[listen]]\naddress = \"127.0.0.1:8080\"\n";
        let c = Config::parse(&with(&format!(
            "{l}proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/24\", \"::1\"]\n"
        )))
        .unwrap();
        let from = c.listen[0].proxy_protocol.as_ref().unwrap();
        assert!(from[0].contains("10.0.0.9".parse().unwrap()));
        assert!(!from[0].contains("10.0.1.9".parse().unwrap()));
        assert!(Config::parse(&with(l)).unwrap().listen[0]
            .proxy_protocol
            .is_none());
        for (extra, key, says) in [
            (
                "proxy_protocol = true\n",
                "listen[0].proxy_protocol",
                "trusted_proxies",
            ),
            (
                "trusted_proxies = [\"10.0.0.1\"]\n",
                "listen[0].trusted_proxies",
                "proxy_protocol = true",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = []\n",
                "listen[0].trusted_proxies",
                "empty",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "listen[0].trusted_proxies",
                "prefix",
            ),
        ] {
            let (line, k, msg) = error_of(&with(&format!("{l}{extra}")));
            assert_eq!(k, key, "{extra}");
            assert!(msg.contains(says), "{extra}: {msg}");
            assert!(line >= 3, "{extra}: {line}");
        }
    }

    #[test]
    fn bad_tls_keys_name_key_and_line() {
        let tls = "[[listen]]\naddress = \"127.0.0.1:8443\"\n[listen.tls]\ncerts = [ { cert = \"a.pem\", key = \"a.key\" } ]\n";
        let (line, key, _) = error_of(&with(&format!("{tls}min_version = \"1.1\"\n")));
        assert_eq!((line, key.as_str()), (5, "listen[0].tls.min_version"));
        let (line, key, _) = error_of(&with(&format!("{tls}alpn = [\"h2\"]\n")));
        assert_eq!((line, key.as_str()), (5, "listen[0].tls.alpn"));
        let (line, key, _) = error_of(&with(&format!("{tls}hsts = \"1 year\"\n")));
        assert_eq!((line, key.as_str()), (5, "listen[0].tls.hsts"));
        let (line, key, _) = error_of(&with(&tls.replace("a.key", "")));
        assert_eq!((line, key.as_str()), (4, "listen[0].tls.certs[0]"));
        let (_, key, _) = error_of(&with(
            "[[listen]]\naddress = \"127.0.0.1:8443\"\n[listen.tls]\ncerts = []\n",
        ));
        assert_eq!(key, "listen[0].tls.certs");
        let (line, key, _) = error_of(&with(&format!(
            "[[listen]]\naddress = \"127.0.0.1:8443\"\nredirect_https = true\n{}",
            &tls[tls.find("[listen.tls]").unwrap()..]
        )));
        assert_eq!((line, key.as_str()), (3, "listen[0].redirect_https"));
    }

    #[test]
    fn the_same_address_twice_is_refused_unless_its_port_is_any() {
        let twice =
            "[[listen]]\naddress = \"127.0.0.1:8080\"\n[[listen]]\naddress = \"127.0.0.1:8080\"\n";
        let (line, key, message) = error_of(&with(twice));
        assert_eq!((line, key.as_str()), (4, "listen[1].address"));
        assert!(message.contains("already listen[0].address"), "{message}");
        assert!(Config::parse(&with(&twice.replace("8080", "0"))).is_ok());
    }
}
