//! A plain client connection's readability, watched by one poll armed for the connection's life
//! on io_uring (a multishot `POLL_ADD`) instead of one poll armed for each request.
//!
//! With one poll per request, every idle wait submitted an operation (and compio kept, hashed
//! and dropped its bookkeeping); a multishot poll stays armed and posts one completion each time
//! the socket's wait queue is woken for reading. Its completions are coalesced here into one flag
//! (a poll says only "something came"; it takes nothing), so a long upload cannot pile them up.
//!
//! Owns: the operation (`ReadyMulti`) and `Readiness`, which `conn::wait_idle` waits on and
//! which paths whose own reads take the socket over for long (a streamed request body, a tunnel)
//! stop, as parking and closing do. Must never:
//! take bytes (it is a poll: dropping it, which cancels it, loses nothing), or be waited on while
//! the socket may still hold bytes that arrived before the last readiness it gave: a poll armed
//! for good says only that something arrived since, so the caller waits only after a receive
//! that left the socket empty (a short read, or nothing), and otherwise receives first
//! (`conn::wait_idle`). Where the ring is not io_uring (epoll), or the kernel has no multishot
//! poll (before 5.13), the same operation is a one-shot poll that ends after its first
//! readiness, and `Readiness` arms a new one for the next wait, as before.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use compio::buf::BufResult;
use compio::driver::op::{Interest, PollOnce};
use compio::driver::{Decision, Extra, IourOpCode, OpEntry, OpType, PollOpCode};
use compio::runtime::SubmitMulti;
use futures_util::stream::FusedStream;
use futures_util::StreamExt;

/// A readability poll that stays armed (io_uring) and remembers whether it fired.
pub struct ReadyMulti<S> {
    /// The one-shot poll this is on epoll (its events there, its fd here).
    once: PollOnce<S>,
    fd: std::os::fd::RawFd,
    /// A readiness not yet taken: the latest completion, the others coalesced into it.
    fired: Option<BufResult<usize, Extra>>,
}

impl<S: AsFd> ReadyMulti<S> {
    pub fn new(fd: S) -> Self {
        let raw = fd.as_fd().as_raw_fd();
        ReadyMulti {
            once: PollOnce::new(fd, Interest::Readable),
            fd: raw,
            fired: None,
        }
    }
}

/// Whether this kernel's io_uring keeps a poll armed (`IORING_POLL_ADD_MULTI`, Linux 5.13).
fn multishot_poll() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (5, 13)
    })
}

// SAFETY: the entry names only the socket's fd, which `once` holds open (a shared fd) for as
// long as the operation lives; it points at no memory of ours. A poll's completions carry an
// event mask and no buffer, so coalescing them drops nothing the operation owns.
#[allow(unsafe_code)]
unsafe impl<S: AsFd> IourOpCode for ReadyMulti<S> {
    type Control = ();

    fn create_entry(&mut self, _: &mut ()) -> OpEntry {
        let entry =
            io_uring::opcode::PollAdd::new(io_uring::types::Fd(self.fd), libc::POLLIN as u32);
        entry.multi(multishot_poll()).build().into()
    }

    unsafe fn push_multishot(&mut self, _: &mut (), res: io::Result<usize>, extra: Extra) {
        self.fired = Some(BufResult(res, extra));
    }

    fn pop_multishot(&mut self, _: &mut ()) -> Option<BufResult<usize, Extra>> {
        self.fired.take()
    }
}

// SAFETY: on epoll the operation is `PollOnce`'s: it waits for the fd `once` holds and
// completes once.
#[allow(unsafe_code)]
unsafe impl<S: AsFd> PollOpCode for ReadyMulti<S> {
    type Control = ();

    fn pre_submit(&mut self, c: &mut ()) -> io::Result<Decision> {
        PollOpCode::pre_submit(&mut self.once, c)
    }

    fn op_type(&mut self, c: &mut ()) -> Option<OpType> {
        PollOpCode::op_type(&mut self.once, c)
    }

    fn operate(&mut self, c: &mut ()) -> Poll<io::Result<usize>> {
        PollOpCode::operate(&mut self.once, c)
    }
}

/// A client socket as compio shares it with its operations.
pub type ClientFd = compio::driver::SharedFd<socket2::Socket>;

/// A plain client connection's idle waits: the poll kept armed between them, and whether a wait
/// may rely on it.
#[derive(Default)]
pub struct Readiness {
    armed: Option<Pin<Box<SubmitMulti<ReadyMulti<ClientFd>>>>>,
    /// The last receive after a wait left the socket empty (a short read, or nothing): whatever
    /// arrives from then on wakes the poll. Until then a wait receives first.
    drained: bool,
}

impl Readiness {
    /// Whether the next wait may go straight to the poll (else it receives first: bytes may wait
    /// in the socket that the poll has already told of).
    pub fn may_wait(&self) -> bool {
        self.drained
    }

    /// A receive after a wait took bytes and `emptied` the socket (its room was not filled), or
    /// found nothing (`emptied` too).
    pub fn received(&mut self, emptied: bool) {
        self.drained = emptied;
    }

    /// Completes when `tcp` was woken for reading since the last readiness this gave (or is
    /// readable when the poll is armed, at the first wait). An error ends the poll; the next wait
    /// arms a new one.
    pub async fn ready(&mut self, tcp: &compio::net::TcpStream) -> io::Result<()> {
        loop {
            let armed = self.armed.get_or_insert_with(|| {
                let fd = compio::driver::ToSharedFd::to_shared_fd(tcp);
                Box::pin(compio::runtime::submit_multi(ReadyMulti::new(fd)))
            });
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

    /// Cancels the poll (before the socket leaves compio, or closes); the next wait receives first.
    pub fn stop(&mut self) {
        self.armed = None;
        self.drained = false;
    }
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

    /// On io_uring the poll stays armed and tells of each arrival once, whether or not its bytes
    /// were read (hence `may_wait`); on epoll each wait arms a one-shot poll, which finds bytes
    /// still unread. Stopping it lets go of the socket, as parking needs.
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
                peer.write_all(b"a").unwrap();
                assert!(
                    fires(&mut watch, &tcp).await,
                    "{driver:?}: the byte's arrival"
                );
                assert_eq!(watch.armed.is_some(), uring, "{driver:?}: kept armed");
                // The byte is still unread.
                assert_eq!(
                    fires(&mut watch, &tcp).await,
                    !uring,
                    "{driver:?}: unread byte"
                );
                let mut buf = Vec::with_capacity(16);
                let (n, _) = rustix::net::recv(
                    &tcp,
                    rustix::buffer::spare_capacity(&mut buf),
                    rustix::net::RecvFlags::DONTWAIT,
                )
                .unwrap();
                assert_eq!(n, 1);
                watch.received(buf.len() < buf.capacity());
                assert!(watch.may_wait(), "a short read emptied the socket");
                assert!(!fires(&mut watch, &tcp).await, "{driver:?}: nothing new");
                peer.write_all(b"b").unwrap();
                assert!(
                    fires(&mut watch, &tcp).await,
                    "{driver:?}: the next arrival"
                );
                watch.stop();
                assert!(!watch.may_wait());
                assert!(
                    crate::park::detach(tcp).await.is_some(),
                    "{driver:?}: the driver let go of the socket"
                );
            });
        }
    }
}
