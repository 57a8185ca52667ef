//! One load connection: closed loop (send, wait, repeat; optionally pipelined) or open loop (send
//! on a fixed schedule, latency from the intended send time), and the response reader, over plain
//! TCP or TLS (https targets; the TLS layer is `tls.rs`).
//!
//! Owns: the socket (with its TLS state, if any), its read buffer and its share of the thread's
//! statistics (handshakes included). Must never: count a latency from the actual send time in open
//! loop (that would hide a stalled server: coordinated omission); let a TLS handshake outlast
//! `--timeout`; add a copy or an allocation to the plain path. Invariant: a response is consumed
//! exactly, so pipelined responses stay in step.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use hdrhistogram::Histogram;

use crate::target::{Picker, Target};
use crate::tls::Tls;

/// Requests up to this size are written without a timer.
const SMALL_WRITE: usize = 64 * 1024;

/// Error kinds, in report order. "tls": a handshake that failed or outlasted `--timeout`
/// (certificate rejected, say), or a TLS protocol error on an established connection.
pub const ERROR_KINDS: [&str; 7] = [
    "connect", "read", "write", "timeout", "parse", "closed", "tls",
];

#[derive(Debug, Clone, Copy)]
pub enum Fail {
    Connect = 0,
    Read = 1,
    Write = 2,
    Timeout = 3,
    Parse = 4,
    Closed = 5,
    Tls = 6,
}

/// One thread's statistics (its connections share it; single-threaded).
pub struct Stats {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: [u64; ERROR_KINDS.len()],
    pub status: [u64; 5],
    /// TLS handshakes: [full, resumed].
    pub handshakes: [u64; 2],
    /// Open loop: how late each timed wake-up sent its request against the intended send time
    /// (µs; 1 = on time). Large values mean the generator, not the server, set the pace.
    pub lag: Histogram<u64>,
    /// Open loop: requests whose send time came while their connection still waited for the
    /// previous response (sent late through no fault of the timer: more `-c` spreads them).
    pub behind: u64,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            hist: new_histogram(),
            requests: 0,
            errors: [0; ERROR_KINDS.len()],
            status: [0; 5],
            handshakes: [0; 2],
            lag: new_histogram(),
            behind: 0,
        }
    }

    fn ok(&mut self, status: u16, latency: Duration) {
        self.requests += 1;
        self.status[(usize::from(status / 100)).clamp(1, 5) - 1] += 1;
        self.hist
            .saturating_record((latency.as_micros() as u64).max(1));
    }

    fn fail(&mut self, f: Fail) {
        self.errors[f as usize] += 1;
    }

    fn handshake(&mut self, resumed: bool) {
        self.handshakes[usize::from(resumed)] += 1;
    }
}

/// What every connection of a thread shares.
pub struct Shared {
    pub targets: Vec<Target>,
    pub deadline: Instant,
    pub start: Instant,
    pub timeout: Duration,
    pub pipeline: usize,
    pub connect_per_request: bool,
    /// Open loop: the interval between one connection's requests.
    pub interval: Option<Duration>,
    /// The TLS configuration, when some target is https.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub stats: RefCell<Stats>,
    /// Nothing before this is counted (the warm-up: `--warmup`).
    pub measure_from: Instant,
}

impl Shared {
    /// The statistics, for an event at `t`; none during the warm-up.
    fn stats_at(&self, t: Instant) -> Option<RefMut<'_, Stats>> {
        (t >= self.measure_from).then(|| self.stats.borrow_mut())
    }
}

/// A connection: the socket and, for an https target, its TLS state (boxed: plain connections
/// carry only the empty option).
struct Conn {
    s: TcpStream,
    tls: Option<Box<Tls>>,
}

/// Connects to `target` (and runs the TLS handshake, if it is https), all within `--timeout`.
async fn connect(shared: &Shared, target: &Target) -> Result<Conn, Fail> {
    let begin = Instant::now();
    let mut s = match compio::time::timeout(shared.timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        _ => return Err(Fail::Connect),
    };
    let _ = s.set_nodelay(true);
    let tls = match (&target.tls, &shared.tls) {
        (Some(name), Some(config)) => {
            let left = shared.timeout.saturating_sub(begin.elapsed());
            let hs = Tls::handshake(&mut s, config.clone(), name.clone());
            let tls = compio::time::timeout(left, hs).await.map_err(|_| {
                crate::tls::note_first("handshake", &"not done within --timeout");
                Fail::Tls
            })??;
            if let Some(mut st) = shared.stats_at(Instant::now()) {
                st.handshake(tls.resumed());
            }
            Some(tls)
        }
        _ => None,
    };
    Ok(Conn { s, tls })
}

/// Reads responses; keeps bytes that belong to the next one.
struct Reader {
    buf: Vec<u8>,
    start: usize,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    async fn fill(&mut self, c: &mut Conn) -> Result<(), Fail> {
        if self.start == self.buf.len() {
            self.reset();
        } else if self.start > 32 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if let Some(tls) = c.tls.as_mut() {
            return tls.append(&mut c.s, &mut self.buf).await.map(|_| ());
        }
        self.buf.reserve(64 * 1024);
        let owned = std::mem::take(&mut self.buf);
        let BufResult(res, owned) = c.s.append(owned).await;
        self.buf = owned;
        match res {
            Ok(0) => Err(Fail::Closed),
            Ok(_) => Ok(()),
            Err(_) => Err(Fail::Read),
        }
    }

    /// Discards `n` body bytes.
    async fn skip(&mut self, s: &mut Conn, mut n: u64) -> Result<(), Fail> {
        loop {
            let take = n.min(self.avail().len() as u64) as usize;
            self.start += take;
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill(s).await?;
        }
    }

    /// Consumes one line ending in CRLF; returns it without the CRLF.
    async fn line(&mut self, s: &mut Conn) -> Result<Vec<u8>, Fail> {
        loop {
            if let Some(i) = self.avail().windows(2).position(|w| w == b"\r\n") {
                let line = self.avail()[..i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if self.avail().len() > 16 * 1024 {
                return Err(Fail::Parse);
            }
            self.fill(s).await?;
        }
    }

    /// Reads one whole response; returns (status, server closes after it).
    async fn response(&mut self, s: &mut Conn, is_head: bool) -> Result<(u16, bool), Fail> {
        let (status, head_len, length, chunked, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(self.avail()) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h
                                .value
                                .to_ascii_lowercase()
                                .windows(7)
                                .any(|w| w == b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (resp.code.unwrap_or(0), n, length, chunked, close);
                }
                Ok(httparse::Status::Partial) => self.fill(s).await?,
                Err(_) => return Err(Fail::Parse),
            }
        };
        self.start += head_len;
        if (100..200).contains(&status) {
            return Box::pin(self.response(s, is_head)).await;
        }
        if is_head || status == 204 || status == 304 {
            return Ok((status, close));
        }
        if chunked {
            loop {
                let line = self.line(s).await?;
                let text = std::str::from_utf8(&line).map_err(|_| Fail::Parse)?;
                let size = u64::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| Fail::Parse)?;
                if size == 0 {
                    while !self.line(s).await?.is_empty() {}
                    return Ok((status, close));
                }
                self.skip(s, size + 2).await?;
            }
        }
        match length {
            Some(n) => {
                self.skip(s, n).await?;
                Ok((status, close))
            }
            None => {
                // Delimited by close: read to the end.
                loop {
                    self.start = self.buf.len();
                    match self.fill(s).await {
                        Ok(()) => {}
                        Err(Fail::Closed) => return Ok((status, true)),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// One connection's state between requests.
struct Loop {
    picker: Picker,
    reader: Reader,
    out: Vec<u8>,
    heads: Vec<bool>,
    stream: Option<Conn>,
}

/// Runs one connection until the deadline. Every request sent before the deadline is waited for
/// (up to `--timeout`) and counted by its send time, so the slowest answers at the end of a run
/// are not dropped.
pub async fn run(shared: Rc<Shared>, id: usize, connections: usize) {
    let mut l = Loop {
        picker: Picker::new(&shared.targets, id as u64 + 1),
        reader: Reader::new(),
        out: Vec::with_capacity(4096),
        heads: Vec::with_capacity(shared.pipeline),
        stream: None,
    };
    // Open loop: this connection's schedule, staggered over the interval.
    let mut next = shared
        .interval
        .map(|iv| shared.start + iv.mul_f64(id as f64 / connections.max(1) as f64));
    loop {
        match next {
            Some(at) if at >= shared.deadline => return,
            Some(at) => wait_until(&shared, at).await,
            None if Instant::now() >= shared.deadline => return,
            None => {}
        }
        if let Err(f) = l.once(&shared, next).await {
            if let Some(mut st) = shared.stats_at(next.unwrap_or_else(Instant::now)) {
                st.fail(f);
            }
            l.stream = None;
            if matches!(f, Fail::Connect | Fail::Tls) {
                compio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        advance(&shared, &mut next);
    }
}

impl Loop {
    /// Sends the next request (a batch with `--pipeline`), connecting first if needed, and reads
    /// the answers. `at`: the open loop's intended send time (latency counts from it).
    async fn once(&mut self, shared: &Shared, at: Option<Instant>) -> Result<(), Fail> {
        let target = &shared.targets[self.picker.next()];
        if self.stream.is_none() {
            let c = connect(shared, target).await?;
            self.reader.reset();
            self.stream = Some(c);
        }
        self.out.clear();
        self.heads.clear();
        self.out.extend_from_slice(&target.request);
        self.heads.push(target.is_head);
        for _ in 1..shared.pipeline {
            let t = &shared.targets[self.picker.next()];
            self.out.extend_from_slice(&t.request);
            self.heads.push(t.is_head);
        }
        let sent = at.unwrap_or_else(Instant::now);
        let s = self.stream.as_mut().expect("connected");
        write(shared, s, &mut self.out).await?;
        let mut keep = !shared.connect_per_request;
        for &is_head in &self.heads {
            let answer = compio::time::timeout(shared.timeout, self.reader.response(s, is_head));
            let (status, close) = answer.await.map_err(|_| Fail::Timeout)??;
            if let Some(mut st) = shared.stats_at(sent) {
                st.ok(status, sent.elapsed());
            }
            keep &= !close;
        }
        if !keep {
            self.stream = None;
        }
        Ok(())
    }
}

/// Writes a request batch. A small one is taken by the socket buffer at once: no timer is armed
/// for it (a timer per request costs the generator about 6 % of its rate). A large one may wait
/// on a stalled server, so it is bounded by `--timeout`.
async fn write(shared: &Shared, s: &mut Conn, out: &mut Vec<u8>) -> Result<(), Fail> {
    let ok = if let Some(tls) = s.tls.as_mut() {
        let write = tls.write_all(&mut s.s, out);
        if out.len() <= SMALL_WRITE {
            write.await.is_ok()
        } else {
            matches!(
                compio::time::timeout(shared.timeout, write).await,
                Ok(Ok(()))
            )
        }
    } else {
        let owned = std::mem::take(out);
        if owned.len() <= SMALL_WRITE {
            let BufResult(res, owned) = s.s.write_all(owned).await;
            *out = owned;
            res.is_ok()
        } else {
            match compio::time::timeout(shared.timeout, s.s.write_all(owned)).await {
                Ok(BufResult(res, owned)) => {
                    *out = owned;
                    res.is_ok()
                }
                Err(_) => false,
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Fail::Write)
    }
}

/// Open loop: waits for the send time `at` on an io_uring timeout (absolute precision: the
/// thread's timer slack is 1 ns, see `run.rs`), and records how late the wake-up came; a
/// connection already past `at` (its previous response came late) is counted as behind.
async fn wait_until(shared: &Shared, at: Instant) {
    let now = Instant::now();
    if now >= at {
        if let Some(mut st) = shared.stats_at(at) {
            st.behind += 1;
        }
        return;
    }
    compio::time::sleep(at - now).await;
    let late = Instant::now().saturating_duration_since(at);
    let late_us = (late.as_micros() as u64).max(1);
    if let Some(mut st) = shared.stats_at(at) {
        st.lag.saturating_record(late_us);
    }
}

fn advance(shared: &Shared, next: &mut Option<Instant>) {
    if let (Some(iv), Some(at)) = (shared.interval, next.as_mut()) {
        *at += iv;
    }
}
