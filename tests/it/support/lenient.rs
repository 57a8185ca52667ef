//! A deliberately lenient mock member for the differential test: it reads what ringlb forwards the
//! way a careless origin server would, and logs every message boundary it sees.
//!
//! The reading (on purpose not RFC 9112): leading empty lines are skipped; lines end at LF with an
//! optional CR before it (bare LF accepted); the request line is split on spaces and anything that
//! has a method and a target is a request; a header line is a name (trimmed) and a value up to the
//! first `:`, lines without `:` are ignored, lines starting with SP/HTAB fold into the previous
//! header; framing comes from whichever comes first of a Transfer-Encoding whose value *contains*
//! "chunked" and a Content-Length (leading digits, `atoi` style); a chunk size is the hex before `;`,
//! trimmed, and anything else in the size line is ignored; chunk data may end in CRLF or LF; the
//! trailer section ends at an empty line or at the first line that has no `:` (and does not fold
//! into a trailer before it), which is left in the buffer as the start of the next request. What it cannot read at all (a request line without a
//! target, a chunk size that is not hex) is logged as garbage and the connection is closed.
//!
//! Must never: answer anything it did not log first. Invariant: every complete request it reads
//! gets one response, `200` with `X-Diff-Id: <seq>` and a body naming the sequence number and the
//! length and FNV-1a hash of the (decoded) body, so the client can tell which request a response
//! answers; the connection stays open.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backend::hash;

/// A `/d/<case>/<n>` marker found in a request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub case: u64,
    /// The request's index in its case (digits), or whatever follows the case (e.g. `s` for a
    /// smuggling payload).
    pub n: String,
}

impl Marker {
    /// Finds the first `/d/<digits>/<alnum>` in a target.
    pub fn find(target: &[u8]) -> Option<Marker> {
        let mut i = 0;
        while i + 3 <= target.len() {
            if &target[i..i + 3] == b"/d/" {
                let rest = &target[i + 3..];
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 0 && rest.get(digits) == Some(&b'/') {
                    let n_part = &rest[digits + 1..];
                    let n_len = n_part
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric())
                        .count();
                    if n_len > 0 {
                        let case = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
                        let n = String::from_utf8_lossy(&n_part[..n_len]).into_owned();
                        return Some(Marker { case, n });
                    }
                }
            }
            i += 1;
        }
        None
    }
}

/// A request as the lenient member read it.
#[derive(Debug, Clone)]
pub struct SeenReq {
    /// The member's sequence number, echoed in `X-Diff-Id`.
    pub seq: u64,
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// How the member framed the body: "none", "length N" or "chunked".
    pub framing: String,
    /// The first `KEEP` bytes of the body, chunk framing removed (the log of a long run stays small).
    pub body: Vec<u8>,
    /// The whole body's length and FNV-1a hash.
    pub body_len: usize,
    pub body_hash: u64,
    pub trailers: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// A complete request, answered.
    Request(SeenReq),
    /// Bytes that do not read as a request; the member closed the connection.
    Garbage { why: String, bytes: Vec<u8> },
    /// The connection closed mid-message: after a head (`head` is set) or inside one.
    Incomplete {
        why: String,
        head: Option<SeenReq>,
        bytes: Vec<u8>,
    },
    /// Found by `settle`: the member still waits for the rest of a message nobody will send.
    Stuck { bytes: Vec<u8> },
}

/// One message boundary (or failure to find one) on one member connection.
#[derive(Debug, Clone)]
pub struct Event {
    pub conn: usize,
    /// The marker of the request's target, when it has one.
    pub marker: Option<Marker>,
    /// The case the test was running when this message's first byte arrived.
    pub began_in: u64,
    pub kind: EventKind,
}

impl Event {
    /// The case this event belongs to: its marker's, else the one running when it began.
    pub fn case(&self) -> u64 {
        self.marker.as_ref().map_or(self.began_in, |m| m.case)
    }
}

const WORKING: u8 = 0;
/// Blocked in a read at a message boundary with nothing buffered.
const IDLE: u8 = 1;
/// Blocked in a read in the middle of a message.
const WAITING: u8 = 2;
const CLOSED: u8 = 3;

struct ConnShared {
    stream: TcpStream,
    state: AtomicU8,
    reset: AtomicBool,
    /// What is buffered while `WAITING` (for a `Stuck` report).
    partial: Mutex<Vec<u8>>,
    /// `settle` reported this wait already.
    reported: AtomicBool,
}

struct Shared {
    events: Mutex<Vec<Event>>,
    /// Connections not yet closed, with their ids.
    conns: Mutex<Vec<(usize, Arc<ConnShared>)>>,
    accepted: AtomicUsize,
    /// Connections registered so far (ids are 0..).
    registered: AtomicUsize,
    seq: AtomicU64,
    current_case: AtomicU64,
    stop: AtomicBool,
}

pub struct Lenient {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Lenient {
    pub fn start() -> Lenient {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            registered: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            current_case: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                sh.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let conn = Arc::new(ConnShared {
                    stream: clone,
                    state: AtomicU8::new(WORKING),
                    reset: AtomicBool::new(false),
                    partial: Mutex::new(Vec::new()),
                    reported: AtomicBool::new(false),
                });
                let id = {
                    let mut conns = sh.conns.lock().unwrap();
                    conns.retain(|(_, c)| c.state.load(Ordering::SeqCst) != CLOSED);
                    let id = sh.registered.fetch_add(1, Ordering::SeqCst);
                    conns.push((id, conn.clone()));
                    id
                };
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let mut c = Conn {
                        id,
                        stream,
                        buf: Vec::new(),
                        pos: 0,
                        in_message: false,
                        began_in: 0,
                        conn: conn.clone(),
                        shared: sh,
                    };
                    c.serve();
                    conn.state.store(CLOSED, Ordering::SeqCst);
                });
            }
        });
        Lenient { addr, shared }
    }

    /// Tells the member which case is running (for events that carry no marker).
    pub fn set_case(&self, case: u64) {
        self.shared.current_case.store(case, Ordering::SeqCst);
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().clone()
    }

    /// The events that belong to `case` (see `Event::case`), in the order they happened.
    pub fn events_of(&self, case: u64) -> Vec<Event> {
        let events = self.shared.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.case() == case)
            .cloned()
            .collect()
    }

    /// The request the member answered with sequence number `seq`.
    pub fn request(&self, seq: u64) -> Option<SeenReq> {
        let events = self.shared.events.lock().unwrap();
        events.iter().find_map(|e| match &e.kind {
            EventKind::Request(r) if r.seq == seq => Some(r.clone()),
            _ => None,
        })
    }

    /// Waits (bounded) until every member connection is idle at a message boundary or closed and
    /// no event was logged for two polls in a row. A connection still waiting mid-message when the
    /// bound passes is logged as `Stuck`.
    pub fn settle(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut last = usize::MAX;
        let mut quiet_polls = 0;
        loop {
            let events = self.shared.events.lock().unwrap().len();
            let conns = self.shared.conns.lock().unwrap().clone();
            let all_quiet = self.shared.accepted.load(Ordering::SeqCst)
                == self.shared.registered.load(Ordering::SeqCst)
                && conns.iter().all(|(_, c)| {
                    matches!(c.state.load(Ordering::SeqCst), IDLE | CLOSED)
                        || c.reset.load(Ordering::SeqCst)
                });
            if all_quiet && events == last {
                quiet_polls += 1;
                if quiet_polls >= 2 {
                    return;
                }
            } else {
                quiet_polls = 0;
            }
            last = events;
            if Instant::now() > deadline {
                let case = self.shared.current_case.load(Ordering::SeqCst);
                for (id, c) in &conns {
                    if c.state.load(Ordering::SeqCst) == WAITING
                        && !c.reset.load(Ordering::SeqCst)
                        && !c.reported.swap(true, Ordering::SeqCst)
                    {
                        let bytes = c.partial.lock().unwrap().clone();
                        self.shared.events.lock().unwrap().push(Event {
                            conn: *id,
                            marker: None,
                            began_in: case,
                            kind: EventKind::Stuck { bytes },
                        });
                    }
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Closes every member connection without logging anything more from them: a clean slate
    /// after a case went wrong.
    pub fn reset(&self) {
        for (_, c) in self.shared.conns.lock().unwrap().iter() {
            c.reset.store(true, Ordering::SeqCst);
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Lenient {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.reset();
        let _ = TcpStream::connect(self.addr);
    }
}

/// Why reading a message stopped.
enum Stop {
    /// The connection closed (or was reset) at a message boundary or mid-message.
    Closed,
    /// Unreadable bytes.
    Garbage(String),
}

struct Conn {
    id: usize,
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    in_message: bool,
    began_in: u64,
    conn: Arc<ConnShared>,
    shared: Arc<Shared>,
}

/// Head lines longer than this are garbage.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes of a body, or of unreadable input, kept in the log.
const KEEP: usize = 512;

impl Conn {
    fn serve(&mut self) {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(60)));
        loop {
            let mut partial: Option<SeenReq> = None;
            match self.read_message(&mut partial) {
                Ok(req) => {
                    let marker = Marker::find(&req.target);
                    let reply = response(&req);
                    self.log(marker, EventKind::Request(req));
                    self.in_message = false;
                    if self.stream.write_all(&reply).is_err() {
                        return;
                    }
                }
                Err(Stop::Closed) => {
                    if self.in_message && !self.conn.reset.load(Ordering::SeqCst) {
                        let marker = partial.as_ref().and_then(|r| Marker::find(&r.target));
                        let why = if partial.is_some() {
                            "closed inside the body"
                        } else {
                            "closed inside the head"
                        };
                        let end = self.buf.len().min(self.pos + KEEP);
                        let bytes = self.buf[self.pos..end].to_vec();
                        self.log(
                            marker,
                            EventKind::Incomplete {
                                why: why.into(),
                                head: partial,
                                bytes,
                            },
                        );
                    }
                    return;
                }
                Err(Stop::Garbage(why)) => {
                    if !self.conn.reset.load(Ordering::SeqCst) {
                        let marker = partial.as_ref().and_then(|r| Marker::find(&r.target));
                        let end = self.buf.len().min(self.pos + KEEP);
                        let bytes = self.buf[self.pos..end].to_vec();
                        self.log(marker, EventKind::Garbage { why, bytes });
                    }
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }

    fn log(&self, marker: Option<Marker>, kind: EventKind) {
        self.shared.events.lock().unwrap().push(Event {
            conn: self.id,
            marker,
            began_in: self.began_in,
            kind,
        });
    }

    /// Reads more bytes; false at EOF, on an error or after a reset.
    fn fill(&mut self) -> bool {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let state = if self.in_message || !self.buf.is_empty() {
            *self.conn.partial.lock().unwrap() = self.buf[..self.buf.len().min(KEEP)].to_vec();
            WAITING
        } else {
            IDLE
        };
        self.conn.reported.store(false, Ordering::SeqCst);
        self.conn.state.store(state, Ordering::SeqCst);
        let mut chunk = [0u8; 65536];
        let r = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.conn.state.store(WORKING, Ordering::SeqCst);
        match r {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                !self.conn.reset.load(Ordering::SeqCst)
            }
        }
    }

    /// The next line (without LF and one CR before it), consumed only when `take` says so.
    fn peek_line(&mut self) -> Result<(Vec<u8>, usize), Stop> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let mut line = &self.buf[self.pos..self.pos + i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                return Ok((line.to_vec(), i + 1));
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(Stop::Garbage("line too long".into()));
            }
            if !self.fill() {
                return Err(Stop::Closed);
            }
        }
    }

    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let (line, used) = self.peek_line()?;
        self.pos += used;
        Ok(line)
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        while self.buf.len() - self.pos < n {
            if !self.fill() {
                return Err(Stop::Closed);
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn read_message(&mut self, partial: &mut Option<SeenReq>) -> Result<SeenReq, Stop> {
        // Empty lines before a request line are skipped.
        loop {
            while self.pos < self.buf.len() && matches!(self.buf[self.pos], b'\r' | b'\n') {
                self.pos += 1;
            }
            if self.pos < self.buf.len() {
                break;
            }
            if !self.fill() {
                return Err(Stop::Closed);
            }
        }
        self.in_message = true;
        self.began_in = self.shared.current_case.load(Ordering::SeqCst);
        let start = self.pos;
        let request_line = self.line()?;
        let mut parts = request_line.split(|&b| b == b' ').filter(|p| !p.is_empty());
        // (Leading spaces are skipped too: " GET / HTTP/1.1" is a request here.)
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            self.pos = start;
            return Err(Stop::Garbage("no request line".into()));
        };
        let mut req = SeenReq {
            seq: 0,
            method: method.to_vec(),
            target: target.to_vec(),
            headers: Vec::new(),
            framing: "none".into(),
            body: Vec::new(),
            body_len: 0,
            body_hash: hash(b""),
            trailers: Vec::new(),
        };
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                if let Some((_, v)) = req.headers.last_mut() {
                    v.push(b' ');
                    v.extend_from_slice(line.trim_ascii());
                }
                continue;
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                req.headers.push((
                    line[..colon].trim_ascii().to_vec(),
                    line[colon + 1..].trim_ascii().to_vec(),
                ));
            }
        }
        let framing = req.headers.iter().find_map(|(n, v)| {
            if n.eq_ignore_ascii_case(b"transfer-encoding")
                && v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")
            {
                Some(None)
            } else if n.eq_ignore_ascii_case(b"content-length") {
                let digits: Vec<u8> = v.iter().copied().take_while(u8::is_ascii_digit).collect();
                Some(Some(
                    std::str::from_utf8(&digits)
                        .ok()
                        .and_then(|d| d.parse::<usize>().ok())
                        .unwrap_or(0),
                ))
            } else {
                None
            }
        });
        *partial = Some(req.clone());
        match framing {
            None | Some(Some(0)) => {}
            Some(Some(n)) => {
                req.framing = format!("length {n}");
                *partial = Some(req.clone());
                req.body = self.take(n)?;
            }
            Some(None) => {
                req.framing = "chunked".into();
                *partial = Some(req.clone());
                self.read_chunked(&mut req)?;
            }
        }
        req.seq = self.shared.seq.fetch_add(1, Ordering::SeqCst);
        req.body_len = req.body.len();
        req.body_hash = hash(&req.body);
        req.body.truncate(KEEP);
        Ok(req)
    }

    fn read_chunked(&mut self, req: &mut SeenReq) -> Result<(), Stop> {
        loop {
            let line = self.line()?;
            let size_part = line
                .split(|&b| b == b';')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            let size = std::str::from_utf8(size_part)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    Stop::Garbage(format!(
                        "bad chunk size line {:?}",
                        String::from_utf8_lossy(&line)
                    ))
                })?;
            if size == 0 {
                break;
            }
            let data = self.take(size as usize)?;
            req.body.extend_from_slice(&data);
            let end = self.take(1)?;
            if end == b"\r" {
                let lf = self.take(1)?;
                if lf != b"\n" {
                    return Err(Stop::Garbage("chunk data not followed by CRLF".into()));
                }
            } else if end != b"\n" {
                return Err(Stop::Garbage(
                    "chunk data not followed by a line end".into(),
                ));
            }
        }
        // Trailers: until an empty line, or a line without a colon (left for the next request).
        loop {
            let (line, used) = self.peek_line()?;
            if line.is_empty() {
                self.pos += used;
                return Ok(());
            }
            let fold = matches!(line[0], b' ' | b'\t') && !req.trailers.is_empty();
            if fold || line.contains(&b':') {
                self.pos += used;
                req.trailers.push(line);
                continue;
            }
            return Ok(());
        }
    }
}

/// `200` naming the request: its sequence number, body length and body hash.
fn response(req: &SeenReq) -> Vec<u8> {
    let body = if req.method == b"HEAD" {
        String::new()
    } else {
        format!(
            "seq={} len={} hash={:016x}\n",
            req.seq, req.body_len, req.body_hash
        )
    };
    format!(
        "HTTP/1.1 200 OK\r\nX-Diff-Id: {}\r\nContent-Length: {}\r\n\r\n{body}",
        req.seq,
        body.len()
    )
    .into_bytes()
}
