//! `ringlb-load origin`: a fast HTTP/1.1 origin for benchmarks and demos. Thread-per-core, one
//! SO_REUSEPORT listener per thread, keep-alive, pipelining (answers batched into one write),
//! request bodies skipped as they arrive (read 64 KiB at a time, never gathered), a fixed
//! response of `--body-bytes` bytes, optionally after `--delay`, and optionally with a limited
//! capacity (`--capacity N`: each thread is one FIFO server taking 1/N s per request, by timer,
//! so requests beyond N/s queue without burning CPU).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::cli::{parse_cpus, OriginArgs};

/// The response, built once and shared by every connection.
fn response(body_bytes: usize) -> &'static [u8] {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body_bytes}\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', body_bytes));
    Box::leak(r.into_boxed_slice())
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

pub fn run(args: OriginArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.address, args.port);
    let cpus = match &args.cpus {
        Some(c) => parse_cpus(c)?,
        None => Vec::new(),
    };
    let resp = response(args.body_bytes);
    let mut threads = Vec::new();
    for i in 0..args.threads.max(1) {
        let l = listener(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        let delay = args.delay;
        let service = args.capacity.map(|n| Duration::from_secs_f64(1.0 / n));
        threads.push(std::thread::spawn(move || {
            if let Some(c) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            let rt = crate::runtime().expect("a compio runtime");
            rt.block_on(async move {
                let l = TcpListener::from_std(l).expect("listener");
                let queue = service.map(|d| Queue {
                    free_at: Rc::new(Cell::new(Instant::now())),
                    service: d,
                });
                loop {
                    if let Ok((s, _)) = l.accept().await {
                        compio::runtime::spawn(serve(s, resp, delay, queue.clone())).detach();
                    }
                }
            });
        }));
    }
    eprintln!(
        "origin listening on http://{addr}/ ({} bytes per response)",
        args.body_bytes
    );
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Counts the complete requests at the start of `buf`; returns (requests, bytes they use, close,
/// and the body still owed by the request after them when its head is whole and its body not).
fn complete_requests(buf: &[u8]) -> Result<(usize, usize, bool, Option<Owed>), ()> {
    let mut pos = 0;
    let mut n = 0;
    let mut close = false;
    while pos < buf.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(h)) => {
                let (len, asks_close) = framing(req.headers)?;
                // A length near `usize::MAX` is refused, not wrapped.
                let whole = h.checked_add(len).ok_or(())?;
                let have = buf.len() - pos;
                if have < whole {
                    let owed = Owed {
                        bytes: whole - have,
                        close: asks_close,
                    };
                    return Ok((n, pos, false, Some(owed)));
                }
                close = asks_close;
                pos += whole;
                n += 1;
                if close {
                    break;
                }
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => return Err(()),
        }
    }
    Ok((n, pos, close, None))
}

/// `--capacity`: the thread's one server, free again at `free_at`.
#[derive(Clone)]
struct Queue {
    free_at: Rc<Cell<Instant>>,
    service: Duration,
}

impl Queue {
    /// Waits in line for `n` requests' service, first come first served.
    async fn serve(&self, n: usize) {
        let start = self.free_at.get().max(Instant::now());
        let done = start + self.service * n as u32;
        self.free_at.set(done);
        compio::time::sleep(done.saturating_duration_since(Instant::now())).await;
    }
}

async fn serve(
    mut s: TcpStream,
    resp: &'static [u8],
    delay: Option<Duration>,
    queue: Option<Queue>,
) {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(READ);
    let mut out: Vec<u8> = Vec::new();
    let mut owed = Owed::default();
    loop {
        buf.reserve(READ);
        let BufResult(res, b) = s.append(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok((n, close)) = take_requests(&mut buf, &mut owed) else {
            return;
        };
        if n == 0 {
            continue;
        }
        if let Some(d) = delay {
            compio::time::sleep(d).await;
        }
        if let Some(q) = &queue {
            q.serve(n).await;
        }
        let ok = if n == 1 {
            s.write_all(resp).await.0.is_ok()
        } else {
            out.clear();
            for _ in 0..n {
                out.extend_from_slice(resp);
            }
            let BufResult(r, o) = s.write_all(std::mem::take(&mut out)).await;
            out = o;
            r.is_ok()
        };
        if !ok || close {
            return;
        }
    }
}

/// What one read asks for: a large request body is read in reads this size and skipped.
const READ: usize = 64 * 1024;

/// A request whose head was read and whose body is still coming: its bytes are skipped as they
/// arrive, not gathered (a 1 MiB upload is not held whole, nor parsed again at every read).
#[derive(Default, Debug, PartialEq)]
struct Owed {
    /// Body bytes still to come (0: no request in progress).
    bytes: usize,
    /// Whether that request asked to close.
    close: bool,
}

/// Takes the requests that `buf` completes off its front (with `owed`, the body of the request
/// in progress); returns how many, and whether the last asked to close. What is left in `buf` is
/// the start of a head.
fn take_requests(buf: &mut Vec<u8>, owed: &mut Owed) -> Result<(usize, bool), ()> {
    let mut n = 0;
    if owed.bytes > 0 {
        let k = owed.bytes.min(buf.len());
        skip(buf, k);
        owed.bytes -= k;
        if owed.bytes > 0 {
            return Ok((0, false));
        }
        n = 1;
        if owed.close {
            return Ok((1, true));
        }
    }
    let (m, used, close, pending) = complete_requests(buf)?;
    skip(buf, used);
    if let Some(pending) = pending {
        // The rest of `buf` is this request's: skip it and what is still to come.
        *owed = pending;
        buf.clear();
    }
    Ok((n + m, close))
}

fn skip(buf: &mut Vec<u8>, k: usize) {
    if k == buf.len() {
        buf.clear();
    } else {
        buf.drain(..k);
    }
}

/// A request's body length and whether it asks to close.
fn framing(headers: &[httparse::Header<'_>]) -> Result<(usize, bool), ()> {
    let (mut len, mut close) = (0usize, false);
    for hd in headers {
        if hd.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(hd.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(())?;
        } else if hd.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(()); // the benchmarks send Content-Length bodies only
        } else if hd.name.eq_ignore_ascii_case("connection")
            && hd.value.eq_ignore_ascii_case(b"close")
        {
            close = true;
        }
    }
    Ok((len, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pipelined_requests() {
        let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /";
        assert_eq!(complete_requests(two), Ok((2, two.len() - 5, false, None)));
        assert!(
            complete_requests(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .2
        );
        assert_eq!(response(3).len(), 3 + response(0).len());
    }

    /// Feeds `stream` in reads of `size` bytes; the requests each read completes, and the bytes
    /// held between reads at most.
    fn fed(stream: &[u8], size: usize) -> (Vec<(usize, bool)>, usize) {
        let (mut buf, mut owed, mut done, mut held) = (Vec::new(), Owed::default(), Vec::new(), 0);
        for piece in stream.chunks(size) {
            buf.extend_from_slice(piece);
            let (n, close) = take_requests(&mut buf, &mut owed).unwrap();
            if n > 0 {
                done.push((n, close));
            }
            held = held.max(buf.len());
        }
        (done, held)
    }

    #[test]
    fn a_large_body_is_skipped_as_it_comes_and_what_follows_is_still_counted() {
        let big = [
            &b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"[..],
            &[b'u'; 1_000_000],
        ]
        .concat();
        let get = &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..];
        let close = &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..];
        let stream = [&big[..], get, &big, close].concat();
        for size in [1, 7, 1000, 65536, 70000, stream.len()] {
            let (done, held) = fed(&stream, size);
            let total: usize = done.iter().map(|d| d.0).sum();
            assert_eq!(total, 4, "reads of {size}: {done:?}");
            let closes: Vec<bool> = done.iter().map(|d| d.1).collect();
            assert_eq!(
                closes.iter().filter(|&&c| c).count(),
                1,
                "reads of {size}: {done:?}"
            );
            assert_eq!(closes.last(), Some(&true), "reads of {size}: {done:?}");
            // Nothing of a body is held past its read; a whole stream in one read is parsed as
            // it stands.
            if size < stream.len() {
                assert!(held < size.max(80) + 80, "reads of {size} held {held}");
            }
        }
    }
}
