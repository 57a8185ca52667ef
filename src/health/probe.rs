//! One health check of one member over a fresh connection: `tcp` (a connect), `options`, `head`,
//! `get` (an HTTP request, status against `hcexpect`, a GET's body against `hcbody_excludes`),
//! `cping` (AJP CPING/CPONG).
//!
//! Owns: the check's I/O. Must never: reuse a pooled connection (a check tests what a new request
//! would meet), run past `hctimeout`, read more than `MAX_HEAD` of a head or `MAX_BODY` of a body,
//! or panic on anything a member sends. Invariant: every check ends in a `Probe` with a short
//! text, whatever happens.

use std::time::Instant;

use super::state::Probe;
use super::verdict;
use crate::ajp::exchange::cping;
use crate::config::{HcMethod, HealthCheck, MemberConfig};
use crate::deadline;
use crate::http::framing::{no_body, BodyTracker};
use crate::http::parse::{parse_response, HeadError, ResponseHead};
use crate::io::IoFail;
use crate::stream::{connect, read_more, write_range, ConnectFail, Stream};
use crate::tls::upstream::MemberTlsConfig;

/// The most of a response head a check reads.
const MAX_HEAD: usize = 16 * 1024;
/// The most of a GET check's body searched for `hcbody_excludes`.
pub const MAX_BODY: usize = 64 * 1024;

/// Checks `member` once; `request` is its HTTP check request (`verdict::request`).
pub async fn probe(
    member: &MemberConfig,
    tls: Option<&MemberTlsConfig>,
    request: Option<&[u8]>,
) -> Probe {
    let hc = &member.health;
    let started = Instant::now();
    let verdict = match deadline::timeout(hc.timeout, run(member, tls, request)).await {
        Ok(v) => v,
        Err(_) => Err("timeout".into()),
    };
    let latency = started.elapsed();
    match verdict {
        Ok(text) => Probe {
            passed: true,
            text,
            latency,
        },
        Err(text) => Probe {
            passed: false,
            text,
            latency,
        },
    }
}

async fn run(
    member: &MemberConfig,
    tls: Option<&MemberTlsConfig>,
    request: Option<&[u8]>,
) -> Result<String, String> {
    let hc = &member.health;
    // An https:// member's check includes the TLS handshake (and its certificate's verification).
    let mut s = connect(member.addr, tls, hc.timeout)
        .await
        .map_err(|e| match e {
            ConnectFail::Tcp(e) => fail_text("connect", e),
            ConnectFail::Tls(e) => format!("tls: {e}"),
        })?;
    match (hc.method, request) {
        (HcMethod::Cping, _) => {
            let mut rbuf = Vec::with_capacity(64);
            if cping(&mut s, &mut rbuf, hc.timeout).await {
                Ok("cpong".into())
            } else {
                Err("no cpong".into())
            }
        }
        (HcMethod::Options | HcMethod::Head | HcMethod::Get, Some(req)) => {
            http(&mut s, hc, req).await
        }
        _ => Ok("connected".into()),
    }
}

/// "connect refused", "connect failed: ...", "read: closed", "timeout".
fn fail_text(step: &str, e: IoFail) -> String {
    match e {
        IoFail::Timeout => "timeout".into(),
        IoFail::Closed => format!("{step}: closed"),
        IoFail::Error(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{step} refused")
        }
        IoFail::Error(e) => format!("{step} failed: {e}"),
    }
}

/// Sends the check request, reads the head, judges the status and (GET with `body_excludes`)
/// the body.
async fn http(s: &mut Stream, hc: &HealthCheck, req: &[u8]) -> Result<String, String> {
    let mut out = req.to_vec();
    let len = out.len();
    write_range(s, &mut out, 0..len, hc.timeout)
        .await
        .map_err(|e| fail_text("write", e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut head = ResponseHead::default();
    read_head(s, &mut buf, &mut head, hc).await?;
    let text = verdict::status(&hc.expect, head.status)?;
    let Some(excludes) = &hc.body_excludes else {
        return Ok(text);
    };
    if no_body(hc.method == HcMethod::Head, head.status) {
        return Ok(text);
    }
    let body = read_body(s, buf, &head, hc).await?;
    verdict::body(&body, excludes).map(|_| text)
}

/// Reads until a final response head (1xx heads other than 101 are skipped) is parsed into `head`.
async fn read_head(
    s: &mut Stream,
    buf: &mut Vec<u8>,
    head: &mut ResponseHead,
    hc: &HealthCheck,
) -> Result<(), String> {
    loop {
        match parse_response(buf, MAX_HEAD, head) {
            Ok(()) if head.status == 101 => {
                return Err("invalid response: 101 to a check that asked for no upgrade".into())
            }
            Ok(()) if head.status < 200 => {
                buf.drain(..head.head_len);
                continue;
            }
            Ok(()) => return Ok(()),
            Err(HeadError::Partial) => {}
            Err(HeadError::Invalid(why)) => return Err(format!("invalid response: {why}")),
            Err(_) => return Err("invalid response: head too large".into()),
        }
        read_more(s, buf, 4096, hc.timeout)
            .await
            .map_err(|e| fail_text("read", e))?;
    }
}

/// The body's data (chunk framing removed), up to `MAX_BODY` bytes; `buf` holds the head and
/// what followed it.
async fn read_body(
    s: &mut Stream,
    mut buf: Vec<u8>,
    head: &ResponseHead,
    hc: &HealthCheck,
) -> Result<Vec<u8>, String> {
    let mut tracker = BodyTracker::new(head.body);
    let mut body = Vec::new();
    buf.drain(..head.head_len);
    loop {
        tracker
            .advance_with(&buf, |r| {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&buf[r.start..r.end.min(r.start + room)]);
            })
            .map_err(|e| format!("invalid body: {}", e.0))?;
        if tracker.is_done() || body.len() >= MAX_BODY {
            return Ok(body);
        }
        // What was scanned is no longer needed: the buffer stays one read long.
        buf.clear();
        match read_more(s, &mut buf, 16 * 1024, hc.timeout).await {
            Ok(_) => {}
            Err(IoFail::Closed) if tracker.finish_at_close() => return Ok(body),
            // A probe judges the answer and relays nothing: a TLS member's close without
            // close_notify ends its body here too.
            Err(IoFail::Error(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof && tracker.finish_at_close() =>
            {
                return Ok(body)
            }
            Err(e) => return Err(fail_text("body", e)),
        }
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
