//! A body of known length moved between two plain connections inside the kernel: splice(2) from
//! the sending side's socket (`from`: the member's for a response, the client's for an upload)
//! into a pipe, then from the pipe to the other side's socket (`to`), so that no body byte is
//! copied into or out of user space.
//!
//! Owns: the pipes (each worker thread keeps a few empty ones, and for a second after the kernel
//! gave it a pipe too small to use, over the user's pipe quota, makes none) and the
//! fill-and-drain loop. Must never: take from `from` more than the caller's count (the body's
//! remaining length, which `http::framing::BodyTracker` decides: a byte of the member's next
//! response, or of the client's next request, must not enter the pipe), keep a pipe that may
//! still hold bytes (after any failure it is closed, not kept), block the worker, spin on it, or
//! keep it past a turn's end once `coop` says to give way (a body that never meets `EAGAIN`
//! would keep it to its end).
//! Every splice is non-blocking: both sockets are switched to `O_NONBLOCK` first, which compio's
//! operations on them do not mind (its io_uring receives and sends take their non-blocking
//! attempt from their own flags and wait for readiness on `EAGAIN`; under epoll the sockets are
//! non-blocking already). Every wait is a readiness poll bounded like the copy path's: a fill (up
//! to a pipe's worth from `from`, ending at its first bytes, like one read) by `from`'s limit, a
//! drain (that pipe's worth to `to`) by `to`'s for each 64 KiB it takes, as one write of the
//! copy path. A fill woken a few times without a byte ends the body as an error: an urgent
//! (out-of-band) byte stops a socket-to-pipe splice while the socket stays readable. Where the
//! kernel refuses splice itself (a seccomp filter's `EPERM`), the body is copied instead and the
//! thread does not try again. io_uring's own splice operation is not used: the kernel always
//! hands it to a worker thread of its own.
//!
//! A splice into a socket whose peer is gone raises SIGPIPE (it cannot be told `MSG_NOSIGNAL`);
//! the Rust runtime ignores SIGPIPE before `main`, and ringlb never restores it.
//!
//! An urgent byte ends the body where the copy path would carry on: the copy path's receive
//! drops it from the stream (no `SO_OOBINLINE`), a splice stops at its mark. Both sides still
//! agree on every byte moved, so the body is cut, not desynchronised: a member's urgent byte cuts
//! its response, a client's its upload (after at most its `body_timeout` wait, when the urgent
//! byte is the last one sent and the socket never reads as readable).
//!
//! Invariant: what `Moved` reports is exact: `received` bytes left `from`'s socket and `sent` of
//! them reached `to`'s, in order, with nothing added.

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::driver::op::{Interest, PollOnce};
use compio::driver::ToSharedFd;
use compio::net::TcpStream;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use crate::coop;
use crate::deadline;
use crate::io::IoFail;

/// Bodies with at least this much left after the bytes that came with the head are spliced;
/// smaller ones are copied (a pipe's turn costs two system calls more than one copy).
pub const FROM: u64 = 64 * 1024;
/// Empty pipes a worker thread keeps for the next body.
pub const KEEP: usize = 8;
/// The size each pipe is asked for (the kernel's default is 64 KiB with 4 KiB pages). A turn (one
/// fill, one drain) costs two system calls and often a readiness wait; with 64 KiB pipes a 1 MiB
/// body took 37 system calls and as much CPU as copying it, with 256 KiB pipes 16 and a third
/// less CPU (docs/performance.md, "Uploads by splice"). It bounds the page references one body
/// holds at once, as `http::exchange`'s 64 KiB read bounds a copied body's bytes.
const PIPE_SIZE: usize = 256 * 1024;
/// What one write of the copy path carries at most: a drain's receiver has the limit for each
/// this much it takes.
const WRITE_UNIT: usize = crate::io::BODY_UNIT;
/// Pipes smaller than this are not used: the kernel gives two pages to a user over its pipe
/// quota (`pipe-user-pages-soft`), and a 1 MiB body through 8 KiB takes 128 turns, each two
/// system calls and often a wait, where copying it takes about 7 under io_uring (32 under
/// epoll); the body is copied instead. (With 4 KiB pages: where pages are 64 KiB, two of them
/// are a usable pipe, and are used.)
const SMALLEST: usize = 64 * 1024;
/// After a pipe under `SMALLEST` (the user is over its pipe quota), no new pipe is made for this
/// long: until then a body that finds no spare one is copied at once, without the five system
/// calls of making, sizing and closing a pipe it would refuse.
const OVER_QUOTA_FOR: Duration = Duration::from_secs(1);
/// Waits in one fill after which a sending socket that is readable but gives nothing is given up
/// on (the first wait is the ordinary one, for bytes not there yet).
const IDLE_WAKES: u32 = 3;

/// A pipe known to be empty while it is not in use.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it holds at most (what one turn moves at most: it bounds the page references one
    /// body pins, as the copy path's buffer bounds its bytes).
    size: usize,
}

thread_local! {
    static SPARE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    /// The kernel refused a splice on this thread (see `refused`): it is not tried again.
    static REFUSED: Cell<bool> = const { Cell::new(false) };
    /// When this thread last got a pipe under `SMALLEST` (see `OVER_QUOTA_FOR`).
    static SMALL_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How a body's splice ended.
#[derive(Debug)]
pub enum End {
    /// All of it went through.
    Whole,
    /// The sending side closed, failed or took too long; `Moved` says how far the body got.
    FromBroken(IoFail),
    /// The receiving side closed, failed or took too long; `Moved` says how far the body got.
    ToBroken(IoFail),
}

/// How far a body got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Bytes taken from `from`.
    pub received: u64,
    /// Bytes `to`'s socket took.
    pub sent: u64,
}

/// Prepares to splice between two connections (either way round): a pipe, and both sockets
/// non-blocking. `None`: not possible now (no descriptor left, or the user is over its pipe
/// quota and got one of the kernel's smallest pipes, within `OVER_QUOTA_FOR`): the caller copies
/// instead, having lost nothing.
pub fn ready(a: &TcpStream, b: &TcpStream) -> Option<Splicer> {
    if REFUSED.with(Cell::get) {
        return None;
    }
    let pipe = SPARE.with(|s| s.borrow_mut().pop()).or_else(fresh_pipe)?;
    if pipe.size < SMALLEST {
        SMALL_AT.with(|t| t.set(Some(Instant::now())));
        return None;
    }
    let splicer = Splicer { pipe };
    let switched =
        rustix::io::ioctl_fionbio(a, true).and_then(|()| rustix::io::ioctl_fionbio(b, true));
    match switched {
        Ok(()) => Some(splicer),
        Err(_) => {
            splicer.keep();
            None
        }
    }
}

/// A new pipe, unless this thread got a small one less than `OVER_QUOTA_FOR` ago.
fn fresh_pipe() -> Option<Pipe> {
    let over_quota = SMALL_AT
        .with(Cell::get)
        .is_some_and(|at| at.elapsed() < OVER_QUOTA_FOR);
    if over_quota {
        return None;
    }
    new_pipe().ok()
}

fn new_pipe() -> std::io::Result<Pipe> {
    use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, PipeFlags};
    let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // `PIPE_SIZE`, or what the kernel gave when it refuses it (its default, 16 pages, which
    // still works, in more turns; two for a user over its pipe quota, `pipe-user-pages-soft`,
    // which `ready` does not use).
    let _ = fcntl_setpipe_size(&write, PIPE_SIZE);
    let size = fcntl_getpipe_size(&write)?;
    Ok(Pipe { read, write, size })
}

/// A pipe taken for one body.
pub struct Splicer {
    pipe: Pipe,
}

impl Splicer {
    /// Moves `len` bytes from `from` to `to`, a pipe's worth at a time: each turn fills the pipe
    /// with what `from` has (the wait for it bounded by `from_limit`, like one read of the copy
    /// path) and drains it to `to` (bounded by `to_limit` for each `WRITE_UNIT`, like one write
    /// of the copy path). The pipe is kept for the next body only when all of them went through.
    /// `None`: the kernel refuses splice here and nothing moved; the caller copies the body
    /// instead (and this thread does not try splice again).
    pub async fn run(
        self,
        from: &TcpStream,
        to: &TcpStream,
        len: u64,
        from_limit: Duration,
        to_limit: Duration,
    ) -> Option<(Moved, End)> {
        let mut moved = Moved::default();
        let mut left = len;
        while left > 0 {
            let want = left.min(self.pipe.size as u64) as usize;
            let n = match fill(&self.pipe, from, want, from_limit).await {
                Ok(n) => n,
                Err(IoFail::Error(e)) if moved.received == 0 && refused(&e) => {
                    REFUSED.with(|r| r.set(true));
                    tracing::warn!(error = %e, "splice is refused here: large bodies are copied");
                    return None;
                }
                Err(e) => return Some((moved, End::FromBroken(e))),
            };
            moved.received += n as u64;
            left -= n as u64;
            if let Err(e) = drain(&self.pipe, to, n, to_limit, &mut moved).await {
                return Some((moved, End::ToBroken(e)));
            }
            coop::count(n).await;
        }
        self.keep();
        Some((moved, End::Whole))
    }

    /// Keeps the (empty) pipe for the next body, if the thread has room for it.
    fn keep(self) {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(self.pipe);
            }
        });
    }
}

/// Whether the kernel refuses the call as such (a seccomp filter answering `EPERM`, a kernel or
/// socket without splice), rather than this connection failing.
fn refused(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        [Errno::NOSYS, Errno::PERM, Errno::INVAL, Errno::OPNOTSUPP]
            .iter()
            .any(|r| r.raw_os_error() == code)
    })
}

/// Splices at least one and at most `want` bytes from `from` into the (empty) pipe.
async fn fill(
    pipe: &Pipe,
    from: &TcpStream,
    want: usize,
    limit: Duration,
) -> Result<usize, IoFail> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut until = None;
    let mut wakes = 0;
    loop {
        match rustix::pipe::splice(from, None, &pipe.write, None, want, flags) {
            Ok(0) => return Err(IoFail::Closed),
            Ok(n) => return Ok(n),
            Err(Errno::AGAIN) => {
                // Nothing there yet (the first time), or readable yet nothing to move: the
                // urgent-data mark (see the header).
                wakes += 1;
                if wakes > IDLE_WAKES {
                    return Err(IoFail::Error(std::io::Error::other(
                        "a socket is readable but gives nothing (urgent data?)",
                    )));
                }
                wait(from, Interest::Readable, &mut until, limit).await?;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(IoFail::Error(e.into())),
        }
    }
}

/// Splices the pipe's `n` bytes to `to`, counting each step in `moved.sent`. The receiver has
/// `limit` for each `WRITE_UNIT` it takes, as for one write of the copy path, not for the whole
/// pipe's worth.
async fn drain(
    pipe: &Pipe,
    to: &TcpStream,
    mut n: usize,
    limit: Duration,
    moved: &mut Moved,
) -> Result<(), IoFail> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut until = None;
    let mut taken = 0;
    while n > 0 {
        match rustix::pipe::splice(&pipe.read, None, to, None, n, flags) {
            // The pipe holds `n` bytes: nothing taken and no error is a socket that broke.
            Ok(0) => return Err(IoFail::Closed),
            Ok(k) => {
                n -= k;
                moved.sent += k as u64;
                taken += k;
                if taken >= WRITE_UNIT {
                    taken = 0;
                    until = None;
                }
            }
            Err(Errno::AGAIN) => wait(to, Interest::Writable, &mut until, limit).await?,
            Err(Errno::INTR) => {}
            Err(e) => return Err(IoFail::Error(e.into())),
        }
    }
    Ok(())
}

/// Waits until `s` is ready for `interest`, at most until `until`, which the first wait of a
/// fill or drain sets to `limit` from now.
async fn wait(
    s: &TcpStream,
    interest: Interest,
    until: &mut Option<Instant>,
    limit: Duration,
) -> Result<(), IoFail> {
    let until = *until.get_or_insert_with(|| Instant::now() + limit);
    let left = deadline::left(until).ok_or(IoFail::Timeout)?;
    let poll = PollOnce::new(s.to_shared_fd(), interest);
    match deadline::timeout(left, compio::runtime::submit(poll)).await {
        Ok(BufResult(Ok(_), _)) => Ok(()),
        Ok(BufResult(Err(e), _)) => Err(IoFail::Error(e)),
        Err(_) => Err(IoFail::Timeout),
    }
}

#[cfg(test)]
mod tests {
    //! The splicer between loopback sockets on a compio runtime of its own, the member and the
    //! client played by plain threads.
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::config::Driver;
    use crate::test_rng::Rng;

    /// Runs `test` on a compio runtime of `driver`, with this thread's timer wheel turning.
    fn on_runtime<F: std::future::Future>(driver: Driver, test: F) -> F::Output {
        let rt = crate::runtime::build(driver).unwrap();
        rt.block_on(async {
            compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
            test.await
        })
    }

    /// A client that reads until the proxy's side closes; how many bytes it got. Every test here
    /// ends the proxy's side by dropping it, so a read that fails (a reset) fails the test.
    fn read_all(mut s: std::net::TcpStream) -> usize {
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("the proxy's side ends with a clean close");
        got.len()
    }

    /// Connects a compio stream to a thread that runs `peer` on the other end.
    async fn pair<T: Send + 'static>(
        peer: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
    ) -> (TcpStream, std::thread::JoinHandle<T>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || peer(listener.accept().unwrap().0));
        (TcpStream::connect(addr).await.unwrap(), t)
    }

    /// A member that writes `body` then `next` in pieces of random sizes; a client that reads
    /// until the proxy's side closes. Returns what was moved, what the client got and what was
    /// left unread on the member's connection.
    fn splice_case(
        driver: Driver,
        body: Vec<u8>,
        next: Vec<u8>,
        seed: u64,
    ) -> (Moved, Vec<u8>, Vec<u8>) {
        on_runtime(driver, async move {
            let len = body.len() as u64;
            let sent: Vec<u8> = body.iter().chain(next.iter()).copied().collect();
            let (member, m) = pair(move |mut s| {
                let mut rng = Rng(seed);
                let mut at = 0;
                while at < sent.len() {
                    let n = (1 + rng.below(200_000)).min(sent.len() - at);
                    s.write_all(&sent[at..at + n]).unwrap();
                    at += n;
                }
                // Keep the connection open until the splicer is done with it.
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            })
            .await;
            let (client, c) = pair(|mut s| {
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                got
            })
            .await;
            let splicer = ready(&client, &member).expect("a pipe");
            let limit = Duration::from_secs(5);
            let (moved, end) = splicer
                .run(&member, &client, len, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::Whole), "{end:?}");
            // What the member sent after the body must still be on its connection.
            let mut left = Vec::new();
            let mut buf = [0u8; 4096];
            while left.len() < next.len() {
                wait(&member, Interest::Readable, &mut None, limit)
                    .await
                    .unwrap();
                match rustix::net::recv(&member, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
                    Ok((n, _)) if n > 0 => left.extend_from_slice(&buf[..n]),
                    Ok(_) => break,
                    Err(Errno::AGAIN) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            drop(client);
            drop(member);
            let got = c.join().unwrap();
            m.join().unwrap();
            (moved, got, left)
        })
    }

    #[test]
    fn exactly_the_body_moves_and_what_follows_it_stays_on_the_member_connection() {
        let mut rng = Rng(0x005e_ed50_11ce);
        for case in 0..16 {
            let driver = [Driver::IoUring, Driver::Epoll][case % 2];
            let len = 1 + rng.below(600_000);
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + case) as u8).collect();
            let next = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..rng.below(38)].to_vec();
            let (moved, got, left) = splice_case(driver, body.clone(), next.clone(), rng.next());
            let whole = Moved {
                received: len as u64,
                sent: len as u64,
            };
            assert_eq!(moved, whole, "case {case} ({driver:?})");
            assert!(got == body, "case {case}: the client got other bytes");
            assert_eq!(left, next, "case {case}");
        }
    }

    #[test]
    fn a_member_that_closes_early_is_reported_with_what_got_through() {
        on_runtime(Driver::Auto, async {
            let (member, m) = pair(|mut s| s.write_all(&[b'x'; 100_000]).unwrap()).await;
            let (client, c) = pair(read_all).await;
            let limit = Duration::from_secs(5);
            let splicer = ready(&client, &member).unwrap();
            let (moved, end) = splicer
                .run(&member, &client, 200_000, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::FromBroken(IoFail::Closed)), "{end:?}");
            assert_eq!(
                moved,
                Moved {
                    received: 100_000,
                    sent: 100_000
                }
            );
            drop(client);
            assert_eq!(c.join().unwrap(), 100_000);
            m.join().unwrap();
        });
    }

    #[test]
    fn a_member_s_urgent_byte_ends_the_body_instead_of_spinning() {
        on_runtime(Driver::IoUring, async {
            let (member, m) = pair(|mut s| {
                s.write_all(&[b'a'; 50_000]).unwrap();
                socket2::SockRef::from(&s).send_out_of_band(b"!").unwrap();
                s.write_all(&[b'b'; 50_000]).unwrap();
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            })
            .await;
            let (client, c) = pair(read_all).await;
            let limit = Duration::from_secs(5);
            let splicer = ready(&client, &member).unwrap();
            let started = std::time::Instant::now();
            let (moved, end) = splicer
                .run(&member, &client, 100_001, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::FromBroken(IoFail::Error(_))), "{end:?}");
            assert!(
                started.elapsed() < limit,
                "it gave up without waiting out the limit"
            );
            assert_eq!(
                moved.received, 50_000,
                "the bytes before the urgent one went"
            );
            drop(client);
            drop(member);
            assert_eq!(c.join().unwrap(), 50_000);
            m.join().unwrap();
        });
    }

    #[test]
    fn a_silent_member_times_out() {
        on_runtime(Driver::Auto, async {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (member, m) = pair(move |_s| {
                let _ = rx.recv();
            })
            .await;
            let (client, c) = pair(read_all).await;
            let splicer = ready(&client, &member).unwrap();
            let started = std::time::Instant::now();
            let limit = Duration::from_millis(200);
            let (moved, end) = splicer
                .run(&member, &client, 1000, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::FromBroken(IoFail::Timeout)), "{end:?}");
            assert!(started.elapsed() >= limit);
            assert_eq!(moved, Moved::default());
            tx.send(()).unwrap();
            drop(client);
            assert_eq!(c.join().unwrap(), 0, "no body byte reached the client");
            m.join().unwrap();
        });
    }

    #[test]
    fn a_receiver_that_stops_reading_times_out_as_the_receiving_side() {
        // The upload way round: the "member" sends, the "client" (here: the receiver) reads
        // nothing, so the socket buffers fill and a drain waits out its limit.
        on_runtime(Driver::Auto, async {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (from, f) = pair(|mut s| {
                let _ = s.write_all(&[b'u'; 8 << 20]);
            })
            .await;
            let (to, t) = pair(move |_s| {
                let _ = rx.recv();
            })
            .await;
            let splicer = ready(&to, &from).unwrap();
            let limit = Duration::from_millis(300);
            let (moved, end) = splicer
                .run(&from, &to, 8 << 20, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::ToBroken(IoFail::Timeout)), "{end:?}");
            assert!(
                moved.sent < moved.received,
                "{moved:?}: bytes were left in the pipe"
            );
            assert!(
                moved.sent > 0,
                "{moved:?}: the receiver's buffers took some first"
            );
            tx.send(()).unwrap();
            drop((from, to));
            f.join().unwrap();
            t.join().unwrap();
        });
    }

    #[test]
    fn a_slow_receiver_has_the_limit_for_each_64_kib_not_for_the_whole_pipe() {
        // Small socket buffers, so that the receiver's pace is the drain's: at most 16 KiB every
        // 50 ms (64 KiB took about 450 ms here). A limit of 900 ms is twice that for each 64 KiB,
        // and half what a 256 KiB pipe's worth at once would need.
        on_runtime(Driver::Auto, async {
            const LEN: usize = 512 * 1024;
            let (from, f) = pair(|mut s| {
                s.write_all(&[b's'; LEN]).unwrap();
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            })
            .await;
            let (to, t) = pair(|s| {
                socket2::SockRef::from(&s)
                    .set_recv_buffer_size(16 * 1024)
                    .unwrap();
                let mut s = s;
                let (mut got, mut chunk) = (0, vec![0u8; 16 * 1024]);
                while got < LEN {
                    std::thread::sleep(Duration::from_millis(50));
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            })
            .await;
            socket2::SockRef::from(&to)
                .set_send_buffer_size(16 * 1024)
                .unwrap();
            let splicer = ready(&to, &from).unwrap();
            let limit = Duration::from_millis(900);
            let (moved, end) = splicer
                .run(&from, &to, LEN as u64, limit, limit)
                .await
                .expect("splice works here");
            assert!(matches!(end, End::Whole), "{end:?} after {moved:?}");
            drop((from, to));
            assert_eq!(t.join().unwrap(), LEN);
            f.join().unwrap();
        });
    }

    #[test]
    fn a_new_pipe_holds_pipe_size() {
        // As the suite runs (a user well under its pipe quota, or with `CAP_SYS_ADMIN` or
        // `CAP_SYS_RESOURCE`, and `pipe-max-size` at its default of 1 MiB): elsewhere the kernel
        // refuses the size, and this test says so.
        let pipe = new_pipe().unwrap();
        assert_eq!(pipe.size, PIPE_SIZE);
    }

    /// Puts among this thread's spare pipes what a user over its pipe quota gets from the
    /// kernel: a pipe of two pages. (Shrinking one needs no privilege, and fills no quota that
    /// other threads and processes share.)
    fn spare_two_page_pipe() {
        let pipe = new_pipe().unwrap();
        rustix::pipe::fcntl_setpipe_size(&pipe.write, 8192).unwrap();
        let size = rustix::pipe::fcntl_getpipe_size(&pipe.write).unwrap();
        assert_eq!(size, 8192);
        SPARE.with(|s| s.borrow_mut().push(Pipe { size, ..pipe }));
    }

    #[test]
    fn a_two_page_pipe_is_not_used_the_body_is_copied() {
        spare_two_page_pipe();
        let splicer = on_runtime(Driver::Auto, async {
            let (a, ta) = pair(|_s| ()).await;
            let (b, tb) = pair(|_s| ()).await;
            let splicer = ready(&a, &b).map(|_| ());
            drop((a, b));
            ta.join().unwrap();
            tb.join().unwrap();
            splicer
        });
        assert!(splicer.is_none(), "a two-page pipe was taken for a body");
        assert!(
            SPARE.with(|s| s.borrow().is_empty()),
            "and it was closed, not kept for the next"
        );
    }

    #[test]
    fn after_a_small_pipe_no_new_one_is_made_for_a_second() {
        // A two-page pipe (as over the quota) is refused, and so is the next body's attempt,
        // without a new pipe (here one would be a full-size one: this test's user has room).
        spare_two_page_pipe();
        let tries = on_runtime(Driver::Auto, async {
            let (a, ta) = pair(|_s| ()).await;
            let (b, tb) = pair(|_s| ()).await;
            let mut tries = Vec::new();
            // The small pipe; a body within the second; one that finds a kept full-size pipe
            // within it; one after it (the mark made older).
            tries.push(ready(&a, &b).is_some());
            tries.push(ready(&a, &b).is_some());
            SPARE.with(|s| s.borrow_mut().push(new_pipe().unwrap()));
            tries.push(ready(&a, &b).is_some());
            let long_ago = Instant::now().checked_sub(OVER_QUOTA_FOR);
            SMALL_AT.with(|t| t.set(long_ago));
            tries.push(ready(&a, &b).is_some());
            drop((a, b));
            ta.join().unwrap();
            tb.join().unwrap();
            tries
        });
        assert_eq!(
            tries,
            [false, false, true, true],
            "small pipe, within a second of it, a kept pipe within it, a second later"
        );
    }

    #[test]
    fn only_the_kernel_refusing_splice_itself_counts_as_refused() {
        let err = |e: Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        for e in [Errno::NOSYS, Errno::PERM, Errno::INVAL, Errno::OPNOTSUPP] {
            assert!(refused(&err(e)), "{e:?}");
        }
        for e in [Errno::CONNRESET, Errno::PIPE, Errno::AGAIN, Errno::NOMEM] {
            assert!(!refused(&err(e)), "{e:?}");
        }
        assert!(!refused(&std::io::Error::other("not an errno")));
    }
}
