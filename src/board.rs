//! The stats board: where every core publishes its statistics once a second, and where admin
//! changes and health-check results wait for the cores to pick them up.
//!
//! Owns: lifetime histograms and a 60-second ring of per-second histograms per member (merged
//! across cores with `Histogram::add`, never by averaging percentiles), each core's latest counters,
//! the admin state and the health-check state of every member. Must never: be touched on the
//! per-request path; it is the one place in ringlb with a lock, taken once a second per core (and
//! when `Board::changes` moved), by admin requests, by the health checker after each check and by
//! the main thread while it publishes a generation and waits for the cores to adopt it. A worker's
//! tick `try_lock`s it (and tries again at its next tick, waiting at most once a second), so a
//! reader (a page being built) does not stall a worker; admin changes lock it briefly, off the
//! workers (a blocking-pool thread, `admin::off_worker`); the page thread gives way to anyone
//! waiting (`lock_after_waiters`), so a wait lasts one page build.
//! Invariant: a histogram here is the exact sum of what the cores recorded.

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::config::{Config, HealthCheck, MemberStatus};
use crate::generation::{Generation, ListenerSlots};
use crate::health::state::{Change, MemberHealth, Probe};
use crate::layout::Registry;
use crate::stats::{
    add_to_lifetime, new_histogram, new_lifetime_histogram, CoreCounters, CoreStats,
    MemberCounters, PHASES,
};
use crate::tls::upstream::Upstreams;

/// Seconds in the recent window.
pub const WINDOW_SECS: u64 = 60;

/// Ring slots: the window's whole seconds plus the one in progress.
const RING_SLOTS: u64 = WINDOW_SECS + 1;

/// One second of merged latencies.
struct Slot {
    second: u64,
    hist: [Histogram<u32>; 3],
}

/// One member on the board.
pub struct MemberBoard {
    /// Latest cumulative counters from each core.
    pub per_core: Vec<MemberCounters>,
    pub lifetime: [Histogram<u64>; 3],
    ring: Vec<Option<Slot>>,
}

impl MemberBoard {
    fn new(workers: usize) -> MemberBoard {
        MemberBoard {
            per_core: vec![MemberCounters::default(); workers],
            lifetime: [
                new_lifetime_histogram(),
                new_lifetime_histogram(),
                new_lifetime_histogram(),
            ],
            ring: (0..RING_SLOTS).map(|_| None).collect(),
        }
    }

    /// Counters summed over cores.
    pub fn counters(&self) -> MemberCounters {
        let mut sum = MemberCounters::default();
        for c in &self.per_core {
            sum.selected += c.selected;
            sum.in_flight += c.in_flight;
            for i in 0..5 {
                sum.responses[i] += c.responses[i];
            }
            for (sum, n) in sum.failures.iter_mut().zip(c.failures) {
                *sum += n;
            }
            sum.retries += c.retries;
            sum.failovers += c.failovers;
            sum.pool_hits += c.pool_hits;
            sum.pool_misses += c.pool_misses;
            sum.bytes_sent += c.bytes_sent;
            sum.bytes_received += c.bytes_received;
            sum.failed_cores += c.failed_cores;
            sum.marked_failed += c.marked_failed;
            for i in 0..3 {
                sum.latency_sum_us[i] += c.latency_sum_us[i];
            }
        }
        sum
    }

    /// The last `WINDOW_SECS` whole seconds before `now_sec` (the one in progress is still
    /// filling), oldest first: each second and its histogram of `phase`, or `None` for a second
    /// with nothing recorded.
    pub fn seconds(&self, phase: usize, now_sec: u64) -> Vec<(u64, Option<&Histogram<u32>>)> {
        (now_sec.saturating_sub(WINDOW_SECS)..now_sec)
            .map(|sec| {
                let slot = self.ring[(sec % RING_SLOTS) as usize].as_ref();
                (
                    sec,
                    slot.filter(|s| s.second == sec).map(|s| &s.hist[phase]),
                )
            })
            .collect()
    }

    /// The merged histogram of `phase` over the last `WINDOW_SECS` seconds up to `now_sec`.
    pub fn window(&self, phase: usize, now_sec: u64) -> Histogram<u32> {
        let mut h = new_histogram();
        for slot in self.ring.iter().flatten() {
            if slot.second + WINDOW_SECS > now_sec {
                let _ = h.add(&slot.hist[phase]);
            }
        }
        h
    }
}

/// A member's state as set by the operator (the file's status until an admin change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberAdmin {
    pub status: MemberStatus,
    pub weight: u32,
    /// The admin version at which `status` was last set.
    pub since_version: u64,
}

/// Everything on the board. Members are kept by place (`layout`): the current generation's
/// `layout` maps `[balancer][member]` to places; `(b, m)` accessors below use it.
pub struct BoardData {
    pub started: Instant,
    pub driver: &'static str,
    pub workers: usize,
    pub cores: Vec<CoreCounters>,
    /// The admin version each core has applied.
    pub applied: Vec<u64>,
    /// When each core's tick last ran (its heartbeat: once a second, `beat`). The
    /// main thread feeds systemd's watchdog only while every one is recent (`sd_notify`).
    pub heartbeat: Vec<Instant>,
    /// By member place.
    pub members: Vec<MemberBoard>,
    /// Incremented by every admin change.
    pub admin_version: u64,
    /// By member place.
    pub admin: Vec<MemberAdmin>,
    /// Incremented by every health-check result that changes what a core applies.
    pub health_version: u64,
    /// By member place, written by the health checker.
    pub health: Vec<MemberHealth>,
    /// The health version each core has applied.
    pub health_applied: Vec<u64>,
    /// Identities → places, extended when a generation is published.
    registry: Registry,
    /// The configuration in effect: what the reports show and what the cores adopt.
    pub generation: Arc<Generation>,
    /// The generation number each core runs.
    pub core_generation: Vec<u64>,
    /// Reloads that failed (the file did not load; the running configuration stayed).
    pub reload_failures: u64,
    /// Per worker, listening sockets a reload bound for it, by listener slot: the worker takes
    /// them when it adopts the generation that has them (`worker`).
    pub sockets: Vec<Vec<(usize, std::net::TcpListener)>>,
}

impl BoardData {
    pub fn new(config: Arc<Config>, member_tls: Upstreams) -> BoardData {
        let workers = config.server.workers;
        let mut registry = Registry::default();
        let layout = registry.assign(&config);
        let listeners = ListenerSlots::in_order(&config);
        let generation = Generation::new(1, config, layout, listeners, member_tls);
        let mut board = BoardData {
            started: Instant::now(),
            driver: "",
            workers,
            cores: vec![CoreCounters::default(); workers],
            applied: vec![0; workers],
            heartbeat: vec![Instant::now(); workers],
            members: Vec::new(),
            admin_version: 0,
            admin: Vec::new(),
            health_version: 0,
            health: Vec::new(),
            health_applied: vec![0; workers],
            registry,
            generation: Arc::new(generation),
            core_generation: vec![1; workers],
            reload_failures: 0,
            sockets: (0..workers).map(|_| Vec::new()).collect(),
        };
        board.add_places();
        board
    }

    /// A board for `config` (plain members only), for unit tests.
    #[cfg(test)]
    pub fn for_tests(config: Config) -> BoardData {
        let tls = Upstreams::load(&config).expect("plain members");
        BoardData::new(Arc::new(config), tls)
    }

    /// Publishes a new generation: unchanged members keep their place and everything kept there
    /// (statistics, histograms, admin changes, health state); new members start as the file
    /// says. `listeners`: the slot of each `[[listen]]`. The cores adopt it at their next turn
    /// (`Board::changed`).
    pub fn publish_generation(
        &mut self,
        config: Arc<Config>,
        member_tls: Upstreams,
        listeners: ListenerSlots,
    ) -> u64 {
        let layout = self.registry.assign(&config);
        let number = self.generation.number + 1;
        let next = Generation::new(number, config, layout, listeners, member_tls);
        let old = std::mem::replace(&mut self.generation, Arc::new(next));
        self.add_places();
        self.follow_file(&old);
        number
    }

    /// Where the new file differs from the previous one for a member, the file wins: a changed
    /// status or weight replaces an admin change, a changed health check starts from its first
    /// probe. A member back after a reload without it starts as the file says.
    fn follow_file(&mut self, old: &Generation) {
        let generation = self.generation.clone();
        let mut admin_changed = false;
        let mut health_changed = false;
        for (b, bc) in generation.config.balancers.iter().enumerate() {
            for (m, mc) in bc.members.iter().enumerate() {
                let place = generation.layout.member(b, m);
                let before = old.layout.members.iter().enumerate().find_map(|(ob, ms)| {
                    let om = ms.iter().position(|&p| p == place)?;
                    Some(&old.config.balancers[ob].members[om])
                });
                let file_admin = (mc.status, mc.weight);
                if before.is_none_or(|o| (o.status, o.weight) != file_admin) {
                    let a = &mut self.admin[place];
                    if (a.status, a.weight) != file_admin {
                        admin_changed = true;
                        a.status = mc.status;
                        a.weight = mc.weight;
                        a.since_version = self.admin_version + 1;
                    }
                }
                if before.is_none_or(|o| o.health != mc.health) {
                    self.health[place] = MemberHealth::new(mc.health.method);
                    health_changed = true;
                }
            }
        }
        if admin_changed {
            self.admin_version += 1;
        }
        if health_changed {
            self.health_version += 1;
        }
    }

    /// Board entries for places the registry gave out since the last call.
    fn add_places(&mut self) {
        let generation = self.generation.clone();
        for (b, bc) in generation.config.balancers.iter().enumerate() {
            for (m, mc) in bc.members.iter().enumerate() {
                let place = generation.layout.member(b, m);
                if place < self.members.len() {
                    continue;
                }
                debug_assert_eq!(place, self.members.len(), "places are given in order");
                self.members.push(MemberBoard::new(self.workers));
                self.admin.push(MemberAdmin {
                    status: mc.status,
                    weight: mc.weight,
                    since_version: 0,
                });
                self.health.push(MemberHealth::new(mc.health.method));
            }
        }
        debug_assert_eq!(self.members.len(), self.registry.member_places());
    }

    /// How many balancer places exist.
    pub fn balancer_places(&self) -> usize {
        self.registry.balancer_places()
    }

    /// The place of member `m` of balancer `b` in the generation in effect.
    pub fn place(&self, b: usize, m: usize) -> usize {
        self.generation.layout.member(b, m)
    }

    /// The place of balancer `b` in the generation in effect.
    pub fn balancer_place(&self, b: usize) -> usize {
        self.generation.layout.balancers[b]
    }

    /// Member `m` of balancer `b` of the generation in effect.
    pub fn member(&self, b: usize, m: usize) -> &MemberBoard {
        &self.members[self.place(b, m)]
    }

    pub fn admin_of(&self, b: usize, m: usize) -> MemberAdmin {
        self.admin[self.place(b, m)]
    }

    pub fn health_of(&self, b: usize, m: usize) -> &MemberHealth {
        &self.health[self.place(b, m)]
    }

    /// Whether every core runs the generation in effect.
    pub fn all_cores_adopted(&self) -> bool {
        let n = self.generation.number;
        self.core_generation.iter().all(|&g| g == n)
    }

    /// Whether every core has applied member `m`'s latest health state (up or down).
    pub fn health_in_effect(&self, b: usize, m: usize) -> bool {
        let since = self.health_of(b, m).since_version;
        self.health_applied.iter().all(|&v| v >= since)
    }

    /// Records a health check of the member at `place`; the version moves when the cores have
    /// something to apply (a state change, or a pass that ends a passive failure window).
    pub fn record_health(
        &mut self,
        place: usize,
        hc: &HealthCheck,
        probe: Probe,
        now: Instant,
    ) -> Change {
        let h = &mut self.health[place];
        let passes = h.pass_seq;
        let change = h.record(hc, probe, now);
        if change != Change::None || h.pass_seq != passes {
            self.health_version += 1;
        }
        if change != Change::None {
            h.since_version = self.health_version;
        }
        change
    }

    /// Seconds since start (the ring's clock).
    pub fn now_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// A core's once-a-second heartbeat, from its tick only (an admin request that makes a core
    /// publish early proves its loop runs, not that its tick does).
    pub fn beat(&mut self, core: usize) {
        self.heartbeat[core] = Instant::now();
    }

    /// Takes one core's statistics: counters replace that core's previous ones, histograms are
    /// added to the lifetime and to the current second, then reset on the core.
    /// `now`: the worker's clock when it decided to publish, which names the second (the lock may
    /// have been waited for).
    pub fn publish(
        &mut self,
        core: usize,
        stats: &mut CoreStats,
        applied_version: u64,
        now: Instant,
    ) {
        let now_sec = now.saturating_duration_since(self.started).as_secs();
        let slot_index = (now_sec % RING_SLOTS) as usize;
        self.cores[core] = stats.core.clone();
        self.applied[core] = applied_version;
        for (place, ms) in stats.members.iter_mut().enumerate() {
            let Some(board) = self.members.get_mut(place) else {
                continue;
            };
            board.per_core[core] = ms.counters.clone();
            if ms.hist.iter().all(|h| h.is_empty()) {
                continue;
            }
            let slot = board.ring[slot_index].get_or_insert_with(|| Slot {
                second: now_sec,
                hist: [new_histogram(), new_histogram(), new_histogram()],
            });
            if slot.second != now_sec {
                slot.second = now_sec;
                slot.hist.iter_mut().for_each(Histogram::reset);
            }
            for p in PHASES {
                let i = p as usize;
                add_to_lifetime(&mut board.lifetime[i], &ms.hist[i]);
                let _ = slot.hist[i].add(&ms.hist[i]);
                ms.hist[i].reset();
            }
        }
    }

    /// Whether every core published within `stale` of `now` (a core whose tick stopped, a worker
    /// stuck in a loop, makes this false).
    pub fn heartbeats_fresh(&self, now: Instant, stale: std::time::Duration) -> bool {
        self.heartbeat
            .iter()
            .all(|&beat| now.saturating_duration_since(beat) <= stale)
    }

    /// Whether a draining member has no request in flight on any core, counted after every core
    /// applied the change (so no new request can have started since).
    pub fn drained(&self, b: usize, m: usize) -> bool {
        let admin = self.admin_of(b, m);
        admin.status == MemberStatus::Draining
            && self.applied.iter().all(|&v| v >= admin.since_version)
            && self.member(b, m).counters().in_flight == 0
    }

    /// Records an operator's change; the cores apply it within about 100 ms (`Board::changed`).
    pub fn set_member(
        &mut self,
        b: usize,
        m: usize,
        status: Option<MemberStatus>,
        weight: Option<u32>,
    ) {
        self.admin_version += 1;
        let place = self.place(b, m);
        let a = &mut self.admin[place];
        if let Some(s) = status {
            a.status = s;
            a.since_version = self.admin_version;
        }
        if let Some(w) = weight {
            a.weight = w;
        }
    }
}

/// The board shared by all workers and the admin endpoint.
pub struct Board {
    #[allow(clippy::disallowed_types)]
    inner: std::sync::Mutex<BoardData>,
    /// Moves after an admin change or a health-check state change, so that the cores apply it
    /// within their next 100 ms wake-up instead of their next publication.
    changes: std::sync::atomic::AtomicU64,
    /// Set during `[server] stop_delay`: `/healthz` answers 503 while ringlb still serves.
    draining: std::sync::atomic::AtomicBool,
    /// Threads blocked in `lock` now (`lock_after_waiters` lets them go first).
    waiting: std::sync::atomic::AtomicUsize,
}

impl Board {
    /// Says (to `/healthz`) that the process is about to stop.
    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn new(config: Arc<Config>, member_tls: Upstreams) -> Board {
        #[allow(clippy::disallowed_types)]
        let inner = std::sync::Mutex::new(BoardData::new(config, member_tls));
        Board {
            inner,
            changes: std::sync::atomic::AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Says that members changed (call after the change is on the board and the lock released).
    pub fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// How many times members changed so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Locks the board (never on the per-request path).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, BoardData> {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        guard
    }

    /// Locks the board once nobody else is waiting in `lock` (giving way for at most `patience`):
    /// what the page thread uses, so that the lock it releases goes to a waiting worker or the
    /// main thread instead of to its own next page.
    pub fn lock_after_waiters(
        &self,
        patience: std::time::Duration,
    ) -> std::sync::MutexGuard<'_, BoardData> {
        let until = Instant::now() + patience;
        while self.waiting.load(std::sync::atomic::Ordering::Acquire) > 0 && Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        self.lock()
    }

    /// Locks the board if nobody holds it: what a worker's tick uses, so that a reader (a page
    /// being built, the health checker, a reload) does not make it wait; it tries again at its
    /// next 100 ms tick.
    pub fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, BoardData>> {
        match self.inner.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Phase;
    use std::time::Duration;

    fn config(workers: usize) -> Config {
        let mut c = Config::parse(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [{ url = \"http://127.0.0.1:9\" }]\n",
        )
        .unwrap();
        c.server.workers = workers;
        c
    }

    #[test]
    fn merging_two_cores_gives_the_sum() {
        let mut board = BoardData::for_tests(config(2));
        let mut a = CoreStats::new(1, 1);
        let mut b = CoreStats::new(1, 1);
        for _ in 0..100 {
            a.member(0).record(Phase::Total, Duration::from_millis(1));
        }
        for _ in 0..300 {
            b.member(0).record(Phase::Total, Duration::from_millis(100));
        }
        a.member(0).counters.selected = 100;
        b.member(0).counters.selected = 300;
        board.publish(0, &mut a, 0, Instant::now());
        board.publish(1, &mut b, 0, Instant::now());
        let m = board.member(0, 0);
        assert_eq!(m.counters().selected, 400);
        assert_eq!(m.lifetime[0].len(), 400);
        // p50 lies in the slow core's values: merged, not averaged.
        let p50 = m.lifetime[0].value_at_quantile(0.5);
        assert!((99_000..=101_000).contains(&p50), "{p50}");
        assert_eq!(m.window(0, board.now_sec()).len(), 400);
        // Histograms were reset on the cores; counters stay cumulative.
        assert!(a.member(0).hist[0].is_empty());
        board.publish(0, &mut a, 0, Instant::now());
        assert_eq!(board.member(0, 0).lifetime[0].len(), 400);
        assert_eq!(board.member(0, 0).counters().selected, 400);
    }

    #[test]
    fn the_oldest_whole_second_survives_the_one_in_progress() {
        let mut board = BoardData::for_tests(config(1));
        let mut core = CoreStats::new(1, 1);
        let publish_at = |board: &mut BoardData, core: &mut CoreStats, sec: u64, n: usize| {
            board.started = Instant::now() - Duration::from_secs(sec);
            for _ in 0..n {
                core.member(0)
                    .record(Phase::Total, Duration::from_millis(1));
            }
            board.publish(0, core, 0, Instant::now());
        };
        publish_at(&mut board, &mut core, 5, 10);
        publish_at(&mut board, &mut core, 65, 20);
        let seconds = board.member(0, 0).seconds(0, 65);
        assert_eq!(seconds.len(), WINDOW_SECS as usize);
        assert_eq!(seconds[0].0, 5);
        assert_eq!(
            seconds[0].1.map(|h| h.len()),
            Some(10),
            "second 5 is still whole"
        );
        assert!(seconds[1..].iter().all(|(_, h)| h.is_none()));
        assert_eq!(
            board.member(0, 0).window(0, 65).len(),
            20,
            "the window ends at 65"
        );
    }

    fn members(spec: &str) -> Arc<Config> {
        let mut c = Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [{spec}]\n"
        ))
        .unwrap();
        c.server.workers = 1;
        Arc::new(c)
    }

    #[test]
    fn a_reload_keeps_admin_changes_unless_the_file_changed_that_member() {
        let one = "{ url = \"http://127.0.0.1:9\" }";
        let two = "{ url = \"http://127.0.0.1:10\" }";
        let cfg = members(&format!("{one}, {two}"));
        let mut board = BoardData::new(cfg.clone(), Upstreams::load(&cfg).unwrap());
        board.set_member(0, 0, Some(MemberStatus::Disabled), None);
        board.set_member(0, 1, Some(MemberStatus::Disabled), None);
        // The file re-weights the second member only, and lists it first.
        let next = members(&format!(
            "{{ url = \"http://127.0.0.1:10\", weight = 4 }}, {one}"
        ));
        board.publish_generation(
            next.clone(),
            Upstreams::load(&next).unwrap(),
            ListenerSlots::in_order(&next),
        );
        assert_eq!(board.admin_of(0, 1).status, MemberStatus::Disabled, "kept");
        assert_eq!(
            board.admin_of(0, 0).status,
            MemberStatus::Active,
            "the file changed it"
        );
        assert_eq!(board.admin_of(0, 0).weight, 4);
        // Removed, then back: as the file says, not as it was left.
        let only = members(one);
        board.publish_generation(
            only.clone(),
            Upstreams::load(&only).unwrap(),
            ListenerSlots::in_order(&only),
        );
        board.publish_generation(
            next.clone(),
            Upstreams::load(&next).unwrap(),
            ListenerSlots::in_order(&next),
        );
        assert_eq!(board.admin_of(0, 0).weight, 4);
        assert_eq!(board.admin_of(0, 0).status, MemberStatus::Active);
    }

    #[test]
    fn heartbeats_are_fresh_only_while_every_core_publishes() {
        let mut board = BoardData::for_tests(config(2));
        let stale = Duration::from_secs(5);
        let start = Instant::now();
        assert!(board.heartbeats_fresh(start, stale), "fresh at start");
        let later = start + Duration::from_secs(6);
        assert!(!board.heartbeats_fresh(later, stale), "nobody published");
        // Only core 0 publishes: core 1 is stuck.
        board.heartbeat[0] = later;
        assert!(!board.heartbeats_fresh(later, stale));
        board.heartbeat[1] = later - Duration::from_secs(1);
        assert!(board.heartbeats_fresh(later, stale));
        // The tick's beat stamps the core's heartbeat with the current time; a publication alone
        // (an admin request's) does not.
        board.heartbeat[1] = start;
        board.publish(1, &mut CoreStats::new(1, 1), 0, Instant::now());
        assert_eq!(board.heartbeat[1], start);
        board.beat(1);
        assert!(board.heartbeat[1] > start);
    }

    #[test]
    fn a_worker_never_waits_for_a_reader() {
        let cfg = config(1);
        let tls = Upstreams::load(&cfg).expect("plain members");
        let board = Board::new(cfg.into(), tls);
        let reader = board.lock();
        // What a worker's tick does while a page is being built: nothing, at once.
        assert!(board.try_lock().is_none());
        drop(reader);
        let mut worker = board.try_lock().expect("free again");
        worker.publish(0, &mut CoreStats::new(1, 1), 0, Instant::now());
    }

    #[test]
    fn a_page_build_gives_way_to_whoever_waits_for_the_board() {
        let cfg = config(1);
        let tls = Upstreams::load(&cfg).expect("plain members");
        let board = Arc::new(Board::new(cfg.into(), tls));
        let order = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let held = board.lock();
        // A worker blocks in `lock` (say its tick's once-a-second wait)…
        let (b, o) = (board.clone(), order.clone());
        let worker = std::thread::spawn(move || {
            let _g = b.lock();
            o.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        });
        while board.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // …and the page thread's next build asks after it, then the board is released.
        let (b, o) = (board.clone(), order.clone());
        let page = std::thread::spawn(move || {
            let _g = b.lock_after_waiters(Duration::from_secs(5));
            o.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(
            worker.join().unwrap(),
            0,
            "the waiting worker got the board first"
        );
        assert_eq!(page.join().unwrap(), 1);
    }

    #[test]
    fn drained_needs_every_core_and_no_flight() {
        let mut board = BoardData::for_tests(config(2));
        board.set_member(0, 0, Some(MemberStatus::Draining), None);
        assert!(!board.drained(0, 0), "cores have not applied it yet");
        let mut s = CoreStats::new(1, 1);
        s.member(0).counters.in_flight = 1;
        board.publish(0, &mut s, 1, Instant::now());
        board.publish(1, &mut CoreStats::new(1, 1), 1, Instant::now());
        assert!(!board.drained(0, 0), "one request in flight");
        s.member(0).counters.in_flight = 0;
        board.publish(0, &mut s, 1, Instant::now());
        assert!(board.drained(0, 0));
    }
}
