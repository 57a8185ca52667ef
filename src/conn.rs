//! One client connection: wait for a request, read its head, hand it to `proxy::forward`, repeat
//! while the connection is kept alive; refuse malformed heads; park the connection (`park.rs`)
//! when it idles past `PARK_AFTER`.
//!
//! Owns: the client socket and its reused buffers, the header and keep-alive timeouts, the refusal
//! path. Must never: let a malformed request reach a member, hold a socket after its timer fired,
//! or abandon a receive that may have taken bytes (idle waits are readiness polls).
//! Invariant: `buf` always starts at the first unconsumed byte from the client, so pipelined
//! requests are answered in order.

use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::driver::op::{Interest, PollOnce};
use compio::driver::ToSharedFd;
use compio::net::TcpStream;
use futures_util::future::{select, Either};

use crate::access_log::Record;
use crate::http::parse::{parse_request, HeadError, RequestHead, ResponseHead};
use crate::http::reply;
use crate::io::{read_more, shutdown_write, write_range, write_static, IoFail};
use crate::park::{self, PARK_AFTER};
use crate::proxy;
use crate::worker::{ConnGuard, Core};

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

/// The buffers a connection needs only while it has a request: lent to the core while it idles,
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
    fn new(stream: TcpStream, peer: SocketAddr) -> Client {
        Client {
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
        }
    }

    /// Gives this connection's (empty) buffers to the core while it waits for a request.
    fn lend_buffers(&mut self, core: &Core) {
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
        core.keep_spare(spare);
    }

    /// Takes buffers from the core again.
    fn take_buffers(&mut self, core: &Core) {
        let s = core.take_spare();
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

/// Serves one newly accepted client connection until it closes or parks.
pub async fn serve(core: Rc<Core>, stream: TcpStream, peer: SocketAddr, guard: ConnGuard) {
    // TCP_NODELAY is inherited from the listener (`server::bind_reuseport`): no syscall here.
    // The first request's head must be complete within header_timeout of the accept.
    let head_deadline = Instant::now() + core.config.limits.header_timeout;
    keep_serving(core, Client::new(stream, peer), Some(head_deadline), guard).await
}

/// Serves a parked connection again: its next request (or its close) has arrived.
pub async fn resume(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    head_deadline: Option<Instant>,
    guard: ConnGuard,
) {
    keep_serving(core, Client::new(stream, peer), head_deadline, guard).await
}

/// Answers requests on `c` while it is kept alive; parks it when it idles past `PARK_AFTER`.
async fn keep_serving(
    core: Rc<Core>,
    mut c: Client,
    mut head_deadline: Option<Instant>,
    guard: ConnGuard,
) {
    let limits = &core.config.limits;
    loop {
        if c.buf.is_empty() {
            let now = Instant::now();
            let deadline = head_deadline.unwrap_or(now + limits.keepalive_timeout);
            match wait_idle(&core, &mut c, now, deadline).await {
                Wait::Data => {}
                Wait::Close => return,
                Wait::Park => {
                    let first_request = head_deadline.is_some();
                    park::park(&core, c.stream, c.peer, deadline, first_request, guard);
                    return;
                }
            }
        }
        let deadline = head_deadline.unwrap_or_else(|| Instant::now() + limits.header_timeout);
        head_deadline = None;
        // Everything from here to the end of the response is a large state machine that lives
        // only while a request is under way: boxed, it is not part of what an idle connection
        // holds. One allocation per request, from mimalloc's per-thread free list.
        if !Box::pin(handle(&core, &mut c, deadline)).await || core.is_stopping() {
            return;
        }
    }
}

/// What waiting for the next request came to.
enum Wait {
    /// `c.buf` holds the first bytes of the next request.
    Data,
    /// Close the connection (idle timeout, peer gone, shutdown).
    Close,
    /// Idle past `PARK_AFTER`: park the connection.
    Park,
}

/// Waits (from `now`), holding no buffer, for the first bytes of the next request until
/// `deadline`, and puts them in `c.buf`. The wait is a readiness poll, not a receive: abandoning
/// it (to park, or at the deadline) can never lose bytes the client sent.
async fn wait_idle(core: &Core, c: &mut Client, mut now: Instant, deadline: Instant) -> Wait {
    let park_at = deadline.min(now + PARK_AFTER);
    loop {
        if core.is_stopping() {
            return Wait::Close;
        }
        c.lend_buffers(core);
        {
            let poll = PollOnce::new(c.stream.to_shared_fd(), Interest::Readable);
            let ready = std::pin::pin!(compio::runtime::submit(poll));
            let timer = std::pin::pin!(crate::deadline::sleep(
                park_at.saturating_duration_since(now)
            ));
            let stop = std::pin::pin!(core.shutdown.notified());
            match select(ready, select(timer, stop)).await {
                Either::Left((BufResult(Ok(_), _), _)) => {}
                Either::Left((BufResult(Err(e), _), _)) => {
                    tracing::debug!(peer = %c.peer, error = %e, "idle connection closes");
                    return Wait::Close;
                }
                Either::Right((Either::Left(_), _)) if park_at < deadline => return Wait::Park,
                Either::Right(_) => return Wait::Close,
            }
        }
        c.take_buffers(core);
        match recv_ready(c) {
            Ok(0) => return Wait::Close,
            Ok(_) => return Wait::Data,
            // Readiness without data (rare): wait again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => now = Instant::now(),
            Err(e) => {
                tracing::debug!(peer = %c.peer, error = %e, "idle connection closes");
                return Wait::Close;
            }
        }
    }
}

/// Reads what the client has sent (the socket is readable) into `c.buf`, without blocking.
fn recv_ready(c: &mut Client) -> std::io::Result<usize> {
    c.buf.reserve(4096);
    let spare = rustix::buffer::spare_capacity(&mut c.buf);
    let (n, _) = rustix::net::recv(&c.stream, spare, rustix::net::RecvFlags::DONTWAIT)?;
    Ok(n)
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
