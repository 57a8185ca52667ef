//! One core's event loop: its compio runtime (one io_uring, or epoll), its accept loops, its pool
//! sweeper, and its share of shutdown.
//!
//! Owns: `Core`, the state that belongs to one core alone (balancer cursors, pools, counters).
//! Must never: share `Core` with another thread or take a lock. Invariant: everything mutable here
//! is touched only from this worker's thread; cross-core traffic is the shutdown signal alone.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compio::driver::{DriverType, ProactorBuilder};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::RuntimeBuilder;
use futures_util::future::{select, Either};

use crate::access_log::CoreLog;
use crate::balance::Balancer;
use crate::board::Board;
use crate::config::{Config, Driver};
use crate::conn::Spare;
use crate::notify::Notify;
use crate::park::{self, Parking};
use crate::pool::Pool;
use crate::route::Router;
use crate::stats::CoreStats;
use crate::{admin, conn};

/// Buffer sets lent by idle connections, kept per worker for reuse.
const MAX_SPARES: usize = 64;

/// A balancer's per-core state: its cursor and its idle connections.
pub struct Upstream {
    pub balancer: Balancer,
    pub pool: Pool<TcpStream>,
}

/// Everything one core owns.
pub struct Core {
    pub id: usize,
    pub config: Arc<Config>,
    pub router: Router,
    pub upstreams: RefCell<Vec<Upstream>>,
    /// This core's counters and histograms (published to `board` once a second).
    pub stats: RefCell<CoreStats>,
    pub board: Arc<Board>,
    /// Buffer sets of idle connections, for the next connection that wakes up.
    spares: RefCell<Vec<Spare>>,
    /// This core's access log buffer, when `[log] access` is set.
    pub access_log: Option<CoreLog>,
    /// The admin version this core has applied.
    applied: Cell<u64>,
    /// Fires once, when the server starts shutting down.
    pub shutdown: Notify,
    stopping: Cell<bool>,
    /// Fires when a connection closes and someone waits for that.
    conn_closed: Notify,
    active: Cell<usize>,
    conn_limit: usize,
    /// Connections idle past `park::PARK_AFTER`: no task, no buffers, a slot and an epoll entry.
    pub parking: Parking,
}

impl Core {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        board: Arc<Board>,
        access_log: Option<std::sync::mpsc::Sender<Vec<u8>>>,
        parking: Parking,
    ) -> Core {
        let upstreams = config
            .balancers
            .iter()
            .map(|b| Upstream {
                balancer: Balancer::new(b, id),
                pool: Pool::new(b.members.len(), b.max_idle_per_member, b.idle_ttl),
            })
            .collect();
        let conn_limit = (config.limits.max_connections / config.server.workers).max(1);
        let member_counts: Vec<usize> = config.balancers.iter().map(|b| b.members.len()).collect();
        Core {
            id,
            stats: RefCell::new(CoreStats::new(&member_counts)),
            board,
            spares: RefCell::new(Vec::new()),
            access_log: access_log.map(CoreLog::new),
            applied: Cell::new(0),
            router: Router::new(&config.routes),
            config,
            upstreams: RefCell::new(upstreams),
            shutdown: Notify::default(),
            stopping: Cell::new(false),
            conn_closed: Notify::default(),
            active: Cell::new(0),
            conn_limit,
            parking,
        }
    }

    /// Keeps an idle connection's buffers for reuse (up to a bound; beyond it they are freed).
    pub fn keep_spare(&self, spare: Spare) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < MAX_SPARES {
            spares.push(spare);
        }
    }

    /// A set of buffers for a connection that has data again.
    pub fn take_spare(&self) -> Spare {
        self.spares.borrow_mut().pop().unwrap_or_default()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// One connection fewer: wakes the accept loop held by `max_connections`, or the drain.
    pub fn connection_closed(&self) {
        let n = self.active.get() - 1;
        self.active.set(n);
        if self.is_stopping() || n + 1 == self.conn_limit {
            self.conn_closed.notify_all();
        }
    }

    fn begin_shutdown(&self) {
        self.stopping.set(true);
        self.shutdown.notify_all();
    }
}

/// Decrements the active count when a connection's task ends, however it ends (`None`: the
/// connection was parked and keeps its place).
pub struct ConnGuard(Option<Rc<Core>>);

impl ConnGuard {
    fn new(core: Rc<Core>) -> ConnGuard {
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

/// Builds this worker's runtime with the configured driver.
pub fn build_runtime(driver: Driver) -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true);
    match driver {
        Driver::Auto => {}
        Driver::IoUring => {
            proactor.driver_type(DriverType::IoUring);
        }
        Driver::Epoll => {
            proactor.driver_type(DriverType::Poll);
        }
    }
    RuntimeBuilder::new().with_proactor(proactor).build()
}

/// The name of a runtime's driver, for the start-up log.
pub fn driver_name(rt: &compio::runtime::Runtime) -> &'static str {
    match rt.driver_type() {
        DriverType::IoUring => "io_uring",
        DriverType::Poll => "epoll",
        DriverType::IOCP => "iocp",
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Proxy,
    Admin,
}

/// Runs one worker until `stop` fires and its connections have drained (or the grace ran out).
pub async fn run(
    core: Rc<Core>,
    listeners: Vec<(std::net::TcpListener, Role)>,
    stop: futures_channel::oneshot::Receiver<()>,
) {
    for (l, role) in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => compio::runtime::spawn(accept_loop(core.clone(), l, role)).detach(),
            Err(e) => tracing::error!(worker = core.id, error = %e, "cannot use listener"),
        }
    }
    compio::runtime::spawn(tick(core.clone())).detach();
    compio::runtime::spawn(park::watch(core.clone())).detach();
    compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
    let _ = stop.await;
    core.begin_shutdown();
    let deadline = Instant::now() + core.config.server.shutdown_grace;
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

async fn accept_loop(core: Rc<Core>, listener: TcpListener, role: Role) {
    loop {
        if core.is_stopping() {
            return;
        }
        if core.active.get() >= core.conn_limit {
            // Over the limit: new connections wait in the kernel's backlog.
            let closed = std::pin::pin!(core.conn_closed.notified());
            let stop = std::pin::pin!(core.shutdown.notified());
            select(closed, stop).await;
            continue;
        }
        let accept = std::pin::pin!(listener.accept());
        let stop = std::pin::pin!(core.shutdown.notified());
        match select(accept, stop).await {
            Either::Left((Ok((stream, peer)), _)) => {
                core.active.set(core.active.get() + 1);
                if role == Role::Proxy {
                    core.stats.borrow_mut().core.connections_total += 1;
                }
                let guard = ConnGuard::new(core.clone());
                let core = core.clone();
                match role {
                    Role::Proxy => {
                        compio::runtime::spawn(conn::serve(core, stream, peer, guard)).detach()
                    }
                    Role::Admin => compio::runtime::spawn(async move {
                        let _guard = guard;
                        admin::serve(core, stream, peer).await
                    })
                    .detach(),
                }
            }
            Either::Left((Err(e), _)) => {
                tracing::warn!(worker = core.id, error = %e, "accept failed");
                compio::time::sleep(Duration::from_millis(50)).await;
            }
            Either::Right(_) => return,
        }
    }
}

/// Once a second: close idle member connections past their time to live, apply admin changes,
/// publish this core's statistics to the board.
async fn tick(core: Rc<Core>) {
    while !core.is_stopping() {
        let tick = std::pin::pin!(compio::time::sleep(Duration::from_secs(1)));
        let stop = std::pin::pin!(core.shutdown.notified());
        if let Either::Right(_) = select(tick, stop).await {
            return;
        }
        let now = Instant::now();
        for u in core.upstreams.borrow_mut().iter_mut() {
            u.pool.sweep(now);
        }
        park::sweep(&core, now);
        publish(&core, now);
        if let Some(log) = &core.access_log {
            log.flush();
        }
    }
}

/// Applies pending admin changes to this core's balancers and publishes its statistics.
pub fn publish(core: &Core, now: Instant) {
    let mut board = core.board.lock();
    let mut upstreams = core.upstreams.borrow_mut();
    if board.admin_version != core.applied.get() {
        for (b, u) in upstreams.iter_mut().enumerate() {
            for (m, a) in board.admin[b].iter().enumerate() {
                u.balancer.set_status(m, a.status, a.weight);
            }
        }
        core.applied.set(board.admin_version);
    }
    let mut stats = core.stats.borrow_mut();
    stats.core.connections_active = core.active.get() as u64;
    stats.core.connections_parked = core.parking.count() as u64;
    for (b, u) in upstreams.iter().enumerate() {
        for (m, ms) in stats.members[b].iter_mut().enumerate() {
            ms.counters.failed_cores = u64::from(u.balancer.is_failed(m, now));
        }
    }
    board.publish(core.id, &mut stats, core.applied.get());
}
