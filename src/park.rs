//! Parking: a keep-alive connection that has had no request for `PARK_AFTER` gives up its task,
//! its buffers and its pending readiness poll. What is left of it is its socket, registered in
//! this core's epoll set, and a 64-byte slot; one task per core watches the set (through one
//! io_uring poll on the epoll descriptor) and gives a connection a new task when its next request
//! (or its client's close) arrives. The core's tick closes parked connections past their deadline.
//!
//! Owns: the parked slots and the epoll set. Must never: park a connection with bytes read and
//! not yet served (the caller parks only from a readiness wait, which reads nothing).
//! Invariant: a parked connection still counts as open (its place in `Core::active` is kept;
//! `ConnGuard::adopt` takes it back when it resumes, `Core::connection_closed` when it closes).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::driver::SharedFd;
use compio::net::TcpStream;
use compio::runtime::fd::PollFd;
use futures_util::future::{select, Either};
use rustix::event::epoll;
use rustix::time::Timespec;

use crate::conn;
use crate::worker::{ConnGuard, Core};

/// How long a connection waits for its next request inside its task before it parks. Long enough
/// that a busy keep-alive connection never parks, short enough that the thousands of connections a
/// browser population leaves open cost next to nothing.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// Memory freed by connections that parked is handed back to the OS once parking pauses for
/// `RELEASE_QUIET` (or at least every `RELEASE_AT_MOST` while it goes on), if at least
/// `RELEASE_MIN` connections parked since the last time: a forced collection costs the worker 0.1
/// to 0.6 ms, so it is kept for the end of bursts and never runs more than once a second.
const RELEASE_QUIET: Duration = Duration::from_millis(100);
const RELEASE_AT_MOST: Duration = Duration::from_secs(1);
const RELEASE_MIN: usize = 64;

/// Events taken from the epoll set per wake-up.
const EVENTS_PER_WAKE: usize = 64;

/// A parked connection.
struct Parked {
    stream: TcpStream,
    peer: SocketAddr,
    /// Closed when this passes: the keep-alive limit, or the first request's header limit.
    deadline: Instant,
    /// Whether it has not sent its first request yet (then `deadline` is the head's deadline).
    first_request: bool,
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

    fn take(&self, slot: usize) -> Option<Parked> {
        let parked = self.slots.borrow_mut().get_mut(slot)?.take()?;
        self.free.borrow_mut().push(slot);
        let _ = epoll::delete(&self.epoll, &parked.stream);
        Some(parked)
    }
}

/// Parks a connection that has nothing read and not served, until `deadline`. `first_request`:
/// it has not sent its first request (its head must then be complete by `deadline`). While the
/// server stops, the connection closes instead (the watcher may already have closed the others).
pub fn park(
    core: &Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    first_request: bool,
    guard: ConnGuard,
) {
    if core.is_stopping() {
        return;
    }
    let parking = &core.parking;
    let slot = parking.free.borrow_mut().pop().unwrap_or_else(|| {
        let mut slots = parking.slots.borrow_mut();
        slots.push(None);
        slots.len() - 1
    });
    let interest = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
    let data = epoll::EventData::new_u64(slot as u64);
    if let Err(e) = epoll::add(&parking.epoll, &stream, data, interest) {
        // Cannot watch it: it closes (the client reconnects, as after a keep-alive timeout).
        tracing::warn!(peer = %peer, error = %e, "cannot park an idle connection; closing it");
        parking.free.borrow_mut().push(slot);
        return;
    }
    parking.slots.borrow_mut()[slot] = Some(Parked {
        stream,
        peer,
        deadline,
        first_request,
    });
    guard.keep();
    parking.since_release.set(parking.since_release.get() + 1);
    if !parking.release_scheduled.replace(true) {
        compio::runtime::spawn(release_when_quiet(core.clone())).detach();
    }
}

/// Waits for parking to pause, then hands freed memory back (see `RELEASE_QUIET`).
async fn release_when_quiet(core: Rc<Core>) {
    let started = Instant::now();
    loop {
        let seen = core.parking.since_release.get();
        compio::time::sleep(RELEASE_QUIET).await;
        if core.parking.since_release.get() == seen || started.elapsed() >= RELEASE_AT_MOST {
            break;
        }
    }
    if core.parking.since_release.get() >= RELEASE_MIN {
        core.parking.since_release.set(0);
        crate::allocator::release_free_pages();
    }
    core.parking.release_scheduled.set(false);
}

/// Watches this core's epoll set until shutdown, resuming connections whose next request (or
/// close) has arrived; then closes every parked connection.
pub async fn watch(core: Rc<Core>) {
    let poll = match PollFd::new(core.parking.epoll.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(worker = core.id, error = %e, "cannot watch parked connections");
            return;
        }
    };
    let none = epoll::Event {
        flags: epoll::EventFlags::empty(),
        data: epoll::EventData::new_u64(0),
    };
    let mut events = vec![none; EVENTS_PER_WAKE];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    while !core.is_stopping() {
        let ready = std::future::poll_fn(|cx| poll.poll_read_ready(cx));
        let stop = std::pin::pin!(core.shutdown.notified());
        match select(std::pin::pin!(ready), stop).await {
            Either::Left((Ok(()), _)) => {}
            Either::Left((Err(e), _)) => {
                tracing::error!(worker = core.id, error = %e, "parked connections: poll failed");
                compio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Either::Right(_) => break,
        }
        let n = epoll::wait(&core.parking.epoll, &mut events[..], Some(&now)).unwrap_or(0);
        for ev in &events[..n] {
            if let Some(p) = core.parking.take(ev.data.u64() as usize) {
                let guard = ConnGuard::adopt(core.clone());
                let head_deadline = p.first_request.then_some(p.deadline);
                let task = conn::resume(core.clone(), p.stream, p.peer, head_deadline, guard);
                compio::runtime::spawn(task).detach();
            }
        }
    }
    close_where(&core, |_| true);
}

/// Closes parked connections past their deadline (called by the core's tick).
pub fn sweep(core: &Core, now: Instant) {
    close_where(core, |p| p.deadline <= now);
}

fn close_where(core: &Core, close: impl Fn(&Parked) -> bool) {
    let slots = core.parking.slots.borrow().len();
    for slot in 0..slots {
        let due = core.parking.slots.borrow()[slot]
            .as_ref()
            .is_some_and(&close);
        if let Some(p) = due.then(|| core.parking.take(slot)).flatten() {
            tracing::debug!(peer = %p.peer, "parked connection closes");
            drop(p);
            core.connection_closed();
        }
    }
}
