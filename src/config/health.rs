//! Active health-check keys (Apache mod_proxy_hcheck's names): set on a balancer, overridden per
//! member, resolved here into one `HealthCheck` per member.
//!
//! Owns: the `hc*` keys' defaults and rules. Must never: give an AJP member an HTTP check it
//! cannot run, or an HTTP member a CPING. Invariant: a resolved `HealthCheck` has an interval of
//! at least one second, a timeout above zero, at least one pass and one fail, and status ranges
//! within 200..=599.

use std::time::Duration;

use toml::Spanned;

use super::{ConfigError, Dur, Protocol, Validator};

/// How a member is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HcMethod {
    /// Not checked (only passive marking takes it out).
    None,
    /// A TCP connect.
    Tcp,
    Options,
    Head,
    Get,
    /// AJP13 CPING, answered by CPONG.
    Cping,
}

impl HcMethod {
    pub fn name(self) -> &'static str {
        match self {
            HcMethod::None => "none",
            HcMethod::Tcp => "tcp",
            HcMethod::Options => "options",
            HcMethod::Head => "head",
            HcMethod::Get => "get",
            HcMethod::Cping => "cping",
        }
    }

    /// The HTTP method of an HTTP check.
    pub fn http_method(self) -> Option<&'static str> {
        match self {
            HcMethod::Options => Some("OPTIONS"),
            HcMethod::Head => Some("HEAD"),
            HcMethod::Get => Some("GET"),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<HcMethod> {
        [
            HcMethod::None,
            HcMethod::Tcp,
            HcMethod::Options,
            HcMethod::Head,
            HcMethod::Get,
            HcMethod::Cping,
        ]
        .into_iter()
        .find(|m| m.name() == s.to_ascii_lowercase())
    }
}

/// One member's resolved health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub method: HcMethod,
    /// The request target of an HTTP check.
    pub uri: String,
    pub interval: Duration,
    /// Consecutive passes that bring a failed member back.
    pub passes: u32,
    /// Consecutive failures that take a member out.
    pub fails: u32,
    pub timeout: Duration,
    /// Status ranges that pass, inclusive.
    pub expect: Vec<(u16, u16)>,
    /// A GET check fails when the body contains this.
    pub body_excludes: Option<String>,
}

/// The `hc*` keys as written at one level.
#[derive(Clone)]
pub(super) struct RawHealth {
    pub method: Option<Spanned<String>>,
    pub uri: Option<Spanned<String>>,
    pub interval: Option<Spanned<Dur>>,
    pub passes: Option<Spanned<u32>>,
    pub fails: Option<Spanned<u32>>,
    pub timeout: Option<Spanned<Dur>>,
    pub expect: Option<Spanned<String>>,
    pub body_excludes: Option<Spanned<String>>,
}

/// The key a value came from: the member's own, else the balancer's.
fn pick<'a, T>(
    own: &'a Option<Spanned<T>>,
    dflt: &'a Option<Spanned<T>>,
    own_key: &str,
    name: &str,
) -> Option<(&'a Spanned<T>, String)> {
    match (own, dflt) {
        (Some(v), _) => Some((v, format!("{own_key}.{name}"))),
        (None, Some(v)) => {
            let balancer = own_key.split(".members").next().unwrap_or(own_key);
            Some((v, format!("{balancer}.{name}")))
        }
        (None, None) => None,
    }
}

impl Validator<'_> {
    /// Resolves a member's check from its own keys over the balancer's (`dflt`).
    pub(super) fn health_check(
        &self,
        own: &RawHealth,
        dflt: &RawHealth,
        protocol: Protocol,
        key: &str,
    ) -> Result<HealthCheck, ConfigError> {
        let method = match pick(&own.method, &dflt.method, key, "hcmethod") {
            None => HcMethod::None,
            Some((v, k)) => {
                let Some(m) = HcMethod::parse(v.get_ref()) else {
                    return self.err(
                        v.span(),
                        k,
                        format!(
                            "\"{}\": expected none, tcp, options, head, get or cping",
                            v.get_ref()
                        ),
                    );
                };
                let own_key = own.method.is_some();
                match (protocol, m) {
                    // A balancer-wide HTTP check means CPING for its AJP members.
                    (Protocol::Ajp, HcMethod::Options | HcMethod::Head | HcMethod::Get)
                        if !own_key =>
                    {
                        HcMethod::Cping
                    }
                    (Protocol::Ajp, HcMethod::Options | HcMethod::Head | HcMethod::Get) => {
                        return self.err(
                            v.span(),
                            k,
                            "ajp:// members are checked with cping or tcp".into(),
                        )
                    }
                    (Protocol::Http, HcMethod::Cping) => {
                        return self.err(v.span(), k, "cping is for ajp:// members".into())
                    }
                    _ => m,
                }
            }
        };
        let interval = match pick(&own.interval, &dflt.interval, key, "hcinterval") {
            None => Duration::from_secs(30),
            Some((v, k)) if v.get_ref().0 < Duration::from_secs(1) => {
                return self.err(v.span(), k, "must be at least 1s".into())
            }
            Some((v, _)) => v.get_ref().0,
        };
        let timeout = match pick(&own.timeout, &dflt.timeout, key, "hctimeout") {
            None => interval.min(Duration::from_secs(5)),
            Some((v, k)) if v.get_ref().0.is_zero() => {
                return self.err(v.span(), k, "must be longer than 0s".into())
            }
            Some((v, _)) => v.get_ref().0,
        };
        let count = |own, dflt, name: &str| -> Result<u32, ConfigError> {
            match pick(own, dflt, key, name) {
                None => Ok(1),
                Some((v, k)) if *v.get_ref() == 0 || *v.get_ref() > 1000 => {
                    self.err(v.span(), k, "must be between 1 and 1000".into())
                }
                Some((v, _)) => Ok(*v.get_ref()),
            }
        };
        let passes = count(&own.passes, &dflt.passes, "hcpasses")?;
        let fails = count(&own.fails, &dflt.fails, "hcfails")?;
        let uri = match pick(&own.uri, &dflt.uri, key, "hcuri") {
            None => "/".to_string(),
            Some((v, k)) => {
                let u = v.get_ref();
                if !u.starts_with('/') || !u.bytes().all(|b| b.is_ascii_graphic()) {
                    return self.err(
                        v.span(),
                        k,
                        "a path starting with /, without spaces or control characters".into(),
                    );
                }
                u.clone()
            }
        };
        let expect = match pick(&own.expect, &dflt.expect, key, "hcexpect") {
            None => vec![(200, 399)],
            Some((v, k)) => match parse_ranges(v.get_ref()) {
                Some(r) => r,
                None => {
                    return self.err(
                        v.span(),
                        k,
                        format!(
                            "\"{}\": status ranges such as \"200-399\" or \"200,204,300-302\"",
                            v.get_ref()
                        ),
                    )
                }
            },
        };
        let body_excludes = match pick(
            &own.body_excludes,
            &dflt.body_excludes,
            key,
            "hcbody_excludes",
        ) {
            None => None,
            // A balancer-wide text applies to the members whose check is a GET; the others (an
            // ajp:// member's cping, a member's own tcp) ignore it.
            Some((v, k)) => {
                let balancer_get = dflt
                    .method
                    .as_ref()
                    .is_some_and(|m| HcMethod::parse(m.get_ref()) == Some(HcMethod::Get));
                let own_key = own.body_excludes.is_some();
                if v.get_ref().is_empty()
                    || (own_key && method != HcMethod::Get)
                    || (!own_key && !balancer_get)
                {
                    return self.err(
                        v.span(),
                        k,
                        "a non-empty text, with hcmethod = \"get\" (only a GET check reads a body)"
                            .into(),
                    );
                }
                (method == HcMethod::Get).then(|| v.get_ref().clone())
            }
        };
        Ok(HealthCheck {
            method,
            uri,
            interval,
            passes,
            fails,
            timeout,
            expect,
            body_excludes,
        })
    }
}

/// "200-399" or "200,204,300-302" → inclusive ranges within 200..=599 (a check never ends on a
/// 1xx).
fn parse_ranges(text: &str) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        if lo < 200 || hi > 599 || lo > hi {
            return None;
        }
        out.push((lo, hi));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn balancer(keys: &str, members: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n{keys}\nmembers = [{members}]\n"
        ))
    }

    fn key_of(r: Result<Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn balancer_keys_reach_members_and_ajp_members_get_cping() {
        let c = balancer(
            "hcmethod = \"get\"\nhcbody_excludes = \"Under maintenance\"\nhcinterval = \"2s\"",
            "{ url = \"http://127.0.0.1:9\" }, { url = \"ajp://127.0.0.1:10\" }, \
             { url = \"http://127.0.0.1:11\", hcmethod = \"tcp\" }",
        )
        .unwrap();
        let hc: Vec<_> = c.balancers[0].members.iter().map(|m| &m.health).collect();
        assert_eq!(hc[0].method, HcMethod::Get);
        assert_eq!(hc[0].body_excludes.as_deref(), Some("Under maintenance"));
        assert_eq!(
            (hc[1].method, hc[1].body_excludes.as_deref()),
            (HcMethod::Cping, None)
        );
        assert_eq!(
            (hc[2].method, hc[2].body_excludes.as_deref()),
            (HcMethod::Tcp, None)
        );
        assert_eq!(
            hc[0].timeout,
            Duration::from_secs(2),
            "hctimeout defaults to hcinterval up to 5s"
        );
    }

    #[test]
    fn check_keys_that_cannot_apply_are_errors() {
        let http = "{ url = \"http://127.0.0.1:9\" }";
        assert_eq!(
            key_of(balancer(
                "hcmethod = \"tcp\"\nhcbody_excludes = \"x\"",
                http
            )),
            "balancer[0].hcbody_excludes"
        );
        assert_eq!(
            key_of(balancer(
                "",
                "{ url = \"http://127.0.0.1:9\", hcbody_excludes = \"x\" }"
            )),
            "balancer[0].members[0].hcbody_excludes"
        );
        assert_eq!(
            key_of(balancer(
                "",
                "{ url = \"ajp://127.0.0.1:9\", hcmethod = \"get\" }"
            )),
            "balancer[0].members[0].hcmethod"
        );
        assert_eq!(
            key_of(balancer("hcmethod = \"cping\"", http)),
            "balancer[0].hcmethod"
        );
        assert_eq!(
            key_of(balancer("hcmethod = \"get\"\nhcinterval = \"500ms\"", http)),
            "balancer[0].hcinterval"
        );
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_ranges("200-399"), Some(vec![(200, 399)]));
        assert_eq!(
            parse_ranges("200, 204,300-302"),
            Some(vec![(200, 200), (204, 204), (300, 302)])
        );
        for bad in ["", "2xx", "399-200", "99-200", "100-199", "200-600", "200,"] {
            assert_eq!(parse_ranges(bad), None, "{bad}");
        }
    }
}
