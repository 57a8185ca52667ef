//! A client connection as the request path sees it: its socket, its reused buffers, the parsed
//! head, how it will end (`End`), the two answers every part may give it (`100 Continue` and a
//! refusal), and the lingering close (`linger_close`).
//!
//! Owns: the per-connection buffers and lending them, emptied (`conn` says when: once the
//! connection has idled a while, `conn::LEND_AFTER`, after empty lines, when it parks or closes).
//! Must never: know about the core, members or tasks, or lend a buffer holding a byte the next
//! holder could read (a TLS session's `tout` keeps ciphertext already sent as room, never sent
//! again: `TlsSession::lend`). Invariant: `buf` starts at the first unconsumed byte from the
//! client, so pipelined requests are answered in order.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::access_log::Record;
use crate::http::parse::{RequestHead, ResponseHead};
use crate::http::reply;
use crate::readiness::Readiness;
use crate::stream::{read_more_by, shutdown_write, write_range, write_static, Stream};

/// How long a connection closing lingering (`linger_close`: after a refusal, or a last answer to
/// a client that may still send) is drained before it closes, so the client reads the answer.
const DRAIN_FOR: Duration = Duration::from_millis(500);
/// At most this much is drained from a client closing lingering.
const DRAIN_BYTES: usize = 1 << 20;

/// A client connection and its reused buffers.
pub struct Client {
    /// The socket, with its TLS session on a TLS listener.
    pub stream: Stream,
    pub peer: SocketAddr,
    /// The peer is a trusted proxy (`[server] trusted_proxies`): its X-Forwarded-* count.
    pub trusted: bool,
    /// A PROXY header said the client is one it cannot name (`UNKNOWN`, `UNSPEC`): `peer` is the
    /// sender's address, and the client is never a trusted proxy (kept across parking).
    pub unnamed: bool,
    /// Which listener accepted it: its slot (`listeners`; `CoreGen::listen` has its settings).
    pub listener: usize,
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
    /// The normalised path and query when the request's differ from it (`http::path`); empty when
    /// the request's own are in normal form. On a route with a `member_path`, the mapped target
    /// (`http::reverse::map_target`).
    pub path: Vec<u8>,
    /// `http(s)://host` as the client asked, kept for a route that maps response URLs back
    /// (`http::reverse::public_origin`): the request head is gone from `buf` by the time the
    /// response comes.
    pub public_origin: Vec<u8>,
    /// The `Upgrade` value of the request under way when it asks for a protocol switch its route
    /// tunnels (`http::upgrade::offer`): a 101 must name what it offered. Empty otherwise (and
    /// never allocated on a connection that does not upgrade).
    pub upgrade_offer: Vec<u8>,
    /// How the connection ends once its requests are over (`conn::keep_serving` acts on it).
    pub end: End,
    /// A plain connection's readability between requests: one poll kept armed (`readiness`).
    /// Stopped where the request's own reads take over for long (a streamed body, a tunnel),
    /// and before the socket parks or closes.
    pub ready: Readiness,
}

/// How a connection ends once its requests are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    /// As usual: lingering if, after an answer, the client may still send
    /// (`conn::may_send_more`); else with close_notify on TLS.
    #[default]
    Usual,
    /// Lingering whatever the request said: part of its body was never read.
    Linger,
    /// Nothing more to do: `linger_close` ran, a tunnel ended by both sides' closes (the client's
    /// side is shut down), or the client could not be written to.
    Done,
    /// The exchange broke (before a final response reached the client, or in a body framed by
    /// length or chunks, which the client knows to be short at any close), or a tunnel ended not
    /// by both sides' closes: no close_notify, which would tell a TLS client that a body ending
    /// at the close is whole, and no lingering; the close waits (at most 500 ms) for what is
    /// queued for the client to go out (`reset::drain`).
    Cut,
    /// The exchange broke in a body the client reads to the close (an HTTP/1.0 client's decoded
    /// body, or one the member framed by its close): the connection ends with a reset, plain or
    /// TLS, once what is queued for the client went out (`reset::close`), so that the client
    /// sees an error, not an end that looks like a whole body's.
    Reset,
}

/// The buffers a connection needs only while it has a request: lent to the core once it has idled
/// a while (`conn::LEND_AFTER`) or parks, so that an idle keep-alive connection holds next to no
/// memory, and once it closes, so that a new connection need not grow its own.
#[derive(Default)]
pub struct Spare {
    buf: Vec<u8>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    ranges: Vec<Range<usize>>,
    headers: Vec<crate::http::header::HeaderPos>,
    resp_headers: Vec<crate::http::header::HeaderPos>,
    log_fields: [Vec<u8>; 3],
    path: Vec<u8>,
    public_origin: Vec<u8>,
    /// A TLS connection's ciphertext buffers (empty when lent by a plain one).
    tls: (Vec<u8>, Vec<u8>),
}

impl Spare {
    /// The capacity of all its buffers, in bytes.
    pub fn capacity(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        // Destructured: a field added to `Spare` must be counted here too.
        let Spare {
            buf,
            out,
            rbuf,
            ranges,
            headers,
            resp_headers,
            log_fields,
            path,
            public_origin,
            tls,
        } = self;
        bytes(buf)
            + bytes(out)
            + bytes(rbuf)
            + bytes(ranges)
            + bytes(headers)
            + bytes(resp_headers)
            + log_fields.iter().map(bytes).sum::<usize>()
            + bytes(path)
            + bytes(public_origin)
            + bytes(&tls.0)
            + bytes(&tls.1)
    }
}

impl Client {
    pub fn new(stream: Stream, peer: SocketAddr, trusted: bool, listener: usize) -> Client {
        Client {
            stream,
            peer,
            trusted,
            unnamed: false,
            listener,
            buf: Vec::new(),
            out: Vec::new(),
            rbuf: Vec::new(),
            ranges: Vec::new(),
            head: RequestHead::default(),
            resp: ResponseHead::default(),
            rec: Record::default(),
            log_fields: Default::default(),
            path: Vec::new(),
            public_origin: Vec::new(),
            upgrade_offer: Vec::new(),
            end: End::Usual,
            ready: Readiness::default(),
        }
    }

    /// Whether it holds a set of buffers: a read buffer with room, or a TLS session's (after a
    /// handshake, before its first request's read).
    pub fn holds_buffers(&self) -> bool {
        self.holds_read_buffers() || self.stream.holds_buffers()
    }

    fn holds_read_buffers(&self) -> bool {
        self.buf.capacity() > 0 || self.rbuf.capacity() > 0
    }

    /// Takes this connection's buffers, emptied, to lend them to the core while it waits for a
    /// request or once it closes. `None` when it has no read buffer (`buf`, `rbuf`) nor TLS buffers
    /// to lend; whatever else it holds then stays with it.
    pub fn lend_buffers(&mut self) -> Option<Spare> {
        self.buf.clear();
        let tls = self.stream.lend();
        if !self.holds_read_buffers() && tls.is_none() {
            return None;
        }
        let spare = Spare {
            buf: take(&mut self.buf),
            out: take(&mut self.out),
            rbuf: take(&mut self.rbuf),
            ranges: take(&mut self.ranges),
            headers: take(&mut self.head.headers),
            resp_headers: take(&mut self.resp.headers),
            // Cleared like the rest: a set taken back never holds another request's fields.
            log_fields: self.log_fields.each_mut().map(take),
            path: take(&mut self.path),
            public_origin: take(&mut self.public_origin),
            tls: tls.unwrap_or_default(),
        };
        Some(spare)
    }

    /// Takes a set of buffers (from the core) again.
    pub fn take_buffers(&mut self, s: Spare) {
        self.buf = s.buf;
        self.out = s.out;
        self.rbuf = s.rbuf;
        self.ranges = s.ranges;
        self.head.headers = s.headers;
        self.resp.headers = s.resp_headers;
        self.log_fields = s.log_fields;
        self.path = s.path;
        self.public_origin = s.public_origin;
        self.stream.take(s.tls);
    }
}

/// The path and query to route on and forward: the normalised form (`Client::path`) when it
/// differs from the request's. A free function over the fields, so that a caller can borrow the
/// client's other buffers mutably meanwhile.
pub fn target<'a>(buf: &'a [u8], head: &RequestHead, path: &'a [u8]) -> &'a [u8] {
    if path.is_empty() {
        &buf[head.path.clone()]
    } else {
        path
    }
}

/// The vector, emptied, with its capacity (`v` is left without one).
fn take<T>(v: &mut Vec<T>) -> Vec<T> {
    let mut v = std::mem::take(v);
    v.clear();
    v
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

/// Writes an error response with `Connection: close`, then closes lingering (`linger_close`).
pub async fn refuse(c: &mut Client, status: u16) {
    refuse_with(c, status, None).await
}

/// `refuse` with a balancer's page for the status (`error_pages`).
pub async fn refuse_with(c: &mut Client, status: u16, page: Option<&crate::config::ErrorPage>) {
    c.out.clear();
    reply::error_page(&mut c.out, status, true, page, false);
    if send_own_answer(c, DRAIN_FOR).await {
        linger_close(c).await;
    }
}

/// Writes ringlb's own answer, all of `c.out`, within `limit`. A failed write ends the connection
/// (`End::Done`: the client cannot be written to). Returns whether it went out.
pub async fn send_own_answer(c: &mut Client, limit: Duration) -> bool {
    let len = c.out.len();
    let sent = write_range(&mut c.stream, &mut c.out, 0..len, limit)
        .await
        .is_ok();
    if !sent {
        c.end = End::Done;
    }
    sent
}

/// After a last answer: shuts the write side down (close_notify first on TLS) and drains what the
/// client still sends for a short moment, so that it reads the answer instead of a reset.
pub async fn linger_close(c: &mut Client) {
    // Its reads take the socket over: the kept poll would only wake the task for each arrival.
    c.ready.stop();
    c.end = End::Done;
    shutdown_write(&mut c.stream).await;
    let deadline = Instant::now() + DRAIN_FOR;
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        c.buf.clear();
        match read_more_by(&mut c.stream, &mut c.buf, 16384, deadline).await {
            Ok(n) => drained += n,
            Err(_) => break,
        }
    }
}

/// Writes the access-log line of a request ringlb answered itself (a refusal, a redirect): its
/// first line as received (up to a bound), the status, no member.
pub fn log_own_answer(
    log: &crate::access_log::CoreLog,
    c: &mut Client,
    status: u16,
    started: Instant,
) {
    const MAX_LINE: usize = 2048;
    let shown = &c.buf[..c.buf.len().min(MAX_LINE)];
    let line_end = shown
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(shown.len());
    c.rec = Record {
        status,
        ..Default::default()
    };
    let total = started.elapsed().as_micros() as u64;
    log.append(
        c.peer.ip(),
        &shown[..line_end],
        b"",
        b"",
        &c.rec,
        "",
        "",
        total,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::header::{HeaderKind, HeaderPos};

    /// A plain client over a loopback connection (the peer is returned to keep it open).
    fn client() -> (Client, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, addr) = l.accept().unwrap();
        let tcp = compio::net::TcpStream::from_std(s).unwrap();
        (Client::new(Stream::plain(tcp), addr, false, 0), peer)
    }

    #[test]
    fn lent_buffers_carry_nothing_of_their_last_connection_but_their_capacity() {
        let rt = crate::runtime::build(crate::config::Driver::Auto).unwrap();
        rt.block_on(async {
            let (mut a, _pa) = client();
            let header = HeaderPos {
                name: 0..4,
                value: 6..7,
                kind: HeaderKind::Host,
            };
            a.buf.extend_from_slice(b"GET /a/../b HTTP/1.1\r\n");
            a.out.extend_from_slice(b"GET /b HTTP/1.1\r\n");
            a.rbuf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            a.ranges.push(0..3);
            a.head.headers.push(header.clone());
            a.resp.headers.push(header);
            a.log_fields[0].extend_from_slice(b"GET /a/../b HTTP/1.1");
            a.path.extend_from_slice(b"/b");
            a.public_origin.extend_from_slice(b"http://site");
            let held = a.buf.capacity()
                + a.out.capacity()
                + a.rbuf.capacity()
                + a.path.capacity()
                + a.public_origin.capacity()
                + a.log_fields[0].capacity();
            assert!(a.holds_buffers());
            let spare = a.lend_buffers().expect("it holds buffers");
            assert!(!a.holds_buffers(), "lent, it holds none");
            // What decides whether a closing connection's set is kept (`conn::KEEP_AT_CLOSE`).
            assert!(spare.capacity() > held, "{} vs {held}", spare.capacity());
            let (mut b, _pb) = client();
            assert!(!b.holds_buffers(), "a new connection holds none");
            b.take_buffers(spare);
            assert!(b.holds_buffers());
            assert!(b.buf.is_empty() && b.buf.capacity() > 0);
            assert!(b.out.is_empty() && b.out.capacity() > 0);
            assert!(b.rbuf.is_empty() && b.rbuf.capacity() > 0);
            assert!(b.ranges.is_empty() && b.ranges.capacity() > 0);
            assert!(b.head.headers.is_empty() && b.head.headers.capacity() > 0);
            assert!(b.resp.headers.is_empty() && b.resp.headers.capacity() > 0);
            assert!(b.log_fields.iter().all(|f| f.is_empty()));
            // (Each is also emptied before its next use: this is defence in depth.)
            assert!(b.path.is_empty() && b.path.capacity() > 0);
            assert!(b.public_origin.is_empty() && b.public_origin.capacity() > 0);
            assert!(a.lend_buffers().is_none(), "lent once, it holds none");
        });
    }
}
