//! One client connection: read a request head, hand it to `proxy::forward`, repeat while the
//! connection is kept alive; refuse malformed heads.
//!
//! Owns: the client socket and its reused buffers, the header and keep-alive timeouts, the refusal
//! path. Must never: let a malformed request reach a member, or hold a socket after its timer fired.
//! Invariant: `buf` always starts at the first unconsumed byte from the client, so pipelined
//! requests are answered in order.

use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::net::TcpStream;
use futures_util::future::{select, Either};

use crate::access_log::Record;
use crate::http::parse::{parse_request, HeadError, RequestHead, ResponseHead};
use crate::http::reply;
use crate::io::{read_more, shutdown_write, write_range, IoFail};
use crate::proxy;
use crate::worker::Core;

/// How long a refused connection is drained before it closes, so the client reads the status.
const DRAIN_FOR: Duration = Duration::from_millis(500);
/// At most this much is drained from a refused client.
const DRAIN_BYTES: usize = 1 << 20;

/// A client connection and its reused buffers.
pub struct Client {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Bytes from the client not yet consumed; starts at the current request.
    pub buf: Vec<u8>,
    /// Heads ringlb writes (to a member or to the client).
    pub out: Vec<u8>,
    /// Bytes read from the member.
    pub rbuf: Vec<u8>,
    /// Data ranges when a chunked body is decoded.
    pub ranges: Vec<Range<usize>>,
    pub head: RequestHead,
    pub resp: ResponseHead,
    /// What the access log will say of the current request.
    pub rec: Record,
    /// The request line, Referer and User-Agent, copied for the access log (when it is on).
    pub log_fields: [Vec<u8>; 3],
}

enum Stop {
    /// Close without a word: the client went away, idled out or the server is stopping.
    Quiet,
    /// Answer with this status, then close.
    Refuse(u16),
}

/// Serves one client connection until it closes.
pub async fn serve(core: Rc<Core>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut c = Client {
        stream,
        peer,
        buf: Vec::with_capacity(8192),
        out: Vec::with_capacity(1024),
        rbuf: Vec::new(),
        ranges: Vec::new(),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        rec: Record::default(),
        log_fields: Default::default(),
    };
    let mut first = true;
    loop {
        match read_head(&core, &mut c, first).await {
            Ok(()) => {}
            Err(Stop::Quiet) => break,
            Err(Stop::Refuse(status)) => {
                core.stats.borrow_mut().refused(status);
                refuse(&mut c, status).await;
                break;
            }
        }
        first = false;
        if !proxy::forward(&core, &mut c).await || core.is_stopping() {
            break;
        }
    }
}

/// Reads until `c.buf` starts with a complete, valid request head (parsed into `c.head`).
async fn read_head(core: &Core, c: &mut Client, first: bool) -> Result<(), Stop> {
    let limits = &core.config.limits;
    let mut deadline = first.then(|| Instant::now() + limits.header_timeout);
    loop {
        if !c.buf.is_empty() {
            let d = *deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
            match parse_request(
                &c.buf,
                limits.max_request_header_bytes,
                limits.max_headers,
                &mut c.head,
            ) {
                Ok(()) => return Ok(()),
                Err(HeadError::Partial) => {}
                Err(e) => {
                    tracing::debug!(peer = %c.peer, error = ?e, "refused request");
                    return Err(Stop::Refuse(e.status()));
                }
            }
            let left = d.saturating_duration_since(Instant::now());
            match read_more(&mut c.stream, &mut c.buf, 4096, left).await {
                Ok(_) => continue,
                Err(IoFail::Timeout) => return Err(Stop::Refuse(408)),
                Err(_) => return Err(Stop::Quiet),
            }
        }
        // Nothing buffered: wait for the first byte, or for shutdown.
        let limit = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => limits.keepalive_timeout,
        };
        if core.is_stopping() {
            return Err(Stop::Quiet);
        }
        let read = std::pin::pin!(read_more(&mut c.stream, &mut c.buf, 4096, limit));
        let stop = std::pin::pin!(core.shutdown.notified());
        match select(read, stop).await {
            Either::Left((Ok(_), _)) => continue,
            Either::Left((Err(_), _)) | Either::Right(_) => return Err(Stop::Quiet),
        }
    }
}

/// Writes an error response with `Connection: close`, shuts the write side down and drains what
/// the client still sends for a short moment, so that it reads the status instead of a reset.
pub async fn refuse(c: &mut Client, status: u16) {
    c.out.clear();
    reply::error(&mut c.out, status, true);
    let len = c.out.len();
    if write_range(&mut c.stream, &mut c.out, 0..len, DRAIN_FOR)
        .await
        .is_err()
    {
        return;
    }
    shutdown_write(&mut c.stream).await;
    let deadline = Instant::now() + DRAIN_FOR;
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        c.buf.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut c.stream, &mut c.buf, 16384, left).await {
            Ok(n) => drained += n,
            Err(_) => break,
        }
    }
}
