//! The access log (`[log] access = "PATH"`): one line per request in Apache's combined format,
//! followed by the member, its status, the sticky route taken and the three durations; a tunnel's
//! line (status 101, written when it closes) also has the bytes it carried up.
//!
//! Owns: each core's line buffer and the writer thread. Must never: write to the file on the
//! request path (lines are appended to the core's buffer; the worker's once-a-second tick hands the
//! buffer to the writer thread), or lose lines on SIGUSR1 (the writer reopens the file between two
//! writes, for logrotate). Invariant: a line is appended whole, so lines never interleave.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one request contributes to its line.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Status sent to the client (0: none was sent).
    pub status: u16,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
    /// `(balancer, member)` that answered (or failed last), if any.
    pub member: Option<(usize, usize)>,
    /// The member was the one the request's sticky session named (its route is logged).
    pub sticky: bool,
    pub upstream_status: Option<u16>,
    pub connect_us: Option<u64>,
    pub response_head_us: Option<u64>,
    /// Of `body_bytes`, those `splice` moved (counted in the core's statistics, not logged).
    pub spliced: u64,
    /// Request body bytes `splice` moved to the member (counted in the core's statistics, not
    /// logged).
    pub spliced_request: u64,
    /// After a 101: the bytes the tunnel carried from the client to the member (those the other
    /// way are `body_bytes`).
    pub tunnel_up: Option<u64>,
}

/// The shared writer: a thread that owns the file.
pub struct Writer {
    tx: Sender<Vec<u8>>,
    reopen: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Opens the file (append) and starts the writer thread.
    pub fn start(path: &Path) -> std::io::Result<Writer> {
        let file = open(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("ringlb-access-log".into())
            .spawn(move || write_loop(file, path, rx, flag))?;
        Ok(Writer { tx, reopen, thread })
    }

    /// Asks the writer to reopen the file before its next write (SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
        // An empty message wakes the writer so that it reopens at once.
        let _ = self.tx.send(Vec::new());
    }

    pub fn sender(&self) -> Sender<Vec<u8>> {
        self.tx.clone()
    }

    /// Waits until everything sent has been written (call after the workers stopped).
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(mut file: File, path: PathBuf, rx: Receiver<Vec<u8>>, reopen: Arc<AtomicBool>) {
    for chunk in rx {
        if reopen.swap(false, Ordering::SeqCst) {
            match open(&path) {
                Ok(f) => file = f,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot reopen the access log")
                }
            }
        }
        if !chunk.is_empty() {
            if let Err(e) = file.write_all(&chunk) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the access log");
            }
        }
    }
}

/// One core's access log buffer.
pub struct CoreLog {
    buf: RefCell<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    /// The formatted `[day/Mon/year:HH:MM:SS +0000]` of `second`.
    stamp: RefCell<String>,
    second: Cell<u64>,
}

impl CoreLog {
    pub fn new(tx: Sender<Vec<u8>>) -> CoreLog {
        CoreLog {
            buf: RefCell::new(Vec::with_capacity(64 * 1024)),
            tx,
            stamp: RefCell::new(String::new()),
            second: Cell::new(u64::MAX),
        }
    }

    /// Appends one line. `request` holds the request line, `referer` and `agent` the headers.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        client: IpAddr,
        request: &[u8],
        referer: &[u8],
        agent: &[u8],
        rec: &Record,
        member: &str,
        route: &str,
        total_us: u64,
    ) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.second.get() {
            self.second.set(now);
            *self.stamp.borrow_mut() = clf_time(now);
        }
        let mut b = self.buf.borrow_mut();
        let _ = write!(b, "{client} - - {} \"", self.stamp.borrow());
        escape_into(&mut b, request);
        let _ = write!(b, "\" {} ", rec.status);
        if rec.body_bytes == 0 {
            b.push(b'-');
        } else {
            let _ = write!(b, "{}", rec.body_bytes);
        }
        b.extend_from_slice(b" \"");
        escape_into(&mut b, if referer.is_empty() { b"-" } else { referer });
        b.extend_from_slice(b"\" \"");
        escape_into(&mut b, if agent.is_empty() { b"-" } else { agent });
        let _ = write!(
            b,
            "\" member={} upstream_status=",
            if member.is_empty() { "-" } else { member }
        );
        opt(&mut b, rec.upstream_status.map(u64::from));
        let route = if route.is_empty() { "-" } else { route };
        let _ = write!(b, " route={route} request_us={total_us} connect_us=");
        opt(&mut b, rec.connect_us);
        b.extend_from_slice(b" response_head_us=");
        opt(&mut b, rec.response_head_us);
        if let Some(n) = rec.tunnel_up {
            let _ = write!(b, " tunnel_up_bytes={n}");
        }
        b.push(b'\n');
    }

    /// Hands what was buffered to the writer thread (called by the worker's tick and at exit).
    pub fn flush(&self) {
        let mut b = self.buf.borrow_mut();
        if !b.is_empty() {
            let full = std::mem::replace(&mut *b, Vec::with_capacity(64 * 1024));
            let _ = self.tx.send(full);
        }
    }
}

fn opt(b: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(b, "{v}");
        }
        None => b.push(b'-'),
    }
}

/// Apache escapes quotes, backslashes and unprintable bytes as `\xHH`.
fn escape_into(b: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            b.push(c);
        } else {
            let _ = write!(b, "\\x{c:02x}");
        }
    }
}

/// `[25/Nov/2026:09:10:11 +0000]` for a Unix time (UTC).
pub fn clf_time(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "[{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000]",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_dates() {
        assert_eq!(clf_time(0), "[01/Jan/1970:00:00:00 +0000]");
        assert_eq!(clf_time(1_795_592_411), "[25/Nov/2026:07:40:11 +0000]");
        assert_eq!(clf_time(951_782_400), "[29/Feb/2000:00:00:00 +0000]");
    }

    #[test]
    fn line_format() {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = CoreLog::new(tx);
        let rec = Record {
            status: 200,
            body_bytes: 5,
            member: Some((0, 0)),
            sticky: true,
            upstream_status: Some(200),
            connect_us: None,
            response_head_us: Some(120),
            spliced: 0,
            spliced_request: 0,
            tunnel_up: None,
        };
        log.append(
            "10.0.0.1".parse().unwrap(),
            b"GET /a\"b HTTP/1.1",
            b"",
            b"curl/8",
            &rec,
            "127.0.0.1:9001",
            "node1",
            345,
        );
        log.flush();
        let line = String::from_utf8(rx.recv().unwrap()).unwrap();
        let rest = line.split_once(" +0000] ").unwrap().1;
        assert_eq!(
            rest,
            "\"GET /a\\x22b HTTP/1.1\" 200 5 \"-\" \"curl/8\" member=127.0.0.1:9001 upstream_status=200 route=node1 request_us=345 connect_us=- response_head_us=120\n"
        );
        assert!(line.starts_with("10.0.0.1 - - ["));
    }
}
