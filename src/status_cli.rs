//! `ringlb status` and `ringlb reload`: the admin listener's client. `status` fetches
//! `/status.json` and prints the same tables as the status page, for a person's quick look in a
//! terminal; `reload` posts `/api/reload` and prints the generation every core then runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::admin::report::{LoopLag, StatusReport};
use crate::admin::text::{human_bytes, human_us};

/// Fetches the report from `admin` (`http://host:port`).
pub fn fetch(admin: &str, token: Option<&str>) -> anyhow::Result<StatusReport> {
    let (code, body) = call(admin, token, "GET", "/status.json")?;
    match code {
        200 => Ok(serde_json::from_slice(&body)?),
        code => bail!("the admin endpoint answered {code}"),
    }
}

/// `ringlb reload`: asks the running ringlb to re-read its file; the generation every core runs.
pub fn reload(admin: &str, token: Option<&str>) -> anyhow::Result<u64> {
    let (code, body) = call(admin, token, "POST", "/api/reload")?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("the admin endpoint answered {code} without JSON"))?;
    match (code, v["generation"].as_u64(), v["error"].as_str()) {
        (200, Some(g), _) => Ok(g),
        (_, _, Some(e)) => bail!("reload failed, the running configuration stays: {e}"),
        (code, _, _) => bail!("the admin endpoint answered {code}"),
    }
}

/// The admin URL and token for `ringlb reload`: the flags, else the `[admin]` table of `config`
/// (read without validating the rest: the file may be the bad one the reload is to report), else
/// `http://127.0.0.1:9900` without a token. A wildcard address is reached on loopback.
pub fn admin_of(
    admin: Option<String>,
    token: Option<String>,
    config: Option<&std::path::Path>,
) -> (String, Option<String>) {
    let from_file = config.and_then(|path| {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.parse::<toml::Table>()
                    .map_err(|e| e.message().to_string())
            });
        match read {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("ringlb: cannot read [admin] from {}: {e}", path.display());
                None
            }
        }
    });
    let table = from_file.as_ref().and_then(|t| t.get("admin")?.as_table());
    let address = table.and_then(|a| a.get("address")?.as_str()?.parse::<SocketAddr>().ok());
    let admin = admin.unwrap_or_else(|| match address {
        Some(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = match a {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            format!("http://{}", SocketAddr::new(ip, a.port()))
        }
        Some(a) => format!("http://{a}"),
        None => "http://127.0.0.1:9900".into(),
    });
    let token = token.or_else(|| {
        table
            .and_then(|a| a.get("token")?.as_str())
            .map(str::to_string)
    });
    (admin, token)
}

/// One admin request; its status and body (401 becomes an error that says what to do).
fn call(
    admin: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let authority = admin
        .strip_prefix("http://")
        .context("the admin URL must start with http://")?
        .trim_end_matches('/');
    let mut s =
        TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
    // A reload answers once every core runs the new generation (at most a few seconds).
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    // The address connected to, not the name: the admin listener answers only to the names in
    // `[admin] hosts` (DNS rebinding), and this is no browser.
    let host = s.peer_addr()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(&raw)? else {
        bail!("incomplete response from {authority}");
    };
    match resp.code {
        Some(401) => {
            bail!("the admin endpoint wants a token: pass --token or set RINGLB_ADMIN_TOKEN")
        }
        Some(code) => Ok((code, raw[n..].to_vec())),
        None => bail!("no status from {authority}"),
    }
}

/// Renders the report as text tables.
pub fn render(r: &StatusReport) -> String {
    let mut out = format!(
        "ringlb {}  up {} s  workers {} ({})  {:.1} req/s (last {} s)  connections {} active, {} total\n",
        r.version,
        r.uptime_seconds,
        r.workers,
        r.driver,
        r.requests_per_second,
        r.window_seconds,
        r.connections.active,
        r.connections.total
    );
    if !r.loop_lag.is_empty() {
        let per_worker: Vec<String> = r
            .loop_lag
            .iter()
            .enumerate()
            .map(|(w, l)| {
                let mean = match l.mean_us() {
                    0 => "0 µs".to_string(),
                    us => human_us(us),
                };
                let (late, bound) = (l.over(LoopLag::SHOWN_US), LoopLag::SHOWN_US / 1000);
                format!("w{w} {mean} ({late} over {bound} ms)")
            })
            .collect();
        out.push_str(&format!(
            "loop lag, mean since start: {}\n",
            per_worker.join(", ")
        ));
    }
    let mut overridden = false;
    for b in &r.balancers {
        out.push_str(&format!(
            "\nbalancer {} (503s: {})\n",
            b.name, b.unavailable
        ));
        out.push_str(&format!(
            "{:>3} {:<28} {:<18} {:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}\n",
            "#",
            "member",
            "state",
            "weight",
            "selected",
            "flight",
            "fail",
            "sent",
            "p50 60s",
            "p99 60s",
            "p99.9 all"
        ));
        for m in &b.members {
            // `*`: set through the admin API (or the state file), not the configuration file.
            let mark = |what: &str| {
                if m.overridden.iter().any(|o| o == what) {
                    "*"
                } else {
                    ""
                }
            };
            overridden |= !m.overridden.is_empty();
            let status = format!("{}{}", m.status, mark("status"));
            let state = if m.health.state == "down" {
                format!("{status} (check down)")
            } else if m.failed {
                format!("{status} (failed)")
            } else {
                status
            };
            let weight = format!("{}{}", m.weight, mark("weight"));
            out.push_str(&format!(
                "{:>3} {:<28} {:<18} {:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}\n",
                m.index,
                m.url,
                state,
                weight,
                m.selected,
                m.in_flight,
                m.failures.values().sum::<u64>(),
                human_bytes(m.bytes_sent),
                human_us(m.total.window.p50_us),
                human_us(m.total.window.p99_us),
                human_us(m.total.lifetime.p999_us),
            ));
        }
    }
    if overridden {
        out.push_str(
            "\n* set through the admin API (kept in [admin] state_file when one is set), not the configuration file\n",
        );
    }
    out
}
