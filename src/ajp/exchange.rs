//! One request's exchange with an AJP13 container: FORWARD_REQUEST (with the first body packet
//! when the container is told the length: `request::told_length`), body packets on
//! GET_BODY_CHUNK, then SEND_HEADERS, SEND_BODY_CHUNK and END_RESPONSE turned into an HTTP/1.1
//! response for the client.
//!
//! Owns: the AJP body rules and response framing, and what the exchange reports
//! (`outcome::Outcome`, the same type as HTTP's). Must never: send a first body packet for a
//! chunked upload (Tomcat asks for it), decide a retry (`outcome::retry` does), relay a response
//! head `request::check_response` refuses, relay more body than the container's Content-Length
//! declared, or report reusable a connection whose END_RESPONSE said not to (or that broke any
//! rule). Invariant: a client sees either a whole response, a 502/504 before any byte of one, or a
//! truncated response (or, when the client left or broke its body's framing, nothing) followed by
//! a close.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::codec::{
    body_packet_header, decode, max_body_chunk, HeaderName, Packet, CPING_PACKET, EMPTY_BODY,
};
use super::request::{
    check_response, forward_request, response_head, told_length, Forward, Framing, SslFacts,
};
use crate::client::{send_continue, target, Client};
use crate::config::MemberConfig;
use crate::http::chunked::ChunkEncoder;
use crate::http::framing::{no_body, BodyKind, BodyTracker};
use crate::http::reverse::{Mapping, Reverse};
use crate::http::rewrite::ClientBody;
use crate::io::{IoFail, Unsent};
use crate::outcome::{Done, Failed, Outcome, Reached, Request};
use crate::stats::Failure;
use crate::stream;
use crate::stream::{read_more, send_request, write_head_and, write_range, Stream};

/// The limits an exchange runs under.
pub struct Limits<'a> {
    /// For the container's answers.
    pub response: Duration,
    /// For each read from and write to the client.
    pub client: Duration,
    /// The server is stopping: the client connection is not kept.
    pub stopping: bool,
    /// Header lines added after the status line of the client's response (HSTS), or empty.
    pub hsts: &'a [u8],
    /// The route's mapping, when response URLs and cookie paths are mapped back.
    pub reverse: Option<Mapping<'a>>,
}

/// Sends CPING and waits for CPONG (Tomcat answers a CPING by closing while it shuts down).
pub async fn cping(up: &mut Stream, rbuf: &mut Vec<u8>, limit: Duration) -> bool {
    let mut ping = CPING_PACKET.to_vec();
    if write_range(up, &mut ping, 0..CPING_PACKET.len(), limit)
        .await
        .is_err()
    {
        return false;
    }
    rbuf.clear();
    while rbuf.len() < 5 {
        if read_more(up, rbuf, 64, limit).await.is_err() {
            return false;
        }
    }
    let ok = matches!(decode(rbuf, 8192), Ok(Some((Packet::CPong, 5)))) && rbuf.len() == 5;
    rbuf.clear();
    ok
}

fn shift(r: &Range<usize>, by: usize) -> Range<usize> {
    r.start + by..r.end + by
}

/// The request body as it is handed to the container.
struct Body {
    tracker: BodyTracker,
    /// Not yet sent body bytes in `c.buf` (Content-Length bodies).
    pending: Range<usize>,
    /// Decoded data of a chunked upload, not yet sent.
    stage: Vec<u8>,
    chunked: bool,
    /// `100 Continue` was sent or must not be: the client sent body bytes with its head (it is not
    /// waiting), or the response has started (RFC 9110 §10.1.1: no 100 after a final response).
    continued: bool,
}

impl Body {
    /// Everything the client sends has been read and handed over.
    fn finished(&self) -> bool {
        self.tracker.is_done() && self.pending.is_empty() && self.stage.is_empty()
    }
}

/// Decodes the chunked bytes of `c.buf[from..]` into the stage and removes them from the buffer
/// (what follows the body, a pipelined request, stays).
fn stage_chunked(c: &mut Client, body: &mut Body, from: usize) -> Result<(), ()> {
    c.ranges.clear();
    let ranges = &mut c.ranges;
    let used = body
        .tracker
        .advance_with(&c.buf[from..], |r| ranges.push(r))
        .map_err(|_| ())?;
    for r in c.ranges.iter() {
        body.stage
            .extend_from_slice(&c.buf[from + r.start..from + r.end]);
    }
    c.buf.drain(from..from + used);
    Ok(())
}

/// Reads more of the request body from the client, for a GET_BODY_CHUNK (first answering an
/// `Expect: 100-continue`: the client waits for it before it sends the body).
async fn read_body(c: &mut Client, body: &mut Body, limit: Duration) -> Result<(), ()> {
    // The body's reads take over the client's socket (`http::exchange::send_body`).
    c.ready.stop();
    if !std::mem::replace(&mut body.continued, true) && !send_continue(c, limit).await {
        return Err(());
    }
    if body.chunked {
        let had = c.buf.len();
        stream::read_more(&mut c.stream, &mut c.buf, 16384, limit)
            .await
            .map_err(|_| ())?;
        return stage_chunked(c, body, had);
    }
    // Content-Length: drop what was sent, read into the buffer, keep a pipelined remainder.
    c.buf.drain(..body.pending.start);
    body.pending = 0..0;
    let had = c.buf.len();
    stream::read_more(&mut c.stream, &mut c.buf, 16384, limit)
        .await
        .map_err(|_| ())?;
    let n = body.tracker.advance(&c.buf[had..]).map_err(|_| ())?;
    body.pending = had..had + n;
    Ok(())
}

/// The container broke the protocol: before the response started, a 502; after, the answer is
/// cut (a 502 there would land in the middle of the body).
fn broke_protocol(r: &Response, body: &Body) -> Outcome {
    if r.started.is_some() {
        r.broken()
    } else {
        invalid(body)
    }
}

/// The container broke the protocol before a response started: 502.
fn invalid(body: &Body) -> Outcome {
    Outcome::Failed(Failed {
        reached: Reached::Response,
        failure: Failure::InvalidResponse,
        status: 502,
        request_read: body.finished(),
        intact: false,
    })
}

/// The response as relayed so far.
struct Response {
    /// Set once SEND_HEADERS was relayed.
    started: Option<Started>,
    head_time: Duration,
    body_sent: u64,
    received: u64,
    sent: u64,
    /// The chunk framing for the client, when the body has no length (`ClientBody::Enchunk`).
    chunks: ChunkEncoder,
}

#[derive(Clone, Copy)]
struct Started {
    status: u16,
    keep: bool,
    /// The body as an HTTP member's with the same length (or none) would be framed: `Empty` for
    /// HEAD, 204 and 304 (body packets are not relayed), `Length` for the container's
    /// Content-Length (the body must be exactly this long), else `UntilClose`.
    kind: BodyKind,
    /// How it reaches the client (`ClientBody::choose`).
    mode: ClientBody,
}

impl Started {
    /// The body ends at the close (no length, to an HTTP/1.0 client), and the client's socket
    /// resets at close until it is whole (`reset`).
    fn until_close(self) -> bool {
        self.mode.ends_at_close(self.kind)
    }

    /// The container's Content-Length, when a body is relayed.
    fn length(self) -> Option<u64> {
        match self.kind {
            BodyKind::Length(n) => Some(n),
            _ => None,
        }
    }
}

impl Response {
    /// The exchange broke; once the response head is under way to a client that reads the body to
    /// the close, a clean close would make it look whole (`reset`).
    fn broken(&self) -> Outcome {
        Outcome::Broken {
            status: self.started.map_or(0, |s| s.status),
            body_sent: self.body_sent,
            received: self.received,
            reset_client: self.started.is_some_and(Started::until_close),
        }
    }
}

/// Runs the exchange on `up` for the request parsed in `c`.
pub async fn run(
    c: &mut Client,
    up: &mut Stream,
    member: &MemberConfig,
    req: &Request,
    tracker: BodyTracker,
    limits: &Limits<'_>,
) -> Outcome {
    let (mut body, sent) = match send_forward(c, up, member, req, tracker, limits).await {
        Ok(sent) => sent,
        Err(outcome) => return outcome,
    };
    let sent_at = Instant::now();
    let mut r = Response {
        started: None,
        head_time: Duration::ZERO,
        body_sent: 0,
        received: 0,
        sent,
        chunks: ChunkEncoder::default(),
    };
    let mut inbox = Inbox {
        pos: 0,
        deadline: sent_at + limits.response,
        got_any: false,
    };
    c.rbuf.clear();
    loop {
        let next = next_packet(c, up, &mut inbox, &mut r, &body, member, limits).await;
        let (packet, base) = match next {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let step = match packet {
            Packet::GetBodyChunk(n) => {
                // Only a packet of the body restarts the limit: a container that keeps asking once
                // the body is all sent (answered empty) does not put its 504 off.
                let more =
                    !(body.tracker.is_done() && body.pending.is_empty() && body.stage.is_empty());
                let sent = send_body_chunk(c, up, &mut body, n, member, &mut r, limits).await;
                if more {
                    inbox.deadline = Instant::now() + limits.response;
                }
                sent
            }
            Packet::SendHeaders {
                status,
                reason,
                headers,
            } => {
                r.head_time = sent_at.elapsed();
                let head = (status, reason, headers);
                send_headers(c, head, base, req, &mut body, &mut r, limits, member).await
            }
            Packet::SendBodyChunk(data) => send_data(c, data, base, &body, &mut r, limits).await,
            Packet::EndResponse { reuse } => {
                return match end_response(c, &mut body, &mut r, limits).await {
                    Ok((s, whole)) => {
                        if s.until_close() {
                            // Whole: its clean close is its end (`reset`).
                            crate::reset::disarm(&c.stream.tcp);
                        }
                        done(&r, s, whole, reuse && whole && inbox.pos == c.rbuf.len())
                    }
                    Err(outcome) => outcome,
                };
            }
            Packet::CPong => Err(broke_protocol(&r, &body)),
        };
        if let Err(outcome) = step {
            return outcome;
        }
    }
}

/// Where the container's packets are read from `c.rbuf`.
struct Inbox {
    /// Where the next packet starts in `c.rbuf`.
    pos: usize,
    /// The request is sent once its last body packet is: each one the container asks for
    /// (GET_BODY_CHUNK, at its pace) while body remains starts `response_timeout` again, so that
    /// a long upload is not counted against it. Until the response head, the container must
    /// answer by this.
    deadline: Instant,
    /// A whole packet came from the container.
    got_any: bool,
}

/// Decodes the next packet at `inbox.pos`, reading more from `up` until one is whole: before the
/// response head by `inbox.deadline`, after it within `limits.response` of each read. What was
/// decoded before `inbox.pos` is dropped from `c.rbuf` once no whole packet is left there
/// (`inbox.pos` becomes 0), before the deadline is checked and more read. Returns the packet and
/// where it starts in `c.rbuf` (its ranges are relative to that); `inbox.pos` is then past it.
async fn next_packet(
    c: &mut Client,
    up: &mut Stream,
    inbox: &mut Inbox,
    r: &mut Response,
    body: &Body,
    member: &MemberConfig,
    limits: &Limits<'_>,
) -> Result<(Packet, usize), Outcome> {
    loop {
        match decode(&c.rbuf[inbox.pos..], member.packet_size) {
            Ok(Some((packet, used))) => {
                let base = inbox.pos;
                inbox.pos += used;
                inbox.got_any = true;
                return Ok((packet, base));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(member = %member.url, error = ?e, "AJP protocol error");
                return Err(broke_protocol(r, body));
            }
        }
        c.rbuf.drain(..inbox.pos);
        inbox.pos = 0;
        let limit = match r.started {
            None => match crate::deadline::left(inbox.deadline) {
                Some(left) => left,
                None => return Err(read_failed(r, body, IoFail::Timeout, inbox.got_any)),
            },
            Some(_) => limits.response,
        };
        match read_more(up, &mut c.rbuf, 16384, limit).await {
            Ok(n) => r.received += n as u64,
            Err(e) => return Err(read_failed(r, body, e, inbox.got_any)),
        }
    }
}

/// The outcome of an exchange the container ended with END_RESPONSE.
fn done(r: &Response, s: Started, whole: bool, reusable: bool) -> Outcome {
    Outcome::Done(Done {
        keep_client: s.keep && whole,
        request_read: whole,
        reusable,
        idle_limit: None,
        status: s.status,
        body_sent: r.body_sent,
        sent: r.sent,
        received: r.received,
        head_time: r.head_time,
    })
}

/// What a failed read from the container means.
fn read_failed(r: &Response, body: &Body, e: IoFail, got_any: bool) -> Outcome {
    if r.started.is_some() {
        return r.broken();
    }
    let reached = if got_any {
        Reached::Response
    } else {
        Reached::Request
    };
    let (failure, status) = match e {
        IoFail::Timeout => (Failure::ResponseTimeout, 504),
        _ => (Failure::Reset, 502),
    };
    Outcome::Failed(Failed {
        reached,
        failure,
        status,
        request_read: body.finished(),
        // A chunked body was decoded out of `c.buf`; a Content-Length body stays there (`c.buf`
        // is drained only to read more of a body that was not whole, which is not replayable).
        intact: !body.chunked,
    })
}

/// Encodes FORWARD_REQUEST (and the first body packet, when the container is told the length) and
/// sends it.
async fn send_forward(
    c: &mut Client,
    up: &mut Stream,
    member: &MemberConfig,
    req: &Request,
    tracker: BodyTracker,
    limits: &Limits<'_>,
) -> Result<(Body, u64), Outcome> {
    let max = member.packet_size;
    c.out.clear();
    let forward = Forward {
        client: c.peer,
        trusted: c.trusted,
        secret: member.secret.as_deref(),
        packet_size: max,
        tls: c.stream.tls.as_ref().and_then(|s| {
            let (cipher, key_bits) = s.cipher()?;
            Some(SslFacts {
                cipher,
                key_bits,
                session: s.session_id(),
                protocol: s.version(),
            })
        }),
    };
    let path = target(&c.buf, &c.head, &c.path);
    if forward_request(&mut c.out, &c.buf, &c.head, path, &forward).is_err() {
        return Err(Outcome::TooLarge);
    }
    let chunked = c.head.body == BodyKind::Chunked;
    let mut body = Body {
        pending: req.head_len..req.request_end,
        stage: Vec::new(),
        chunked,
        continued: req.request_end > req.head_len,
        // A chunked body is decoded again from its start: the caller only counted its bytes.
        tracker: if chunked {
            BodyTracker::new(BodyKind::Chunked)
        } else {
            tracker
        },
    };
    if chunked {
        // Decode what arrived with the head (Tomcat will ask for it), then drop the head.
        body.pending = 0..0;
        if stage_chunked(c, &mut body, req.head_len).is_err() {
            return Err(Outcome::broken(0, 0, 0));
        }
        c.buf.drain(..req.head_len);
    }
    let first = first_body_packet(c, &mut body, max_body_chunk(max), limits).await?;
    let sent = (c.out.len() + first.len()) as u64;
    match send_request(up, &mut c.out, &mut c.buf, first, limits.response).await {
        Ok(()) => Ok((body, sent)),
        // A chunked body was decoded out of `c.buf` (and the head dropped): not intact.
        Err(Unsent::Nothing(_)) => {
            let f = Failed::reset(Reached::Nothing, req.replayable, !chunked);
            Err(Outcome::Failed(f))
        }
        Err(Unsent::Partly(e)) => {
            let f = Failed::partly_sent(&e, req.replayable, !chunked);
            Err(Outcome::Failed(f))
        }
    }
}

/// The first body packet goes unasked when the container is told a length and it is not zero
/// (`told_length`): its header is appended to `c.out`, and the range of `c.buf` it carries is
/// returned.
async fn first_body_packet(
    c: &mut Client,
    body: &mut Body,
    chunk_max: usize,
    limits: &Limits<'_>,
) -> Result<Range<usize>, Outcome> {
    if told_length(c.head.body, c.head.content_length).is_none_or(|n| n == 0) {
        return Ok(0..0);
    }
    if body.pending.is_empty() {
        // c.out already holds the encoded FORWARD_REQUEST; the head's bytes may go.
        if read_body(c, body, limits.client).await.is_err() {
            return Err(Outcome::broken(0, 0, 0));
        }
    }
    let take = body.pending.len().min(chunk_max);
    let first = body.pending.start..body.pending.start + take;
    body_packet_header(&mut c.out, take);
    body.pending.start += take;
    Ok(first)
}

/// Answers a GET_BODY_CHUNK with the next body packet (empty once the body is all sent).
async fn send_body_chunk(
    c: &mut Client,
    up: &mut Stream,
    body: &mut Body,
    asked: u16,
    member: &MemberConfig,
    r: &mut Response,
    limits: &Limits<'_>,
) -> Result<(), Outcome> {
    let want = usize::from(asked).min(max_body_chunk(member.packet_size));
    while !body.tracker.is_done() && body.pending.is_empty() && body.stage.is_empty() {
        if read_body(c, body, limits.client).await.is_err() {
            return Err(r.broken());
        }
    }
    c.out.clear();
    let write = if body.chunked && !body.stage.is_empty() {
        let take = body.stage.len().min(want);
        body_packet_header(&mut c.out, take);
        c.out.extend_from_slice(&body.stage[..take]);
        body.stage.drain(..take);
        0..0
    } else if !body.pending.is_empty() {
        let take = body.pending.len().min(want);
        body_packet_header(&mut c.out, take);
        let w = body.pending.start..body.pending.start + take;
        body.pending.start += take;
        w
    } else {
        c.out.extend_from_slice(&EMPTY_BODY);
        0..0
    };
    r.sent += (c.out.len() + write.len()) as u64;
    match write_head_and(up, &mut c.out, &mut c.buf, write, limits.response).await {
        Ok(()) => Ok(()),
        Err(_) if r.started.is_some() => Err(r.broken()),
        Err(e) => Err(Outcome::Failed(Failed::partly_sent(&e, false, false))),
    }
}

/// A SEND_HEADERS packet's status, reason and headers (ranges into its packet).
type SendHeaders = (u16, Option<Range<usize>>, Vec<(HeaderName, Range<usize>)>);

/// Checks SEND_HEADERS and writes the client's response head.
#[allow(clippy::too_many_arguments)]
async fn send_headers(
    c: &mut Client,
    (status, reason, mut headers): SendHeaders,
    base: usize,
    req: &Request,
    body: &mut Body,
    r: &mut Response,
    limits: &Limits<'_>,
    member: &MemberConfig,
) -> Result<(), Outcome> {
    // The response starts: a later read of the body must not send `100 Continue`.
    body.continued = true;
    if r.started.is_some() {
        return Err(r.broken());
    }
    let reason = reason.map(|x| shift(&x, base));
    for (name, value) in headers.iter_mut() {
        if let HeaderName::Named(n) = name {
            *n = shift(n, base);
        }
        *value = shift(value, base);
    }
    let length = match check_response(&c.rbuf, status, &reason, &headers) {
        Ok(length) => length,
        Err(why) => {
            tracing::warn!(member = %member.url, why, "AJP container sent an invalid response head");
            return Err(invalid(body));
        }
    };
    let no_body = no_body(req.is_head, status);
    let minor = c.head.minor_version;
    // Framed for the client as an HTTP member's body with the same length (or none) would be.
    let kind = match length {
        _ if no_body => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
        None => BodyKind::UntilClose,
    };
    let mode = ClientBody::choose(kind, minor);
    let keep = mode.keeps_client(kind, c.head.keep_alive && !limits.stopping);
    let framing = Framing {
        length,
        chunked: mode == ClientBody::Enchunk,
        keep_alive: keep,
        client_minor: minor,
    };
    let reverse = limits.reverse.map(|mapping| Reverse {
        mapping,
        origin: &c.public_origin,
    });
    c.out.clear();
    let head = (status, &reason, &headers[..]);
    response_head(&mut c.out, &c.rbuf, head, &framing, reverse.as_ref());
    crate::http::rewrite::insert_after_status_line(&mut c.out, limits.hsts);
    let n = c.out.len();
    let started = Started {
        status,
        keep,
        kind,
        mode,
    };
    if started.until_close() {
        crate::reset::arm(&c.stream.tcp);
    }
    r.started = Some(started);
    match stream::write_range(&mut c.stream, &mut c.out, 0..n, limits.client).await {
        Ok(()) => Ok(()),
        Err(_) => Err(r.broken()),
    }
}

/// Relays one SEND_BODY_CHUNK; never more than the container's Content-Length.
async fn send_data(
    c: &mut Client,
    data: Range<usize>,
    base: usize,
    body: &Body,
    r: &mut Response,
    limits: &Limits<'_>,
) -> Result<(), Outcome> {
    let Some(s) = r.started else {
        return Err(invalid(body));
    };
    let data = shift(&data, base);
    if s.mode == ClientBody::None || data.is_empty() {
        return Ok(());
    }
    if s.length()
        .is_some_and(|l| r.body_sent + data.len() as u64 > l)
    {
        tracing::warn!("AJP container sent more body than its Content-Length; closing");
        return Err(r.broken());
    }
    c.out.clear();
    if s.mode == ClientBody::Enchunk {
        r.chunks.start(&mut c.out, data.len());
    }
    r.body_sent += data.len() as u64;
    match stream::write_head_and(&mut c.stream, &mut c.out, &mut c.rbuf, data, limits.client).await
    {
        Ok(()) => Ok(()),
        Err(_) => Err(r.broken()),
    }
}

/// Ends the client's response at END_RESPONSE. `Ok((started, whole))`: the response is complete,
/// and `whole` says whether the client's request was read to its end.
async fn end_response(
    c: &mut Client,
    body: &mut Body,
    r: &mut Response,
    limits: &Limits<'_>,
) -> Result<(Started, bool), Outcome> {
    let Some(s) = r.started else {
        return Err(invalid(body));
    };
    if s.length().is_some_and(|l| r.body_sent != l) {
        tracing::warn!("AJP container ended the response short of its Content-Length; closing");
        return Err(r.broken());
    }
    if s.mode == ClientBody::Enchunk {
        c.out.clear();
        r.chunks.finish(&mut c.out);
        let n = c.out.len();
        if stream::write_range(&mut c.stream, &mut c.out, 0..n, limits.client)
            .await
            .is_err()
        {
            return Err(r.broken());
        }
    }
    // The client's request must have been read to its end for the connection to go on.
    let whole = body.finished();
    if !body.chunked {
        // The request's bytes end where the body sent so far ends.
        c.buf.drain(..body.pending.start.min(c.buf.len()));
    }
    Ok((s, whole))
}
