//! One request's exchange with an AJP13 container: FORWARD_REQUEST (with the first body packet
//! when the length is known), body packets on GET_BODY_CHUNK, then SEND_HEADERS, SEND_BODY_CHUNK
//! and END_RESPONSE turned into an HTTP/1.1 response for the client.
//!
//! Owns: the AJP body rules and response framing. Must never: send a first body packet for a
//! chunked upload (Tomcat asks for it), retry a request whose bytes may have reached the container
//! unless it is idempotent and whole in the buffer, or reuse a connection whose END_RESPONSE said
//! not to (or that broke any rule). Invariant: a client sees either a whole response, a 502/504
//! before any byte of one, or a truncated response followed by a close.

use std::io::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

use super::codec::{
    body_packet_header, decode, max_body_chunk, HeaderName, Packet, CPING_PACKET, EMPTY_BODY,
};
use super::request::{forward_request, response_head, Forward};
use crate::config::MemberConfig;
use crate::conn::{send_continue, Client};
use crate::http::framing::{BodyKind, BodyTracker};
use crate::io::{read_more, write_head_and, write_range, IoFail};
use crate::stats::Failure;

/// How an AJP exchange ended.
pub enum Outcome {
    /// The response went to the client (whole).
    Done {
        keep_client: bool,
        reusable: bool,
        status: u16,
        body_sent: u64,
        sent: u64,
        received: u64,
        head_time: Duration,
    },
    /// The reused connection was dead before anything came back: send again on a fresh one.
    RetryFresh,
    /// Nothing usable came back: the client gets `status` (502/504) and the connection closes.
    Failed {
        status: u16,
        failure: Failure,
        request_read: bool,
    },
    /// The response had started (or the client left): both connections close.
    Broken {
        status: u16,
        body_sent: u64,
        received: u64,
    },
    /// The request does not fit in one AJP packet (AJP has no continuation).
    TooLarge,
}

/// What `run` needs to know about the request beyond the client connection.
pub struct Request {
    pub head_len: usize,
    /// End of the request bytes already in `c.buf` (head and the body read so far).
    pub request_end: usize,
    pub is_head: bool,
    pub reused: bool,
    pub replayable: bool,
    pub idempotent: bool,
}

/// Sends CPING and waits for CPONG (Tomcat answers a CPING by closing while it shuts down).
pub async fn cping(up: &mut TcpStream, rbuf: &mut Vec<u8>, limit: Duration) -> bool {
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

/// Reads more of the request body from the client, for a GET_BODY_CHUNK.
async fn read_body(c: &mut Client, body: &mut Body, limit: Duration) -> Result<(), ()> {
    if body.chunked {
        let had = c.buf.len();
        read_more(&mut c.stream, &mut c.buf, 16384, limit)
            .await
            .map_err(|_| ())?;
        return stage_chunked(c, body, had);
    }
    // Content-Length: drop what was sent, read into the buffer, keep a pipelined remainder.
    c.buf.drain(..body.pending.start);
    body.pending = 0..0;
    let had = c.buf.len();
    read_more(&mut c.stream, &mut c.buf, 16384, limit)
        .await
        .map_err(|_| ())?;
    let n = body.tracker.advance(&c.buf[had..]).map_err(|_| ())?;
    body.pending = had..had + n;
    Ok(())
}

/// The exchange broke after the response started (or the client left): both connections close.
fn broken(status: u16, body_sent: u64, received: u64) -> Outcome {
    Outcome::Broken {
        status,
        body_sent,
        received,
    }
}

/// The container broke the protocol before a response started: 502.
fn invalid(body: &Body) -> Outcome {
    Outcome::Failed {
        status: 502,
        failure: Failure::InvalidResponse,
        request_read: body.finished(),
    }
}

/// Runs the exchange on `up` for the request parsed in `c`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    c: &mut Client,
    up: &mut TcpStream,
    member: &MemberConfig,
    req: &Request,
    tracker: BodyTracker,
    response_timeout: Duration,
    client_timeout: Duration,
    stopping: bool,
) -> Outcome {
    let max = member.packet_size;
    let chunk_max = max_body_chunk(max);
    c.out.clear();
    let forward = Forward {
        client: c.peer,
        secret: member.secret.as_deref(),
        packet_size: max,
    };
    if forward_request(&mut c.out, &c.buf, &c.head, &forward).is_err() {
        return Outcome::TooLarge;
    }
    let chunked = c.head.body == BodyKind::Chunked;
    let mut body = Body {
        pending: req.head_len..req.request_end,
        stage: Vec::new(),
        chunked,
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
            return broken(0, 0, 0);
        }
        c.buf.drain(..req.head_len);
    }
    // The first body packet goes unasked when the length is known and not zero.
    let mut first = 0..0;
    if let BodyKind::Length(n) = c.head.body {
        if n > 0 {
            if body.pending.is_empty() {
                if !send_continue(c, client_timeout).await {
                    return broken(0, 0, 0);
                }
                // c.out already holds the encoded FORWARD_REQUEST; the head's bytes may go.
                if read_body(c, &mut body, client_timeout).await.is_err() {
                    return broken(0, 0, 0);
                }
            }
            let take = body.pending.len().min(chunk_max);
            first = body.pending.start..body.pending.start + take;
            body_packet_header(&mut c.out, take);
            body.pending.start += take;
        }
    }
    let mut sent = (c.out.len() + first.len()) as u64;
    if write_head_and(up, &mut c.out, &mut c.buf, first, response_timeout)
        .await
        .is_err()
    {
        if req.reused && req.replayable {
            return Outcome::RetryFresh;
        }
        return Outcome::Failed {
            status: 502,
            failure: Failure::Reset,
            request_read: req.replayable,
        };
    }
    let sent_at = Instant::now();
    let deadline = sent_at + response_timeout;
    c.rbuf.clear();
    let mut rpos = 0usize;
    let mut received = 0u64;
    let mut got_any = false;
    // Response state, once SEND_HEADERS arrived.
    let mut started: Option<(u16, bool, bool, bool)> = None; // (status, no_body, chunked, keep)
    let mut head_time = Duration::ZERO;
    let mut body_sent = 0u64;
    let mut crlf_pending = false;
    loop {
        let decoded = decode(&c.rbuf[rpos..], max);
        let (packet, used) = match decoded {
            Ok(Some(p)) => p,
            Ok(None) => {
                if rpos > 0 {
                    c.rbuf.drain(..rpos);
                    rpos = 0;
                }
                let limit = if started.is_none() {
                    deadline.saturating_duration_since(Instant::now())
                } else {
                    response_timeout
                };
                match read_more(up, &mut c.rbuf, 16384, limit).await {
                    Ok(n) => {
                        received += n as u64;
                        continue;
                    }
                    Err(e) => {
                        return match (started, e) {
                            (Some((status, ..)), _) => broken(status, body_sent, received),
                            (None, IoFail::Timeout) => Outcome::Failed {
                                status: 504,
                                failure: Failure::ResponseTimeout,
                                request_read: body.finished(),
                            },
                            (None, _)
                                if !got_any && req.reused && req.replayable && req.idempotent =>
                            {
                                Outcome::RetryFresh
                            }
                            (None, _) => Outcome::Failed {
                                status: 502,
                                failure: Failure::Reset,
                                request_read: body.finished(),
                            },
                        };
                    }
                }
            }
            Err(e) => {
                tracing::warn!(member = %member.url, error = ?e, "AJP protocol error");
                return match started {
                    Some((status, ..)) => broken(status, body_sent, received),
                    None => invalid(&body),
                };
            }
        };
        got_any = true;
        let base = rpos;
        rpos += used;
        match packet {
            Packet::GetBodyChunk(n) => {
                let want = usize::from(n).min(chunk_max);
                while !body.tracker.is_done() && body.pending.is_empty() && body.stage.is_empty() {
                    if read_body(c, &mut body, client_timeout).await.is_err() {
                        return broken(started.map_or(0, |s| s.0), body_sent, received);
                    }
                }
                c.out.clear();
                let write = if chunked && !body.stage.is_empty() {
                    let take = body.stage.len().min(want);
                    body_packet_header(&mut c.out, take);
                    c.out.extend_from_slice(&body.stage[..take]);
                    body.stage.drain(..take);
                    0..0
                } else if !body.pending.is_empty() {
                    let take = body.pending.len().min(want);
                    body_packet_header(&mut c.out, take);
                    let r = body.pending.start..body.pending.start + take;
                    body.pending.start += take;
                    r
                } else {
                    c.out.extend_from_slice(&EMPTY_BODY);
                    0..0
                };
                sent += (c.out.len() + write.len()) as u64;
                if write_head_and(up, &mut c.out, &mut c.buf, write, response_timeout)
                    .await
                    .is_err()
                {
                    return match started {
                        Some((status, ..)) => broken(status, body_sent, received),
                        None => Outcome::Failed {
                            status: 502,
                            failure: Failure::Reset,
                            request_read: false,
                        },
                    };
                }
            }
            Packet::SendHeaders {
                status,
                reason,
                headers,
            } => {
                if started.is_some() {
                    return broken(status, body_sent, received);
                }
                head_time = sent_at.elapsed();
                let reason = reason.map(|r| shift(&r, base));
                let mut headers = headers;
                for (name, value) in headers.iter_mut() {
                    if let HeaderName::Named(r) = name {
                        *r = shift(r, base);
                    }
                    *value = shift(value, base);
                }
                let has_length = headers.iter().any(|(n, _)| match n {
                    HeaderName::Coded(i) => *i == 2,
                    HeaderName::Named(r) => {
                        c.rbuf[r.clone()].eq_ignore_ascii_case(b"content-length")
                    }
                });
                let no_body =
                    req.is_head || status == 204 || status == 304 || (100..200).contains(&status);
                let to_chunk = !no_body && !has_length && c.head.minor_version == 1;
                let until_close = !no_body && !has_length && c.head.minor_version == 0;
                let keep = c.head.keep_alive && !until_close && !stopping;
                c.out.clear();
                response_head(
                    &mut c.out,
                    &c.rbuf,
                    status,
                    &reason,
                    &headers,
                    to_chunk,
                    keep,
                    c.head.minor_version,
                );
                let n = c.out.len();
                if write_range(&mut c.stream, &mut c.out, 0..n, client_timeout)
                    .await
                    .is_err()
                {
                    return broken(status, body_sent, received);
                }
                started = Some((status, no_body, to_chunk, keep));
            }
            Packet::SendBodyChunk(data) => {
                let Some((status, no_body, to_chunk, _)) = started else {
                    return invalid(&body);
                };
                let data = shift(&data, base);
                if no_body || data.is_empty() {
                    continue;
                }
                c.out.clear();
                if to_chunk {
                    if crlf_pending {
                        c.out.extend_from_slice(b"\r\n");
                    }
                    let _ = write!(c.out, "{:x}\r\n", data.len());
                    crlf_pending = true;
                }
                body_sent += data.len() as u64;
                if write_head_and(&mut c.stream, &mut c.out, &mut c.rbuf, data, client_timeout)
                    .await
                    .is_err()
                {
                    return broken(status, body_sent, received);
                }
            }
            Packet::EndResponse { reuse } => {
                let Some((status, _, to_chunk, keep)) = started else {
                    return invalid(&body);
                };
                if to_chunk {
                    c.out.clear();
                    if crlf_pending {
                        c.out.extend_from_slice(b"\r\n");
                    }
                    c.out.extend_from_slice(b"0\r\n\r\n");
                    let n = c.out.len();
                    if write_range(&mut c.stream, &mut c.out, 0..n, client_timeout)
                        .await
                        .is_err()
                    {
                        return broken(status, body_sent, received);
                    }
                }
                // The client's request must have been read to its end for the connection to go on.
                let whole = body.finished();
                if !body.chunked {
                    // The request's bytes end where the body sent so far ends.
                    c.buf.drain(..body.pending.start.min(c.buf.len()));
                }
                return Outcome::Done {
                    keep_client: keep && whole,
                    reusable: reuse && rpos == c.rbuf.len() && whole,
                    status,
                    body_sent,
                    sent,
                    received,
                    head_time,
                };
            }
            Packet::CPong => {
                return invalid(&body);
            }
        }
    }
}
