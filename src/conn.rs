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

use crate::access_log::Record;
use crate::http::parse::{parse_request, HeadError, RequestHead, ResponseHead};
use crate::http::reply;
use crate::io::{read_idle, read_more, shutdown_write, write_range, write_static, IoFail};
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

/// The buffers a connection needs only while it has a request: parked on the core while it idles,
/// so that an idle keep-alive connection holds next to no memory.
#[derive(Default)]
pub struct Spare {
    buf: Vec<u8>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    ranges: Vec<Range<usize>>,
    headers: Vec<crate::http::header::HeaderPos>,
    resp_headers: Vec<crate::http::header::HeaderPos>,
    log_fields: [Vec<u8>; 3],
}

impl Client {
    /// Gives this connection's (empty) buffers to the core while it waits for a request.
    fn park(&mut self, core: &Core) {
        self.buf.clear();
        if self.buf.capacity() == 0 && self.rbuf.capacity() == 0 {
            return;
        }
        let take = |v: &mut Vec<u8>| {
            let mut v = std::mem::take(v);
            v.clear();
            v
        };
        let spare = Spare {
            buf: take(&mut self.buf),
            out: take(&mut self.out),
            rbuf: take(&mut self.rbuf),
            ranges: std::mem::take(&mut self.ranges),
            headers: std::mem::take(&mut self.head.headers),
            resp_headers: std::mem::take(&mut self.resp.headers),
            log_fields: std::mem::take(&mut self.log_fields),
        };
        core.park(spare);
    }

    /// Takes buffers from the core again.
    fn unpark(&mut self, core: &Core) {
        let s = core.unpark();
        self.buf = s.buf;
        self.out = s.out;
        self.rbuf = s.rbuf;
        self.ranges = s.ranges;
        self.head.headers = s.headers;
        self.resp.headers = s.resp_headers;
        self.log_fields = s.log_fields;
    }
}

enum Stop {
    /// Close without a word: the client went away, idled out or the server is stopping.
    Quiet,
    /// Answer with this status, then close.
    Refuse(u16),
}

/// Serves one client connection until it closes.
pub async fn serve(core: Rc<Core>, stream: TcpStream, peer: SocketAddr) {
    let accepted = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut c = Client {
        stream,
        peer,
        buf: Vec::new(),
        out: Vec::new(),
        rbuf: Vec::new(),
        ranges: Vec::new(),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        rec: Record::default(),
        log_fields: Default::default(),
    };
    let limits = &core.config.limits;
    // The first request's head must be complete within header_timeout of the accept.
    let mut head_deadline = Some(accepted + limits.header_timeout);
    loop {
        if c.buf.is_empty() {
            let limit = match head_deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => limits.keepalive_timeout,
            };
            if wait_idle(&core, &mut c, limit).await.is_err() {
                break;
            }
        }
        let deadline = head_deadline.unwrap_or_else(|| Instant::now() + limits.header_timeout);
        head_deadline = None;
        // Everything from here to the end of the response is a large state machine that lives
        // only while a request is under way: boxed, it is not part of what an idle connection
        // holds. One allocation per request, from mimalloc's per-thread free list.
        if !Box::pin(handle(&core, &mut c, deadline)).await || core.is_stopping() {
            break;
        }
    }
}

/// Waits, holding no buffer, for the first bytes of the next request (or for shutdown), and puts
/// them in `c.buf`. `Err`: close the connection (idle timeout, peer gone, shutdown).
async fn wait_idle(core: &Core, c: &mut Client, limit: Duration) -> Result<(), ()> {
    if core.is_stopping() {
        return Err(());
    }
    c.park(core);
    let got = match read_idle(&mut c.stream, limit, core.shutdown.notified()).await {
        Ok(got) => got,
        Err(e) => {
            tracing::debug!(peer = %c.peer, error = ?e, "idle connection closes");
            return Err(());
        }
    };
    c.unpark(core);
    match got {
        Some(bytes) => {
            c.buf.reserve(4096);
            c.buf.extend_from_slice(&bytes);
            Ok(())
        }
        // The ring had no buffer free: read the ordinary way (boxed: rare, and large).
        None => Box::pin(read_more(&mut c.stream, &mut c.buf, 4096, limit))
            .await
            .map(|_| ())
            .map_err(|_| ()),
    }
}

/// One request: the rest of its head, then the exchange. Returns whether to keep the connection.
async fn handle(core: &Core, c: &mut Client, deadline: Instant) -> bool {
    match read_head(core, c, deadline).await {
        Ok(()) => proxy::forward(core, c).await,
        Err(Stop::Quiet) => false,
        Err(Stop::Refuse(status)) => {
            core.stats.borrow_mut().refused(status);
            refuse(c, status).await;
            false
        }
    }
}

/// Reads until `c.buf` (not empty) starts with a complete, valid request head, parsed into
/// `c.head`, by `deadline`.
async fn read_head(core: &Core, c: &mut Client, deadline: Instant) -> Result<(), Stop> {
    let limits = &core.config.limits;
    loop {
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
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut c.stream, &mut c.buf, 4096, left).await {
            Ok(_) => continue,
            Err(IoFail::Timeout) => return Err(Stop::Refuse(408)),
            Err(e) => {
                tracing::debug!(peer = %c.peer, error = ?e, buffered = c.buf.len(), "client left mid-head");
                return Err(Stop::Quiet);
            }
        }
    }
}

/// Sends `100 Continue` when an HTTP/1.1 client asked for it (`Expect: 100-continue`) and is
/// waiting before it sends the body. `false`: the client is gone.
pub async fn send_continue(c: &mut Client, limit: Duration) -> bool {
    if !(c.head.expect_continue && c.head.minor_version == 1) {
        return true;
    }
    write_static(&mut c.stream, reply::CONTINUE, limit)
        .await
        .is_ok()
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
