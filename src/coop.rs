//! Taking turns on a worker's thread. A worker runs all of its connections as tasks on one
//! thread, and a task runs until it awaits something that is not ready. Some waits are always
//! ready: under the epoll driver a receive whose socket holds bytes completes at once, without
//! the task giving way, and a splice (`splice`) goes on for as long as neither socket says
//! `EAGAIN`. A sender that always has bytes queued, relayed to a receiver that always takes them,
//! would then keep the thread for a whole body (any length): the worker's other connections, its
//! timers and its heartbeat (which systemd's watchdog reads) would wait until it ended. So would
//! a client's pipelined requests that ringlb answers itself (a 404, a redirect), whose sends
//! complete at once under epoll.
//!
//! Owns: the thread's count of what was received since a task last gave way here (the bytes of each
//! socket read through `io::read_more`, each splice turn's, and a request answered on a connection
//! that stays open, each counting at least `LEAST`: a proxied request's reads count as well, so
//! such requests give way about every 512), and giving way (the task is put back at the end of the
//! ready tasks: the others run first, and the runtime polls its driver at least every 61 task runs,
//! compio's `event_interval`). Must never: hold or change anything across the turn it gives up (it
//! is a plain re-schedule: no timer, no I/O). What is counted goes on for at most one read, one
//! splice turn or one request past `EVERY` before its task gives way. `io::read_more` is every read
//! of a client's, a member's, the admin listener's and a health check's socket, a TLS connection's
//! ciphertext included (so records that yield no plaintext count too); the tunnel's non-blocking
//! receives are not counted (it waits for readiness after a few turns of its own), nor the idle
//! wait's one receive per request (the request it brings is; a receive that brought only empty
//! lines is, by `conn::keep_serving`). Under io_uring a receive always waits for its completion, so
//! there the turns only cost one more poll of a task every `EVERY` bytes.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A task gives way after its thread received this many bytes without one doing so.
pub const EVERY: u64 = 1 << 20;
/// What one receive counts at least, so that a run of small ones (pipelined requests) also gives
/// way, after `EVERY / LEAST` of them.
const LEAST: u64 = 1024;

thread_local! {
    static RECEIVED: Cell<u64> = const { Cell::new(0) };
}

/// Counts `n` bytes received (at least `LEAST`); `true` when the caller should give way now
/// (`give_way`): the thread has received `EVERY` bytes since the last one did.
pub fn due(n: usize) -> bool {
    RECEIVED.with(|r| {
        let total = r.get() + (n as u64).max(LEAST);
        let due = total >= EVERY;
        r.set(if due { 0 } else { total });
        due
    })
}

/// Counts `n` bytes received (`due`) and gives way (`give_way`) when that is due: what each
/// counted place calls after its read, splice turn or answered request.
pub async fn count(n: usize) {
    if due(n) {
        give_way().await;
    }
}

/// Gives the thread's other tasks (and its driver: completions, timers) a turn before the caller
/// goes on.
pub fn give_way() -> GiveWay {
    GiveWay { yielded: false }
}

/// The future of `give_way`: pending once, having woken itself.
pub struct GiveWay {
    yielded: bool,
}

impl Future for GiveWay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    //! A relay whose sockets never make it wait: the sender's bytes are all queued in the
    //! receiving socket before it starts, and its receiver's buffer holds all of them. Both
    //! buffers are forced past `rmem_max`/`wmem_max` (`SO_RCVBUFFORCE`, which needs
    //! `CAP_NET_ADMIN`, as the suite runs: elsewhere these tests fail, and say why). A task
    //! beside it counts the turns it gets while the relay runs.
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::config::Driver;

    const LEN: usize = 4 << 20;
    /// Socket buffers: room for `LEN` with the kernel's overhead per packet.
    const BUFFER: usize = 4 * LEN;

    fn force_buffers(s: &socket2::Socket) {
        let fd = std::os::fd::AsFd::as_fd(s);
        rustix::net::sockopt::set_socket_recv_buffer_size_force(fd, BUFFER)
            .and_then(|()| rustix::net::sockopt::set_socket_send_buffer_size_force(fd, BUFFER))
            .expect("SO_RCVBUFFORCE needs CAP_NET_ADMIN (the suite runs as root)");
    }

    /// A connection whose peer has already sent `LEN` bytes, all waiting in its receive buffer;
    /// the peer stays until the returned stream is closed.
    fn prefilled() -> (std::net::TcpStream, std::thread::JoinHandle<()>) {
        let (ours, mut peer) = connected();
        peer.write_all(&[b'b'; LEN]).unwrap();
        let t = std::thread::spawn(move || {
            // Keeps the connection open without a FIN until the test's side closes.
            let _ = peer.read(&mut [0u8; 1]);
        });
        (ours, t)
    }

    /// A connection to a peer that reads everything until the test's side closes: what it got.
    /// Its receive buffer (forced) holds `LEN`, so that sending to it never waits, however late
    /// the peer's thread runs.
    fn sink() -> (std::net::TcpStream, std::thread::JoinHandle<usize>) {
        let (ours, mut peer) = connected();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got.len()
        });
        (ours, t)
    }

    /// Both ends of a loopback connection with forced buffers on each side: ours non-blocking
    /// (for `compio`, on the runtime), the peer's a plain blocking one.
    fn connected() -> (std::net::TcpStream, std::net::TcpStream) {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        force_buffers(&listener);
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(1).unwrap();
        let listener: TcpListener = listener.into();
        let ours = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        force_buffers(&ours);
        ours.connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let peer = listener.accept().unwrap().0;
        ours.set_nonblocking(true).unwrap();
        (ours.into(), peer)
    }

    fn compio(s: std::net::TcpStream) -> compio::net::TcpStream {
        compio::net::TcpStream::from_std(s).unwrap()
    }

    /// Runs `relay` as a spawned task (as connections run) on a runtime of `driver`, beside a
    /// task that counts its turns until the relay is done; returns the relay's result and the
    /// turns the other task had before it ended.
    fn beside_a_counter<F, T>(driver: Driver, relay: F) -> (T, u32)
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        let rt = crate::runtime::build(driver).unwrap();
        rt.block_on(async move {
            compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
            let done = Rc::new(Cell::new(false));
            let turns = Rc::new(Cell::new(0u32));
            let (d, n) = (done.clone(), turns.clone());
            let counter = compio::runtime::spawn(async move {
                while !d.get() {
                    n.set(n.get() + 1);
                    give_way().await;
                }
            });
            let (d, n) = (done.clone(), turns.clone());
            let relay = compio::runtime::spawn(async move {
                // Counted from the relay's first poll: the counter may have run once before.
                n.set(0);
                let out = relay.await;
                d.set(true);
                (out, n.get())
            });
            let out = relay.await.unwrap();
            counter.await.unwrap();
            out
        })
    }

    #[test]
    fn small_reads_and_requests_count_a_kib_each_and_large_ones_their_bytes() {
        // A test's thread of its own: the count starts at 0.
        let falls: Vec<usize> = (1..=3 * 1024).filter(|_| due(0)).collect();
        assert_eq!(falls, [1024, 2048, 3072], "every 1024th request gives way");
        assert!(!due(EVERY as usize - 2048), "2 KiB short of a MiB");
        assert!(!due(1), "a small read counts 1 KiB");
        assert!(due(1024), "the read that makes the MiB");
        assert!(
            due(5 << 20),
            "a read past the MiB is due at once, and the count starts over"
        );
        assert!(!due(1));
    }

    #[test]
    fn a_read_loop_whose_socket_always_holds_bytes_gives_way_every_mib() {
        // Under epoll each of these receives completes at once; without the count the counter
        // gets no turn until all 4 MiB are read. `io::read_more` is the socket read under every
        // other (`stream`'s plain and TLS reads, the admin listener's, the health checks').
        let (from, peer) = prefilled();
        let (got, turns) = beside_a_counter(Driver::Epoll, async move {
            let mut s = compio(from);
            let (mut got, mut buf) = (0, Vec::new());
            while got < LEN {
                buf.clear();
                got += crate::io::read_more(&mut s, &mut buf, 64 * 1024, Duration::from_secs(5))
                    .await
                    .unwrap();
            }
            got
        });
        peer.join().unwrap();
        assert_eq!(got, LEN);
        assert!(turns >= 3, "the other task had {turns} turns during 4 MiB");
    }

    #[test]
    fn a_splice_that_never_meets_eagain_gives_way_every_mib() {
        for driver in [Driver::Auto, Driver::Epoll] {
            let (from, peer) = prefilled();
            let (to, receiver) = sink();
            let (end, turns) = beside_a_counter(driver, async move {
                let (from, to) = (compio(from), compio(to));
                let splicer = crate::splice::ready(&from, &to).unwrap();
                let limit = Duration::from_secs(5);
                let (moved, end) = splicer
                    .run(&from, &to, LEN as u64, limit, limit)
                    .await
                    .expect("splice works here");
                drop((from, to));
                (moved.sent, format!("{end:?}"))
            });
            assert_eq!(end, (LEN as u64, "Whole".to_string()), "{driver:?}");
            assert_eq!(receiver.join().unwrap(), LEN, "{driver:?}");
            peer.join().unwrap();
            assert!(
                turns >= 3,
                "{driver:?}: the other task had {turns} turns during 4 MiB"
            );
        }
    }
}
