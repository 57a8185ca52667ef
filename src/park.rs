//! Parking: a keep-alive connection that has had no request for `PARK_AFTER` gives up its task, its
//! buffers and its pending readiness poll. What is left of it is its socket, registered in this
//! core's epoll set, and a 72-byte slot holding the bare descriptor (out of compio's shared handle:
//! `detach`, `attach`) and, on a TLS listener, the session (its rustls state, no buffers: one that
//! holds the start of a record is waiting for a request's head, not idle); the worker's watcher
//! (`worker::watch_parked`, one io_uring poll on the epoll descriptor) gives a connection a new
//! task when its next request (or its client's close) arrives. The core's tick closes parked
//! connections past their deadline.
//!
//! Owns: the parked slots and the epoll set. Must never: park a connection with bytes read and not
//! yet served (the caller parks only after a wait whose receives found nothing, and only a TLS
//! session without unread plaintext or part of a record), take a socket out of compio while an
//! operation on it is in flight (`detach` waits for the driver to let go), or start a task (the
//! worker does). Invariant: a parked connection still counts as open (its place in `Core::active`
//! is kept; `ConnGuard::adopt` takes it back when it resumes, `Core::connection_closed` when it
//! closes).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use compio::driver::{SharedFd, ToSharedFd};
use compio::net::TcpStream;
use compio::runtime::fd::PollFd;
use rustix::event::epoll;
use rustix::time::Timespec;

/// How long a connection waits for its next request inside its task before it parks. Long enough
/// that a busy keep-alive connection never parks, short enough that the thousands of connections a
/// browser population leaves open cost next to nothing.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// Memory freed by connections that parked is handed back to the OS once parking pauses for
/// `RELEASE_QUIET` (or at least every `RELEASE_AT_MOST` while it goes on), if at least
/// `RELEASE_MIN` connections parked since the last time: a forced collection costs the worker 0.1
/// to 0.6 ms, so it is kept for the end of bursts and never runs more than once a second.
pub const RELEASE_QUIET: Duration = Duration::from_millis(100);
pub const RELEASE_AT_MOST: Duration = Duration::from_secs(1);
const RELEASE_MIN: usize = 64;

/// Events taken from the epoll set per wake-up.
pub const EVENTS_PER_WAKE: usize = 64;

/// How long parking waits for the driver to let go of a connection's socket (`detach`): a poll
/// just cancelled completes within a turn of the ring.
pub const LET_GO: Duration = Duration::from_secs(1);

/// A parking connection's socket, out of compio's shared handle (a 48-byte allocation a parked
/// connection then does not hold): waits for the operations the driver still holds on it (the
/// readiness poll just abandoned) to let go. `None`: they did not within `LET_GO`; the socket
/// closes once they do (the caller closes the connection).
pub async fn detach(tcp: TcpStream) -> Option<OwnedFd> {
    let shared = tcp.to_shared_fd();
    drop(tcp);
    let fd = crate::deadline::timeout(LET_GO, shared.take()).await;
    fd.ok().flatten().map(OwnedFd::from)
}

/// A parked connection's socket as a compio stream again.
pub fn attach(fd: OwnedFd) -> io::Result<TcpStream> {
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

/// A parked connection.
pub struct Parked {
    /// Its socket, out of compio's shared handle (`detach`).
    pub fd: OwnedFd,
    /// Its TLS session (no unread plaintext, no part of a record: its buffers were lent) on a
    /// TLS listener.
    pub tls: Option<Box<crate::tls::session::TlsSession>>,
    pub peer: SocketAddr,
    /// Which `[[listen]]` accepted it.
    pub listener: usize,
    /// Closed when this passes: the keep-alive limit, or the first request's header limit.
    pub deadline: Instant,
    /// Whether it has not sent its first request yet (then `deadline` is the head's deadline).
    pub first_request: bool,
    /// Its PROXY header could not name the client (`Client::unnamed`).
    pub unnamed: bool,
}

/// One core's parked connections.
pub struct Parking {
    /// Shared so that the watcher's io_uring poll can hold it too.
    epoll: SharedFd<OwnedFd>,
    slots: RefCell<Vec<Option<Parked>>>,
    free: RefCell<Vec<usize>>,
    /// Connections parked since freed memory was last released.
    since_release: Cell<usize>,
    /// Whether a release is waiting for parking to pause.
    release_scheduled: Cell<bool>,
}

impl Parking {
    pub fn new() -> io::Result<Parking> {
        Ok(Parking {
            epoll: SharedFd::new(epoll::create(epoll::CreateFlags::CLOEXEC)?),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            since_release: Cell::new(0),
            release_scheduled: Cell::new(false),
        })
    }

    /// How many connections are parked.
    pub fn count(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    /// Puts a connection in a slot and in the epoll set.
    pub fn insert(&self, parked: Parked) -> io::Result<()> {
        let slot = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut slots = self.slots.borrow_mut();
            slots.push(None);
            slots.len() - 1
        });
        let interest = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        let data = epoll::EventData::new_u64(slot as u64);
        if let Err(e) = epoll::add(&self.epoll, &parked.fd, data, interest) {
            self.free.borrow_mut().push(slot);
            return Err(e.into());
        }
        self.slots.borrow_mut()[slot] = Some(parked);
        self.since_release.set(self.since_release.get() + 1);
        Ok(())
    }

    /// Takes a connection out of its slot and the epoll set.
    pub fn take(&self, slot: usize) -> Option<Parked> {
        let parked = self.slots.borrow_mut().get_mut(slot)?.take()?;
        self.free.borrow_mut().push(slot);
        let _ = epoll::delete(&self.epoll, &parked.fd);
        Some(parked)
    }

    /// A poll handle on the epoll set, for the watcher.
    pub fn poll_fd(&self) -> io::Result<PollFd<SharedFd<OwnedFd>>> {
        PollFd::new(self.epoll.clone())
    }

    /// Fills `events` with the slots that are ready now (no wait); returns how many.
    pub fn ready(&self, events: &mut [epoll::Event]) -> usize {
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        epoll::wait(&self.epoll, events, Some(&now)).unwrap_or(0)
    }

    /// Closes parked connections for which `close` is true; returns how many.
    pub fn close_where(&self, close: impl Fn(&Parked) -> bool) -> usize {
        let taken = self.take_where(close);
        for p in &taken {
            tracing::debug!(peer = %p.peer, "parked connection closes");
        }
        taken.len()
    }

    /// Takes every parked connection for which `which` is true.
    pub fn take_where(&self, which: impl Fn(&Parked) -> bool) -> Vec<Parked> {
        let slots = self.slots.borrow().len();
        let mut taken = Vec::new();
        for slot in 0..slots {
            let due = self.slots.borrow()[slot].as_ref().is_some_and(&which);
            if let Some(p) = due.then(|| self.take(slot)).flatten() {
                taken.push(p);
            }
        }
        taken
    }

    /// True when the caller should start a release task (none is waiting yet).
    pub fn schedule_release(&self) -> bool {
        !self.release_scheduled.replace(true)
    }

    pub fn parked_since_release(&self) -> usize {
        self.since_release.get()
    }

    /// The release task's end: whether enough connections parked since the last release that
    /// freed memory should be handed back now (the caller trims and releases).
    pub fn release_due(&self) -> bool {
        self.release_scheduled.set(false);
        let due = self.since_release.get() >= RELEASE_MIN;
        if due {
            self.since_release.set(0);
        }
        due
    }

    /// Gives back the slots a burst of parking left (`slab::trim`).
    pub fn trim(&self) {
        crate::slab::trim_cells(&self.slots, &self.free);
    }
}

#[cfg(test)]
mod tests {
    /// A parked connection's slot stays small (the socket, a TLS session pointer, the peer, the
    /// listener, the deadline): the docs say 72 bytes.
    #[test]
    fn a_slot_is_72_bytes() {
        assert_eq!(std::mem::size_of::<Option<super::Parked>>(), 72);
    }
}
