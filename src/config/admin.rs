//! The `[admin]` keys: the admin listener's address, how it is authenticated (a bearer token,
//! also accepted as the password of HTTP Basic, and an optional user with a bcrypt password
//! hash, as `htpasswd -B` writes it), the host names it answers to, and the state file.
//!
//! Owns: their names, defaults and shape rules. Must never: verify a password (that is
//! `admin::auth`, off the worker's loop) or accept an admin listener off loopback that anybody
//! could use without credentials.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, ListenConfig, Validator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    address: Spanned<String>,
    token: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_hash: Option<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    state_file: Option<String>,
}

/// The admin listener (`[admin]`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// When set, every admin request needs `Authorization: Bearer <token>`, or HTTP Basic with
    /// the token as the password.
    pub token: Option<String>,
    /// A user for HTTP Basic (browsers): with `password_hash`, its password; with the token
    /// alone, the only user name the token is accepted with.
    pub user: Option<String>,
    /// A bcrypt hash (`$2y$…`, from `htpasswd -nB user`) of `user`'s password.
    pub password_hash: Option<String>,
    /// Host names (lowercase, without port) besides IP literals and `localhost` that requests
    /// may name in `Host` (anything else is refused: DNS rebinding).
    pub hosts: Vec<String>,
    /// Where admin changes are kept across restarts (`[admin] state_file`, Apache's
    /// `BalancerPersist`): `state_file.rs`.
    pub state_file: Option<std::path::PathBuf>,
}

impl AdminConfig {
    /// Whether requests need credentials at all.
    pub fn needs_credentials(&self) -> bool {
        self.token.is_some() || self.password_hash.is_some()
    }
}

/// Whether `hash` has the shape of a bcrypt hash: `$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit
/// cost from 4 to 31, `$`, then 53 characters of bcrypt's base64.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[6] == b'$'
        && b[4..6].iter().all(u8::is_ascii_digit)
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

impl Validator<'_> {
    pub(super) fn admin(
        &self,
        a: &RawAdmin,
        listen: &[ListenConfig],
    ) -> Result<AdminConfig, ConfigError> {
        let Ok(address) = a.address.get_ref().parse::<SocketAddr>() else {
            return self.err(
                a.address.span(),
                "admin.address".into(),
                format!("\"{}\" is not an ip:port address", a.address.get_ref()),
            );
        };
        if let Some(t) = &a.token {
            if t.get_ref().len() < 8 {
                return self.err(
                    t.span(),
                    "admin.token".into(),
                    "use at least 8 characters".into(),
                );
            }
        }
        if let Some(u) = &a.user {
            let name = u.get_ref();
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                return self.err(
                    u.span(),
                    "admin.user".into(),
                    "a user name is not empty and has no ':' or control characters".into(),
                );
            }
        }
        if let Some(h) = &a.password_hash {
            if a.user.is_none() {
                return self.err(
                    h.span(),
                    "admin.password_hash".into(),
                    "set [admin] user too: the hash is that user's password".into(),
                );
            }
            if !is_bcrypt_hash(h.get_ref()) {
                return self.err(
                    h.span(),
                    "admin.password_hash".into(),
                    "not a bcrypt hash: make one with `htpasswd -nB USER` and use what follows the ':' ($2y$…)".into(),
                );
            }
        }
        let mut hosts = Vec::new();
        for (i, h) in a.hosts.iter().enumerate() {
            let name = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
            if !ok {
                return self.err(
                    h.span(),
                    format!("admin.hosts[{i}]"),
                    format!(
                        "\"{}\" is not a host name (no port, no wildcard)",
                        h.get_ref()
                    ),
                );
            }
            hosts.push(name);
        }
        if address.port() != 0 && listen.iter().any(|l| l.address == address) {
            return self.err(
                a.address.span(),
                "admin.address".into(),
                format!("{address} is also a [[listen]] address"),
            );
        }
        let config = AdminConfig {
            address,
            token: a.token.as_ref().map(|t| t.get_ref().clone()),
            user: a.user.as_ref().map(|u| u.get_ref().clone()),
            password_hash: a.password_hash.as_ref().map(|h| h.get_ref().clone()),
            hosts,
            state_file: a.state_file.as_ref().map(std::path::PathBuf::from),
        };
        if !config.needs_credentials() && !address.ip().is_loopback() {
            return self.err(
                a.address.span(),
                "admin.address".into(),
                "an admin listener on a non-loopback address needs [admin] token or password_hash"
                    .into(),
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::error_of;
    use super::is_bcrypt_hash;
    use crate::config::Config;

    const HASH: &str = "$2y$05$sVZ6m2Q0ZB0y3wz5J0bX3eK1k0y1Tt9Hc0Qp9wJx0JtB3sF8Gx5dK";

    fn with(admin: &str) -> String {
        format!("[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"app\"\nmembers = [{{ url = \"http://127.0.0.1:1\" }}]\n[[route]]\npath = \"/\"\nbalancer = \"app\"\n[admin]\n{admin}\n")
    }

    #[test]
    fn browser_login_keys() {
        let ok = with(&format!(
            "address = \"0.0.0.0:9900\"\nuser = \"operator\"\npassword_hash = \"{HASH}\"\nhosts = [\"LB1.example.org.\"]"
        ));
        let a = Config::parse(&ok).unwrap().admin.unwrap();
        assert!(
            a.needs_credentials(),
            "a password alone protects a public admin listener"
        );
        assert_eq!(a.hosts, ["lb1.example.org"]);
        let (line, key, _) = error_of(&with(&format!(
            "address = \"127.0.0.1:9900\"\npassword_hash = \"{HASH}\""
        )));
        assert_eq!((line, key.as_str()), (11, "admin.password_hash"));
        let (line, key, msg) = error_of(&with(
            "address = \"127.0.0.1:9900\"\nuser = \"operator\"\npassword_hash = \"{SHA}x\"",
        ));
        assert_eq!((line, key.as_str()), (12, "admin.password_hash"));
        assert!(msg.contains("htpasswd -nB"), "{msg}");
        let (line, key, _) = error_of(&with("address = \"127.0.0.1:9900\"\nuser = \"a:b\""));
        assert_eq!((line, key.as_str()), (11, "admin.user"));
        let (line, key, _) = error_of(&with(
            "address = \"127.0.0.1:9900\"\nhosts = [\"ok.example\", \"*.example\"]",
        ));
        assert_eq!((line, key.as_str()), (11, "admin.hosts[1]"));
    }

    #[test]
    fn bcrypt_hash_shape() {
        // `htpasswd -nbB admin secret` output, after the ':'.
        let good = "$2y$05$sVZ6m2Q0ZB0y3wz5J0bX3eK1k0y1Tt9Hc0Qp9wJx0JtB3sF8Gx5dK";
        assert!(is_bcrypt_hash(good));
        assert!(!is_bcrypt_hash(&good[..59]));
        assert!(!is_bcrypt_hash(&good.replace("$2y$05", "$2y$03")));
        assert!(!is_bcrypt_hash(&good.replace("$2y$05", "$2y$+5")));
        assert!(!is_bcrypt_hash(&good.replace("$2y$05", "$2y$32")));
        assert!(!is_bcrypt_hash(&good.replace("$2y", "$1y")));
        assert!(!is_bcrypt_hash(&good.replace('K', "!")));
        assert!(!is_bcrypt_hash("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
    }
}
