//! A scriptable raw-TCP mock member: it logs exactly the bytes it receives on each connection,
//! splits them into requests without normalising anything (raw head, chunk-size lines, trailers),
//! and sends whatever bytes its script says, when the script says. One thread per connection.
//!
//! Also: a client socket with a tiny receive window, for tests that need ringlb's writes to block.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the member received it, byte for byte.
#[derive(Debug, Clone, Default)]
pub struct RawReq {
    /// Index of the member connection it came on (0 = first accepted).
    pub conn: usize,
    /// The head as received, up to and including the blank line.
    pub head: Vec<u8>,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
    /// The chunk-size lines as received (without CRLF), the last-chunk line included.
    pub chunk_lines: Vec<Vec<u8>>,
    /// The trailer field lines as received (without CRLF).
    pub trailers: Vec<Vec<u8>>,
    /// Bytes that did not parse as a request (the connection was then closed); the rest is empty.
    pub garbage: Option<Vec<u8>>,
}

impl RawReq {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }
}

#[derive(Default)]
struct State {
    /// Bytes received, per connection.
    received: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    requests: Mutex<Vec<RawReq>>,
    stop: AtomicBool,
    /// Events the scripts count (e.g. "late bytes sent").
    marks: AtomicUsize,
    /// Connections whose script saw the peer (ringlb) close.
    peer_closed: AtomicUsize,
}

/// Socket options for the member's listening socket, inherited by accepted connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// SO_RCVBUF: a tiny value makes the member's receive window tiny.
    pub rcvbuf: Option<usize>,
    /// TCP_MAXSEG: the MSS the member advertises, which also sizes the peer's send buffer.
    pub mss: Option<u32>,
}

impl Opts {
    /// The smallest window the kernel allows: a peer writing to a member that stops reading
    /// blocks after a few dozen KiB.
    pub fn tiny_window() -> Opts {
        Opts {
            rcvbuf: Some(1),
            mss: Some(536),
        }
    }
}

type Script = dyn Fn(&mut RawConn) + Send + Sync;

pub struct RawMember {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// One accepted connection, as a script sees it.
pub struct RawConn {
    pub index: usize,
    pub s: TcpStream,
    buf: Vec<u8>,
    log: Arc<Mutex<Vec<u8>>>,
    state: Arc<State>,
}

impl RawMember {
    /// Runs `script` on every accepted connection (in its own thread).
    pub fn start(script: impl Fn(&mut RawConn) + Send + Sync + 'static) -> RawMember {
        Self::start_with(Opts::default(), script)
    }

    pub fn start_with(
        opts: Opts,
        script: impl Fn(&mut RawConn) + Send + Sync + 'static,
    ) -> RawMember {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        if let Some(n) = opts.rcvbuf {
            sock.set_recv_buffer_size(n).unwrap();
        }
        if let Some(m) = opts.mss {
            sock.set_tcp_mss(m).unwrap();
        }
        sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.listen(128).unwrap();
        let listener: TcpListener = sock.into();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let script: Arc<Script> = Arc::new(script);
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                let log = Arc::new(Mutex::new(Vec::new()));
                let index = {
                    let mut r = st.received.lock().unwrap();
                    r.push(log.clone());
                    r.len() - 1
                };
                let mut conn = RawConn {
                    index,
                    s,
                    buf: Vec::new(),
                    log,
                    state: st.clone(),
                };
                let script = script.clone();
                std::thread::spawn(move || script(&mut conn));
            }
        });
        RawMember { addr, state }
    }

    /// A member that answers every request with `answer(request)` until the connection closes or
    /// something that is not a request arrives.
    pub fn answering(answer: impl Fn(&RawReq) -> Vec<u8> + Send + Sync + 'static) -> RawMember {
        RawMember::start(move |c| {
            while let Some(req) = c.read_request() {
                if !c.write(&answer(&req)) {
                    return;
                }
            }
        })
    }

    /// Every request received so far (in arrival order), garbage included.
    pub fn requests(&self) -> Vec<RawReq> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The bytes received on each connection.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.lock().unwrap().clone())
            .collect()
    }

    /// All bytes received, over all connections.
    pub fn received_len(&self) -> usize {
        self.received().iter().map(Vec::len).sum()
    }

    pub fn connections(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    pub fn marks(&self) -> usize {
        self.state.marks.load(Ordering::SeqCst)
    }

    pub fn peer_closed(&self) -> usize {
        self.state.peer_closed.load(Ordering::SeqCst)
    }
}

impl Drop for RawMember {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl RawConn {
    /// Whether the test is over (the member was dropped).
    pub fn stopped(&self) -> bool {
        self.state.stop.load(Ordering::SeqCst)
    }

    /// Counts an event the test can wait for (`RawMember::marks`).
    pub fn mark(&self) {
        self.state.marks.fetch_add(1, Ordering::SeqCst);
    }

    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// Reads what is available into the buffer; false at EOF, error or timeout.
    fn fill(&mut self, max: usize) -> bool {
        let mut chunk = vec![0u8; max];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.log.lock().unwrap().extend_from_slice(&chunk[..n]);
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Adds a request to the member's log.
    pub fn record(&self, req: &RawReq) {
        self.state.requests.lock().unwrap().push(req.clone());
    }

    /// Reads a request head (reading little beyond it); the body stays unread. It is not recorded
    /// (`read_request` records the whole request; `record` adds a head read alone).
    /// `None` at EOF; bytes that are not a request are recorded as garbage.
    pub fn read_head(&mut self) -> Option<RawReq> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut p = httparse::Request::new(&mut hs);
            match p.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let req = RawReq {
                        conn: self.index,
                        head: self.buf[..n].to_vec(),
                        method: p.method.unwrap_or("").to_string(),
                        path: p.path.unwrap_or("").to_string(),
                        headers: p
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        ..RawReq::default()
                    };
                    self.buf.drain(..n);
                    return Some(req);
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill(512) {
                        if !self.buf.is_empty() {
                            self.garbage();
                        }
                        return None;
                    }
                }
                Err(_) => {
                    self.garbage();
                    return None;
                }
            }
        }
    }

    fn garbage(&mut self) {
        let req = RawReq {
            conn: self.index,
            garbage: Some(std::mem::take(&mut self.buf)),
            ..RawReq::default()
        };
        self.record(&req);
    }

    /// Reads a whole request (head and body, Content-Length or chunked) and records it.
    pub fn read_request(&mut self) -> Option<RawReq> {
        let mut req = self.read_head()?;
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            if self.read_chunked(&mut req).is_none() {
                // Not a chunked body after all: keep what was seen.
                req.garbage = Some(std::mem::take(&mut self.buf));
                self.record(&req);
                return None;
            }
        } else if let Some(len) = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while self.buf.len() < len {
                if !self.fill(65536) {
                    self.record(&req);
                    return None;
                }
            }
            req.body = self.buf.drain(..len).collect();
        }
        self.record(&req);
        Some(req)
    }

    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill(65536) {
                return None;
            }
        }
    }

    /// Decodes a chunked body leniently (the size is the leading hex digits of the line), keeping
    /// the size lines and trailers as they came.
    fn read_chunked(&mut self, req: &mut RawReq) -> Option<()> {
        loop {
            let line = self.line()?;
            let digits: Vec<u8> = line
                .iter()
                .copied()
                .take_while(u8::is_ascii_hexdigit)
                .collect();
            let size = usize::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?;
            req.chunk_lines.push(line);
            if size == 0 {
                loop {
                    let t = self.line()?;
                    if t.is_empty() {
                        return Some(());
                    }
                    req.trailers.push(t);
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill(65536) {
                    return None;
                }
            }
            req.body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return None;
            }
            self.buf.drain(..size + 2);
        }
    }

    /// Waits (bounded by `limit`, reading and logging whatever arrives) until the peer closes;
    /// counts the close for `RawMember::peer_closed`.
    pub fn wait_peer_close(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let _ = self.s.set_read_timeout(Some(Duration::from_millis(50)));
        while Instant::now() < deadline && !self.stopped() {
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    self.state.peer_closed.fetch_add(1, Ordering::SeqCst);
                    return true;
                }
                Ok(n) => self.log.lock().unwrap().extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    self.state.peer_closed.fetch_add(1, Ordering::SeqCst);
                    return true;
                }
            }
        }
        false
    }

    /// Does nothing (in particular, reads nothing) until the test ends or `limit` passes.
    pub fn stall(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.stopped() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A member that answers each connection's request with a body framed by its close: `len`
/// bytes of `pattern`, then a clean close, or a reset when the path is `/cut`.
pub fn close_framed(len: usize) -> RawMember {
    RawMember::start(move |c| {
        if let Some(req) = c.read_request() {
            let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            out.extend_from_slice(&super::pattern(len));
            let _ = c.write(&out);
            std::thread::sleep(Duration::from_millis(100));
            if req.path == "/cut" {
                socket2::SockRef::from(&c.s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
        }
    })
}

/// A plain client asking `addr` for `/whole` and then `/cut` with `GET <path> HTTP/<version>`:
/// the first answer ends with a clean close after its body, which is `whole`; the second, cut
/// short in a body the client reads to the close, ends with a reset (`client::End::Reset`), not
/// with a close that would make it look whole.
pub fn assert_reset_only_when_cut(addr: SocketAddr, version: &str, whole: &[u8]) {
    for path in ["/whole", "/cut"] {
        let mut c = super::Client::connect(addr);
        c.set_timeout(Duration::from_secs(10));
        c.send(format!("GET {path} HTTP/{version}\r\nHost: t\r\n\r\n").as_bytes());
        match (path, c.read_until_close()) {
            ("/whole", Ok(all)) => {
                let (end, body) = split_answer(&all);
                assert!(all.starts_with(b"HTTP/1.1 200 "), "{:?}", &all[..end]);
                assert!(
                    body == whole,
                    "/whole: {} of {} bytes",
                    body.len(),
                    whole.len()
                );
            }
            ("/cut", Err(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "/cut: {e}")
            }
            ("/whole", Err(e)) => panic!("/whole ended with {e}, not a clean close"),
            (_, got) => panic!(
                "{path}: a clean close after {} bytes of a body cut short: it looks whole",
                got.map_or(0, |a| a.len())
            ),
        }
    }
}

/// A chunked body's data and whether its last chunk came (`bytes` after the head; an incomplete
/// chunk's data counts as far as it goes). Panics on framing that is not chunked.
pub fn dechunk(bytes: &[u8]) -> (Vec<u8>, bool) {
    let (mut data, mut at) = (Vec::new(), 0);
    while let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&bytes[at..at + eol]).unwrap();
        let size = usize::from_str_radix(line, 16).expect("a chunk size line");
        at += eol + 2;
        if size == 0 {
            assert_eq!(&bytes[at..], b"\r\n", "the last chunk ends the answer");
            return (data, true);
        }
        let end = (at + size).min(bytes.len());
        data.extend_from_slice(&bytes[at..end]);
        if end < at + size || bytes.len() < end + 2 {
            break;
        }
        assert_eq!(&bytes[end..end + 2], b"\r\n", "a chunk ends with CRLF");
        at = end + 2;
    }
    (data, false)
}

/// An HTTP/1.1 client asking `addr` for `/whole` and then `/cut` on one connection, in front of a
/// member that ends its body by its close (`close_framed`): ringlb frames the body as chunked, so
/// `/whole` ends with its last chunk and the connection stays open; `/cut` ends without one and
/// then a plain close (a chunked body without its last chunk is known to be cut; no reset).
pub fn assert_chunked_whole_then_cut_without_last_chunk(addr: SocketAddr, whole: &[u8]) {
    let mut c = super::Client::connect(addr);
    c.set_timeout(Duration::from_secs(10));
    c.send(b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("/whole answered");
    assert_eq!(
        (
            r.status,
            r.header("transfer-encoding"),
            r.header("connection")
        ),
        (200, Some("chunked"), None)
    );
    assert!(
        r.body == whole,
        "/whole: {} of {} bytes",
        r.body.len(),
        whole.len()
    );
    c.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = c.read_until_close().expect("/cut ends with a plain close");
    let (end, body) = split_answer(&all);
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let (data, ended) = dechunk(body);
    assert!(!ended, "/cut: no last chunk after a body cut short");
    assert!(
        whole.starts_with(&data),
        "/cut: what came is the body's start"
    );
}

/// A client connection whose receive window is as small as the kernel allows (and whose MSS makes
/// ringlb's send buffer for it small): ringlb's writes to it block as soon as it stops reading.
pub fn tiny_window_client(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(1).unwrap();
    sock.set_tcp_mss(536).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// An answer read to its close, split after its head: (the head's length, the body bytes). Panics
/// when there is no whole head.
pub fn split_answer(got: &[u8]) -> (usize, &[u8]) {
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    (end, &got[end..])
}

/// Reads from `s` until the peer closes or `limit` passes; returns the bytes and whether it
/// closed (EOF or reset) within the limit.
pub fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
    }
}
