//! The calls into the socket API: read more, write a range, write static bytes, write head + body,
//! send a request telling "nothing written" from "maybe written", send what the socket takes now
//! (a tunnel's non-blocking send), check an idle pooled connection without blocking, shut down
//! the write side, connect.
//!
//! Keeping them here means a runtime upgrade or switch touches few files (the idle wait in
//! `conn.rs` also polls and receives directly, to abandon a wait without losing bytes, and so do
//! `tunnel`'s readiness waits with `stream`'s non-blocking receive and shutdown). Must never: read into a
//! buffer without spare capacity (compio reports 0 bytes, which looks like EOF). Invariant: the
//! buffer's ownership goes to the kernel for the operation and comes back in the same `Vec`; after
//! a timeout (`IoFail::Timeout`) the operation is cancelled and the buffer is gone: it is left
//! empty, and the caller must not use what it held (it closes the connections concerned and
//! replays nothing).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;

use crate::deadline;

/// Why an I/O step failed.
#[derive(Debug)]
pub enum IoFail {
    /// The peer closed its side (read returned 0).
    Closed,
    /// The deadline passed; the operation was cancelled.
    Timeout,
    Error(io::Error),
}

/// Appends at least one byte read from `s` to `buf`, waiting at most `limit`.
pub async fn read_more(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    spare: usize,
    limit: Duration,
) -> Result<usize, IoFail> {
    buf.reserve(spare);
    let owned = std::mem::take(buf);
    match deadline::timeout(limit, s.append(owned)).await {
        Ok(BufResult(res, owned)) => {
            *buf = owned;
            match res {
                Ok(0) => Err(IoFail::Closed),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFail::Error(e)),
            }
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes `buf[range]` to `s`, handing the buffer to the kernel (no copy).
pub async fn write_range(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    if range.is_empty() {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    match deadline::timeout(limit, s.write_all(owned.slice(range))).await {
        Ok(BufResult(res, slice)) => {
            *buf = slice.into_inner();
            res.map_err(IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes bytes that live for the whole program (no buffer to hand over, no copy).
pub async fn write_static(
    s: &mut TcpStream,
    bytes: &'static [u8],
    limit: Duration,
) -> Result<(), IoFail> {
    match deadline::timeout(limit, s.write_all(bytes)).await {
        Ok(BufResult(res, _)) => res.map_err(IoFail::Error),
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes all of `head` and then `body[range]` in one vectored write.
pub async fn write_head_and(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    if range.is_empty() {
        let len = head.len();
        return write_range(s, head, 0..len, limit).await;
    }
    let h = std::mem::take(head);
    let b = std::mem::take(body);
    match deadline::timeout(limit, s.write_vectored_all((h, (b.slice(range),)))).await {
        Ok(BufResult(res, (h, (b,)))) => {
            *head = h;
            *body = b.into_inner();
            res.map_err(IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// How far a request write got when it failed.
#[derive(Debug)]
pub enum Unsent {
    /// The first write failed: no byte of it reached the socket.
    Nothing(IoFail),
    /// Some bytes may have gone out (a later write failed, or a timeout cancelled one).
    Partly(IoFail),
}

/// Writes `head` and then `body[range]` like `write_head_and`, telling apart a failure that
/// proves nothing was written (the first write failed) from one after which bytes may have
/// reached the peer. After a timeout the buffer(s) the timed-out write held are gone (left
/// empty): the caller treats neither as usable.
pub async fn send_request(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), Unsent> {
    let total = head.len() + range.len();
    let first = if range.is_empty() {
        first_write(s, head, limit).await
    } else {
        first_write_vectored(s, head, body, range.clone(), limit).await
    };
    let written = match first {
        Some(Ok(0)) => return Err(Unsent::Nothing(IoFail::Closed)),
        Some(Ok(n)) => n,
        Some(Err(e)) => return Err(Unsent::Nothing(IoFail::Error(e))),
        None => return Err(Unsent::Partly(IoFail::Timeout)),
    };
    if written == total {
        return Ok(());
    }
    // A short write: finish the head, then the body.
    let head_len = head.len();
    let rest = if written < head_len {
        write_range(s, head, written..head_len, limit)
            .await
            .map(|_| range)
    } else {
        Ok(range.start + written - head_len..range.end)
    };
    match rest {
        Ok(r) => write_range(s, body, r, limit).await.map_err(Unsent::Partly),
        Err(e) => Err(Unsent::Partly(e)),
    }
}

/// `send_request`'s first write when there is no body: the head alone, as one plain send (a
/// vectored one costs the kernel a message header and an iovec to copy in). `None`: it timed out
/// (the head is gone).
async fn first_write(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    limit: Duration,
) -> Option<io::Result<usize>> {
    let h = std::mem::take(head);
    let BufResult(res, h) = deadline::timeout(limit, s.write(h)).await.ok()?;
    *head = h;
    Some(res)
}

/// `send_request`'s first write of a head and a body: one vectored write. `None`: it timed out
/// (both buffers are gone).
async fn first_write_vectored(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Option<io::Result<usize>> {
    let h = std::mem::take(head);
    let b = std::mem::take(body);
    let pair = (h, (b.slice(range),));
    let BufResult(res, (h, (b,))) = deadline::timeout(limit, s.write_vectored(pair))
        .await
        .ok()?;
    *head = h;
    *body = b.into_inner();
    Some(res)
}

/// Sends what the socket takes of `data` now, without blocking: 0 when it takes nothing (or
/// `data` is empty).
pub fn send_now(s: &TcpStream, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    match rustix::net::send(s, data, flags) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Whether an idle pooled connection is still fit for a request: not closed by its peer and with
/// nothing unread (bytes a member sent after its response, or an error). One non-blocking peek.
pub fn idle_and_open(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(
        rustix::net::recv(s, &mut byte[..], flags),
        Err(e) if e == rustix::io::Errno::AGAIN
    )
}

/// Shuts down the write side (the peer sees EOF after what was written).
pub async fn shutdown_write(s: &mut TcpStream) {
    let _ = s.shutdown().await;
}

/// Connects to a member with TCP_NODELAY set.
pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, IoFail> {
    match deadline::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(IoFail::Error(e)),
        Err(_) => Err(IoFail::Timeout),
    }
}

#[cfg(test)]
mod tests {
    //! `send_request` to a plain thread that starts reading late, so that the socket takes only
    //! part of a large request at first and the rest goes by the short-write continuation.
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;
    use crate::config::Driver;
    use crate::test_rng::Rng;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        (0..n).map(|_| rng.next() as u8).collect()
    }

    /// Sends `head` and `body[range]` to a peer that waits 100 ms before reading; what it got.
    fn sent(driver: Driver, head: Vec<u8>, body: Vec<u8>, range: Range<usize>) -> Vec<u8> {
        let rt = crate::worker::build_runtime(driver).unwrap();
        rt.block_on(async move {
            compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                let mut s = listener.accept().unwrap().0;
                std::thread::sleep(Duration::from_millis(100));
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                got
            });
            let mut s = TcpStream::connect(addr).await.unwrap();
            let (mut head, mut body) = (head, body);
            let limit = Duration::from_secs(10);
            let done = send_request(&mut s, &mut head, &mut body, range, limit).await;
            assert!(done.is_ok(), "{done:?}");
            drop(s);
            peer.join().unwrap()
        })
    }

    #[test]
    fn a_large_head_alone_arrives_whole_and_in_order() {
        for driver in [Driver::IoUring, Driver::Epoll] {
            let head = bytes(12 << 20, 1);
            let got = sent(driver, head.clone(), Vec::new(), 0..0);
            assert!(
                got == head,
                "{driver:?}: {} of {} bytes, or reordered",
                got.len(),
                head.len()
            );
        }
    }

    /// The first write stops inside the head (a large head), or inside the body (a small one).
    #[test]
    fn a_head_and_a_large_body_arrive_whole_and_in_order() {
        for driver in [Driver::IoUring, Driver::Epoll] {
            for head_len in [5 << 20, 1000] {
                let (head, body) = (bytes(head_len, 2), bytes(9 << 20, 3));
                let range = 1000..body.len() - 7;
                let mut want = head.clone();
                want.extend_from_slice(&body[range.clone()]);
                let got = sent(driver, head, body, range);
                let (n, of) = (got.len(), want.len());
                assert!(
                    got == want,
                    "{driver:?}, head {head_len}: {n} of {of} bytes, or reordered"
                );
            }
        }
    }
}
