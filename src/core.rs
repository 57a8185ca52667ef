//! What one core owns (`Core`: its configuration generation with the balancer cursors and pools,
//! counters, parked connections, spare buffers) and the guard that counts a connection open while
//! it lives.
//!
//! Owns: the per-core state every part of the request path shares, its once-a-second publication to
//! the board, and adopting new configuration generations, admin changes and health-check results
//! from the board (at publication, or within 100 ms of a change), and giving back what a burst of
//! parking left (`release_when_quiet`: slabs, spare buffer sets, free pages). Must never: be shared
//! with another thread, take a lock on the request path (the board's lock is taken by the tick and
//! by admin requests), or spawn a connection task (that is `worker`'s). Invariant: everything
//! mutable here is touched only from this core's thread.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::CoreLog;
use crate::board::{Board, BoardData};
use crate::client::{Client, Spare};
use crate::config::Config;
use crate::core_gen::{CoreGen, Upstream};
use crate::health::applied::Applied;
use crate::notify::Notify;
use crate::park::Parking;
use crate::reload::ControlSender;
use crate::stats::CoreStats;
use crate::tls::{Generation as TlsGeneration, TlsState};

/// Admin connections one core serves at once; more wait in the kernel's backlog.
pub const ADMIN_CONNECTIONS_PER_CORE: usize = 8;

/// Buffer sets lent by idle and closed connections, kept per worker for reuse.
const MAX_SPARES: usize = 64;
/// Buffer sets still kept once a burst of parking has passed (`release_when_quiet`): what the
/// next few resumed connections take; the rest (about 8 KiB a set) goes back to the system.
const SPARES_WHEN_QUIET: usize = 8;

/// Everything one core owns.
pub struct Core {
    pub id: usize,
    /// The configuration generation this core runs (`gen`); a request keeps the one it began on.
    current: RefCell<Rc<CoreGen>>,
    /// Older generations some request may still run on (their in-flight counts are published).
    older: RefCell<Vec<std::rc::Weak<CoreGen>>>,
    /// This core's counters and histograms (published to `board` once a second).
    pub stats: RefCell<CoreStats>,
    pub board: Arc<Board>,
    /// Buffer sets of idle and closed connections, for the next connection that has data.
    spares: RefCell<Vec<Spare>>,
    /// This core's access log buffer, when `[log] access` is set.
    pub access_log: Option<CoreLog>,
    /// The admin version this core has applied.
    applied: Cell<u64>,
    /// The health-check results this core has applied.
    health: RefCell<Applied>,
    /// `Board::changes` when this core last applied changes.
    seen_changes: Cell<u64>,
    /// Fires once, when the server starts shutting down.
    pub shutdown: Notify,
    stopping: Cell<bool>,
    /// When the shutdown grace ends (set when the shutdown begins).
    stop_deadline: Cell<Option<Instant>>,
    /// Fires when a connection closes and someone waits for that.
    pub conn_closed: Notify,
    pub active: Cell<usize>,
    /// This core's share of `max_connections` (set by each generation).
    pub conn_limit: Cell<usize>,
    /// Open admin connections on this core, and their own small limit (so that the operator
    /// can reach the admin listener when the proxy's connections are all taken).
    pub admin_active: Cell<usize>,
    pub admin_limit: usize,
    /// Connections idle past `park::PARK_AFTER`: no task, no buffers, a slot and an epoll entry.
    pub parking: Parking,
    /// The TLS listeners' certificates (by listener slot; empty without a TLS listener).
    pub tls: Arc<TlsState>,
    /// The certificate generation this core hands to new TLS connections, and its version.
    tls_generation: RefCell<(u64, Arc<TlsGeneration>)>,
    /// Where the admin API sends reload requests (`None`: started without a config file).
    pub control: Option<ControlSender>,
}

impl Core {
    pub fn new(
        id: usize,
        board: Arc<Board>,
        access_log: Option<std::sync::mpsc::Sender<Vec<u8>>>,
        parking: Parking,
        tls: Arc<TlsState>,
        control: Option<ControlSender>,
    ) -> Core {
        let tls_generation = (tls.version(), tls.current());
        let (current, stats) = {
            let board = board.lock();
            let generation = &board.generation;
            let current = CoreGen::build(id, generation, None);
            let stats = CoreStats::new(board.members.len(), board.balancer_places());
            (current, stats)
        };
        let conn_limit = conn_limit(&current.config);
        let health = Applied::default();
        Core {
            id,
            stats: RefCell::new(stats),
            board,
            spares: RefCell::new(Vec::new()),
            access_log: access_log.map(CoreLog::new),
            applied: Cell::new(0),
            health: RefCell::new(health),
            seen_changes: Cell::new(0),
            current: RefCell::new(Rc::new(current)),
            older: RefCell::new(Vec::new()),
            shutdown: Notify::default(),
            stopping: Cell::new(false),
            stop_deadline: Cell::new(None),
            conn_closed: Notify::default(),
            active: Cell::new(0),
            conn_limit: Cell::new(conn_limit),
            admin_active: Cell::new(0),
            admin_limit: ADMIN_CONNECTIONS_PER_CORE,
            parking,
            tls,
            tls_generation: RefCell::new(tls_generation),
            control,
        }
    }

    /// The configuration generation new requests run on.
    pub fn gen(&self) -> Rc<CoreGen> {
        self.current.borrow().clone()
    }

    /// Whether `gen` is still the one new requests run on.
    pub fn is_current(&self, gen: &CoreGen) -> bool {
        self.current.borrow().number == gen.number
    }

    /// The rustls configuration of the listener in slot `slot`, if it speaks TLS: the newest
    /// generation (a reload is seen by the next handshake; one atomic load when there was none).
    pub fn tls_config(&self, slot: usize) -> Option<Arc<rustls::ServerConfig>> {
        self.refresh_tls();
        let generation = self.tls_generation.borrow();
        generation.1.configs.get(slot)?.clone()
    }

    /// Takes the newest certificate generation if a reload made one (one atomic load if not).
    fn refresh_tls(&self) {
        let version = self.tls.version();
        let mut generation = self.tls_generation.borrow_mut();
        if generation.0 != version {
            *generation = (version, self.tls.current());
        }
    }

    /// Keeps an idle or closed connection's buffers for reuse (up to a bound; beyond it they are
    /// freed).
    pub fn keep_spare(&self, spare: Spare) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < MAX_SPARES {
            spares.push(spare);
        }
    }

    /// Takes `c`'s buffers, emptied, as a spare set (nothing when it holds none).
    pub fn keep_buffers_of(&self, c: &mut Client) {
        if let Some(spare) = c.lend_buffers() {
            self.keep_spare(spare);
        }
    }

    /// A set of buffers for a connection that has data (again, or for the first time).
    pub fn take_spare(&self) -> Spare {
        self.spares.borrow_mut().pop().unwrap_or_default()
    }

    /// When the shutdown grace ends, once the shutdown began: what is still open then is closed
    /// (tunnels close just before, `tunnel`).
    pub fn stop_deadline(&self) -> Option<Instant> {
        self.stop_deadline.get()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Whether an answer now is its connection's last (`Connection: close`): the server stops,
    /// or a reload removed the connection's listener (`slot`).
    pub fn ends_connection(&self, gen: &CoreGen, slot: usize) -> bool {
        self.is_stopping() || !gen.is_open(slot)
    }

    /// One connection fewer: wakes the accept loop held by `max_connections`, or the drain.
    pub fn connection_closed(&self) {
        let n = self.active.get() - 1;
        self.active.set(n);
        if self.is_stopping() || n + 1 == self.conn_limit.get() {
            self.conn_closed.notify_all();
        }
    }

    /// One admin connection fewer: wakes the admin accept loop held by its limit.
    pub fn admin_closed(&self) {
        let n = self.admin_active.get() - 1;
        self.admin_active.set(n);
        if n + 1 == self.admin_limit {
            self.conn_closed.notify_all();
        }
    }

    /// Begins the shutdown, whose grace ends at `deadline`.
    pub fn begin_shutdown(&self, deadline: Instant) {
        self.stop_deadline.set(Some(deadline));
        self.stopping.set(true);
        self.shutdown.notify_all();
    }

    /// Parks a connection that has nothing read and not served, until its deadline (see
    /// `park`). While the server stops, the connection closes instead.
    pub fn park(self: &Rc<Self>, parked: crate::park::Parked, guard: ConnGuard) {
        if self.is_stopping() {
            return;
        }
        let peer = parked.peer;
        if let Err(e) = self.parking.insert(parked) {
            // Cannot watch it: it closes (the client reconnects, as after a keep-alive timeout).
            tracing::warn!(peer = %peer, error = %e, "cannot park an idle connection; closing it");
            return;
        }
        guard.keep();
        if self.parking.schedule_release() {
            compio::runtime::spawn(release_when_quiet(self.clone())).detach();
        }
    }

    /// Closes parked connections for which `close` is true.
    pub fn close_parked(&self, close: impl Fn(&crate::park::Parked) -> bool) {
        for _ in 0..self.parking.close_where(close) {
            self.connection_closed();
        }
    }
}

/// Waits for parking to pause, then hands freed memory back (see `park::RELEASE_QUIET`).
async fn release_when_quiet(core: Rc<Core>) {
    let started = Instant::now();
    loop {
        let seen = core.parking.parked_since_release();
        compio::time::sleep(crate::park::RELEASE_QUIET).await;
        if core.parking.parked_since_release() == seen
            || started.elapsed() >= crate::park::RELEASE_AT_MOST
        {
            break;
        }
    }
    if core.parking.release_due() {
        // What the burst grew and no one uses now: the slabs' spare slots, then the pages.
        core.spares.borrow_mut().truncate(SPARES_WHEN_QUIET);
        crate::deadline::trim();
        core.shutdown.trim();
        core.conn_closed.trim();
        core.parking.trim();
        crate::allocator::release_free_pages();
    }
}

/// Decrements the active count when a connection's task ends, however it ends (`None`: the
/// connection was parked and keeps its place).
pub struct ConnGuard(Option<Rc<Core>>);

impl ConnGuard {
    pub fn new(core: Rc<Core>) -> ConnGuard {
        ConnGuard(Some(core))
    }

    /// Keeps the connection's place in the active count without a guard (it is being parked).
    pub fn keep(mut self) {
        self.0 = None;
    }

    /// Takes back the place of a connection that `keep` left in the count.
    pub fn adopt(core: Rc<Core>) -> ConnGuard {
        ConnGuard::new(core)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(core) = self.0.take() {
            core.connection_closed();
        }
    }
}

/// Counts an admin connection open while it lives, however its task ends.
pub struct AdminGuard(Rc<Core>);

impl AdminGuard {
    pub fn new(core: Rc<Core>) -> AdminGuard {
        core.admin_active.set(core.admin_active.get() + 1);
        AdminGuard(core)
    }
}

impl Drop for AdminGuard {
    fn drop(&mut self) {
        self.0.admin_closed();
    }
}

/// Adopts a newer configuration generation if one was published, applies pending admin changes
/// and health-check results to this core's balancers and publishes its statistics, waiting for
/// the board if it must (at start and at the end only).
pub fn publish(core: &Core, now: Instant) {
    publish_on(core, &mut core.board.lock(), now);
}

/// `publish` if nobody holds the board (an admin request's own figures, which must not wait for
/// a page being built); false, nothing done, when someone does.
pub fn try_publish(core: &Core, now: Instant) -> bool {
    match core.board.try_lock() {
        Some(mut board) => {
            publish_on(core, &mut board, now);
            true
        }
        None => false,
    }
}

/// `publish` on the locked board. `filed_at` names the second the figures are filed under (the
/// moment a tick decided to publish, which may be earlier than now); changes apply as of now.
pub fn publish_on(core: &Core, board: &mut BoardData, filed_at: Instant) {
    core.seen_changes.set(core.board.changes());
    let now = Instant::now();
    let gen = apply_board(core, board, now);
    let upstreams = gen.upstreams.borrow();
    let mut stats = core.stats.borrow_mut();
    stats.core.connections_active = core.active.get() as u64;
    stats.core.connections_parked = core.parking.count() as u64;
    for (b, u) in upstreams.iter().enumerate() {
        for (m, &place) in gen.layout.members[b].iter().enumerate() {
            let ms = stats.member(place);
            ms.counters.failed_cores = u64::from(u.balancer.is_failed(m, now));
            ms.counters.in_flight = u64::from(u.balancer.in_flight(m));
        }
    }
    // Requests still running on older generations count too (a drain waits for them).
    core.older.borrow_mut().retain(|old| {
        let Some(old) = old.upgrade() else {
            return false;
        };
        for (b, u) in old.upstreams.borrow().iter().enumerate() {
            for (m, &place) in old.layout.members[b].iter().enumerate() {
                stats.member(place).counters.in_flight += u64::from(u.balancer.in_flight(m));
            }
        }
        true
    });
    board.publish(core.id, &mut stats, core.applied.get(), filed_at);
}

/// Applies a new generation, admin changes and health-check state changes soon after they are
/// made: the worker calls this every 100 ms; it costs one atomic load when nothing changed.
pub fn apply_if_changed(core: &Core, now: Instant) {
    let changes = core.board.changes();
    if changes == core.seen_changes.get() {
        return;
    }
    // Held by a reader: the next tick tries again (`seen_changes` has not moved).
    let Some(mut board) = core.board.try_lock() else {
        return;
    };
    core.seen_changes.set(changes);
    apply_board(core, &mut board, now);
}

/// Adopts the board's generation if newer, then applies admin changes and health results to it;
/// returns the generation this core now runs.
fn apply_board(core: &Core, board: &mut BoardData, now: Instant) -> Rc<CoreGen> {
    let force = adopt_generation(core, board);
    let gen = core.gen();
    apply_changes(
        core,
        &gen,
        board,
        &mut gen.upstreams.borrow_mut(),
        now,
        force,
    );
    gen
}

/// Moves this core to the board's generation if it is newer (`core_gen`). Returns whether it
/// did: the admin state and health results must then be applied to the new balancers in full.
fn adopt_generation(core: &Core, board: &mut BoardData) -> bool {
    let old = core.gen();
    let generation = board.generation.clone();
    if generation.number == old.number {
        return false;
    }
    let next = CoreGen::build(core.id, &generation, Some(&old));
    core.stats
        .borrow_mut()
        .grow(board.members.len(), board.balancer_places());
    core.conn_limit.set(conn_limit(&next.config));
    *core.current.borrow_mut() = Rc::new(next);
    core.older.borrow_mut().push(Rc::downgrade(&old));
    board.core_generation[core.id] = generation.number;
    // A larger connection limit lets a waiting accept loop go on.
    core.conn_closed.notify_all();
    tracing::debug!(
        core = core.id,
        generation = generation.number,
        "configuration generation adopted"
    );
    true
}

/// This core's share of `max_connections`.
fn conn_limit(config: &Config) -> usize {
    (config.limits.max_connections / config.server.workers).max(1)
}

/// Applies what this core has not applied yet of the admin changes and health results (all of
/// them with `force`).
fn apply_changes(
    core: &Core,
    gen: &CoreGen,
    board: &mut BoardData,
    upstreams: &mut [Upstream],
    now: Instant,
    force: bool,
) {
    let before = (core.applied.get(), core.health.borrow().version());
    if force || board.admin_version != core.applied.get() {
        for (b, u) in upstreams.iter_mut().enumerate() {
            for (m, &place) in gen.layout.members[b].iter().enumerate() {
                let a = board.admin[place];
                u.balancer.set_status(m, a.status, a.weight, now);
            }
        }
        core.applied.set(board.admin_version);
    }
    let mut health = core.health.borrow_mut();
    health.apply(board, &gen.layout, force, |b, m, down, passed_at| {
        upstreams[b].balancer.set_health(m, down, passed_at, now)
    });
    board.health_applied[core.id] = health.version();
    // A member may take requests again: requests queued for a `max_conns` slot look again.
    if force || before != (core.applied.get(), health.version()) {
        for f in &gen.freed {
            f.notify_all();
        }
    }
}

/// `tls` if `config` has a TLS listener (what the status pages report on, what a TLS reload
/// needs), else `None`.
pub fn tls_listening<'a>(config: &Config, tls: &'a TlsState) -> Option<&'a TlsState> {
    let any = config.listen.iter().any(|l| l.tls.is_some());
    any.then_some(tls)
}
