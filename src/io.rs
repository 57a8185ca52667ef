//! The calls into the socket API: read more (counted on the thread's `coop` count: a read may give
//! way after it), write a range, write static bytes, write head + body and send a request telling
//! "nothing written" from "maybe written" (one plain send when the body part is at most `JOIN_MAX`
//! bytes, copied behind its head, or when there is no head; else a vectored one), write a
//! connection's last answer with the FIN right behind it (a small one by a non-blocking send), send
//! what the socket takes now (a tunnel's non-blocking send), check an idle pooled connection
//! without blocking, shut down the write side, connect.
//!
//! Keeping them here means a runtime upgrade or switch touches few files (the idle wait in
//! `conn.rs` also polls and receives directly, to abandon a wait without losing bytes, and so do
//! `tunnel`'s readiness waits with `stream`'s non-blocking receive and shutdown). Must never: read
//! into a buffer without spare capacity (compio reports 0 bytes, which looks like EOF), or copy
//! more than `JOIN_MAX` body bytes for a write. Invariant: the buffer's ownership goes to the
//! kernel for the operation and comes back in the same `Vec` (a head with a body part joined
//! behind it comes back with its own bytes); after a timeout (`IoFail::Timeout`) the operation is
//! cancelled and the buffer is gone: it is left empty, and the caller must not use what it held
//! (it closes the connections concerned and replays nothing).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;

use crate::coop;
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

/// What one read of a body asks for, and so what one write of a copied body carries at most:
/// `http::exchange` copies bodies in reads of this size, and `splice` gives a receiver its limit
/// for each this much it takes, as for one such write.
pub const BODY_UNIT: usize = 64 * 1024;

/// Appends at least one byte read from `s` to `buf`, waiting at most `limit`. Counts what it
/// read on the thread's `coop` count, and gives way when that is due: under epoll a read can
/// complete without the task ever waiting (see `coop`). Every socket read of a connection,
/// TLS ciphertext included, comes through here, but for the idle wait's (`conn` counts one that
/// brought only empty lines) and the tunnel's non-blocking receives, the pool's peek at an idle
/// connection, and splice's fills (which `splice` counts).
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
                Ok(n) => {
                    coop::count(n).await;
                    Ok(n)
                }
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

/// Body bytes up to this many are copied behind the bytes that precede them (a response head, an
/// AJP packet's header) and go out with them in one plain send: a vectored send costs more, in the
/// kernel (a message header and an iovec to copy in) and in compio (an iovec array allocated per
/// write), than copying a piece this small that is still in the cache from its read (measured:
/// docs/performance.md, twelfth session). Larger pieces are handed to the kernel where they lie.
pub const JOIN_MAX: usize = 4096;

/// Writes all of `head` and then `body[range]`, as `send_request` does.
pub async fn write_head_and(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    match send_request(s, head, body, range, limit).await {
        Ok(()) => Ok(()),
        Err(Unsent::Nothing(e) | Unsent::Partly(e)) => Err(e),
    }
}

/// Writes a connection's last answer, `head` and then `body[range]`, and sends the FIN right
/// behind it. A small one (a body part of at most `JOIN_MAX` bytes, joined behind the head) goes
/// by one non-blocking send made here, not through the driver, and `shutdown(SHUT_WR)` follows at
/// once. Through the driver the FIN would follow a trip later, once the send's completion is reaped
/// and the connection's task ends: a nearby client reads the answer and closes first, so the
/// TIME_WAIT is the client's, and its connects slow as its ports fill (scenario (d) on the 16-core
/// device machine, docs/performance.md). What the socket does not take at once, and a larger
/// answer, is written through the driver, then shut down likewise. `head` is given back as
/// `send_request` says: with its own bytes, or left empty after a timeout.
pub async fn write_last(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    let done = if range.len() > JOIN_MAX {
        write_head_and(s, head, body, range, limit).await
    } else {
        let len = head.len();
        head.extend_from_slice(&body[range]);
        let total = head.len();
        let done = match send_now(s, head) {
            Ok(n) => write_range(s, head, n..total, limit).await,
            Err(e) => Err(IoFail::Error(e)),
        };
        head.truncate(len);
        done
    };
    if done.is_ok() {
        let _ = rustix::net::shutdown(&*s, rustix::net::Shutdown::Write);
    }
    done
}

/// How far a request write got when it failed.
#[derive(Debug)]
pub enum Unsent {
    /// The first write failed: no byte of it reached the socket.
    Nothing(IoFail),
    /// Some bytes may have gone out (a later write failed, or a timeout cancelled one).
    Partly(IoFail),
}

/// Writes `head` and then `body[range]`, telling apart a failure that proves nothing was written
/// (the first write failed) from one after which bytes may have reached the peer. The first write
/// is one plain send when `head` is empty (from `body`, no copy) or the body part is at most
/// `JOIN_MAX` bytes (copied behind `head`), else one vectored write; a short write is finished by
/// plain writes. `head` is given back with the bytes it had (its capacity may have grown), except
/// after a timeout: then the buffer(s) the timed-out write held are gone (left empty), and the
/// caller treats neither as usable.
pub async fn send_request(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), Unsent> {
    debug_assert!(range.start <= range.end && range.end <= body.len());
    let total = head.len() + range.len();
    if total == 0 {
        return Ok(());
    }
    // `as_slice`: on `&mut Vec` itself, `is_empty` would be compio's `IoBuf::is_empty`, which
    // exists only for a `&'static mut`.
    let first = if head.as_slice().is_empty() {
        first_write_body(s, body, range.clone(), limit).await
    } else if range.len() <= JOIN_MAX {
        let len = head.len();
        head.extend_from_slice(&body[range.clone()]);
        first_write_joined(s, head, len, limit).await
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
    let (head_left, body_left) = left_after(written, head.len(), range);
    let res = match write_range(s, head, head_left, limit).await {
        Ok(()) => write_range(s, body, body_left, limit).await,
        Err(e) => Err(e),
    };
    res.map_err(Unsent::Partly)
}

/// What is left to write of the head (`..head_len`) and of the body part `range` after a write
/// that took the first `written` bytes of the two, head first.
fn left_after(
    written: usize,
    head_len: usize,
    range: Range<usize>,
) -> (Range<usize>, Range<usize>) {
    if written < head_len {
        (written..head_len, range)
    } else {
        (
            head_len..head_len,
            range.start + written - head_len..range.end,
        )
    }
}

/// `send_request`'s first write when there is no head: `body[range]` as one plain send from the
/// body's own buffer. `None`: it timed out (the body is gone).
async fn first_write_body(
    s: &mut TcpStream,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Option<io::Result<usize>> {
    let b = std::mem::take(body);
    let BufResult(res, b) = deadline::timeout(limit, s.write(b.slice(range)))
        .await
        .ok()?;
    *body = b.into_inner();
    Some(res)
}

/// `send_request`'s first write when the body part is empty or at most `JOIN_MAX` bytes and has
/// been copied behind the head's first `len` bytes: the two as one plain send; `head` is given back
/// cut to those `len` bytes, and what was written counts the head's bytes first, then the
/// piece's, as a vectored write's would. `None`: it timed out (the head is gone).
async fn first_write_joined(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    len: usize,
    limit: Duration,
) -> Option<io::Result<usize>> {
    let h = std::mem::take(head);
    let BufResult(res, mut h) = deadline::timeout(limit, s.write(h)).await.ok()?;
    h.truncate(len);
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
/// `data` is empty, or a signal interrupted the call).
pub fn send_now(s: &TcpStream, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    match rustix::net::send(s, data, flags) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(0),
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
    //! `send_request` and `write_head_and` to a plain thread that starts reading late, so that the
    //! socket takes only part of a large request at first and the rest goes by the short-write
    //! continuation; and that continuation's arithmetic.
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
        sent_by(driver, head, body, range, false)
    }

    /// As `sent`, by `write_head_and` when `head_and`, else by `send_request`; also checks that
    /// the head is given back as it was.
    fn sent_by(
        driver: Driver,
        head: Vec<u8>,
        body: Vec<u8>,
        range: Range<usize>,
        head_and: bool,
    ) -> Vec<u8> {
        let rt = crate::runtime::build(driver).unwrap();
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
            let want_head = head.clone();
            let (mut head, mut body) = (head, body);
            let limit = Duration::from_secs(10);
            if head_and {
                let done = write_head_and(&mut s, &mut head, &mut body, range, limit).await;
                assert!(done.is_ok(), "{done:?}");
            } else {
                let done = send_request(&mut s, &mut head, &mut body, range, limit).await;
                assert!(done.is_ok(), "{done:?}");
            }
            assert!(head == want_head, "the head was not given back as it was");
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

    /// A body part of at most `JOIN_MAX` bytes (sent joined behind its head) or larger (vectored),
    /// with a large head (the first write stops inside it), a small one or none (the body part is
    /// sent from its own buffer): whole and in order, and the head given back with its bytes.
    #[test]
    fn a_head_and_a_body_part_of_any_size_arrive_whole_and_in_order() {
        for driver in [Driver::IoUring, Driver::Epoll] {
            for head_len in [5 << 20, 1000, 0] {
                for part in [1, JOIN_MAX, JOIN_MAX + 1] {
                    for head_and in [false, true] {
                        let (head, body) = (bytes(head_len, 4), bytes(part + 10, 5));
                        let range = 3..3 + part;
                        let mut want = head.clone();
                        want.extend_from_slice(&body[range.clone()]);
                        let got = sent_by(driver, head, body, range, head_and);
                        let (n, of) = (got.len(), want.len());
                        assert!(
                            got == want,
                            "{driver:?}, head {head_len}, part {part}, write_head_and {head_and}: \
                             {n} of {of} bytes, or reordered"
                        );
                    }
                }
            }
        }
    }

    /// Runs `test` on a runtime of each driver, its deadline wheel turning.
    fn on_each_driver<F: std::future::Future<Output = ()>>(test: impl Fn(Driver) -> F) {
        for driver in [Driver::IoUring, Driver::Epoll] {
            let rt = crate::runtime::build(driver).unwrap();
            rt.block_on(async {
                compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
                test(driver).await
            });
        }
    }

    /// A loopback connection: the writer's end and the peer's.
    async fn connection() -> (TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap()).await;
        (s.unwrap(), listener.accept().unwrap().0)
    }

    /// A connection whose peer reset it.
    async fn reset_connection() -> TcpStream {
        let (s, peer) = connection().await;
        let peer = socket2::Socket::from(peer);
        peer.set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        s
    }

    /// Reads `peer` to its end on a thread, after `delay`; an error if the end does not come
    /// within 5 s.
    fn read_to_end_after(
        mut peer: std::net::TcpStream,
        delay: Duration,
    ) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            peer.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).map(|_| got)
        })
    }

    /// `write_last`: the peer reads the whole answer and then the end of the connection while the
    /// writer still holds its socket (the FIN went with the answer, not at the close), for a small
    /// answer (one non-blocking send) and a larger one (through the driver), and the head is given
    /// back with its own bytes.
    #[test]
    fn a_last_answer_is_followed_by_the_end_before_the_close() {
        on_each_driver(|driver| async move {
            for part in [0, 1, JOIN_MAX, JOIN_MAX + 1, 3 << 20] {
                let (mut s, peer) = connection().await;
                let reader = read_to_end_after(peer, Duration::ZERO);
                let want_head = bytes(200, 8);
                let (mut head, mut body) = (want_head.clone(), bytes(part + 9, 9));
                let range = 9..9 + part;
                let mut want = want_head.clone();
                want.extend_from_slice(&body[range.clone()]);
                let limit = Duration::from_secs(10);
                let done = write_last(&mut s, &mut head, &mut body, range, limit).await;
                assert!(done.is_ok(), "{driver:?}, part {part}: {done:?}");
                assert!(
                    head == want_head,
                    "{driver:?}, part {part}: head not given back"
                );
                // `s` is still open: the peer's read ends only if the FIN came with the answer.
                let got = reader.join().unwrap();
                let got = got.unwrap_or_else(|e| panic!("{driver:?}, part {part}: no end: {e}"));
                assert!(
                    got == want,
                    "{driver:?}, part {part}: {} of {} bytes",
                    got.len(),
                    want.len()
                );
                drop(s);
            }
        });
    }

    /// `write_last` when the socket takes nothing at once (its send buffer full, the peer not
    /// reading yet): the rest goes through the driver, and the peer still reads everything in
    /// order and then the end, before the writer's close.
    #[test]
    fn a_last_answer_behind_a_full_send_buffer_is_finished_through_the_driver() {
        on_each_driver(|driver| async move {
            let (mut s, peer) = connection().await;
            let mut filler = Vec::new();
            let chunk = bytes(65536, 10);
            loop {
                let n = send_now(&s, &chunk).unwrap();
                filler.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
            let reader = read_to_end_after(peer, Duration::from_millis(100));
            let want_head = bytes(300, 11);
            let (mut head, mut body) = (want_head.clone(), bytes(2000, 12));
            let limit = Duration::from_secs(10);
            let done = write_last(&mut s, &mut head, &mut body, 0..2000, limit).await;
            assert!(done.is_ok(), "{driver:?}: {done:?}");
            assert!(head == want_head, "{driver:?}: head not given back");
            let mut want = filler;
            want.extend_from_slice(&want_head);
            want.extend_from_slice(&body);
            let got = reader.join().unwrap();
            let got = got.unwrap_or_else(|e| panic!("{driver:?}: no end: {e}"));
            assert!(
                got == want,
                "{driver:?}: {} of {} bytes",
                got.len(),
                want.len()
            );
            drop(s);
        });
    }

    /// `write_last` to a peer that reset the connection: an error, and the head given back with
    /// its own bytes (not the body part joined behind them).
    #[test]
    fn a_last_answer_to_a_reset_peer_fails_and_gives_the_head_back() {
        on_each_driver(|driver| async move {
            let mut s = reset_connection().await;
            let want_head = bytes(100, 13);
            let (mut head, mut body) = (want_head.clone(), bytes(50, 14));
            let limit = Duration::from_secs(10);
            let done = write_last(&mut s, &mut head, &mut body, 5..15, limit).await;
            assert!(
                done.is_err(),
                "{driver:?}: a write to a reset peer succeeded"
            );
            assert!(
                head == want_head,
                "{driver:?}: head not given back as it was"
            );
        });
    }

    /// A joined write that fails (the peer reset the connection) is reported as "nothing
    /// written" and gives the head back with its own bytes, without the body part behind them.
    #[test]
    fn a_failed_joined_write_gives_the_head_back_as_it_was() {
        on_each_driver(|driver| async move {
            let mut s = reset_connection().await;
            let want_head = bytes(100, 6);
            let (mut head, mut body) = (want_head.clone(), bytes(50, 7));
            let limit = Duration::from_secs(10);
            let done = send_request(&mut s, &mut head, &mut body, 5..15, limit).await;
            assert!(
                matches!(done, Err(Unsent::Nothing(_))),
                "{driver:?}: {done:?}"
            );
            assert!(head == want_head, "{driver:?}: the head came back changed");
        });
    }

    /// After a short first write: the rest of the head and all of the body part, or none of the
    /// head and the body part's unwritten end.
    #[test]
    fn a_short_write_leaves_the_unwritten_bytes_in_order() {
        assert_eq!(left_after(0, 10, 5..9), (0..10, 5..9));
        assert_eq!(left_after(7, 10, 5..9), (7..10, 5..9));
        assert_eq!(left_after(10, 10, 5..9), (10..10, 5..9));
        assert_eq!(left_after(12, 10, 5..9), (10..10, 7..9));
        assert_eq!(left_after(3, 0, 5..9), (0..0, 8..9));
        // Every split of a 6-byte head and a 4-byte part: head and part together, unwritten.
        for written in 1..10 {
            let (h, b) = left_after(written, 6, 20..24);
            assert_eq!(h.len() + b.len(), 10 - written, "written {written}");
            assert_eq!(b.end, 24);
            assert!(h.is_empty() || b == (20..24));
        }
    }
}
