//! One core's event loop, on the compio runtime `runtime::build` made on its thread (one io_uring,
//! or epoll): its accept loops, its pool sweeper, and its share of shutdown.
//!
//! Owns: starting a core's tasks (all but the memory-release task `Core::park` starts):
//! connection tasks (`conn::serve`, `conn::resume` for parked connections, `admin::serve`), the
//! accept loops (started on the sockets a reload bound, and stopped when a reload removes their
//! listener, at the core's first turn of the tick on that generation), the tick (which also
//! counts how late it ran: the loop lag), the parked-connection watcher and the wheel.
//! Must never: share `Core` with another thread, take a lock on the request path, or take a
//! connection from the accept queue once stopping (accepts are readiness polls plus `accept4`, so
//! a stop never cancels an accept that already took one; what stays queued is served by a process
//! that took the sockets over, `handover`, and reset at exit otherwise). Invariant: everything
//! mutable is touched only from this worker's thread; cross-core traffic is the shutdown signal,
//! the once-a-second publication and the sockets a reload leaves on the board for each worker.

use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::driver::op::{Interest, PollOnce};
use compio::driver::ToSharedFd;
use compio::net::TcpListener;
use futures_util::future::{select, Either};

use crate::core::{apply_if_changed, publish, AdminGuard, ConnGuard, Core};
use crate::park::EVENTS_PER_WAKE;
use crate::{admin, conn};

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A `[[listen]]` address: its slot (`listeners`) for a worker, its index in `Config::listen`
    /// in a binary upgrade's description (`handover`).
    Proxy(usize),
    Admin,
}

/// Tells one accept loop that a reload removed its listener.
#[derive(Default)]
struct Closing {
    closed: std::cell::Cell<bool>,
    notify: crate::notify::Notify,
}

impl Closing {
    fn close(&self) {
        self.closed.set(true);
        self.notify.notify_all();
    }
}

/// This worker's proxy accept loops, by listener slot, and the generation they were last
/// matched with (`sync_listeners`).
struct Accepting {
    loops: Vec<(usize, Rc<Closing>)>,
    generation: u64,
}

/// Runs one worker until `stop` fires and its connections have drained (or the grace ran out).
pub async fn run(
    core: Rc<Core>,
    listeners: Vec<(std::net::TcpListener, Role)>,
    stop: futures_channel::oneshot::Receiver<()>,
) {
    // Admin changes restored from the state file are in effect before the first request.
    crate::core::publish(&core, Instant::now());
    let mut accepting = Accepting {
        loops: Vec::new(),
        // 0: the first tick takes whatever a reload published before this core was built (the
        // sockets here are generation 1's; a reload right after start may already be newer).
        generation: 0,
    };
    for (l, role) in listeners {
        start_accepting(&core, &mut accepting, l, role);
    }
    compio::runtime::spawn(tick(core.clone(), accepting)).detach();
    compio::runtime::spawn(watch_parked(core.clone())).detach();
    compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
    let _ = stop.await;
    let deadline = Instant::now() + core.gen().config.server.shutdown_grace;
    core.begin_shutdown(deadline);
    while core.active.get() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                worker = core.id,
                open = core.active.get(),
                "shutdown grace over; closing connections"
            );
            break;
        }
        let closed = std::pin::pin!(core.conn_closed.notified());
        let timer = std::pin::pin!(compio::time::sleep(left));
        select(closed, timer).await;
    }
    publish(&core, Instant::now());
    if let Some(log) = &core.access_log {
        log.flush();
    }
}

/// Starts an accept loop on `l` (a proxy one is recorded in `accepting` by its slot).
fn start_accepting(
    core: &Rc<Core>,
    accepting: &mut Accepting,
    l: std::net::TcpListener,
    role: Role,
) {
    // Non-blocking: `next_connection` accepts with a plain syscall after a readiness poll.
    let l = match l
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(l))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = core.id, error = %e, "cannot use listener");
            return;
        }
    };
    let closing = Rc::new(Closing::default());
    if let Role::Proxy(slot) = role {
        accepting.loops.push((slot, closing.clone()));
    }
    compio::runtime::spawn(accept_loop(core.clone(), l, role, closing)).detach();
}

/// The tick's publication (filed under `at`'s second) and heartbeat, waiting for the board only
/// if `wait`; `Some(at)` back when the board was busy (to retry at the next tick).
fn publish_and_beat(core: &Core, at: Instant, wait: bool) -> Option<Instant> {
    let board = if wait {
        Some(core.board.lock())
    } else {
        core.board.try_lock()
    };
    let Some(mut board) = board else {
        return Some(at);
    };
    crate::core::publish_on(core, &mut board, at);
    board.beat(core.id);
    None
}

/// After this core adopted a generation: stops the accept loops of listeners it no longer has
/// and starts loops on the sockets a reload bound for this worker (`listeners`, on the board).
fn sync_listeners(core: &Rc<Core>, accepting: &mut Accepting) {
    let gen = core.gen();
    if gen.number == accepting.generation {
        return;
    }
    let sockets = {
        // Held by a reader: the next tick tries again.
        let Some(mut board) = core.board.try_lock() else {
            return;
        };
        // Sockets of a generation published since this core adopted: taken with it, next turn.
        if board.generation.number != gen.number {
            return;
        }
        std::mem::take(&mut board.sockets[core.id])
    };
    accepting.generation = gen.number;
    accepting.loops.retain(|(slot, closing)| {
        let kept = gen.is_open(*slot);
        if !kept {
            closing.close();
        }
        kept
    });
    for (slot, l) in sockets {
        // A listener removed again since: the main thread let go of it too; it closes here.
        if !gen.is_open(slot) {
            continue;
        }
        // Removed and added again between two of this core's turns: the new socket replaces the
        // old one (which the main thread no longer holds), after the old one's queue is served.
        if let Some(i) = accepting.loops.iter().position(|(s, _)| *s == slot) {
            accepting.loops.swap_remove(i).1.close();
        }
        start_accepting(core, accepting, l, Role::Proxy(slot));
    }
}

async fn accept_loop(core: Rc<Core>, listener: TcpListener, role: Role, closing: Rc<Closing>) {
    // Connections taken since the last readiness poll (`next_connection`).
    let mut taken = 0;
    loop {
        if core.is_stopping() {
            return;
        }
        if closing.closed.get() {
            return take_queued(&core, &listener, role);
        }
        // The proxy's limit is read each time: a reload may change it.
        let (active, limit) = match role {
            Role::Proxy(_) => (&core.active, core.conn_limit.get()),
            Role::Admin => (&core.admin_active, core.admin_limit),
        };
        if active.get() >= limit {
            // Over the limit: new connections wait in the kernel's backlog.
            let closed = std::pin::pin!(core.conn_closed.notified());
            let stop = std::pin::pin!(core.shutdown.notified());
            let removed = std::pin::pin!(closing.notify.notified());
            select(closed, select(stop, removed)).await;
            continue;
        }
        match next_connection(&core, &listener, &mut taken, &closing).await {
            Some(Ok((stream, peer))) => start_connection(&core, stream, peer, role),
            Some(Err(e)) => {
                tracing::warn!(worker = core.id, error = %e, "accept failed");
                compio::time::sleep(Duration::from_millis(50)).await;
            }
            // Stopping, or the listener was removed (the next turn serves what is queued).
            None => {}
        }
    }
}

/// A reload removed the listener: the connections already queued on this worker's socket (at
/// most its backlog, even past `max_connections`) are served, each ending after its first answer
/// (`Core::ends_connection`), rather than reset by the close. (Those the kernel still holds
/// because they sent nothing yet, `listeners::defer_accept`, are not queued: the close resets
/// them, with no request sent.)
fn take_queued(core: &Rc<Core>, listener: &TcpListener, role: Role) {
    while let Ok((stream, peer)) = accept(listener) {
        start_connection(core, stream, peer, role);
    }
}

/// One connection from `listener`'s queue, without waiting (`EAGAIN` when there is none).
fn accept(
    listener: &TcpListener,
) -> std::io::Result<(compio::net::TcpStream, std::net::SocketAddr)> {
    use rustix::net::{acceptfrom_with, SocketFlags};
    let (fd, addr) = acceptfrom_with(listener, SocketFlags::CLOEXEC)?;
    let peer = addr
        .and_then(|a| std::net::SocketAddr::try_from(a).ok())
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let stream = compio::net::TcpStream::from_std(std::net::TcpStream::from(fd))?;
    Ok((stream, peer))
}

/// Starts the task of a connection accepted on a listener of `role`.
fn start_connection(
    core: &Rc<Core>,
    stream: compio::net::TcpStream,
    peer: std::net::SocketAddr,
    role: Role,
) {
    match role {
        Role::Proxy(slot) => {
            core.active.set(core.active.get() + 1);
            core.stats.borrow_mut().core.connections_total += 1;
            let guard = ConnGuard::new(core.clone());
            let task = conn::serve(core.clone(), stream, peer, slot, guard);
            compio::runtime::spawn(task).detach()
        }
        Role::Admin => {
            let guard = AdminGuard::new(core.clone());
            let core = core.clone();
            compio::runtime::spawn(async move {
                let _guard = guard;
                admin::serve(&core, stream, peer).await;
            })
            .detach()
        }
    }
}

/// Connections accepted in a row before the accept loop goes through the driver again.
const ACCEPT_BATCH: u32 = 16;

/// The next connection on `listener` (`None`: the server stops, or the listener was removed).
/// Accepted with a plain
/// non-blocking `accept4` after a readiness poll, never with an io_uring accept: a stop drops the
/// wait, and a cancelled io_uring accept may already have taken a connection from the queue,
/// which would then be lost (the binary-upgrade test lost one in a few thousand that way). A
/// readiness poll takes nothing.
async fn next_connection(
    core: &Core,
    listener: &TcpListener,
    taken: &mut u32,
    closing: &Closing,
) -> Option<std::io::Result<(compio::net::TcpStream, std::net::SocketAddr)>> {
    loop {
        // Checked before every accept: a connection taken once the drain may have ended would be
        // dropped unanswered (reset, with its request unread) — it stays queued for a process
        // that serves (after a handover) instead.
        if core.is_stopping() || closing.closed.get() {
            return None;
        }
        // At most `ACCEPT_BATCH` connections per trip through the driver: a burst of thousands
        // of connects would otherwise start thousands of tasks (each taking buffers) before any
        // of them could answer and hand its buffers on (scenario (e): 0.74-0.77 KiB per idle
        // connection with unbounded accepts, 0.30-0.39 with 16 in a row, 0.31-0.37 with 1),
        // while one per trip cost a readiness poll per connection (scenario (d): 22.0-22.2 µs
        // of CPU per connection with 1, 17.0-18.8 with 16).
        if *taken < ACCEPT_BATCH {
            match accept(listener) {
                Ok(c) => {
                    *taken += 1;
                    return Some(Ok(c));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e)),
            }
        }
        *taken = 0;
        let poll = PollOnce::new(listener.to_shared_fd(), Interest::Readable);
        let ready = std::pin::pin!(compio::runtime::submit(poll));
        let stop = std::pin::pin!(core.shutdown.notified());
        let removed = std::pin::pin!(closing.notify.notified());
        if let Either::Right(_) = select(ready, select(stop, removed)).await {
            return None;
        }
    }
}

/// Watches this core's parked connections until shutdown, giving a new task to each whose next
/// request (or close) has arrived; at the stop, gives every parked connection a task again (its
/// next request is answered, then it closes).
async fn watch_parked(core: Rc<Core>) {
    let poll = match core.parking.poll_fd() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(worker = core.id, error = %e, "cannot watch parked connections");
            return;
        }
    };
    let none = rustix::event::epoll::Event {
        flags: rustix::event::epoll::EventFlags::empty(),
        data: rustix::event::epoll::EventData::new_u64(0),
    };
    let mut events = vec![none; EVENTS_PER_WAKE];
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
        let n = core.parking.ready(&mut events[..]);
        for ev in &events[..n] {
            if let Some(p) = core.parking.take(ev.data.u64() as usize) {
                let guard = ConnGuard::adopt(core.clone());
                let head_deadline = p.first_request.then_some(p.deadline);
                let task = conn::resume(core.clone(), p, head_deadline, guard);
                compio::runtime::spawn(task).detach();
            }
        }
    }
    // Stopping: every parked connection gets a task again, so that a request it sends now is
    // answered (with `Connection: close`) rather than cut: `conn::wait_idle` closes it when none
    // comes (after `STOP_LINGER`, or at its deadline if that is sooner).
    for p in core.parking.take_where(|_| true) {
        let guard = ConnGuard::adopt(core.clone());
        let head_deadline = p.first_request.then_some(p.deadline);
        compio::runtime::spawn(conn::resume(core.clone(), p, head_deadline, guard)).detach();
    }
}

/// Closes this core's expired idle member connections, a few at a time (`pool`'s header says
/// why): first those a reload did not carry over (`CoreGen::retiring`), then one from each
/// member's list in turn, across every balancer, until the budget is spent or
/// none is left. Each `turn` starts at another balancer and member, so that no balancer's or
/// member's expiries hold back another's.
fn sweep_pools(core: &Core, now: Instant, turn: usize) {
    let mut budget = crate::pool::CLOSES_PER_SWEEP;
    let gen = core.gen();
    gen.retiring.borrow_mut().close_some(&mut budget);
    let mut upstreams = gen.upstreams.borrow_mut();
    let n = upstreams.len();
    let mut closed = true;
    while budget > 0 && closed {
        closed = false;
        for k in 0..n {
            let u = &mut upstreams[(turn % n + k) % n];
            // Members start where the balancers' order came round to, not at `turn` itself:
            // otherwise a balancer that goes first would always start at the same members.
            closed |= u.pool.sweep_round(now, &mut budget, turn / n);
        }
    }
}

/// The tick's period.
const TICK: Duration = Duration::from_millis(100);

/// Every 100 ms: count how late the tick ran (`stats::CoreCounters::record_loop_lag`: the event
/// loop was busy with other tasks, the tick's own work of the turn before among them, or the
/// thread was descheduled), close up to `pool::CLOSES_PER_SWEEP` idle member connections past
/// their time to live, and apply admin and health state changes if there are any (one atomic
/// load when not).
/// Once a second, at the first tick of each of the board's seconds (so every second of its ring
/// gets this core's figures once, however the 100 ms sleeps drift): apply admin changes and
/// health results, publish this core's statistics to the board. These take the board only if it
/// is free (`try_lock`): when a reader holds it they try again at the next tick, and a
/// publication still waiting at the next second waits for the board then (at most one page
/// build, once a second).
async fn tick(core: Rc<Core>, mut accepting: Accepting) {
    let started = core.board.lock().started;
    let second = |t: Instant| t.saturating_duration_since(started).as_secs();
    let mut last = second(Instant::now());
    let mut unpublished: Option<Instant> = None;
    let mut turn = 0usize;
    // The next tick is due 100 ms after this one woke, not after its work: what the tick's own
    // work holds the thread for (a publication waiting for the board, the log's flush) counts in
    // the next one's lag, as any other task's work does.
    let mut due = Instant::now() + TICK;
    while !core.is_stopping() {
        let tick = std::pin::pin!(compio::time::sleep_until(due));
        let stop = std::pin::pin!(core.shutdown.notified());
        if let Either::Right(_) = select(tick, stop).await {
            return;
        }
        let now = Instant::now();
        core.stats
            .borrow_mut()
            .core
            .record_loop_lag(now.saturating_duration_since(due));
        due = now + TICK;
        turn = turn.wrapping_add(1);
        sweep_pools(&core, now, turn);
        if second(now) == last {
            // A publication the board was busy for (a reader held it) goes out now, filed
            // under the second its tick chose.
            if let Some(at) = unpublished {
                unpublished = publish_and_beat(&core, at, false);
            }
            apply_if_changed(&core, now);
            sync_listeners(&core, &mut accepting);
            continue;
        }
        last = second(now);
        // Still unpublished from the second before: readers held the board for a whole second.
        // This once the tick waits for it (one page build at most), so that the heartbeat stays
        // fresh, reloads and admin changes are taken, and that second gets this core's figures.
        if let Some(at) = unpublished {
            publish_and_beat(&core, at, true);
        }
        core.close_parked(|p| p.deadline <= now);
        unpublished = publish_and_beat(&core, now, false);
        sync_listeners(&core, &mut accepting);
        if let Some(log) = &core.access_log {
            log.flush();
        }
    }
}
