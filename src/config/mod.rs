//! Configuration: the TOML file (`RawConfig`, serde) turned into a validated `Config`.
//!
//! Owns: every key name, every default, every validation rule. Must never: panic on user input or
//! print a Rust debug dump. Invariant: a `Config` that exists is valid; every `ConfigError` names
//! the key and the line it came from, so an operator can fix the file without guessing.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod admin;
mod balancer;
mod error_pages;
mod health;
mod host;
mod listen;
mod route;
mod upgrade;

pub use admin::AdminConfig;
use admin::RawAdmin;
use balancer::RawBalancer;
pub use balancer::{
    AllFailed, BalanceMethod, BalancerConfig, MemberConfig, MemberStatus, MemberTls, Protocol,
    Sticky,
};
pub use error_pages::{ErrorPage, ErrorPages};
pub use health::{HcMethod, HealthCheck};
use listen::RawListen;
pub use listen::{CertFiles, ListenConfig, TlsConfig, TlsVersion};
use route::RawRoute;
pub use route::{CookieDomain, RouteConfig};
pub use upgrade::{Upgrades, DEFAULT_TUNNEL_TIMEOUT};

/// The largest `max_headers` ringlb accepts (headers are parsed into a fixed stack array).
pub const MAX_HEADERS_CAP: usize = 256;
/// Members per balancer are tracked in a `u64` bit set during failover.
pub const MAX_MEMBERS: usize = 64;

/// The most worker threads (`server.workers`, `--workers`): a typo's 64000 would start as many
/// threads, each with its own ring and listening sockets.
pub const MAX_WORKERS: usize = 1024;

/// A configuration error, with the key and the line where it was found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}line {line}, key `{key}`: {message}", file_prefix(.file))]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

fn file_prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}: ")
    }
}

/// Which io driver the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    Auto,
    IoUring,
    Epoll,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Driver::Auto),
            "io_uring" => Ok(Driver::IoUring),
            "epoll" => Ok(Driver::Epoll),
            other => Err(format!(
                "unknown driver `{other}` (expected auto, io_uring or epoll)"
            )),
        }
    }
}
/// The longest duration any key accepts (timers add durations to the clock: no overflow).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration written as a string such as "500ms" or "60s", at most `MAX_DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let d = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration \"{text}\": {e} (write it like \"500ms\", \"10s\" or \"2m\")"
            ))
        })?;
        if d > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "duration \"{text}\" is longer than a year"
            )));
        }
        Ok(Dur(d))
    }
}

/// A timeout: a `Dur` above zero. A zero limit has no meaning on a socket operation (the
/// timer wheel would round it up to two ticks), so the configuration refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Dur(t) = Dur::deserialize(d)?;
        if t.is_zero() {
            return Err(serde::de::Error::custom(
                "a timeout must be longer than 0s (write it like \"500ms\" or \"10s\")",
            ));
        }
        Ok(Timeout(t))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    listen: Vec<RawListen>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    balancer: Vec<RawBalancer>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    workers: Spanned<usize>,
    driver: Driver,
    shutdown_grace: Dur,
    trusted_proxies: Spanned<Vec<String>>,
    upgrade_socket: Option<String>,
    stop_delay: Dur,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            workers: Spanned::new(0..0, 0),
            driver: Driver::Auto,
            shutdown_grace: Dur(Duration::from_secs(10)),
            trusted_proxies: Spanned::new(0..0, Vec::new()),
            upgrade_socket: None,
            stop_delay: Dur(Duration::ZERO),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_request_header_bytes: Spanned<usize>,
    max_headers: Spanned<usize>,
    header_timeout: Timeout,
    keepalive_timeout: Timeout,
    body_timeout: Timeout,
    max_connections: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_request_header_bytes: Spanned::new(0..0, 16384),
            max_headers: Spanned::new(0..0, 100),
            header_timeout: Timeout(Duration::from_secs(10)),
            keepalive_timeout: Timeout(Duration::from_secs(60)),
            body_timeout: Timeout(Duration::from_secs(60)),
            max_connections: 100_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: String,
    access: Option<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            access: None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: Limits,
    pub log_level: String,
    /// Access log path (`[log] access`).
    pub access_log: Option<std::path::PathBuf>,
    pub listen: Vec<ListenConfig>,
    pub admin: Option<AdminConfig>,
    pub balancers: Vec<BalancerConfig>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Number of worker threads (already resolved: never 0).
    pub workers: usize,
    pub driver: Driver,
    pub shutdown_grace: Duration,
    /// Peers whose X-Forwarded-For / X-Forwarded-Proto are kept (`crate::trust`).
    pub trusted_proxies: Vec<crate::trust::Net>,
    /// Where a new binary takes the listening sockets (`handover`, `ringlb run --upgrade`).
    pub upgrade_socket: Option<std::path::PathBuf>,
    /// After SIGTERM/SIGINT, how long `/healthz` answers 503 while ringlb still serves.
    pub stop_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Longest wait for the next body bytes from a client, or for a client to take ours.
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Invalid {
                line, key, message, ..
            } => ConfigError::Invalid {
                file: path.display().to_string(),
                line,
                key,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", e))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` fields show up as a private segment in the path: drop it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            toml_error(text, &key, e.into_inner())
        })?;
        Validator { text }.validate(raw)
    }

    /// A short human summary, printed by `ringlb check`.
    /// `[admin] state_file`, when set.
    pub fn state_file(&self) -> Option<&Path> {
        self.admin.as_ref()?.state_file.as_deref()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "workers: {}, driver: {:?}, listen: {}\n",
            self.server.workers,
            self.server.driver,
            self.listen
                .iter()
                .map(|l| match &l.tls {
                    Some(_) => format!("{} (tls)", l.address),
                    None => l.address.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        for b in &self.balancers {
            s.push_str(&format!(
                "balancer {} ({} members)\n",
                b.name,
                b.members.len()
            ));
            for m in &b.members {
                s.push_str(&format!("  {} weight {} {:?}\n", m.url, m.weight, m.status));
            }
        }
        for r in &self.routes {
            s.push_str(&format!(
                "route host {} path {} -> {}\n",
                r.host.as_deref().unwrap_or("*"),
                r.path,
                r.balancer
                    .map_or("404 (exclude)", |b| self.balancers[b].name.as_str())
            ));
        }
        s
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn toml_error(text: &str, key: &str, e: toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    ConfigError::Invalid {
        file: String::new(),
        line,
        key: if key.is_empty() || key == "." {
            "(document)".into()
        } else {
            key.into()
        },
        message: e.message().trim().to_string(),
    }
}

struct Validator<'a> {
    text: &'a str,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: String,
        message: String,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: String::new(),
            line: line_of(self.text, span.start),
            key,
            message,
        })
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let workers = match *raw.server.workers.get_ref() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n if n > MAX_WORKERS => {
                return self.err(
                    raw.server.workers.span(),
                    "server.workers".into(),
                    format!("{n}: at most {MAX_WORKERS} (each is a thread with its own ring and listeners; 0 is one per core)"),
                )
            }
            n => n,
        };
        let limits = &raw.limits;
        let mrhb = &limits.max_request_header_bytes;
        if *mrhb.get_ref() < 256 || *mrhb.get_ref() > 1 << 20 {
            return self.err(
                mrhb.span(),
                "limits.max_request_header_bytes".into(),
                "must be between 256 and 1048576".into(),
            );
        }
        let mh = &limits.max_headers;
        if *mh.get_ref() == 0 || *mh.get_ref() > MAX_HEADERS_CAP {
            return self.err(
                mh.span(),
                "limits.max_headers".into(),
                format!("must be between 1 and {MAX_HEADERS_CAP}"),
            );
        }
        let mut trusted_proxies = Vec::new();
        for text in raw.server.trusted_proxies.get_ref() {
            match crate::trust::Net::parse(text) {
                Ok(n) => trusted_proxies.push(n),
                Err(message) => {
                    return self.err(
                        raw.server.trusted_proxies.span(),
                        "server.trusted_proxies".into(),
                        message,
                    )
                }
            }
        }
        let listen = self.listeners(&raw.listen)?;
        let admin = match &raw.admin {
            None => None,
            Some(a) => Some(self.admin(a, &listen)?),
        };
        let mut balancers: Vec<BalancerConfig> = Vec::new();
        for (i, b) in raw.balancer.iter().enumerate() {
            let balancer = self.balancer(i, b, &balancers)?;
            balancers.push(balancer);
        }
        let routes = self.routes(&raw.route, &balancers)?;
        Ok(Config {
            server: ServerConfig {
                workers,
                driver: raw.server.driver,
                shutdown_grace: raw.server.shutdown_grace.0,
                trusted_proxies,
                upgrade_socket: raw
                    .server
                    .upgrade_socket
                    .as_ref()
                    .map(std::path::PathBuf::from),
                stop_delay: raw.server.stop_delay.0,
            },
            limits: Limits {
                max_request_header_bytes: *mrhb.get_ref(),
                max_headers: *mh.get_ref(),
                header_timeout: limits.header_timeout.0,
                keepalive_timeout: limits.keepalive_timeout.0,
                body_timeout: limits.body_timeout.0,
                max_connections: limits.max_connections.max(1),
            },
            log_level: raw.log.level,
            access_log: raw.log.access.map(std::path::PathBuf::from),
            listen,
            admin,
            balancers,
            routes,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
workers = 2

[[listen]]
address = "127.0.0.1:8080"

[[balancer]]
name = "app"
retry = "5s"
members = [
  { url = "http://127.0.0.1:9001", weight = 5 },
  { url = "http://127.0.0.1:9002", status = "standby" },
]

[[route]]
path = "/"
balancer = "app"
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.server.workers, 2);
        assert_eq!(c.balancers[0].retry, Duration::from_secs(5));
        assert_eq!(c.balancers[0].idle_ttl, Duration::from_secs(4));
        assert_eq!(c.balancers[0].members[0].weight, 5);
        assert_eq!(c.balancers[0].members[1].status, MemberStatus::Standby);
        assert_eq!(c.balancers[0].members[0].host_port, "127.0.0.1:9001");
        assert_eq!(c.limits.max_headers, 100);
    }

    pub(super) fn error_of(text: &str) -> (usize, String, String) {
        match Config::parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let (line, key, msg) = error_of(&GOOD.replace("retry = \"5s\"", "retry = \"5 parsecs\""));
        assert_eq!(line, 10);
        assert_eq!(key, "balancer[0].retry");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn a_zero_timeout_is_refused_with_key_and_line() {
        for (key, line, at) in [
            ("limits.header_timeout", 5, "[limits]\nheader_timeout"),
            ("limits.keepalive_timeout", 5, "[limits]\nkeepalive_timeout"),
            ("limits.body_timeout", 5, "[limits]\nbody_timeout"),
            (
                "balancer[0].connect_timeout",
                11,
                "retry = \"5s\"\nconnect_timeout",
            ),
            (
                "balancer[0].response_timeout",
                11,
                "retry = \"5s\"\nresponse_timeout",
            ),
        ] {
            for zero in ["0s", "0ms"] {
                let text = if at.starts_with("[limits]") {
                    GOOD.replace(
                        "workers = 2\n",
                        &format!("workers = 2\n{at} = \"{zero}\"\n"),
                    )
                } else {
                    GOOD.replace("retry = \"5s\"", &format!("{at} = \"{zero}\""))
                };
                let (l, k, msg) = error_of(&text);
                assert_eq!((l, k.as_str()), (line, key), "{text}");
                assert!(msg.contains("longer than 0s"), "{msg}");
            }
        }
        // Where zero means "off", it stays accepted.
        let c = Config::parse(&GOOD.replace(
            "retry = \"5s\"",
            "retry = \"5s\"\nidle_ttl = \"0s\"\nqueue_timeout = \"0s\"",
        ))
        .unwrap();
        assert_eq!(c.balancers[0].idle_ttl, Duration::ZERO);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let (line, key, msg) = error_of(&GOOD.replace("workers = 2", "wrokers = 2"));
        assert_eq!(line, 3);
        assert!(
            key.contains("wrokers") || msg.contains("wrokers"),
            "{key} {msg}"
        );
    }

    #[test]
    fn unknown_balancer_in_route_is_reported() {
        let (line, key, _) = error_of(&GOOD.replace("balancer = \"app\"", "balancer = \"nope\""));
        assert_eq!(line, 18);
        assert_eq!(key, "route[0].balancer");
    }

    #[test]
    fn bad_member_url_is_reported() {
        let (line, key, _) = error_of(&GOOD.replace("http://127.0.0.1:9001", "ftp://x"));
        assert_eq!(line, 12);
        assert_eq!(key, "balancer[0].members[0].url");
    }

    #[test]
    fn a_member_host_a_resolver_would_read_otherwise_is_reported() {
        // `:::1` would resolve as `::` port 1; `::1` unbracketed; a space; a port that is no port.
        for (url, why) in [
            ("http://:::1", "a host is"),
            ("http://::1:8080", "a host is"),
            ("http://a b:1", "a host is"),
            ("http://[::1:8080", "in brackets"),
            ("http://h:x", "the port"),
            ("http://h:65536", "the port"),
        ] {
            let (line, key, msg) = error_of(&GOOD.replace("http://127.0.0.1:9001", url));
            assert_eq!(
                (line, key.as_str()),
                (12, "balancer[0].members[0].url"),
                "{url}"
            );
            assert!(msg.contains(why), "{url}: {msg}");
        }
        let v6 =
            Config::parse(&GOOD.replace("http://127.0.0.1:9001", "http://[::1]:9001")).unwrap();
        assert_eq!(v6.balancers[0].members[0].host_port, "[::1]:9001");
        // A zone picks the interface here; the member's Host header goes without it.
        let zoned =
            Config::parse(&GOOD.replace("http://127.0.0.1:9001", "http://[fe80::1%1]:9001"))
                .unwrap();
        let m = &zoned.balancers[0].members[0];
        assert_eq!(
            (m.host_port.as_str(), m.host_header.as_str()),
            ("[fe80::1%1]:9001", "[fe80::1]:9001")
        );
        match m.addr {
            std::net::SocketAddr::V6(a) => assert_eq!((a.scope_id(), a.port()), (1, 9001)),
            v4 => panic!("{v4}"),
        }
        let named =
            Config::parse(&GOOD.replace("http://127.0.0.1:9001", "http://localhost")).unwrap();
        assert_eq!(named.balancers[0].members[0].addr.port(), 80);
    }

    #[test]
    fn a_route_host_that_can_never_match_is_reported() {
        let with_host =
            |h: &str| GOOD.replace("path = \"/\"", &format!("host = \"{h}\"\npath = \"/\""));
        for bad in ["A B", "www.example.org:8080", "*.example.org", ""] {
            let (line, key, msg) = error_of(&with_host(bad));
            assert_eq!((line, key.as_str()), (17, "route[0].host"), "{bad}");
            assert!(msg.contains("without a port"), "{msg}");
        }
        let c = Config::parse(&with_host("WWW.Example.org.")).unwrap();
        assert_eq!(c.routes[0].host.as_deref(), Some("www.example.org"));
    }

    #[test]
    fn workers_past_the_cap_are_reported() {
        let (line, key, msg) = error_of(&GOOD.replace("workers = 2", "workers = 64000"));
        assert_eq!((line, key.as_str()), (3, "server.workers"));
        assert!(msg.contains("at most 1024"), "{msg}");
        assert!(Config::parse(&GOOD.replace("workers = 2", "workers = 1024")).is_ok());
    }

    #[test]
    fn admin_off_loopback_needs_a_token() {
        let text = format!("{GOOD}\n[admin]\naddress = \"0.0.0.0:9900\"\n");
        let (line, key, msg) = error_of(&text);
        assert_eq!((line, key.as_str()), (21, "admin.address"));
        assert!(msg.contains("token"), "{msg}");
        let ok = format!("{GOOD}\n[admin]\naddress = \"0.0.0.0:9900\"\ntoken = \"s3cret-token\"\n");
        assert!(Config::parse(&ok).unwrap().admin.unwrap().token.is_some());
        let lo = format!("{GOOD}\n[admin]\naddress = \"127.0.0.1:9900\"\n");
        assert!(Config::parse(&lo).unwrap().admin.is_some());
    }

    #[test]
    fn the_admin_listener_cannot_share_a_proxy_address() {
        let listen = Config::parse(GOOD).unwrap().listen[0].address;
        let text = format!("{GOOD}\n[admin]\naddress = \"{listen}\"\n");
        let (line, key, msg) = error_of(&text);
        assert_eq!((line, key.as_str()), (21, "admin.address"));
        assert!(msg.contains("also a [[listen]] address"), "{msg}");
    }

    #[test]
    fn ajp_members() {
        let text = GOOD.replace(
            "{ url = \"http://127.0.0.1:9002\", status = \"standby\" }",
            "{ url = \"ajp://127.0.0.1:8009\", secret = \"s\", packet_size = 65536, ping = \"2s\" }",
        );
        let c = Config::parse(&text).unwrap();
        let m = &c.balancers[0].members[1];
        assert_eq!(
            (m.protocol, m.packet_size, m.secret.as_deref()),
            (Protocol::Ajp, 65536, Some("s"))
        );
        assert_eq!(m.ping, Some(Duration::from_secs(2)));
        let (_, key, _) = error_of(&text.replace("65536", "4096"));
        assert_eq!(key, "balancer[0].members[1].packet_size");
        let (_, key, _) = error_of(&GOOD.replace("weight = 5 }", "weight = 5, secret = \"x\" }"));
        assert_eq!(key, "balancer[0].members[0].url");
    }

    #[test]
    fn draining_is_not_a_file_status() {
        let (_, key, _) = error_of(&GOOD.replace("\"standby\"", "\"draining\""));
        assert_eq!(key, "balancer[0].members[1].status");
    }

    #[test]
    fn bad_driver_is_reported() {
        let (line, key, _) = error_of(&GOOD.replace("workers = 2", "driver = \"kqueue\""));
        assert_eq!(line, 3);
        assert_eq!(key, "server.driver");
    }
}
