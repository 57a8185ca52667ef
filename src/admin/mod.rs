//! The admin listener (`[admin] address`), served by the workers like any listener: `/status`
//! (HTML), `/status.json`, `/metrics` (Prometheus), the member API, `POST /api/reload` (handed to
//! the main thread, answered without holding the worker) and `/healthz` (the one path that needs
//! no token: it says only whether the process serves).
//!
//! Owns: admin request handling and the bearer-token check. The worker serving an admin request
//! publishes its own statistics first (on demand); the other workers' come from their last
//! once-a-second publication. Must never: serve anything but `/healthz`'s "ok"/"stopping", or
//! change anything, to a request without the right token when one is configured. Invariant: the
//! board's lock is held only while a response is built, never across an await.

pub mod api;
pub mod html;
pub mod metrics;
pub mod prom;
pub mod report;
pub mod tls_report;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

use crate::core::Core;
use crate::http::parse::{parse_request, HeadError, RequestHead};
use crate::io::{read_more, write_range, IoFail};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// A response from the admin endpoint.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    extra: &'static str,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            extra: "",
        }
    }
}

/// Serves one admin connection: one request, one response, close.
pub async fn serve(core: &Core, mut stream: TcpStream, _peer: SocketAddr) {
    let mut buf = Vec::with_capacity(4096);
    let mut head = RequestHead::default();
    // The whole head (and body) must arrive within header_timeout of the accept, however slowly
    // it trickles.
    let deadline = Instant::now() + core.gen().config.limits.header_timeout;
    let reply = loop {
        match parse_request(&buf, 16384, 100, &mut head) {
            Ok(()) => break None,
            Err(HeadError::Partial) => {}
            Err(e) => break Some(Reply::new(e.status(), "text/plain", "bad request\n".into())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut stream, &mut buf, 4096, left).await {
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                break Some(Reply::new(408, "text/plain", "request timeout\n".into()))
            }
            Err(_) => return,
        }
    };
    let reply = match reply {
        Some(r) => r,
        None => {
            let body_len = match head.body {
                crate::http::framing::BodyKind::Length(n) if n as usize <= MAX_ADMIN_BODY => {
                    n as usize
                }
                crate::http::framing::BodyKind::Empty => 0,
                _ => return,
            };
            while buf.len() < head.head_len + body_len {
                let left = deadline.saturating_duration_since(Instant::now());
                if read_more(&mut stream, &mut buf, 4096, left).await.is_err() {
                    return;
                }
            }
            if is_reload(&buf, &head) && authorized(core, &buf, &head) {
                reload(core).await
            } else {
                handle(core, &buf, &head)
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nServer: ringlb\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
        reply.status,
        status_reason(reply.status),
        reply.content_type,
        reply.body.len(),
        reply.extra
    )
    .into_bytes();
    out.extend_from_slice(reply.body.as_bytes());
    let n = out.len();
    let _ = write_range(&mut stream, &mut out, 0..n, ADMIN_TIMEOUT).await;
}

fn status_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        422 => "Unprocessable Content",
        _ => crate::http::reply::reason(status),
    }
}

fn authorized(core: &Core, buf: &[u8], head: &RequestHead) -> bool {
    let gen = core.gen();
    let Some(token) = gen.config.admin.as_ref().and_then(|a| a.token.as_deref()) else {
        return true;
    };
    head.headers
        .iter()
        .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"authorization"))
        .any(|h| {
            let v = buf[h.value.clone()].trim_ascii();
            v.len() > 7
                && v[..7].eq_ignore_ascii_case(b"bearer ")
                && same_secret(v[7..].trim_ascii(), token.as_bytes())
        })
}

/// Compares a presented token with the configured one in time that depends only on their
/// lengths, not on where they first differ.
fn same_secret(given: &[u8], want: &[u8]) -> bool {
    if given.len() != want.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

fn handle(core: &Core, buf: &[u8], head: &RequestHead) -> Reply {
    // Liveness for keepalived's `vrrp_script`, load-balancer probes and watchdogs: no token, no
    // figures, nothing but whether this process takes new connections.
    if &buf[head.path.clone()] == b"/healthz" {
        return healthz(core, head.method(buf));
    }
    if !authorized(core, buf, head) {
        let mut r = Reply::new(
            401,
            "text/plain",
            "a valid Authorization: Bearer token is required\n".into(),
        );
        r.extra = "WWW-Authenticate: Bearer realm=\"ringlb\"\r\n";
        return r;
    }
    let method = std::str::from_utf8(head.method(buf)).unwrap_or("");
    let target = std::str::from_utf8(&buf[head.path.clone()]).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body = &buf[head.head_len..];
    // The serving core's own figures are published now; the other cores' are at most a second old.
    crate::core::publish(core, std::time::Instant::now());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["status"]) | ("GET", [""]) => {
            let refresh = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh="))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&n| n > 0);
            let report = status_report(core);
            Reply::new(
                200,
                "text/html; charset=utf-8",
                html::render(&report, refresh),
            )
        }
        ("GET", ["status.json"]) => {
            let report = status_report(core);
            Reply::new(
                200,
                "application/json",
                serde_json::to_string_pretty(&report).unwrap_or_default(),
            )
        }
        ("GET", ["metrics"]) => Reply::new(200, "text/plain; version=0.0.4; charset=utf-8", {
            let board = core.board.lock();
            metrics::render(
                &board.generation.config,
                &board,
                core.tls_listening(&board.generation.config),
            )
        }),
        (_, ["api", "balancers", b, "members", m]) => {
            let mut board = core.board.lock();
            // The generation in effect: the one whose members the board's `(b, m)` name.
            let config = board.generation.config.clone();
            let (status, json) = api::member(&config, &mut board, method, b, m, body);
            drop(board);
            if method == "POST" && status == 200 {
                core.board.changed();
                // The main thread writes the state file, off the workers.
                if let (Some(control), Some(_)) = (&core.control, config.state_file()) {
                    let _ = control.send(crate::reload::Control::SaveState);
                }
            }
            Reply::new(status, "application/json", json)
        }
        ("POST", ["api", "tls", "reload"]) => match core.tls_listening(&core.gen().config) {
            None => Reply::new(
                404,
                "application/json",
                "{\"error\":\"no TLS listener\"}\n".into(),
            ),
            Some(tls) => match tls.reload() {
                Ok(n) => {
                    tracing::info!(certificates = n, "TLS certificates reloaded (admin API)");
                    Reply::new(200, "application/json", format!("{{\"reloaded\":{n}}}\n"))
                }
                Err(e) => {
                    tracing::error!(
                        "TLS certificates NOT reloaded, the loaded ones stay in use: {e}"
                    );
                    let body = serde_json::json!({ "error": e }).to_string();
                    Reply::new(422, "application/json", body + "\n")
                }
            },
        },
        (_, ["status"] | ["status.json"] | ["metrics"]) => {
            Reply::new(405, "text/plain", "use GET\n".into())
        }
        _ => Reply::new(
            404,
            "text/plain",
            "not found: try /status, /status.json or /metrics\n".into(),
        ),
    }
}

fn is_reload(buf: &[u8], head: &RequestHead) -> bool {
    head.method(buf) == b"POST" && &buf[head.path.clone()] == b"/api/reload"
}

/// `POST /api/reload`: asks the main thread to reload the file and waits (without holding the
/// worker) for its answer: `200 {"generation": N}` once every core runs generation N, or `422
/// {"error": ...}` with the running configuration unchanged.
async fn reload(core: &Core) -> Reply {
    let json =
        |status, v: serde_json::Value| Reply::new(status, "application/json", v.to_string() + "\n");
    let Some(control) = &core.control else {
        return json(
            404,
            serde_json::json!({ "error": "started without a config file (demo): nothing to reload" }),
        );
    };
    let (tx, rx) = futures_channel::oneshot::channel();
    if control.send(crate::reload::Control::Reload(tx)).is_err() {
        return json(503, serde_json::json!({ "error": "stopping" }));
    }
    match rx.await {
        Ok(Ok(generation)) => json(200, serde_json::json!({ "generation": generation })),
        Ok(Err(e)) => json(422, serde_json::json!({ "error": e })),
        Err(_) => json(503, serde_json::json!({ "error": "stopping" })),
    }
}

/// The status report of the generation in effect (its configuration and the board, under one
/// lock, so that they agree).
fn status_report(core: &Core) -> report::StatusReport {
    let board = core.board.lock();
    report::StatusReport::build(
        &board.generation.config,
        &board,
        core.tls_listening(&board.generation.config),
    )
}

/// `/healthz`: 200 "ok" while serving; 503 "draining" during `stop_delay` (still serving) and
/// "stopping" once stopping.
fn healthz(core: &Core, method: &[u8]) -> Reply {
    match method {
        b"GET" if core.is_stopping() => Reply::new(503, "text/plain", "stopping\n".into()),
        b"GET" if core.board.is_draining() => Reply::new(503, "text/plain", "draining\n".into()),
        b"GET" => Reply::new(200, "text/plain", "ok\n".into()),
        _ => Reply::new(405, "text/plain", "use GET\n".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::same_secret(b"s3cret", b"s3cret"));
        assert!(!super::same_secret(b"s3creT", b"s3cret"));
        assert!(!super::same_secret(b"s3cre", b"s3cret"));
        assert!(!super::same_secret(b"", b"s3cret"));
    }
}
