//! One request's trip to a member and back: route, pick, pool checkout or connect, send head and
//! body, read the response head, stream the response body, check the connection back in.
//!
//! Owns: failover and retry decisions, and which connection may be reused. Must never: retry a
//! non-idempotent request whose bytes may have reached a member, pool a connection whose exchange
//! did not end cleanly, or copy a body in user space. Invariant: returns whether the client
//! connection may carry another request; when it returns false the caller closes it.

use std::time::Instant;

use compio::net::TcpStream;

use crate::access_log::Record;
use crate::ajp;
use crate::config::Protocol;
use crate::conn::{refuse, send_continue, Client};
use crate::http::framing::{BodyKind, BodyTracker};
use crate::http::parse::{parse_response, HeadError};
use crate::http::reply;
use crate::http::rewrite::{self, ClientBody};
use crate::io::{self, read_more, write_head_and, write_range, IoFail};
use crate::stats::{status_class, Failure, MemberStats, Phase};
use crate::worker::Core;

/// Largest response head accepted from a member.
const MAX_RESPONSE_HEAD: usize = 65536;
/// Read size for bodies.
const BODY_READ: usize = 65536;
/// Request bodies up to this size are gathered before anything is sent to the member.
const GATHER_BODY: u64 = 64 * 1024;
/// Read size for a response head (and a small body with it).
const HEAD_READ: usize = 4096;

/// How reading a response head ended badly.
enum HeadFail {
    /// The member closed or reset before sending any byte of a response.
    NoResponse,
    /// `response_timeout` passed.
    Timeout,
    /// The member sent something that is not a valid response head.
    Invalid,
}

/// One member's statistics for the request under way; the member counts it in flight while this
/// lives (through failover, errors and early returns alike).
struct Tracked<'a> {
    core: &'a Core,
    bal: usize,
    member: usize,
}

impl<'a> Tracked<'a> {
    fn start(core: &'a Core, bal: usize, member: usize) -> Tracked<'a> {
        let t = Tracked { core, bal, member };
        t.with(|m| {
            m.counters.selected += 1;
            m.counters.in_flight += 1;
        });
        t
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemberStats) -> R) -> R {
        f(self.core.stats.borrow_mut().member(self.bal, self.member))
    }

    fn fail(&self, kind: Failure) {
        self.with(|m| m.counters.failures[kind as usize] += 1);
    }

    /// Counts a response sent to the client for this member, and its total time.
    fn respond(&self, status: u16, started: Instant) {
        self.with(|m| {
            m.counters.responses[status_class(status)] += 1;
            m.record(Phase::Total, started.elapsed());
        });
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.with(|m| m.counters.in_flight -= 1);
    }
}

/// Forwards the request whose head is parsed in `c.head`. Returns whether to keep the client.
pub async fn forward(core: &Core, c: &mut Client) -> bool {
    let started = Instant::now();
    c.rec = Record::default();
    if core.access_log.is_some() {
        capture_log_fields(c);
    }
    let keep = exchange(core, c, started).await;
    if let Some(log) = &core.access_log {
        let member = c.rec.member.map_or("", |(b, m)| {
            core.config.balancers[b].members[m].host_port.as_str()
        });
        let [line, referer, agent] = &c.log_fields;
        let total = started.elapsed().as_micros() as u64;
        log.append(c.peer.ip(), line, referer, agent, &c.rec, member, total);
    }
    keep
}

/// Copies the request line, Referer and User-Agent before the head's bytes are drained.
fn capture_log_fields(c: &mut Client) {
    let [line, referer, agent] = &mut c.log_fields;
    line.clear();
    referer.clear();
    agent.clear();
    let first_line_end = c.buf[..c.head.head_len]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(0);
    line.extend_from_slice(&c.buf[..first_line_end]);
    for h in &c.head.headers {
        let name = &c.buf[h.name.clone()];
        if name.eq_ignore_ascii_case(b"referer") {
            referer.extend_from_slice(&c.buf[h.value.clone()]);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            agent.extend_from_slice(&c.buf[h.value.clone()]);
        }
    }
}

/// The exchange itself; fills `c.rec` for the access log.
async fn exchange(core: &Core, c: &mut Client, started: Instant) -> bool {
    let head_len = c.head.head_len;
    let mut req_body = BodyTracker::new(c.head.body);
    let mut initial = match req_body.advance(&c.buf[head_len..]) {
        Ok(n) => n,
        Err(_) => {
            core.stats.borrow_mut().refused(400);
            c.rec.status = 400;
            refuse(c, 400).await;
            return false;
        }
    };
    // A small body that arrived split over reads is gathered first: head and body then go to the
    // member in one write, and the request stays replayable. (Not when the client waits for
    // 100 Continue before sending it.)
    if let BodyKind::Length(n) = c.head.body {
        if n <= GATHER_BODY && !c.head.expect_continue {
            while !req_body.is_done() {
                let had = c.buf.len();
                let limit = core.config.limits.body_timeout;
                if read_more(&mut c.stream, &mut c.buf, n as usize, limit)
                    .await
                    .is_err()
                {
                    return false;
                }
                initial += req_body.advance(&c.buf[had..]).unwrap_or(0);
            }
        }
    }
    // When the body is complete in the buffer, the request can be replayed on another connection.
    let replayable = req_body.is_done();
    let request_end = head_len + initial;
    let route = core
        .router
        .find(c.head.routing_host(&c.buf), &c.buf[c.head.path.clone()]);
    let Some(route) = route else {
        core.stats.borrow_mut().core.not_found += 1;
        return local_reply(c, 404, replayable, request_end).await;
    };
    let bal = route.balancer;
    let bcfg = &core.config.balancers[bal];
    let idempotent = c.head.is_idempotent(&c.buf);
    // The head's bytes are drained before the response is relayed: keep what is needed of them.
    let is_head = c.head.is_head(&c.buf);
    let mut exclude = 0u64;
    let mut retry_fresh: Option<usize> = None;
    let mut retried = false;
    let (tracked, mut up) = loop {
        let now = Instant::now();
        let fresh_only = retry_fresh.take();
        let picked = match fresh_only {
            Some(m) => Some(m),
            None => core.upstreams.borrow_mut()[bal].balancer.pick(now, exclude),
        };
        let Some(member) = picked else {
            core.stats.borrow_mut().core.unavailable[bal] += 1;
            return local_reply(c, 503, replayable, request_end).await;
        };
        let tracked = Tracked::start(core, bal, member);
        c.rec.member = Some((bal, member));
        let mcfg = &bcfg.members[member];
        let mut pooled = if fresh_only.is_none() {
            core.upstreams.borrow_mut()[bal]
                .pool
                .checkout_aged(member, now)
        } else {
            None
        };
        // AJP: a connection idle longer than `ping` must answer a CPING before it is used.
        if let (Some((s, idle)), Some(ping)) = (pooled.as_mut(), mcfg.ping) {
            if *idle >= ping && !ajp::exchange::cping(s, &mut c.rbuf, bcfg.connect_timeout).await {
                tracing::debug!(member = %mcfg.url, "pooled AJP connection failed its CPING");
                pooled = None;
            }
        }
        let pooled = pooled.map(|(s, _)| s);
        let reused = pooled.is_some();
        let mut up = match pooled {
            Some(s) => {
                tracked.with(|m| m.counters.pool_hits += 1);
                s
            }
            None => {
                tracked.with(|m| m.counters.pool_misses += 1);
                let connect_start = Instant::now();
                match io::connect(mcfg.addr, bcfg.connect_timeout).await {
                    Ok(s) => {
                        let took = connect_start.elapsed();
                        c.rec.connect_us = Some(took.as_micros() as u64);
                        tracked.with(|m| m.record(Phase::Connect, took));
                        s
                    }
                    Err(e) => {
                        tracing::warn!(balancer = %bcfg.name, member = %mcfg.url, error = ?e,
                            "member failed to connect; skipping it for {:?}", bcfg.retry);
                        tracked.fail(if matches!(e, IoFail::Timeout) {
                            Failure::ConnectTimeout
                        } else {
                            Failure::ConnectRefused
                        });
                        tracked.with(|m| m.counters.failovers += 1);
                        let mut ups = core.upstreams.borrow_mut();
                        ups[bal].balancer.mark_failed(member, Instant::now());
                        ups[bal].pool.clear_member(member);
                        exclude |= 1 << member;
                        continue;
                    }
                }
            }
        };
        if mcfg.protocol == Protocol::Ajp {
            let req = ajp::exchange::Request {
                head_len,
                request_end,
                is_head,
                reused,
                replayable,
                idempotent,
            };
            let limits = &core.config.limits;
            let outcome = ajp::exchange::run(
                c,
                &mut up,
                mcfg,
                &req,
                req_body.clone(),
                bcfg.response_timeout,
                limits.body_timeout,
                core.is_stopping(),
            )
            .await;
            match outcome {
                ajp::exchange::Outcome::Done {
                    keep_client,
                    reusable,
                    status,
                    body_sent,
                    sent,
                    received,
                    head_time,
                } => {
                    tracked.with(|m| {
                        m.counters.bytes_sent += sent;
                        m.counters.bytes_received += received;
                        m.record(Phase::ResponseHead, head_time);
                        if status == 403 && !m.warned_403 {
                            m.warned_403 = true;
                            tracing::warn!(member = %mcfg.url,
                                "AJP member answered 403: if every request gets it, the member's secret \
                                 does not match the connector's (Tomcat requires one since 9.0.31)");
                        }
                    });
                    c.rec.status = status;
                    c.rec.upstream_status = Some(status);
                    c.rec.response_head_us = Some(head_time.as_micros() as u64);
                    c.rec.body_bytes = body_sent;
                    tracked.respond(status, started);
                    if reusable {
                        core.upstreams.borrow_mut()[bal]
                            .pool
                            .checkin(member, up, Instant::now());
                    }
                    return keep_client;
                }
                ajp::exchange::Outcome::RetryFresh if !retried => {
                    retried = true;
                    retry_fresh = Some(member);
                    tracked.with(|m| m.counters.retries += 1);
                    continue;
                }
                ajp::exchange::Outcome::RetryFresh => {
                    tracked.fail(Failure::Reset);
                    tracked.respond(502, started);
                    return gateway_error(c, 502, replayable).await;
                }
                ajp::exchange::Outcome::Failed {
                    status,
                    failure,
                    request_read,
                } => {
                    tracing::warn!(member = %mcfg.url, ?failure, "AJP member failed the request");
                    tracked.fail(failure);
                    tracked.respond(status, started);
                    return gateway_error(c, status, request_read).await;
                }
                ajp::exchange::Outcome::Broken {
                    status,
                    body_sent,
                    received,
                } => {
                    tracked.with(|m| m.counters.bytes_received += received);
                    c.rec.status = status;
                    c.rec.body_bytes = body_sent;
                    if status != 0 {
                        tracked.respond(status, started);
                    }
                    return false;
                }
                ajp::exchange::Outcome::TooLarge => {
                    tracing::warn!(member = %mcfg.url, packet_size = mcfg.packet_size,
                        "request head too large for one AJP packet: raise packet_size (and the connector's packetSize)");
                    return gateway_error(c, 500, replayable).await;
                }
            }
        }
        c.out.clear();
        rewrite::request_head(
            &mut c.out,
            &c.buf,
            &c.head,
            &mcfg.host_port,
            route.preserve_host,
            c.peer.ip(),
        );
        let limit = bcfg.response_timeout;
        let sent = (c.out.len() + initial) as u64;
        if write_head_and(
            &mut up,
            &mut c.out,
            &mut c.buf,
            head_len..request_end,
            limit,
        )
        .await
        .is_err()
        {
            // A write that fails on a reused connection failed because the member had closed
            // it: none of the request reached the application.
            if reused && replayable && !retried {
                retried = true;
                retry_fresh = Some(member);
                tracked.with(|m| m.counters.retries += 1);
                continue;
            }
            tracked.fail(Failure::Reset);
            tracked.respond(502, started);
            return gateway_error(c, 502, replayable).await;
        }
        tracked.with(|m| m.counters.bytes_sent += sent);
        let mut consumed = request_end;
        if !req_body.is_done() {
            c.buf.drain(..request_end);
            consumed = 0;
            if !send_continue(c, core.config.limits.body_timeout).await {
                return false;
            }
            match stream_request_body(core, c, &mut up, &mut req_body, limit).await {
                BodyOutcome::Done(n) => tracked.with(|m| m.counters.bytes_sent += n),
                BodyOutcome::ClientGone => return false,
                BodyOutcome::MemberFailed => {
                    tracing::warn!(member = %mcfg.url, "member failed while receiving a request body");
                    tracked.fail(Failure::Reset);
                    tracked.respond(502, started);
                    return gateway_error(c, 502, false).await;
                }
            }
        }
        let sent_at = Instant::now();
        match read_response_head(c, &mut up, bcfg.response_timeout).await {
            Ok(()) => {
                let took = sent_at.elapsed();
                c.rec.response_head_us = Some(took.as_micros() as u64);
                c.rec.upstream_status = Some(c.resp.status);
                tracked.with(|m| m.record(Phase::ResponseHead, took));
                c.buf.drain(..consumed);
                break (tracked, up);
            }
            Err(HeadFail::NoResponse) if reused && replayable && idempotent && !retried => {
                retried = true;
                retry_fresh = Some(member);
                tracked.with(|m| m.counters.retries += 1);
            }
            Err(fail) => {
                let (status, kind, what) = match fail {
                    HeadFail::NoResponse => (
                        502,
                        Failure::Reset,
                        "closed the connection without a response",
                    ),
                    HeadFail::Timeout => (
                        504,
                        Failure::ResponseTimeout,
                        "sent no response head in time",
                    ),
                    HeadFail::Invalid => (
                        502,
                        Failure::InvalidResponse,
                        "sent an invalid response head",
                    ),
                };
                tracing::warn!(member = %mcfg.url, "member {what}");
                tracked.fail(kind);
                tracked.respond(status, started);
                return gateway_error(c, status, consumed == 0 || replayable).await;
            }
        }
    };
    let status = c.resp.status;
    let relayed = relay_response(core, c, &mut up, is_head, bcfg.response_timeout).await;
    c.rec.status = status;
    c.rec.body_bytes = relayed.body_sent;
    tracked.with(|m| m.counters.bytes_received += relayed.received);
    tracked.respond(status, started);
    if relayed.member_reusable {
        core.upstreams.borrow_mut()[bal]
            .pool
            .checkin(tracked.member, up, Instant::now());
    }
    relayed.keep_client
}

/// Answers from ringlb itself (404, 503) and keeps the connection when the request was whole.
async fn local_reply(c: &mut Client, status: u16, whole: bool, request_end: usize) -> bool {
    c.rec.status = status;
    if !whole {
        refuse(c, status).await;
        return false;
    }
    c.buf.drain(..request_end);
    let keep = c.head.keep_alive;
    c.out.clear();
    reply::error(&mut c.out, status, !keep);
    let n = c.out.len();
    write_range(
        &mut c.stream,
        &mut c.out,
        0..n,
        std::time::Duration::from_secs(10),
    )
    .await
    .is_ok()
        && keep
}

/// A 502 or 504 with `Connection: close`. `request_read` says whether the client's request was
/// read to its end (if not, the rest is drained briefly so the client sees the status).
async fn gateway_error(c: &mut Client, status: u16, request_read: bool) -> bool {
    c.rec.status = status;
    if request_read {
        c.out.clear();
        reply::error(&mut c.out, status, true);
        let n = c.out.len();
        let _ = write_range(
            &mut c.stream,
            &mut c.out,
            0..n,
            std::time::Duration::from_secs(10),
        )
        .await;
    } else {
        refuse(c, status).await;
    }
    false
}

enum BodyOutcome {
    /// The body went out whole; this many bytes were streamed.
    Done(u64),
    ClientGone,
    MemberFailed,
}

/// Streams the rest of a request body from the client to the member. Bytes after the body (a
/// pipelined request) stay in `c.buf`.
async fn stream_request_body(
    core: &Core,
    c: &mut Client,
    up: &mut TcpStream,
    body: &mut BodyTracker,
    limit: std::time::Duration,
) -> BodyOutcome {
    let client_limit = core.config.limits.body_timeout;
    let mut streamed = 0u64;
    while !body.is_done() {
        let start = c.buf.len();
        if read_more(&mut c.stream, &mut c.buf, BODY_READ, client_limit)
            .await
            .is_err()
        {
            return BodyOutcome::ClientGone;
        }
        let Ok(n) = body.advance(&c.buf[start..]) else {
            // A framing error mid-body: abort, the member connection is dropped unpooled.
            return BodyOutcome::ClientGone;
        };
        if write_range(up, &mut c.buf, 0..start + n, limit)
            .await
            .is_err()
        {
            return BodyOutcome::MemberFailed;
        }
        streamed += (start + n) as u64;
        c.buf.drain(..start + n);
    }
    BodyOutcome::Done(streamed)
}

/// Reads a final response head into `c.rbuf`/`c.resp`, relaying interim 1xx responses.
async fn read_response_head(
    c: &mut Client,
    up: &mut TcpStream,
    limit: std::time::Duration,
) -> Result<(), HeadFail> {
    let deadline = Instant::now() + limit;
    c.rbuf.clear();
    loop {
        if !c.rbuf.is_empty() {
            match parse_response(&c.rbuf, MAX_RESPONSE_HEAD, &mut c.resp) {
                Ok(()) if (100..200).contains(&c.resp.status) && c.resp.status != 101 => {
                    let n = c.resp.head_len;
                    // ringlb answered Expect itself; other interim responses go to 1.1 clients.
                    if c.resp.status != 100 && c.head.minor_version == 1 {
                        let _ = write_range(&mut c.stream, &mut c.rbuf, 0..n, limit).await;
                    }
                    c.rbuf.drain(..n);
                    continue;
                }
                Ok(()) => return Ok(()),
                Err(HeadError::Partial) => {}
                Err(_) => return Err(HeadFail::Invalid),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let had = c.rbuf.len();
        match read_more(up, &mut c.rbuf, HEAD_READ, left).await {
            Ok(_) => {}
            Err(IoFail::Timeout) => return Err(HeadFail::Timeout),
            Err(_) if had == 0 => return Err(HeadFail::NoResponse),
            Err(_) => return Err(HeadFail::Invalid),
        }
    }
}

/// How relaying a response ended.
struct Relayed {
    keep_client: bool,
    member_reusable: bool,
    /// Bytes read from the member for this response.
    received: u64,
    /// Response body bytes written to the client.
    body_sent: u64,
}

impl Relayed {
    /// The exchange broke: both connections close.
    fn broken(received: u64, body_sent: u64) -> Relayed {
        Relayed {
            keep_client: false,
            member_reusable: false,
            received,
            body_sent,
        }
    }
}

/// Sends the response head and body to the client.
async fn relay_response(
    core: &Core,
    c: &mut Client,
    up: &mut TcpStream,
    is_head: bool,
    limit: std::time::Duration,
) -> Relayed {
    let status = c.resp.status;
    let kind = if is_head || status == 204 || status == 304 {
        BodyKind::Empty
    } else {
        c.resp.body
    };
    let mode = match kind {
        BodyKind::Empty => ClientBody::None,
        BodyKind::Chunked if c.head.minor_version == 0 => ClientBody::Dechunk,
        _ => ClientBody::PassThrough,
    };
    let keep_client = c.head.keep_alive
        && kind != BodyKind::UntilClose
        && mode != ClientBody::Dechunk
        && !core.is_stopping();
    let mut member_clean = c.resp.keep_alive;
    let mut received = c.rbuf.len() as u64;
    let mut body_sent = 0u64;
    c.out.clear();
    rewrite::response_head(
        &mut c.out,
        &c.rbuf,
        &c.resp,
        mode,
        c.head.minor_version,
        keep_client,
    );
    let client_limit = core.config.limits.body_timeout;
    let mut body = BodyTracker::new(kind);
    let head_len = c.resp.head_len;
    // The first body bytes arrived with the head.
    c.ranges.clear();
    let ranges = &mut c.ranges;
    let Ok(n) = body.advance_with(&c.rbuf[head_len..], |r| {
        ranges.push(r.start + head_len..r.end + head_len)
    }) else {
        // Nothing has gone to the client yet: it gets a 502 rather than a broken response.
        tracing::warn!("member sent a malformed chunked body");
        c.out.clear();
        reply::error(&mut c.out, 502, true);
        let len = c.out.len();
        let _ = write_range(&mut c.stream, &mut c.out, 0..len, client_limit).await;
        return Relayed::broken(received, body_sent);
    };
    member_clean &= head_len + n == c.rbuf.len();
    body_sent += data_len(mode, n, &c.ranges);
    let sent = if mode == ClientBody::Dechunk {
        let len = c.out.len();
        write_range(&mut c.stream, &mut c.out, 0..len, client_limit)
            .await
            .is_ok()
            && write_ranges(c, client_limit).await
    } else {
        write_head_and(
            &mut c.stream,
            &mut c.out,
            &mut c.rbuf,
            head_len..head_len + n,
            client_limit,
        )
        .await
        .is_ok()
    };
    if !sent {
        return Relayed::broken(received, body_sent);
    }
    while !body.is_done() {
        c.rbuf.clear();
        match read_more(up, &mut c.rbuf, BODY_READ, limit).await {
            Ok(n) => received += n as u64,
            Err(IoFail::Closed) if body.finish_at_close() => break,
            Err(_) => return Relayed::broken(received, body_sent),
        }
        c.ranges.clear();
        let ranges = &mut c.ranges;
        let Ok(n) = body.advance_with(&c.rbuf, |r| ranges.push(r)) else {
            return Relayed::broken(received, body_sent);
        };
        member_clean &= n == c.rbuf.len();
        body_sent += data_len(mode, n, &c.ranges);
        let ok = if mode == ClientBody::Dechunk {
            write_ranges(c, client_limit).await
        } else {
            write_range(&mut c.stream, &mut c.rbuf, 0..n, client_limit)
                .await
                .is_ok()
        };
        if !ok {
            return Relayed::broken(received, body_sent);
        }
    }
    Relayed {
        keep_client,
        member_reusable: member_clean && kind != BodyKind::UntilClose,
        received,
        body_sent,
    }
}

/// Body bytes a write sends: the framed bytes, or the decoded data when de-chunking.
fn data_len(mode: ClientBody, framed: usize, ranges: &[std::ops::Range<usize>]) -> u64 {
    match mode {
        ClientBody::Dechunk => ranges.iter().map(|r| r.len() as u64).sum(),
        _ => framed as u64,
    }
}

/// Writes the data ranges of `c.rbuf` listed in `c.ranges` (a decoded chunked body).
async fn write_ranges(c: &mut Client, limit: std::time::Duration) -> bool {
    for i in 0..c.ranges.len() {
        let r = c.ranges[i].clone();
        if write_range(&mut c.stream, &mut c.rbuf, r, limit)
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}
