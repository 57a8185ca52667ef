//! Mock HTTP members for the tests: real sockets on loopback, one thread per connection, a handler
//! that decides each reply, and a record of every request that reached the member.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the member received it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Req {
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
}

/// What the member does with a request.
pub enum Reply {
    /// 200 with a Content-Length body.
    Text(String),
    /// Status, extra headers and body; `chunked` frames it with chunked coding.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunked: bool,
    },
    /// A body of `len` pattern bytes (see `pattern`), Content-Length framed, written in pieces.
    Pattern(usize),
    /// These bytes, as they are; the connection stays open.
    Raw(Vec<u8>),
    /// These bytes, then close.
    RawClose(Vec<u8>),
    /// These pieces, with a pause between them; the connection stays open.
    RawParts(Vec<Vec<u8>>, Duration),
    /// Close without answering.
    Close,
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
}

/// Deterministic body bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a, for comparing large bodies.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

pub struct Backend {
    pub addr: SocketAddr,
    reqs: Arc<Mutex<Vec<Req>>>,
    conns: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
    }

    /// A member on a listener the test made (e.g. a `reserved_port` that now listens).
    pub fn on(
        listener: TcpListener,
        handler: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        let addr = listener.local_addr().unwrap();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, c, s) = (reqs.clone(), conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, h, s) = (r.clone(), handler.clone(), s.clone());
                std::thread::spawn(move || serve(stream, &r, &*h, &s));
            }
        });
        Backend {
            addr,
            reqs,
            conns,
            stop,
        }
    }

    /// A member that answers every request with its name (and the path), Content-Length framed.
    pub fn named(name: &'static str) -> Backend {
        Backend::start(move |r| Reply::Full {
            status: 200,
            headers: vec![("X-Backend".into(), name.into())],
            body: format!("{name} {}", r.path).into_bytes(),
            chunked: false,
        })
    }

    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.reqs.lock().unwrap().len()
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A free loopback port below the kernel's ephemeral range (32768 and up), for a server another
/// program binds a moment later (Tomcat, HAProxy): a port the kernel could hand to another test's
/// `bind(…:0)` in the meantime would put ringlb in front of that test's server instead. Each
/// caller passes its own `base`, so that two callers do not race for the same ports.
pub fn port_below_ephemeral(base: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = base + (std::process::id() % 100) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An address where nothing listens (connections are refused) for the rest of the test run: the
/// port stays bound (without listening), so no other test's listener can be given it.
pub fn closed_port() -> SocketAddr {
    let (addr, socket) = reserved_port();
    std::mem::forget(socket);
    addr
}

/// A bound, not yet listening socket: refused until `listen` is called on it.
pub fn reserved_port() -> (SocketAddr, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (addr, s)
}

fn serve(mut s: TcpStream, reqs: &Mutex<Vec<Req>>, handler: &Handler, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf) else {
            return;
        };
        reqs.lock().unwrap().push(req.clone());
        if stop.load(Ordering::SeqCst) || !write_reply(&mut s, handler(&req), &req) {
            return;
        }
    }
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let (mut req, head_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut p = httparse::Request::new(&mut headers);
        match p.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let req = Req {
                    method: p.method?.to_string(),
                    path: p.path?.to_string(),
                    version: p.version?,
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
                    body: Vec::new(),
                    chunked: false,
                };
                break (req, n);
            }
            Ok(httparse::Status::Partial) => {
                if !fill(s, buf) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    buf.drain(..head_len);
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        req.chunked = true;
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(s, buf) {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            if size == 0 {
                while !buf.windows(2).any(|w| w == b"\r\n") {
                    if !fill(s, buf) {
                        return None;
                    }
                }
                // Trailers are not used by the tests: expect the empty line.
                let i = buf.windows(2).position(|w| w == b"\r\n")?;
                buf.drain(..i + 2);
                break;
            }
            while buf.len() < size + 2 {
                if !fill(s, buf) {
                    return None;
                }
            }
            req.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while buf.len() < len {
            if !fill(s, buf) {
                return None;
            }
        }
        req.body = buf.drain(..len).collect();
    }
    Some(req)
}

fn write_reply(s: &mut TcpStream, reply: Reply, req: &Req) -> bool {
    match reply {
        Reply::Text(body) => write_reply(
            s,
            Reply::Full {
                status: 200,
                headers: vec![],
                body: body.into_bytes(),
                chunked: false,
            },
            req,
        ),
        Reply::Full {
            status,
            headers,
            body,
            chunked,
        } => {
            let mut head = format!("HTTP/1.1 {status} Whatever\r\n");
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            let no_body = req.method == "HEAD" || status == 204 || status == 304;
            if chunked {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let mut out = head.into_bytes();
                if !no_body {
                    for piece in body.chunks(1000) {
                        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                s.write_all(&out).is_ok()
            } else {
                if status != 204 && status != 304 {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                if !no_body {
                    out.extend_from_slice(&body);
                }
                s.write_all(&out).is_ok()
            }
        }
        Reply::Pattern(len) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            if s.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let body = pattern(len);
            body.chunks(1 << 20).all(|piece| s.write_all(piece).is_ok())
        }
        Reply::Raw(bytes) => s.write_all(&bytes).is_ok(),
        Reply::RawClose(bytes) => {
            let _ = s.write_all(&bytes);
            false
        }
        Reply::RawParts(parts, pause) => parts.iter().enumerate().all(|(i, p)| {
            if i > 0 {
                std::thread::sleep(pause);
            }
            s.write_all(p).is_ok()
        }),
        Reply::Close => false,
        Reply::Delay(d, r) => {
            std::thread::sleep(d);
            write_reply(s, *r, req)
        }
    }
}

/// A listener that never accepts and whose backlog is full: a connect to it hangs, because the
/// kernel drops the SYNs. The way to test connect timeouts on loopback.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    pub fn start() -> Option<Blackhole> {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .ok()?;
        listener.listen(0).ok()?;
        let addr = listener.local_addr().ok()?.as_socket()?;
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => {
                    return Some(Blackhole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    });
                }
            }
        }
        None
    }
}
