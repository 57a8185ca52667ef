//! The `[[balancer]]` tables: their keys, defaults and validation, and those of their members.
//!
//! Owns: every balancer and member key name (Apache's where Apache has one: `maxattempts`,
//! `failontimeout`, `failonstatus`, `lbset`, `route`, `sticky_session`, `nofailover`) and their
//! rules. Must never: accept a value the balancer cannot honour, or report an error without the
//! key and line. Invariant: a `BalancerConfig` has 1..=`MAX_MEMBERS` members, unique member routes,
//! and a health check resolved for every member.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::health::{self, HealthCheck};
use super::{ConfigError, Dur, Timeout, Validator, MAX_MEMBERS};

/// A member's administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Takes traffic.
    Active,
    /// Takes traffic only when no active member (and no hot spare) of any `lbset` is usable
    /// (Apache `+H`).
    #[serde(alias = "hot_standby")]
    Standby,
    /// Takes the place of an unusable active member of its `lbset`, one for one (Apache `+R`).
    HotSpare,
    /// Never takes traffic.
    Disabled,
    /// Takes no new requests; those in flight finish (set through the admin API only).
    #[serde(skip_deserializing)]
    Draining,
}

impl MemberStatus {
    pub fn name(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Standby => "standby",
            MemberStatus::HotSpare => "hot_spare",
            MemberStatus::Disabled => "disabled",
            MemberStatus::Draining => "draining",
        }
    }

    /// Whether a member of this status may be picked at all (not disabled or draining).
    pub fn takes_traffic(self) -> bool {
        !matches!(self, MemberStatus::Disabled | MemberStatus::Draining)
    }

    /// Parses an admin API status.
    pub fn parse(s: &str) -> Option<MemberStatus> {
        if s == "hot_standby" {
            return Some(MemberStatus::Standby);
        }
        [
            MemberStatus::Active,
            MemberStatus::Standby,
            MemberStatus::HotSpare,
            MemberStatus::Disabled,
            MemberStatus::Draining,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

/// How a balancer picks among its usable members (each core on its own counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceMethod {
    /// Smooth weighted round robin (Apache `byrequests`).
    #[serde(alias = "byrequests")]
    RoundRobin,
    /// Fewest requests in flight on this core per unit of weight; ties by round robin (Apache
    /// `bybusyness`).
    #[serde(alias = "bybusyness")]
    LeastBusy,
    /// Power of two random choices: two members drawn by weight, the one with fewer requests in
    /// flight on this core per unit of weight.
    P2c,
}

/// What a balancer does when every member that could take a request is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllFailed {
    /// Answer 503 (Apache's behaviour once its members are in error).
    Refuse,
    /// Try the failed members anyway, as if none were failed (disabled and draining ones still
    /// take nothing).
    TryAll,
}

/// The health-check keys of a raw balancer or member (the same names at both levels).
macro_rules! health_keys {
    ($raw:expr) => {
        health::RawHealth {
            method: $raw.hcmethod.clone(),
            uri: $raw.hcuri.clone(),
            interval: $raw.hcinterval.clone(),
            passes: $raw.hcpasses.clone(),
            fails: $raw.hcfails.clone(),
            timeout: $raw.hctimeout.clone(),
            expect: $raw.hcexpect.clone(),
            body_excludes: $raw.hcbody_excludes.clone(),
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBalancer {
    pub name: Spanned<String>,
    #[serde(default = "default_method")]
    method: BalanceMethod,
    #[serde(default = "default_retry")]
    retry: Spanned<Dur>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: Timeout,
    #[serde(default = "default_response_timeout")]
    response_timeout: Timeout,
    #[serde(default = "default_max_idle")]
    max_idle_per_member: usize,
    #[serde(default = "default_idle_ttl")]
    idle_ttl: Dur,
    maxattempts: Option<usize>,
    #[serde(default)]
    failontimeout: bool,
    #[serde(default = "no_statuses")]
    failonstatus: Spanned<Vec<u16>>,
    #[serde(default = "default_all_failed")]
    all_failed: AllFailed,
    slow_start: Option<Dur>,
    queue_timeout: Option<Dur>,
    sticky_session: Option<Spanned<String>>,
    sticky_session_sep: Option<Spanned<String>>,
    #[serde(default)]
    nofailover: bool,
    hcmethod: Option<Spanned<String>>,
    hcuri: Option<Spanned<String>>,
    hcinterval: Option<Spanned<Dur>>,
    hcpasses: Option<Spanned<u32>>,
    hcfails: Option<Spanned<u32>>,
    hctimeout: Option<Spanned<Dur>>,
    hcexpect: Option<Spanned<String>>,
    hcbody_excludes: Option<Spanned<String>>,
    error_pages: Option<super::error_pages::RawErrorPages>,
    members: Spanned<Vec<RawMember>>,
}

fn default_method() -> BalanceMethod {
    BalanceMethod::RoundRobin
}
fn default_retry() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(60)))
}
fn default_connect_timeout() -> Timeout {
    Timeout(Duration::from_secs(3))
}
fn default_response_timeout() -> Timeout {
    Timeout(Duration::from_secs(60))
}
fn default_max_idle() -> usize {
    64
}
fn default_idle_ttl() -> Dur {
    Dur(Duration::from_secs(4))
}
fn no_statuses() -> Spanned<Vec<u16>> {
    Spanned::new(0..0, Vec::new())
}
fn lbset_zero() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}
fn default_all_failed() -> AllFailed {
    AllFailed::Refuse
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    url: Spanned<String>,
    #[serde(default = "default_weight")]
    weight: Spanned<u32>,
    #[serde(default = "default_status")]
    status: MemberStatus,
    #[serde(default = "lbset_zero")]
    lbset: Spanned<u32>,
    max_conns: Option<Spanned<u32>>,
    route: Option<Spanned<String>>,
    /// AJP: the connector's `secret`.
    secret: Option<String>,
    /// AJP: the connector's `packetSize`.
    packet_size: Option<Spanned<usize>>,
    /// AJP: CPING a connection idle longer than this before reusing it.
    ping: Option<Dur>,
    /// https: the CA certificates (PEM) to verify the member's certificate against.
    ca: Option<Spanned<String>>,
    /// https: `false` turns certificate verification off.
    verify: Option<Spanned<bool>>,
    /// https: the name sent (SNI) and verified, instead of the url's host.
    sni: Option<Spanned<String>>,
    hcmethod: Option<Spanned<String>>,
    hcuri: Option<Spanned<String>>,
    hcinterval: Option<Spanned<Dur>>,
    hcpasses: Option<Spanned<u32>>,
    hcfails: Option<Spanned<u32>>,
    hctimeout: Option<Spanned<Dur>>,
    hcexpect: Option<Spanned<String>>,
    hcbody_excludes: Option<Spanned<String>>,
}

fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_status() -> MemberStatus {
    MemberStatus::Active
}

/// Sticky sessions (Apache `stickysession`): where a request names the member that holds its
/// session.
#[derive(Debug, Clone)]
pub struct Sticky {
    /// The session cookie's name (`JSESSIONID`).
    pub cookie: String,
    /// The URL path parameter's name (`jsessionid`), looked up first.
    pub path_param: String,
    /// The route follows the first of these bytes in the session id (`.`: `ABC123.node1`).
    pub separator: u8,
    /// A session whose member cannot take it gets 503 instead of moving.
    pub nofailover: bool,
}

#[derive(Debug, Clone)]
pub struct BalancerConfig {
    pub name: String,
    pub method: BalanceMethod,
    /// How long a member that failed stays out (Apache `retry`).
    pub retry: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_idle_per_member: usize,
    pub idle_ttl: Duration,
    /// How many other members a request may move to after a failure (Apache `maxattempts`).
    pub maxattempts: usize,
    /// A response timeout marks the member failed for `retry`.
    pub failontimeout: bool,
    /// Statuses that mark the member failed for `retry` (the response still goes to the client).
    pub failonstatus: Vec<u16>,
    pub all_failed: AllFailed,
    /// A member coming back ramps its weight up over this long (zero: at once).
    pub slow_start: Duration,
    /// How long a request waits for a member under `max_conns` (zero: 503 at once).
    pub queue_timeout: Duration,
    pub sticky: Option<Sticky>,
    /// Local pages for the 502/503/504 that ringlb answers itself (`error_pages`).
    pub error_pages: super::error_pages::ErrorPages,
    pub members: Vec<MemberConfig>,
}

/// The protocol a member speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Ajp,
}

#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The url as written.
    pub url: String,
    pub protocol: Protocol,
    /// AJP only: the secret sent with every request.
    pub secret: Option<String>,
    /// AJP only: the largest packet (8192 to 65536; must match the connector's packetSize).
    pub packet_size: usize,
    /// AJP only: CPING before reusing a connection idle longer than this.
    pub ping: Option<Duration>,
    /// `host:port` exactly as written in the url: the member's name on the status page, in
    /// metrics and in the admin API.
    pub host_port: String,
    /// `host_port` without an IPv6 address's zone: the Host header a member receives.
    pub host_header: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub status: MemberStatus,
    /// Lower sets are used first; a higher set only when no member of a lower one is usable.
    pub lbset: u32,
    /// Requests in flight at once across the box (each core allows its share); `None`: no limit.
    pub max_conns: Option<u32>,
    /// The sticky-session route (Tomcat's `jvmRoute`).
    pub route: Option<String>,
    pub health: HealthCheck,
    /// `https://` members: how ringlb speaks TLS to it.
    pub tls: Option<MemberTls>,
}

/// TLS to an `https://` member.
#[derive(Debug, Clone)]
pub struct MemberTls {
    /// The name sent as SNI and verified in the member's certificate (`sni`, else the url's
    /// host; an IP address is verified against the certificate's IP entries and sends no SNI).
    pub name: String,
    /// Verify the member's certificate (`verify = false` turns it off, with a warning at start).
    pub verify: bool,
    /// The CA certificates to verify against (`ca`); `None`: the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// The member's key (`balancer[0].members[1]`) and line, for errors found reading `ca`.
    pub key: String,
    pub line: usize,
}

impl Validator<'_> {
    /// Validates the `i`th balancer; `earlier` are those before it.
    pub(super) fn balancer(
        &self,
        i: usize,
        b: &RawBalancer,
        earlier: &[BalancerConfig],
    ) -> Result<BalancerConfig, ConfigError> {
        let name = b.name.get_ref().clone();
        if earlier.iter().any(|o| o.name == name) {
            return self.err(
                b.name.span(),
                format!("balancer[{i}].name"),
                format!("duplicate balancer name \"{name}\""),
            );
        }
        let raw_members = b.members.get_ref();
        if raw_members.is_empty() || raw_members.len() > MAX_MEMBERS {
            return self.err(
                b.members.span(),
                format!("balancer[{i}].members"),
                format!("a balancer needs between 1 and {MAX_MEMBERS} members"),
            );
        }
        let key = format!("balancer[{i}]");
        let defaults = health_keys!(b);
        let mut members: Vec<MemberConfig> = Vec::new();
        for (j, m) in raw_members.iter().enumerate() {
            let member = self.member(m, &format!("{key}.members[{j}]"), &defaults)?;
            if let (Some(r), Some(raw)) = (&member.route, &m.route) {
                if members.iter().any(|o| o.route.as_ref() == Some(r)) {
                    return self.err(
                        raw.span(),
                        format!("{key}.members[{j}].route"),
                        format!("route \"{r}\" is already another member's"),
                    );
                }
            }
            members.push(member);
        }
        for s in b.failonstatus.get_ref() {
            if !(200..=599).contains(s) {
                return self.err(
                    b.failonstatus.span(),
                    format!("{key}.failonstatus"),
                    format!("{s} is not a final HTTP status (200 to 599)"),
                );
            }
        }
        if b.retry.get_ref().0 < Duration::from_millis(100) {
            return self.err(
                b.retry.span(),
                format!("{key}.retry"),
                "must be at least 100ms (a failed member is skipped this long)".into(),
            );
        }
        Ok(BalancerConfig {
            name,
            method: b.method,
            retry: b.retry.get_ref().0,
            connect_timeout: b.connect_timeout.0,
            response_timeout: b.response_timeout.0,
            max_idle_per_member: b.max_idle_per_member,
            idle_ttl: b.idle_ttl.0,
            maxattempts: b.maxattempts.unwrap_or(members.len() - 1),
            failontimeout: b.failontimeout,
            failonstatus: b.failonstatus.get_ref().clone(),
            all_failed: b.all_failed,
            slow_start: b.slow_start.map_or(Duration::ZERO, |d| d.0),
            queue_timeout: b.queue_timeout.map_or(Duration::ZERO, |d| d.0),
            sticky: self.sticky(b, &key)?,
            error_pages: self.error_pages(b.error_pages.as_ref(), &key)?,
            members,
        })
    }

    fn sticky(&self, b: &RawBalancer, key: &str) -> Result<Option<Sticky>, ConfigError> {
        let Some(names) = &b.sticky_session else {
            if let Some(sep) = &b.sticky_session_sep {
                return self.err(
                    sep.span(),
                    format!("{key}.sticky_session_sep"),
                    "needs sticky_session".into(),
                );
            }
            return Ok(None);
        };
        let text = names.get_ref();
        let (cookie, path_param) = text.split_once('|').unwrap_or((text, text));
        let token = |s: &str| !s.is_empty() && s.bytes().all(crate::http::chunked::is_tchar);
        if !token(cookie) || !token(path_param) {
            return self.err(
                names.span(),
                format!("{key}.sticky_session"),
                format!("\"{text}\": write COOKIE|path_parameter, e.g. \"JSESSIONID|jsessionid\""),
            );
        }
        let separator = match &b.sticky_session_sep {
            None => b'.',
            Some(s)
                if s.get_ref().len() == 1
                    && s.get_ref().bytes().all(|c| c.is_ascii_graphic() && !b";,/?=\"\\".contains(&c)) =>
            {
                s.get_ref().as_bytes()[0]
            }
            Some(s) => {
                return self.err(
                    s.span(),
                    format!("{key}.sticky_session_sep"),
                    "one visible ASCII character that can appear in a session id (not ; , / ? = \" \\ or a space)".into(),
                )
            }
        };
        Ok(Some(Sticky {
            cookie: cookie.into(),
            path_param: path_param.into(),
            separator,
            nofailover: b.nofailover,
        }))
    }

    fn member(
        &self,
        m: &RawMember,
        key: &str,
        hc_defaults: &health::RawHealth,
    ) -> Result<MemberConfig, ConfigError> {
        let (protocol, https, host_port, addr) = self.member_url(m, key)?;
        let tls = self.member_tls(m, key, https, &host_port)?;
        let packet_size = match &m.packet_size {
            Some(p) if !(8192..=65536).contains(p.get_ref()) => {
                return self.err(
                    p.span(),
                    format!("{key}.packet_size"),
                    "must be between 8192 and 65536 (and equal the connector's packetSize)".into(),
                )
            }
            Some(p) => *p.get_ref(),
            None => 8192,
        };
        if protocol == Protocol::Http
            && (m.secret.is_some() || m.packet_size.is_some() || m.ping.is_some())
        {
            return self.err(
                m.url.span(),
                format!("{key}.url"),
                "secret, packet_size and ping apply to ajp:// members only".into(),
            );
        }
        if *m.weight.get_ref() == 0 || *m.weight.get_ref() > 1000 {
            return self.err(
                m.weight.span(),
                format!("{key}.weight"),
                "must be between 1 and 1000".into(),
            );
        }
        if *m.lbset.get_ref() > 99 {
            return self.err(
                m.lbset.span(),
                format!("{key}.lbset"),
                "must be between 0 and 99".into(),
            );
        }
        if let Some(c) = m.max_conns.as_ref().filter(|c| *c.get_ref() == 0) {
            return self.err(
                c.span(),
                format!("{key}.max_conns"),
                "must be at least 1 (leave it out for no limit)".into(),
            );
        }
        if let Some(r) = &m.route {
            let ok = !r.get_ref().is_empty()
                && r.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !ok {
                return self.err(
                    r.span(),
                    format!("{key}.route"),
                    "letters, digits, - and _ only (Tomcat's jvmRoute)".into(),
                );
            }
        }
        let health = self.health_check(&health_keys!(m), hc_defaults, protocol, key)?;
        Ok(MemberConfig {
            url: m.url.get_ref().clone(),
            protocol,
            secret: m.secret.clone(),
            packet_size,
            ping: m.ping.map(|d| d.0),
            host_header: super::host::without_zone(&host_port),
            host_port,
            addr,
            weight: *m.weight.get_ref(),
            status: m.status,
            lbset: *m.lbset.get_ref(),
            max_conns: m.max_conns.as_ref().map(|c| *c.get_ref()),
            route: m.route.as_ref().map(|r| r.get_ref().clone()),
            health,
            tls,
        })
    }

    /// The TLS settings of an `https://` member (`ca`, `verify`, `sni` belong to those only).
    fn member_tls(
        &self,
        m: &RawMember,
        key: &str,
        https: bool,
        host_port: &str,
    ) -> Result<Option<MemberTls>, ConfigError> {
        if !https {
            if m.ca.is_some() || m.verify.is_some() || m.sni.is_some() {
                return self.err(
                    m.url.span(),
                    format!("{key}.url"),
                    "ca, verify and sni apply to https:// members only".into(),
                );
            }
            return Ok(None);
        }
        let host = match host_port.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => host_port,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = match &m.sni {
            Some(s) if s.get_ref().is_empty() => {
                return self.err(s.span(), format!("{key}.sni"), "must be a host name".into())
            }
            Some(s) => s.get_ref().clone(),
            None => host.to_string(),
        };
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return self.err(
                m.sni.as_ref().map_or(m.url.span(), |s| s.span()),
                format!("{key}.sni"),
                format!("\"{name}\" is not a DNS name or IP address"),
            );
        }
        if let (Some(v), Some(_)) = (&m.verify, &m.ca) {
            if !*v.get_ref() {
                return self.err(
                    v.span(),
                    format!("{key}.verify"),
                    "verify = false ignores `ca`: keep one of the two".into(),
                );
            }
        }
        Ok(Some(MemberTls {
            name,
            verify: m.verify.as_ref().is_none_or(|v| *v.get_ref()),
            ca: m.ca.as_ref().map(|c| std::path::PathBuf::from(c.get_ref())),
            key: key.to_string(),
            line: super::line_of(self.text, m.url.span().start),
        }))
    }

    fn member_url(
        &self,
        m: &RawMember,
        key: &str,
    ) -> Result<(Protocol, bool, String, SocketAddr), ConfigError> {
        let url = m.url.get_ref();
        let key = format!("{key}.url");
        let (protocol, https, rest, default_port) = if let Some(rest) = url.strip_prefix("http://")
        {
            (Protocol::Http, false, rest, 80)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Protocol::Http, true, rest, 443)
        } else if let Some(rest) = url.strip_prefix("ajp://") {
            (Protocol::Ajp, false, rest, 8009)
        } else {
            return self.err(
                m.url.span(),
                key,
                format!("\"{url}\": members are http://, https:// or ajp://host:port"),
            );
        };
        let host_port = rest.strip_suffix('/').unwrap_or(rest);
        if host_port.is_empty() || host_port.contains('/') {
            return self.err(
                m.url.span(),
                key,
                format!("\"{url}\": a member url is scheme://host:port, without a path"),
            );
        }
        let Some((host, port)) = super::host::split_port(host_port) else {
            return self.err(
                m.url.span(),
                key,
                format!("\"{url}\": the port is a number from 0 to 65535"),
            );
        };
        if let Err(why) = super::host::check(host) {
            return self.err(m.url.span(), key, format!("\"{url}\": {why}"));
        }
        let with_port = format!("{host}:{}", port.unwrap_or(default_port));
        match with_port.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(addr) => Ok((protocol, https, host_port.to_string(), addr)),
            None => self.err(m.url.span(), key, format!("\"{url}\": cannot resolve host")),
        }
    }
}
