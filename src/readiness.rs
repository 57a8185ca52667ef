//! A plain client connection's readability, watched by one poll armed for the connection's life
//! on io_uring (a multishot `POLL_ADD`) instead of one poll armed for each request; and the
//! one-shot poll (`poll_once`) of a connection's first polling wait and of every TLS wait.
//!
//! With one poll per request, every idle wait submitted an operation (and compio kept, hashed
//! and dropped its bookkeeping); a multishot poll stays armed and posts one completion each time
//! the socket's wait queue is woken for reading. Its completions are coalesced here into one flag
//! (a poll says only "something came"; it takes nothing), so a long upload cannot pile them up.
//! A connection's first wait that polls (its very first usually receives without one) still
//! polls once, and so does the next while that one poll has not ended (a wait cut short to lend
//! the connection's buffers, or by a stop): the kept poll pays off over a connection's
//! requests, and a connection that idles after its first (and parks) would hold it, and its
//! memory, for nothing (scenario (e) measured that as ~0.07 KiB per idle connection).
//! The operation is ringlb's own (compio has multishot accept and receive, not poll); compio's
//! io_uring driver itself needs multishot poll (its notifier is one, Linux 5.13), so wherever
//! that driver runs, this does. On epoll the same operation is compio's one-shot poll, which ends
//! after its first readiness; the next wait arms a new one, as before.
//!
//! Owns: the operation (`ReadyMulti`), `poll_once`, and `Readiness`, which `conn::wait_idle` waits
//! on and which paths whose own reads take the socket over for long (a streamed request body, a
//! tunnel, a lingering close) stop, as parking does. Must never: take bytes (it is a poll: dropping
//! it, which cancels it, loses nothing); be waited on while the socket may still hold bytes that
//! arrived before the last readiness it gave, since a poll armed for good tells only of arrivals
//! since its readiness was last taken. Hence the rules its caller keeps: every receive after a
//! readiness says what it found (`received`, `found_nothing`); a wait trusts the poll (`may_wait`)
//! only after a receive that left the socket empty, one that did not fill the room it had or found
//! nothing, or after `stop` (the next poll is new, and a new poll finds bytes already there); this
//! is the only reader of the poll's readiness; it watches the one socket it was armed on, and
//! `stop` comes before that socket leaves compio (parking) or is replaced. One case escapes the
//! first rule: a receive stops short at TCP's urgent mark with bytes behind it (a client that sends
//! an urgent byte), which the poll cannot tell apart (for ordinary data the kernel's wake-up names
//! urgent data too). So a wait that ends on its timer while the kept poll was armed
//! (`receive_before_ending`) receives once more before the connection parks or closes
//! (`conn::wait_idle`): such a client waits for its own request at most until its connection's idle
//! wait ends, and nothing is lost. The same last receive finds a client's close that arrived with
//! its last request (both told of by one readiness, the close taken by that request's receive):
//! seen at the park delay at the latest, not at once as a new poll would.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::task::Poll;

use compio::buf::BufResult;
use compio::driver::op::{Interest, PollOnce};
use compio::driver::{Decision, Extra, IourOpCode, OpEntry, OpType, PollOpCode};
use compio::runtime::SubmitMulti;
use futures_util::stream::FusedStream;
use futures_util::StreamExt;

/// What the poll asks for: readable.
const EVENTS: u32 = libc::POLLIN as u32;

/// A readability poll that stays armed (io_uring) and remembers whether it fired.
pub struct ReadyMulti<S> {
    /// The socket, held open for as long as the operation lives.
    fd: S,
    /// A readiness not yet taken: the latest completion, the others coalesced into it.
    fired: Option<BufResult<usize, Extra>>,
}

impl<S: AsFd> ReadyMulti<S> {
    pub fn new(fd: S) -> Self {
        ReadyMulti { fd, fired: None }
    }
}

// SAFETY: the entry names only the socket's fd, which the operation holds open (a shared fd) for
// as long as it lives; it points at no memory of ours. A poll's completions carry an
// event mask and no buffer, so coalescing them drops nothing the operation owns.
#[allow(unsafe_code)]
unsafe impl<S: AsFd> IourOpCode for ReadyMulti<S> {
    type Control = ();

    fn create_entry(&mut self, _: &mut ()) -> OpEntry {
        let fd = io_uring::types::Fd(self.fd.as_fd().as_raw_fd());
        io_uring::opcode::PollAdd::new(fd, EVENTS)
            .multi(true)
            .build()
            .into()
    }

    unsafe fn push_multishot(&mut self, _: &mut (), res: io::Result<usize>, extra: Extra) {
        // Coalesced: the events of all of them, or the error.
        let res = match (self.fired.take(), res) {
            (Some(BufResult(Ok(old), _)), Ok(mask)) => Ok(old | mask),
            (_, res) => res,
        };
        self.fired = Some(BufResult(res, extra));
    }

    fn pop_multishot(&mut self, _: &mut ()) -> Option<BufResult<usize, Extra>> {
        self.fired.take()
    }
}

// SAFETY: on epoll the operation is a one-shot poll, as compio's `PollOnce`: it waits for
// the fd it holds open to be readable and completes once.
#[allow(unsafe_code)]
unsafe impl<S: AsFd> PollOpCode for ReadyMulti<S> {
    type Control = ();

    fn pre_submit(&mut self, _: &mut ()) -> io::Result<Decision> {
        Ok(Decision::wait_for(
            self.fd.as_fd().as_raw_fd(),
            Interest::Readable,
        ))
    }

    fn op_type(&mut self, _: &mut ()) -> Option<OpType> {
        Some(OpType::fd(self.fd.as_fd().as_raw_fd()))
    }

    fn operate(&mut self, _: &mut ()) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
}

/// A client socket as compio shares it with its operations.
pub type ClientFd = compio::driver::SharedFd<socket2::Socket>;

/// A plain client connection's idle waits: the poll kept armed between them, and whether a wait
/// may rely on it.
#[derive(Default)]
pub struct Readiness {
    armed: Option<Pin<Box<SubmitMulti<ReadyMulti<ClientFd>>>>>,
    /// The last receive after a wait left the socket empty (or no poll is armed: a new one
    /// finds bytes already there): whatever arrives from then on wakes the poll. Until then a
    /// wait receives first.
    drained: bool,
    /// A wait has gone by (its one-shot poll ended): the next arms the kept one.
    waited: bool,
}

impl Readiness {
    /// Whether the next wait may go straight to the poll (else it receives first: bytes may wait
    /// in the socket that the poll has already told of).
    pub fn may_wait(&self) -> bool {
        self.drained
    }

    /// A receive took bytes; `emptied`: it did not fill the room it had.
    pub fn received(&mut self, emptied: bool) {
        self.drained = emptied;
    }

    /// A receive found nothing: the socket is empty.
    pub fn found_nothing(&mut self) {
        self.drained = true;
    }

    /// Completes when `tcp` was woken for reading since the last readiness this gave (or is
    /// readable when the poll is armed, at the first wait). An error ends the poll; the next wait
    /// arms a new one.
    pub async fn ready(&mut self, tcp: &compio::net::TcpStream) -> io::Result<()> {
        // The first wait polls once, as before: a kept poll pays off over a connection's
        // requests, and one that idles after its first (and parks) would hold it, and its
        // memory, for nothing. A wait given up before its poll ended (to lend the buffers, or
        // a stop) did not go by: the next polls once again.
        if !self.waited {
            let polled = poll_once(tcp).await;
            self.waited = true;
            return polled;
        }
        loop {
            let armed = match &mut self.armed {
                Some(armed) => armed,
                none => {
                    let fd = compio::driver::ToSharedFd::to_shared_fd(tcp);
                    none.insert(Box::pin(compio::runtime::submit_multi(ReadyMulti::new(fd))))
                }
            };
            match armed.next().await {
                Some(BufResult(res, _)) => {
                    // Its last completion (a one-shot poll's, or one the kernel ended the poll
                    // with): the next wait arms a new one.
                    if armed.is_terminated() {
                        self.armed = None;
                    }
                    return res.map(drop);
                }
                None => self.armed = None,
            }
        }
    }

    /// Whether a wait that ended on its timer must receive once more before the connection
    /// parks or closes: while the kept poll is armed, it may not have told of bytes behind an
    /// urgent mark, or of a close that came with the last request (see the header).
    pub fn receive_before_ending(&self) -> bool {
        self.armed.is_some()
    }

    /// Cancels the poll (before the socket leaves compio, or where the request's own reads take
    /// it over). The next wait arms a new one, which finds bytes already there: it may wait.
    pub fn stop(&mut self) {
        self.armed = None;
        self.drained = true;
    }
}

/// Completes once `tcp` is readable (a one-shot poll): a connection's first polling wait, and
/// every wait of a TLS connection (its session reads ahead of the socket).
pub async fn poll_once(tcp: &compio::net::TcpStream) -> io::Result<()> {
    let fd = compio::driver::ToSharedFd::to_shared_fd(tcp);
    compio::runtime::submit(PollOnce::new(fd, Interest::Readable))
        .await
        .0
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::config::Driver;

    /// Whether `ready` completes within 100 ms.
    async fn fires(watch: &mut Readiness, tcp: &compio::net::TcpStream) -> bool {
        match compio::time::timeout(Duration::from_millis(100), watch.ready(tcp)).await {
            Ok(res) => {
                res.unwrap();
                true
            }
            Err(_) => false,
        }
    }

    /// Receives without blocking into a room of `room` bytes, as `conn::wait_idle` does, and
    /// tells `watch` what it found; returns the bytes taken.
    fn receive(watch: &mut Readiness, tcp: &compio::net::TcpStream, room: usize) -> usize {
        let mut buf = Vec::with_capacity(room);
        let spare = rustix::buffer::spare_capacity(&mut buf);
        let (n, _) = rustix::net::recv(tcp, spare, rustix::net::RecvFlags::DONTWAIT).unwrap();
        watch.received(buf.len() < buf.capacity());
        n
    }

    /// The first wait that polls polls once (one given up before its poll ended does not count);
    /// from the next, on io_uring the poll stays armed and tells of each arrival once, whether or
    /// not its bytes were read (hence `may_wait`); on epoll each wait arms a one-shot poll, which
    /// finds bytes still unread. Stopping it lets go of the socket, as parking needs.
    #[test]
    fn the_poll_stays_armed_on_io_uring_and_tells_of_arrivals() {
        for driver in [Driver::IoUring, Driver::Epoll] {
            let rt = crate::runtime::build(driver).unwrap();
            let uring = crate::runtime::driver_name(&rt) == "io_uring";
            assert_eq!(uring, driver == Driver::IoUring);
            rt.block_on(async {
                compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
                let listener = compio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut peer =
                    std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let mut watch = Readiness::default();
                assert!(!watch.may_wait(), "a new connection receives first");
                assert!(!fires(&mut watch, &tcp).await, "nothing sent yet");
                assert!(watch.armed.is_none(), "the first wait polls once");
                peer.write_all(b"a").unwrap();
                assert!(
                    fires(&mut watch, &tcp).await,
                    "{driver:?}: the byte's arrival"
                );
                // A wait given up before its poll ended (to lend the buffers) did not go by: this
                // one polled once too.
                assert!(
                    watch.armed.is_none(),
                    "{driver:?}: the first wait that ended"
                );
                // The next arms the kept poll, which (new) finds the unread byte.
                assert!(fires(&mut watch, &tcp).await, "{driver:?}: a new poll");
                assert_eq!(watch.armed.is_some(), uring, "{driver:?}: kept armed");
                // The byte is still unread.
                assert_eq!(
                    fires(&mut watch, &tcp).await,
                    !uring,
                    "{driver:?}: unread byte"
                );
                assert_eq!(receive(&mut watch, &tcp, 16), 1);
                assert!(watch.may_wait(), "a short read emptied the socket");
                assert!(!fires(&mut watch, &tcp).await, "{driver:?}: nothing new");
                peer.write_all(b"b").unwrap();
                assert!(
                    fires(&mut watch, &tcp).await,
                    "{driver:?}: the next arrival"
                );
                // Read whole into a larger room: the socket is empty, the poll may be trusted.
                assert_eq!(receive(&mut watch, &tcp, 16), 1);
                assert!(watch.may_wait(), "{driver:?}: a short read after a wake-up");
                // Two bytes into a room of one: one may be left.
                peer.write_all(b"cd").unwrap();
                assert!(fires(&mut watch, &tcp).await, "{driver:?}: c and d");
                assert_eq!(receive(&mut watch, &tcp, 1), 1);
                assert!(!watch.may_wait(), "{driver:?}: a read that filled its room");
                assert_eq!(watch.receive_before_ending(), uring);
                watch.stop();
                assert!(!watch.receive_before_ending());
                assert!(watch.may_wait(), "a new poll finds what is there");
                assert!(fires(&mut watch, &tcp).await, "{driver:?}: d, still unread");
                watch.stop();
                assert!(
                    crate::park::detach(tcp).await.is_some(),
                    "{driver:?}: the driver let go of the socket"
                );
            });
        }
    }
}
