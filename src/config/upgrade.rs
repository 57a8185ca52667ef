//! A route's protocol switches (`upgrade = ["websocket"]`, Apache's `ProxyPass ...
//! upgrade=websocket`) and how long a tunnel may idle (`tunnel_timeout`, HAProxy's `timeout
//! tunnel`).
//!
//! Owns: the names a route may tunnel and their rules. Must never: let a protocol that carries
//! HTTP be tunnelled (`h2c`, `h2`, `HTTP/…`, `TLS/…` of RFC 2817, and any name starting with
//! `h2`, `http` or `spdy`: a connection to a member would
//! carry requests ringlb never parsed or routed: h2c smuggling), not even with `"any"`; or accept
//! upgrades on a route whose balancer has no `http://`/`https://` member (AJP cannot carry a
//! tunnel).

use std::time::Duration;

use toml::Spanned;

use super::{BalancerConfig, ConfigError, Dur, Protocol, Validator};

/// Protocol names never tunnelled: after the switch they carry HTTP requests ringlb never sees.
pub const NEVER: [&str; 4] = ["h2c", "h2", "http", "tls"];

/// Name prefixes never tunnelled either: drafts and variants of HTTP/2 (`h2-14`, `h2c-14`),
/// `HTTP2`, `HTTPS`, and SPDY carry HTTP too.
const NEVER_PREFIXES: [&str; 3] = ["h2", "http", "spdy"];

/// Whether a protocol name (without its `/version`, any case) is one that carries HTTP.
pub fn carries_http(name: &[u8]) -> bool {
    NEVER
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        || NEVER_PREFIXES
            .iter()
            .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// A tunnel idle this long in both directions closes, unless the route says otherwise.
pub const DEFAULT_TUNNEL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The protocols a route tunnels after a `101 Switching Protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrades {
    /// `"any"`: every protocol but those that carry HTTP (`carries_http`).
    pub any: bool,
    /// Lower-case protocol names (without a `/version`).
    pub protocols: Vec<String>,
}

impl Upgrades {
    /// Whether a protocol name (without its `/version`, any case) may be tunnelled.
    pub fn allows(&self, name: &[u8]) -> bool {
        if carries_http(name) {
            return false;
        }
        self.any
            || self
                .protocols
                .iter()
                .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
    }
}

impl Validator<'_> {
    /// The route's `upgrade` list and `tunnel_timeout`, checked against its balancer (`None`: an
    /// exclusion).
    pub(super) fn upgrades(
        &self,
        i: usize,
        upgrade: &Option<Spanned<Vec<String>>>,
        tunnel_timeout: &Option<Spanned<Dur>>,
        balancer: Option<&BalancerConfig>,
    ) -> Result<(Option<Upgrades>, Duration), ConfigError> {
        let key = format!("route[{i}].upgrade");
        let timeout = tunnel_timeout.as_ref().map(|t| t.get_ref().0);
        let Some(list) = upgrade else {
            if let Some(t) = tunnel_timeout {
                return self.err(
                    t.span(),
                    format!("route[{i}].tunnel_timeout"),
                    "a route without upgrade has no tunnels: add upgrade = [\"websocket\"] or remove tunnel_timeout".into(),
                );
            }
            return Ok((None, DEFAULT_TUNNEL_TIMEOUT));
        };
        if timeout.is_some_and(|t| t.is_zero()) {
            let span = tunnel_timeout.as_ref().map_or(0..0, |t| t.span());
            let key = format!("route[{i}].tunnel_timeout");
            return self.err(span, key, "must be longer than 0s".into());
        }
        let mut rule = Upgrades {
            any: false,
            protocols: Vec::new(),
        };
        for name in list.get_ref() {
            let lower = name.to_ascii_lowercase();
            if carries_http(lower.as_bytes()) {
                return self.err(list.span(), key, format!("{name} is never tunnelled: after the switch the connection would carry HTTP requests ringlb never checked (h2c smuggling)"));
            }
            if !crate::http::upgrade::is_token(name.as_bytes()) {
                return self.err(
                    list.span(),
                    key,
                    format!("\"{name}\" is not a protocol name (a token such as websocket)"),
                );
            }
            if lower == "any" {
                rule.any = true;
            } else if !rule.protocols.contains(&lower) {
                rule.protocols.push(lower);
            }
        }
        if list.get_ref().is_empty() {
            return self.err(
                list.span(),
                key,
                "empty: name a protocol (upgrade = [\"websocket\"]) or remove the key".into(),
            );
        }
        let Some(b) = balancer else {
            return self.err(
                list.span(),
                key,
                "an excluded path forwards nothing: remove upgrade".into(),
            );
        };
        if !b.members.iter().any(|m| m.protocol == Protocol::Http) {
            return self.err(list.span(), key, format!("balancer \"{}\" has only ajp:// members, and AJP cannot carry a tunnel: add an http:// member (Tomcat's HTTP connector)", b.name));
        }
        Ok((Some(rule), timeout.unwrap_or(DEFAULT_TUNNEL_TIMEOUT)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::error_of;
    use super::super::Config;

    fn with(members: &str, route: &str) -> String {
        format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n\
             members = [{members}]\n[[route]]\nbalancer = \"b\"\n{route}"
        )
    }

    const HTTP: &str = "{ url = \"http://127.0.0.1:9\" }";

    #[test]
    fn a_route_names_what_it_tunnels_and_for_how_long() {
        let c = Config::parse(&with(HTTP, "upgrade = [\"WebSocket\"]\n")).unwrap();
        let r = &c.routes[0];
        let u = r.upgrade.as_ref().unwrap();
        assert!(u.allows(b"websocket") && u.allows(b"WEBSOCKET") && !u.allows(b"foo"));
        assert_eq!(r.tunnel_timeout, super::DEFAULT_TUNNEL_TIMEOUT);
        let c = Config::parse(&with(
            HTTP,
            "upgrade = [\"any\"]\ntunnel_timeout = \"90s\"\n",
        ))
        .unwrap();
        let r = &c.routes[0];
        let u = r.upgrade.as_ref().unwrap();
        assert!(u.allows(b"foo") && !u.allows(b"h2c") && !u.allows(b"H2C"));
        assert!(!u.allows(b"HTTP") && !u.allows(b"TLS") && !u.allows(b"h2"));
        // Drafts and variants of what carries HTTP, whatever the case.
        for name in ["h2-14", "H2C-14", "HTTP2", "https", "spdy", "SPDY-3.1"] {
            assert!(!u.allows(name.as_bytes()), "{name}");
        }
        assert!(u.allows(b"websocket") && u.allows(b"mqtt") && u.allows(b"h"));
        assert_eq!(r.tunnel_timeout.as_secs(), 90);
        assert!(Config::parse(&with(HTTP, "")).unwrap().routes[0]
            .upgrade
            .is_none());
    }

    #[test]
    fn bad_upgrade_settings_name_key_and_line() {
        let ajp = "{ url = \"ajp://127.0.0.1:9\" }";
        for (members, route, key, says) in [
            (HTTP, "upgrade = [\"h2c\"]\n", "route[0].upgrade", "h2c"),
            (HTTP, "upgrade = [\"TLS\"]\n", "route[0].upgrade", "never"),
            (
                HTTP,
                "upgrade = [\"h2c-14\"]\n",
                "route[0].upgrade",
                "never",
            ),
            (HTTP, "upgrade = [\"a b\"]\n", "route[0].upgrade", "token"),
            (HTTP, "upgrade = []\n", "route[0].upgrade", "empty"),
            (
                ajp,
                "upgrade = [\"websocket\"]\n",
                "route[0].upgrade",
                "AJP",
            ),
            (
                HTTP,
                "tunnel_timeout = \"1m\"\n",
                "route[0].tunnel_timeout",
                "without upgrade",
            ),
            (
                HTTP,
                "upgrade = [\"websocket\"]\ntunnel_timeout = \"0s\"\n",
                "route[0].tunnel_timeout",
                "longer than 0s",
            ),
        ] {
            let (line, k, msg) = error_of(&with(members, route));
            assert_eq!(k, key, "{route}");
            assert!(msg.contains(says), "{route}: {msg}");
            assert!(line >= 8, "{route}: line {line}");
        }
        // Mixed balancers are fine: AJP members are never picked for an upgrade.
        let mixed = format!("{HTTP}, {ajp}");
        assert!(Config::parse(&with(&mixed, "upgrade = [\"websocket\"]\n")).is_ok());
    }
}
