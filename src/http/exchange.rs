//! One request's exchange with an HTTP member on a connection the caller provides: write the
//! rewritten head and the body, read the response head (relaying interim 1xx), write the response
//! head, stream the body (a connection's last answer, when it came whole with its head, with the
//! FIN right behind it: `stream::write_last`; a body the member ends by its close framed as chunked
//! for an HTTP/1.1 client, `http::chunked::ChunkEncoder`); or, for a request forwarded as an
//! upgrade, relay the member's 101 (the tunnel that follows is `tunnel`'s).
//!
//! Owns: the HTTP side of the request path and what it reports (`outcome::Outcome`). Must never:
//! choose a member, decide a retry (it reports how far it got; `outcome::retry` decides), copy a
//! body between buffers itself (it is read into one buffer and written from it; `io` copies a
//! part of at most `io::JOIN_MAX` bytes behind its head for one send; see `splice` for the bodies
//! that skip user space), or report a member connection reusable when anything of its exchange
//! was left unread or broke a rule. Invariant: the client sees a whole response, or no byte of a
//! final one (`Failed`: at most relayed 1xx interim responses, then ringlb's 502/504), or a
//! response cut short followed by a close (`Broken`; a reset when the body ends at the close, so
//! that the cut cannot look like its end: `reset`), or a whole 101 after which neither
//! connection carries HTTP again (`Switched`).

use std::time::{Duration, Instant};

use super::chunked::{ChunkEncoder, ChunkError};
use super::framing::{no_body, BodyKind, BodyTracker};
use super::keep_alive;
use super::parse::{parse_response, HeadError, HeadScan};
use super::reverse::{Mapping, Reverse};
use super::rewrite::{self, ClientBody};
use super::upgrade;
use crate::client::{refuse, send_continue, target, Client};
use crate::config::Upgrades;
use crate::io::{IoFail, Unsent};
use crate::outcome::{Done, Failed, Outcome, Reached, Request};
use crate::splice;
use crate::stats::Failure;
use crate::stream;
use crate::stream::{read_more, send_request, write_range, Stream};

/// Largest response head accepted from a member.
const MAX_RESPONSE_HEAD: usize = 65536;
/// Read size for bodies.
const BODY_READ: usize = crate::io::BODY_UNIT;
/// Read size for a response head (and a small body with it).
const HEAD_READ: usize = 4096;

/// What the exchange needs from the route, the member and the limits.
pub struct Params<'a> {
    pub host_header: &'a str,
    pub preserve_host: bool,
    pub response_timeout: Duration,
    /// The client's limit for each read and write (`limits.body_timeout`).
    pub client_timeout: Duration,
    pub stopping: bool,
    /// Header lines added after the status line of the client's response (HSTS), or empty.
    pub hsts: &'a [u8],
    /// The route's mapping, when response URLs and cookie paths are mapped back.
    pub reverse: Option<Mapping<'a>>,
    /// The request asks for a protocol switch its route tunnels (`http::upgrade::offer`; the
    /// offer is in `c.upgrade_offer`): it goes with its `Upgrade`, a 101 naming protocols it
    /// offered and these allow is accepted, and any other answer is the connection's last.
    pub upgrade: Option<&'a Upgrades>,
}

/// Runs the exchange for the request parsed in `c` on `up`. `body` has counted the body bytes
/// already in `c.buf` (up to `req.request_end`).
pub async fn run(
    c: &mut Client,
    up: &mut Stream,
    req: &Request,
    body: &mut BodyTracker,
    p: &Params<'_>,
) -> Outcome {
    let mut sent = match send_head(c, up, req, p).await {
        Ok(n) => n,
        Err(o) => return o,
    };
    let mut consumed = req.request_end;
    if !body.is_done() {
        c.buf.drain(..req.request_end);
        consumed = 0;
        match send_body(c, up, body, p).await {
            Ok(n) => sent += n,
            Err(o) => return o,
        }
    }
    let sent_at = Instant::now();
    let switched = match read_response_head(c, up, sent_at, p.response_timeout, p.upgrade).await {
        Ok(s) => s,
        // The request stays in `c.buf` unless its body was streamed (then `consumed` is 0).
        Err(fail) => return head_failed(fail, consumed == 0 || req.replayable, consumed != 0),
    };
    let head_at = Instant::now();
    let head_time = head_at.saturating_duration_since(sent_at);
    // What follows the request in `c.buf` is the next request's, or, after a 101, the tunnel's.
    c.buf.drain(..consumed);
    if let Some(protocol) = switched {
        return switch(c, p, protocol, sent, head_time).await;
    }
    let status = c.resp.status;
    let relayed = relay_response(c, up, req.is_head, p).await;
    if relayed.invalid {
        return invalid_body();
    }
    if !relayed.complete {
        return Outcome::Broken {
            status,
            body_sent: relayed.body_sent,
            received: relayed.received,
            reset_client: relayed.until_close,
        };
    }
    if relayed.until_close {
        // Whole: its clean close is its end (`reset`).
        crate::reset::disarm(&c.stream.tcp);
    }
    Outcome::Done(Done {
        keep_client: relayed.keep_client,
        request_read: true,
        reusable: relayed.member_reusable,
        idle_limit: idle_limit(c, head_at),
        status,
        body_sent: relayed.body_sent,
        sent,
        received: relayed.received,
        head_time,
    })
}

/// How long the member's connection may stay pooled, when its answer said (`Keep-Alive:
/// timeout`): the member's count began once it had written the answer, not before its head came
/// (`head_at`), so what the relay took since then comes off.
fn idle_limit(c: &Client, head_at: Instant) -> Option<Duration> {
    let secs = c.resp.keep_alive_timeout?;
    Some(keep_alive::idle_limit(secs).saturating_sub(head_at.elapsed()))
}

/// Writes the member's head with the body bytes already in `c.buf`. Returns the bytes written.
async fn send_head(
    c: &mut Client,
    up: &mut Stream,
    req: &Request,
    p: &Params<'_>,
) -> Result<u64, Outcome> {
    c.out.clear();
    let path = target(&c.buf, &c.head, &c.path);
    rewrite::request_head(
        &mut c.out,
        &c.buf,
        &c.head,
        path,
        p.host_header,
        p.preserve_host,
        rewrite::Origin {
            ip: c.peer.ip(),
            trusted: c.trusted,
            https: c.stream.tls.is_some(),
        },
        p.upgrade.map(|_| &c.upgrade_offer[..]),
    );
    let sent = (c.out.len() + req.request_end - req.head_len) as u64;
    let range = req.head_len..req.request_end;
    match send_request(up, &mut c.out, &mut c.buf, range, p.response_timeout).await {
        Ok(()) => Ok(sent),
        Err(Unsent::Nothing(_)) => Err(Outcome::Failed(Failed::reset(
            Reached::Nothing,
            req.replayable,
            true,
        ))),
        Err(Unsent::Partly(e)) => Err(Outcome::Failed(Failed::partly_sent(
            &e,
            req.replayable,
            true,
        ))),
    }
}

/// After the head: 100 Continue to a client that waits for it, then the rest of the body.
/// Returns the bytes streamed.
async fn send_body(
    c: &mut Client,
    up: &mut Stream,
    body: &mut BodyTracker,
    p: &Params<'_>,
) -> Result<u64, Outcome> {
    // The body's reads take over the client's socket: the kept poll would only wake the task
    // for each of its arrivals.
    c.ready.stop();
    if !send_continue(c, p.client_timeout).await {
        return Err(Outcome::broken(0, 0, 0));
    }
    match stream_request_body(c, up, body, p).await {
        BodyOutcome::Done(n) => Ok(n),
        BodyOutcome::ClientGone => Err(Outcome::broken(0, 0, 0)),
        BodyOutcome::Malformed => {
            // No response byte has gone to the client: it learns why. The member saw an
            // unfinished request and its connection closes.
            refuse(c, 400).await;
            Err(Outcome::broken(400, 0, 0))
        }
        BodyOutcome::MemberFailed(e) => {
            tracing::warn!("member failed while receiving a request body");
            Err(Outcome::Failed(Failed::partly_sent(&e, false, false)))
        }
    }
}

/// The member's body broke its framing in its first bytes, before any of it reached the client:
/// answered as an invalid head is (the request was sent whole, and is never sent again after a
/// response byte).
fn invalid_body() -> Outcome {
    tracing::debug!("member sent a malformed chunked body");
    Outcome::Failed(Failed {
        reached: Reached::Response,
        failure: Failure::InvalidResponse,
        status: 502,
        request_read: true,
        intact: false,
    })
}

/// Relays the member's 101 (accepted by `read_response_head`; `protocol`: where in `c.rbuf` it
/// names the protocol) to the client. The bytes after its head in `c.rbuf`, and those after the
/// request in `c.buf`, are the tunnel's first.
async fn switch(
    c: &mut Client,
    p: &Params<'_>,
    protocol: std::ops::Range<usize>,
    sent: u64,
    head_time: Duration,
) -> Outcome {
    let reverse = p.reverse.map(|mapping| Reverse {
        mapping,
        origin: &c.public_origin,
    });
    c.out.clear();
    let protocol = &c.rbuf[protocol];
    rewrite::switching_head(&mut c.out, &c.rbuf, &c.resp, protocol, reverse.as_ref());
    let received = c.resp.head_len as u64;
    let len = c.out.len();
    if stream::write_range(&mut c.stream, &mut c.out, 0..len, p.client_timeout)
        .await
        .is_err()
    {
        return Outcome::broken(0, 0, received);
    }
    c.rbuf.drain(..c.resp.head_len);
    Outcome::Switched(Done {
        keep_client: false,
        request_read: true,
        reusable: false,
        idle_limit: None,
        status: 101,
        body_sent: 0,
        sent,
        received,
        head_time,
    })
}

/// How reading a response head ended badly.
enum HeadFail {
    /// The member closed or reset before sending any byte of a response.
    NoResponse,
    /// `response_timeout` passed.
    Timeout,
    /// The member sent something that is not a valid response head.
    Invalid,
    /// Relaying an interim response to the client failed: the client is gone.
    ClientGone,
}

fn head_failed(fail: HeadFail, request_read: bool, intact: bool) -> Outcome {
    let (reached, failure, status, what) = match fail {
        HeadFail::NoResponse => (
            Reached::Request,
            Failure::Reset,
            502,
            "closed the connection without a response",
        ),
        HeadFail::Timeout => (
            Reached::Request,
            Failure::ResponseTimeout,
            504,
            "sent no response head in time",
        ),
        HeadFail::Invalid => (
            Reached::Response,
            Failure::InvalidResponse,
            502,
            "sent an invalid response head",
        ),
        HeadFail::ClientGone => return Outcome::broken(0, 0, 0),
    };
    tracing::debug!("member {what}");
    Outcome::Failed(Failed {
        reached,
        failure,
        status,
        request_read,
        // A timed-out read took `c.rbuf` only; the request's buffer is untouched.
        intact,
    })
}

enum BodyOutcome {
    /// The body went out whole; this many bytes were streamed.
    Done(u64),
    ClientGone,
    /// The client broke the body's framing (a chunked body).
    Malformed,
    MemberFailed(IoFail),
}

/// Streams the rest of a request body from the client to the member (a large `Content-Length`
/// one with `splice`, when it can). Bytes after the body (a pipelined request) stay in `c.buf`.
async fn stream_request_body(
    c: &mut Client,
    up: &mut Stream,
    body: &mut BodyTracker,
    p: &Params<'_>,
) -> BodyOutcome {
    if let Some(spliced) = upload_spliced(c, up, body, p).await {
        return spliced;
    }
    let mut streamed = 0u64;
    while !body.is_done() {
        let start = c.buf.len();
        if stream::read_more(&mut c.stream, &mut c.buf, BODY_READ, p.client_timeout)
            .await
            .is_err()
        {
            return BodyOutcome::ClientGone;
        }
        let Ok(n) = body.advance(&c.buf[start..]) else {
            // A framing error mid-body: abort, the member connection is dropped unpooled.
            return BodyOutcome::Malformed;
        };
        if let Err(e) = write_range(up, &mut c.buf, 0..start + n, p.response_timeout).await {
            return BodyOutcome::MemberFailed(e);
        }
        streamed += (start + n) as u64;
        c.buf.drain(..start + n);
    }
    BodyOutcome::Done(streamed)
}

/// Moves the rest of a large `Content-Length` request body from a plain client to a plain
/// member with `splice_rest`, when no byte of it waits in `c.buf` (none does after the head went:
/// every buffered byte was body, and went with it). `None`: not this body, or the kernel refused
/// splice, and nothing of it moved (the caller copies it). The client's bytes after the body stay
/// on its socket: `splice` takes no more than the body's length.
async fn upload_spliced(
    c: &mut Client,
    up: &Stream,
    body: &mut BodyTracker,
    p: &Params<'_>,
) -> Option<BodyOutcome> {
    if !c.buf.is_empty() {
        return None;
    }
    let limits = (p.client_timeout, p.response_timeout);
    let (moved, end) = splice_rest(&c.stream, up, body, limits).await?;
    c.rec.spliced_request = moved.sent;
    Some(match end {
        splice::End::Whole => BodyOutcome::Done(moved.sent),
        splice::End::FromBroken(_) => BodyOutcome::ClientGone,
        splice::End::ToBroken(e) => BodyOutcome::MemberFailed(e),
    })
}

/// Moves the rest of a large `Content-Length` body from `from` to `to`, two plain connections,
/// with `splice` (`limits`: `from`'s, then `to`'s), and counts what it took in `body`. `None`:
/// not this body (too little left, or TLS on either side), or the kernel refused splice, and
/// nothing of it moved (the caller copies it).
async fn splice_rest(
    from: &Stream,
    to: &Stream,
    body: &mut BodyTracker,
    limits: (Duration, Duration),
) -> Option<(splice::Moved, splice::End)> {
    let left = body.length_left().filter(|&n| n >= splice::FROM)?;
    if from.tls.is_some() || to.tls.is_some() {
        return None;
    }
    let splicer = splice::ready(&from.tcp, &to.tcp)?;
    // Boxed, like the TLS flush in `conn::wait_idle`: the splice's state stays out of every
    // connection's task, which would otherwise carry it for its small bodies too.
    let (moved, end) =
        crate::boxed!(splicer.run(&from.tcp, &to.tcp, left, limits.0, limits.1)).await?;
    let counted = body.advance_moved(moved.received);
    debug_assert_eq!(
        counted, moved.received,
        "splice moved at most what was left"
    );
    Some((moved, end))
}

/// Reads a final response head into `c.rbuf`/`c.resp`, relaying interim 1xx responses. A 101 is
/// final when the request was forwarded as an upgrade (`tunnels`: its route's rule) and names a
/// protocol the client offered and the route allows (`http::upgrade::switched_to`): then `Some`
/// says where in `c.rbuf`. Any other 101 is a member's error. The head must come within `limit`
/// of `sent_at` (when the request was sent: the clock is read once for both).
async fn read_response_head(
    c: &mut Client,
    up: &mut Stream,
    sent_at: Instant,
    limit: Duration,
    tunnels: Option<&Upgrades>,
) -> Result<Option<std::ops::Range<usize>>, HeadFail> {
    let deadline = sent_at + limit;
    // The first read gets the whole limit without another clock read; later ones what is left.
    let mut first = true;
    c.rbuf.clear();
    // Once an interim response was read, the member has answered: a close after it is a broken
    // response, not "no response" (which may be retried).
    let mut interim = false;
    let mut scan = HeadScan::default();
    loop {
        if !c.rbuf.is_empty() && scan.worth_parsing(&c.rbuf, MAX_RESPONSE_HEAD) {
            match parse_response(&c.rbuf, MAX_RESPONSE_HEAD, &mut c.resp) {
                Ok(()) if c.resp.status == 101 => {
                    // Unasked for (no Upgrade was forwarded) or not as asked: a member's error.
                    let offered = &c.upgrade_offer;
                    let protocol = tunnels.and_then(|rule| {
                        upgrade::switched_to(&c.rbuf, &c.resp.headers, rule, offered)
                    });
                    return protocol.map(Some).ok_or(HeadFail::Invalid);
                }
                Ok(()) if (100..200).contains(&c.resp.status) => {
                    interim = true;
                    relay_interim(c, limit).await?;
                    scan = HeadScan::default(); // what is left of `c.rbuf` is the next head's
                    continue;
                }
                Ok(()) => return Ok(None),
                Err(HeadError::Partial) => {}
                Err(_) => return Err(HeadFail::Invalid),
            }
        }
        let left = if first {
            first = false;
            limit
        } else {
            crate::deadline::left(deadline).ok_or(HeadFail::Timeout)?
        };
        let had = c.rbuf.len();
        match read_more(up, &mut c.rbuf, HEAD_READ, left).await {
            Ok(_) => {}
            Err(IoFail::Timeout) => return Err(HeadFail::Timeout),
            Err(_) if had == 0 && !interim => return Err(HeadFail::NoResponse),
            Err(_) => return Err(HeadFail::Invalid),
        }
    }
}

/// Sends an interim response (not 100: ringlb answered Expect itself) to an HTTP/1.1 client,
/// rewritten like any response head, and drops it from `c.rbuf`.
async fn relay_interim(c: &mut Client, limit: Duration) -> Result<(), HeadFail> {
    let n = c.resp.head_len;
    if c.resp.status != 100 && c.head.minor_version == 1 {
        c.out.clear();
        rewrite::interim_head(&mut c.out, &c.rbuf, &c.resp);
        let len = c.out.len();
        if stream::write_range(&mut c.stream, &mut c.out, 0..len, limit)
            .await
            .is_err()
        {
            return Err(HeadFail::ClientGone);
        }
    }
    c.rbuf.drain(..n);
    Ok(())
}

/// How relaying a response ended.
struct Relayed {
    /// The body went out whole.
    complete: bool,
    /// The body's first bytes broke its framing; nothing went to the client.
    invalid: bool,
    keep_client: bool,
    /// The client reads the body to the connection's close (the member framed it so, to an
    /// HTTP/1.0 client, or it is decoded for one): its socket resets at close until the body is
    /// whole (`reset`).
    until_close: bool,
    /// The chunk framing of a close-delimited body for an HTTP/1.1 client (`ClientBody::Enchunk`).
    chunks: ChunkEncoder,
    member_reusable: bool,
    /// Bytes read from the member for this response.
    received: u64,
    /// Response body bytes written to the client.
    body_sent: u64,
}

/// Sends the response head and body to the client.
async fn relay_response(c: &mut Client, up: &mut Stream, is_head: bool, p: &Params<'_>) -> Relayed {
    let (kind, mode, mut r) = start_response(c, is_head, p);
    let mut body = BodyTracker::new(kind);
    if !relay_first(c, &mut body, mode, &mut r, p.client_timeout).await {
        return r;
    }
    if mode == ClientBody::PassThrough {
        if let Some(complete) = relay_spliced(c, up, &mut body, &mut r, p).await {
            r.complete = complete;
            return r;
        }
    }
    while !body.is_done() {
        c.rbuf.clear();
        match read_more(up, &mut c.rbuf, BODY_READ, p.response_timeout).await {
            Ok(n) => r.received += n as u64,
            Err(IoFail::Closed) if body.finish_at_close() => break,
            Err(_) => return r,
        }
        if !relay_more(c, &mut body, mode, &mut r, p.client_timeout).await {
            return r;
        }
    }
    if mode == ClientBody::Enchunk && !last_chunk(c, &mut r, p.client_timeout).await {
        return r;
    }
    r.complete = true;
    r
}

/// Ends a body framed as chunked for the client (`ClientBody::Enchunk`) at the member's close.
async fn last_chunk(c: &mut Client, r: &mut Relayed, limit: Duration) -> bool {
    c.out.clear();
    r.chunks.finish(&mut c.out);
    let n = c.out.len();
    stream::write_range(&mut c.stream, &mut c.out, 0..n, limit)
        .await
        .is_ok()
}

/// Writes the client's response head into `c.out`, having decided how the body reaches the
/// client (its framing as the member declared it; none after HEAD or for a 204 or 304; a chunked
/// body decoded, and the client's connection closed, for an HTTP/1.0 client; a close-delimited
/// one framed as chunked for an HTTP/1.1 client) and whether either connection is kept.
fn start_response(
    c: &mut Client,
    is_head: bool,
    p: &Params<'_>,
) -> (BodyKind, ClientBody, Relayed) {
    let kind = if no_body(is_head, c.resp.status) {
        BodyKind::Empty
    } else {
        c.resp.body
    };
    let mode = ClientBody::choose(kind, c.head.minor_version);
    let until_close = mode.ends_at_close(kind);
    // An upgrade request the member did not switch: bytes the client sent after it (early tunnel
    // data) must not be read as a next request, nor the member's connection reused.
    let upgrade_refused = p.upgrade.is_some();
    let keep_client = mode.keeps_client(kind, c.head.keep_alive && !p.stopping && !upgrade_refused);
    let r = Relayed {
        complete: false,
        invalid: false,
        keep_client,
        until_close,
        chunks: ChunkEncoder::default(),
        member_reusable: c.resp.keep_alive && kind != BodyKind::UntilClose && !upgrade_refused,
        received: c.rbuf.len() as u64,
        body_sent: 0,
    };
    c.out.clear();
    let reverse = p.reverse.map(|mapping| Reverse {
        mapping,
        origin: &c.public_origin,
    });
    let head = rewrite::ClientHead {
        body: mode,
        client_minor: c.head.minor_version,
        keep_alive: keep_client,
        reverse: reverse.as_ref(),
    };
    rewrite::response_head(&mut c.out, &c.rbuf, &c.resp, &head);
    rewrite::insert_after_status_line(&mut c.out, p.hsts);
    (kind, mode, r)
}

/// Writes the response head with the body bytes that came with it. `false`: the exchange broke.
async fn relay_first(
    c: &mut Client,
    body: &mut BodyTracker,
    mode: ClientBody,
    r: &mut Relayed,
    limit: Duration,
) -> bool {
    let head_len = c.resp.head_len;
    let Ok(end) = scan_body(c, body, mode, r, head_len) else {
        // Nothing has gone to the client yet: it gets a 502 (`run`) rather than a broken response.
        r.invalid = true;
        return false;
    };
    if r.until_close {
        // The head goes out now (never by the FIN-behind write below: that is for a body done
        // with its head, which one ending at the close never is).
        crate::reset::arm(&c.stream.tcp);
    }
    if mode == ClientBody::Enchunk {
        // Its first chunk goes behind the head (none when no body byte came with it).
        r.chunks.start(&mut c.out, end - head_len);
    }
    if mode == ClientBody::Dechunk {
        let len = c.out.len();
        stream::write_range(&mut c.stream, &mut c.out, 0..len, limit)
            .await
            .is_ok()
            && write_ranges(c, limit).await
    } else if !r.keep_client && body.is_done() {
        // The whole answer, and the connection's last: the FIN goes right behind it.
        let range = head_len..end;
        stream::write_last(&mut c.stream, &mut c.out, &mut c.rbuf, range, limit)
            .await
            .is_ok()
    } else {
        let range = head_len..end;
        stream::write_head_and(&mut c.stream, &mut c.out, &mut c.rbuf, range, limit)
            .await
            .is_ok()
    }
}

/// Relays the body bytes of one more read. `false`: the exchange broke.
async fn relay_more(
    c: &mut Client,
    body: &mut BodyTracker,
    mode: ClientBody,
    r: &mut Relayed,
    limit: Duration,
) -> bool {
    let Ok(end) = scan_body(c, body, mode, r, 0) else {
        return false;
    };
    match mode {
        ClientBody::Dechunk => write_ranges(c, limit).await,
        ClientBody::Enchunk => {
            c.out.clear();
            r.chunks.start(&mut c.out, end);
            stream::write_head_and(&mut c.stream, &mut c.out, &mut c.rbuf, 0..end, limit)
                .await
                .is_ok()
        }
        _ => stream::write_range(&mut c.stream, &mut c.rbuf, 0..end, limit)
            .await
            .is_ok(),
    }
}

/// Moves the rest of a large `Content-Length` response body from member to client with
/// `splice_rest` (the bytes that came with the head are already out). `None`: not this body, or
/// the kernel refused splice, and nothing of it moved (the caller copies it); `Some(complete)`
/// otherwise.
async fn relay_spliced(
    c: &mut Client,
    up: &Stream,
    body: &mut BodyTracker,
    r: &mut Relayed,
    p: &Params<'_>,
) -> Option<bool> {
    let limits = (p.response_timeout, p.client_timeout);
    let (moved, end) = splice_rest(up, &c.stream, body, limits).await?;
    // What came with the head went out before: nothing of `c.rbuf` is left to send.
    c.rbuf.clear();
    r.received += moved.received;
    r.body_sent += moved.sent;
    c.rec.spliced = moved.sent;
    Some(matches!(end, splice::End::Whole) && body.is_done())
}

/// Advances the body over `c.rbuf[from..]`: its data ranges (in `c.rbuf`) go to `c.ranges`, and
/// `r` counts what this read adds. Returns where the body's bytes in `c.rbuf` end.
fn scan_body(
    c: &mut Client,
    body: &mut BodyTracker,
    mode: ClientBody,
    r: &mut Relayed,
    from: usize,
) -> Result<usize, ChunkError> {
    c.ranges.clear();
    let ranges = &mut c.ranges;
    let n = body.advance_with(&c.rbuf[from..], |d| {
        ranges.push(d.start + from..d.end + from)
    })?;
    r.member_reusable &= from + n == c.rbuf.len();
    r.body_sent += data_len(mode, n, &c.ranges);
    Ok(from + n)
}

/// Body bytes a write sends: the framed bytes, or the decoded data when de-chunking.
fn data_len(mode: ClientBody, framed: usize, ranges: &[std::ops::Range<usize>]) -> u64 {
    match mode {
        ClientBody::Dechunk => ranges.iter().map(|r| r.len() as u64).sum(),
        _ => framed as u64,
    }
}

/// Writes the data ranges of `c.rbuf` listed in `c.ranges` (a decoded chunked body).
async fn write_ranges(c: &mut Client, limit: Duration) -> bool {
    for i in 0..c.ranges.len() {
        let r = c.ranges[i].clone();
        if stream::write_range(&mut c.stream, &mut c.rbuf, r, limit)
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    //! The exchange against scripted members over loopback, on a compio runtime of its own (no
    //! worker, no `Core`): what each way of failing reports.
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::http::parse::parse_request;
    use crate::outcome::{retry, Retry};

    /// Runs one exchange of `request` against a member that reads one request and then does what
    /// `member` says with its socket.
    fn exchange(
        request: &'static [u8],
        member: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
    ) -> (Outcome, Request) {
        let rt = crate::runtime::build(crate::config::Driver::Auto).unwrap();
        rt.block_on(async move {
            compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let script = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                member(&mut s);
            });
            let mut up = crate::stream::connect(addr, None, Duration::from_secs(2))
                .await
                .unwrap();
            let front = compio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let front_addr = front.local_addr().unwrap();
            let user = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(front_addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            });
            let (stream, peer) = front.accept().await.unwrap();
            let mut c = Client::new(crate::stream::Stream::plain(stream), peer, false, 0);
            c.buf.extend_from_slice(request);
            parse_request(&c.buf, 16384, 100, &mut c.head).unwrap();
            let mut body = BodyTracker::new(c.head.body);
            let n = body.advance(&c.buf[c.head.head_len..]).unwrap();
            let req = Request {
                head_len: c.head.head_len,
                request_end: c.head.head_len + n,
                is_head: false,
                reused: true,
                replayable: body.is_done(),
                idempotent: c.head.is_idempotent(&c.buf),
            };
            let params = Params {
                host_header: "m:1",
                preserve_host: false,
                response_timeout: Duration::from_millis(300),
                client_timeout: Duration::from_secs(2),
                stopping: false,
                hsts: b"",
                reverse: None,
                upgrade: None,
            };
            let outcome = run(&mut c, &mut up, &req, &mut body, &params).await;
            drop(c);
            drop(up);
            script.join().unwrap();
            user.join().unwrap();
            (outcome, req)
        })
    }

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    const POST: &[u8] = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi";

    fn failed(o: Outcome) -> Failed {
        match o {
            Outcome::Failed(f) => f,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn done(o: Outcome) -> Done {
        match o {
            Outcome::Done(d) => d,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    #[test]
    fn a_member_s_keep_alive_timeout_bounds_how_long_its_connection_is_pooled() {
        let (o, _) = exchange(GET, |s| {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1, max=9\r\nContent-Length: 2\r\n\r\nok",
            )
            .unwrap();
        });
        let d = done(o);
        assert!(d.reusable);
        // Half of it (less the moment since the head came).
        let limit = d.idle_limit.expect("a limit");
        assert!(limit <= Duration::from_millis(500) && limit > Duration::from_millis(200));
    }

    #[test]
    fn the_pool_limit_counts_from_the_answer_s_head() {
        let (o, _) = exchange(GET, |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            s.write_all(b"ok").unwrap();
        });
        let limit = done(o).idle_limit.expect("a limit");
        assert!(
            limit <= Duration::from_millis(200),
            "{limit:?}: the body's 300 ms count"
        );
    }

    #[test]
    fn a_whole_response_is_done_and_reusable() {
        let (o, _) = exchange(GET, |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let d = done(o);
        assert_eq!(d.status, 200);
        assert!(d.reusable && d.keep_client);
        assert_eq!(
            d.idle_limit, None,
            "no Keep-Alive header: the balancer's idle_ttl"
        );
        assert_eq!(d.body_sent, 2);
    }

    #[test]
    fn a_close_without_response_may_resend_only_idempotent_requests() {
        let (o, req) = exchange(GET, |_| {});
        let f = failed(o);
        assert_eq!(
            (f.reached, f.failure, f.status),
            (Reached::Request, Failure::Reset, 502)
        );
        assert!(f.intact);
        assert_eq!(retry(&f, &req, false), Retry::FreshConnection);
        let (o, req) = exchange(POST, |_| {});
        let f = failed(o);
        assert_eq!(f.reached, Reached::Request);
        assert_eq!(retry(&f, &req, false), Retry::No);
    }

    #[test]
    fn a_silent_member_times_out_and_is_never_resent() {
        let (o, req) = exchange(GET, |_| std::thread::sleep(Duration::from_millis(800)));
        let f = failed(o);
        assert_eq!((f.failure, f.status), (Failure::ResponseTimeout, 504));
        assert_eq!(retry(&f, &req, false), Retry::No);
    }

    #[test]
    fn garbage_or_an_interim_response_then_a_close_ends_all_retries() {
        let (o, req) = exchange(GET, |s| s.write_all(b"HTTP/1.1 2x0 OK\r\n\r\n").unwrap());
        let f = failed(o);
        assert_eq!(
            (f.reached, f.failure),
            (Reached::Response, Failure::InvalidResponse)
        );
        assert_eq!(retry(&f, &req, false), Retry::No);
        let (o, req) = exchange(GET, |s| {
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
                .unwrap()
        });
        let f = failed(o);
        assert_eq!(f.reached, Reached::Response);
        assert_eq!(retry(&f, &req, false), Retry::No);
    }

    #[test]
    fn a_response_cut_short_is_broken() {
        let (o, _) = exchange(GET, |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap()
        });
        assert!(
            matches!(
                o,
                Outcome::Broken {
                    status: 200,
                    reset_client: false,
                    ..
                }
            ),
            "{o:?}"
        );
    }
}
