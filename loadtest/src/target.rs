//! What to send: target URLs (http:// or https://, with weights), and the request bytes built
//! once per URL.
//!
//! Owns: URL parsing (scheme, address, Host header, TLS server name) and request building. Must
//! never: do I/O beyond resolving the host and reading the files named on the command line.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};
use rustls::pki_types::ServerName;

use crate::cli::LoadArgs;

/// One URL, its weight and its prebuilt request.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The whole request (head and body), ready to write.
    pub request: Vec<u8>,
    pub is_head: bool,
    /// https: the server name to verify (and send as SNI, unless it is an IP address).
    pub tls: Option<ServerName<'static>>,
}

/// A parsed URL.
#[derive(Debug)]
pub struct Url {
    pub addr: SocketAddr,
    /// The authority as written (the Host header).
    pub authority: String,
    /// The host without port or IPv6 brackets.
    pub host: String,
    pub path: String,
    pub https: bool,
}

/// Parses `http[s]://host[:port][/path]` (default port 80, or 443 for https).
pub fn parse_url(url: &str) -> anyhow::Result<Url> {
    let (rest, https) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, true)
    } else {
        bail!("\"{url}\": only http:// and https:// URLs are supported");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (with_port, host) = match authority
        .rsplit_once(':')
        .filter(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some((host, _)) => (authority.to_string(), host),
        None => (
            format!("{authority}:{}", if https { 443 } else { 80 }),
            authority,
        ),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    Ok(Url {
        addr,
        authority: authority.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        https,
    })
}

/// Builds every target from the arguments.
pub fn targets(args: &LoadArgs) -> anyhow::Result<Vec<Target>> {
    let body = match &args.body_file {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let mut list: Vec<(u32, String)> = Vec::new();
    if let Some(file) = &args.urls {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(char::is_whitespace) {
                Some((w, url)) if w.parse::<u32>().is_ok() => {
                    list.push((w.parse()?, url.trim().to_string()))
                }
                _ if line.starts_with("http://") || line.starts_with("https://") => {
                    list.push((1, line.to_string()))
                }
                _ => bail!(
                    "{} line {}: expected \"[weight] http[s]://…\"",
                    file.display(),
                    n + 1
                ),
            }
        }
    }
    if let Some(url) = &args.url {
        list.push((1, url.clone()));
    }
    if list.is_empty() {
        bail!("give a URL or --urls FILE");
    }
    let targets = list
        .into_iter()
        .map(|(weight, url)| {
            let u = parse_url(&url)?;
            let tls = if u.https {
                let name = args.sni.as_deref().unwrap_or(&u.host);
                Some(
                    ServerName::try_from(name.to_string())
                        .with_context(|| format!("\"{name}\" is not a valid TLS server name"))?,
                )
            } else {
                None
            };
            let mut req = format!(
                "{} {} HTTP/1.1\r\nHost: {}\r\n",
                args.method, u.path, u.authority
            );
            for h in &args.headers {
                if !h.contains(':') {
                    bail!("header \"{h}\" is not \"Name: value\"");
                }
                req.push_str(h);
                req.push_str("\r\n");
            }
            if !body.is_empty() || args.method == "POST" || args.method == "PUT" {
                req.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            if args.connect_per_request {
                req.push_str("Connection: close\r\n");
            }
            req.push_str("\r\n");
            let mut request = req.into_bytes();
            request.extend_from_slice(&body);
            Ok(Target {
                addr: u.addr,
                weight: weight.max(1),
                request,
                is_head: args.method == "HEAD",
                tls,
            })
        })
        .collect::<anyhow::Result<Vec<Target>>>()?;
    // A connection carries requests for any target, so all must agree on TLS.
    if targets.iter().any(|t| t.tls.is_some()) && targets.iter().any(|t| t.tls.is_none()) {
        bail!("http:// and https:// URLs cannot be mixed in one run");
    }
    Ok(targets)
}

/// Picks targets by weight with a cheap per-connection generator.
pub struct Picker {
    cumulative: Vec<u32>,
    state: u64,
}

impl Picker {
    pub fn new(targets: &[Target], seed: u64) -> Picker {
        let mut total = 0;
        let cumulative = targets
            .iter()
            .map(|t| {
                total += t.weight;
                total
            })
            .collect();
        Picker {
            cumulative,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn next(&mut self) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = r % total;
        self.cumulative.iter().position(|&c| x < c).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = parse_url("http://127.0.0.1:8080/x?y=1").unwrap();
        assert_eq!(
            (
                u.addr.port(),
                u.authority.as_str(),
                u.path.as_str(),
                u.https
            ),
            (8080, "127.0.0.1:8080", "/x?y=1", false)
        );
        let u = parse_url("http://127.0.0.1").unwrap();
        assert_eq!((u.addr.port(), u.path.as_str()), (80, "/"));
        assert!(parse_url("ftp://x").is_err());
    }

    #[test]
    fn https_urls_parse() {
        let u = parse_url("https://127.0.0.1/p").unwrap();
        assert_eq!(
            (
                u.addr.port(),
                u.authority.as_str(),
                u.host.as_str(),
                u.https
            ),
            (443, "127.0.0.1", "127.0.0.1", true)
        );
        let u = parse_url("https://[::1]:8443").unwrap();
        assert_eq!(
            (u.addr.port(), u.host.as_str(), u.path.as_str()),
            (8443, "::1", "/")
        );
        let u = parse_url("https://localhost:8443/").unwrap();
        assert_eq!(u.host, "localhost");
        // An IP host verifies against the certificate's IP names (and sends no SNI).
        assert!(matches!(
            ServerName::try_from(u.host.clone()),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            ServerName::try_from("::1".to_string()),
            Ok(ServerName::IpAddress(_))
        ));
    }

    #[test]
    fn weights_are_respected() {
        let t = |w| Target {
            addr: "127.0.0.1:1".parse().unwrap(),
            weight: w,
            request: vec![],
            is_head: false,
            tls: None,
        };
        let mut p = Picker::new(&[t(3), t(1)], 7);
        let mut counts = [0; 2];
        for _ in 0..40_000 {
            counts[p.next()] += 1;
        }
        assert!((29_000..31_000).contains(&counts[0]), "{counts:?}");
    }
}
