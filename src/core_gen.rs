//! What one core runs of one configuration generation (`CoreGen`: its routes, its balancers'
//! cursors and pools, its members' TLS settings) and how a core moves to the next one.
//!
//! A request takes the core's generation when it starts (an `Rc`) and finishes on it, so a reload
//! never changes the members or settings under a request in flight; the next request of a
//! keep-alive connection takes the newer one. Moving to a new generation carries over, for every
//! member whose identity (balancer name + URL, `layout`) it keeps: its failure window, health
//! verdict and slow start, and — for a plain or AJP member ringlb connects to in the same way —
//! its idle pooled connections. Every other idle connection of the old generation is handed to
//! the new one's `retiring`, which the tick's sweep closes a few at a time (`pool`'s header says
//! why), and a request finishing on an older generation does not pool its member connection.
//!
//! Owns: building a core's generation and the carry-over. Must never: run on the request path
//! (a core adopts at its 100 ms turn) or touch another core's state. Invariant: requests still in
//! flight on an older generation count against that generation's balancer for `max_conns` (the
//! core adds them to the member's published `in_flight`, so `drained` waits for them).

use std::cell::RefCell;
use std::sync::Arc;

use crate::balance::Balancer;
use crate::config::{Config, ListenConfig, MemberConfig};
use crate::generation::Generation;
use crate::layout::Layout;
use crate::notify::Notify;
use crate::pool::{Pool, Retiring};
use crate::route::Router;
use crate::tls::upstream::MemberConfigs;

/// A balancer's per-core state: its cursor and its idle connections.
pub struct Upstream {
    pub balancer: Balancer,
    pub pool: Pool<crate::stream::Stream>,
}

/// One core's state for one generation.
pub struct CoreGen {
    pub number: u64,
    pub config: Arc<Config>,
    pub layout: Layout,
    /// By listener slot: where its settings are (`None`: a slot this generation knows nothing of).
    listen_index: Vec<Option<SlotAt>>,
    /// The last settings of listeners a reload removed.
    removed: Vec<ListenConfig>,
    pub router: Router,
    pub upstreams: RefCell<Vec<Upstream>>,
    /// Idle connections the reload to this generation did not carry over, closed by the tick's
    /// sweep within its budget before any expired pooled one.
    pub retiring: RefCell<Retiring<crate::stream::Stream>>,
    /// Per balancer: fires when a member at its `max_conns` share ends a request, and when admin
    /// changes or health results are applied (requests queued for a member wait on it).
    pub freed: Vec<Notify>,
    /// `[balancer][member]`: how this core speaks TLS to `https://` members (its own session
    /// caches).
    pub member_tls: MemberConfigs,
}

impl CoreGen {
    /// Core `core_id`'s state for `generation`, continuing `old` for the members both have.
    pub fn build(core_id: usize, generation: &Generation, old: Option<&CoreGen>) -> CoreGen {
        let config = generation.config.clone();
        let workers = config.server.workers;
        // Always the new generation's TLS settings: a CA file replaced at the same path is read
        // again (the sessions cached for the old settings are not carried).
        let member_tls = generation.member_tls.for_core();
        let mut upstreams: Vec<Upstream> = config
            .balancers
            .iter()
            .map(|b| Upstream {
                balancer: Balancer::new(b, core_id, workers),
                pool: Pool::new(b.members.len(), b.max_idle_per_member, b.idle_ttl),
            })
            .collect();
        let mut retiring = Retiring::default();
        if let Some(old) = old {
            let now = std::time::Instant::now();
            let mut old_ups = old.upstreams.borrow_mut();
            for (b, bc) in config.balancers.iter().enumerate() {
                for (m, mc) in bc.members.iter().enumerate() {
                    let Some((ob, om)) = old.find(generation.layout.member(b, m)) else {
                        continue;
                    };
                    let (new_up, old_up) = (&mut upstreams[b], &mut old_ups[ob]);
                    new_up.balancer.carry(m, &old_up.balancer, om);
                    if same_connection(mc, &old.config.balancers[ob].members[om]) {
                        let over = new_up.pool.put_member(m, old_up.pool.take_member(om, now));
                        retiring.add(over);
                    }
                }
            }
            // What did not carry over (removed or changed members' connections, expired ones) is
            // closed by the sweep, with what the old generation had not yet closed of its own.
            for up in old_ups.iter_mut() {
                retiring.add(up.pool.drain());
            }
            retiring.append(old.retiring.take());
        }
        let listeners = &generation.listeners;
        let removed = listeners.removed.iter().map(|(slot, _)| *slot);
        let slots = listeners.slots.iter().copied().chain(removed);
        let mut listen_index = vec![None; slots.max().map_or(0, |m| m + 1)];
        for (i, &slot) in listeners.slots.iter().enumerate() {
            listen_index[slot] = Some(SlotAt::Open(i));
        }
        for (i, (slot, _)) in listeners.removed.iter().enumerate() {
            listen_index[*slot] = Some(SlotAt::Removed(i));
        }
        CoreGen {
            number: generation.number,
            listen_index,
            removed: listeners.removed.iter().map(|(_, l)| l.clone()).collect(),
            router: Router::new(&config.routes),
            freed: config.balancers.iter().map(|_| Notify::default()).collect(),
            layout: generation.layout.clone(),
            upstreams: RefCell::new(upstreams),
            retiring: RefCell::new(retiring),
            member_tls,
            config,
        }
    }

    /// The settings of the listener in slot `slot`: this generation's, or for a listener a
    /// reload removed, its last (whose connections still get an answer).
    pub fn listen(&self, slot: usize) -> Option<&ListenConfig> {
        match self.listen_index.get(slot).copied().flatten()? {
            SlotAt::Open(i) => self.config.listen.get(i),
            SlotAt::Removed(i) => self.removed.get(i),
        }
    }

    /// Whether this generation has the listener in slot `slot` (if not, its connections end
    /// after their current request, and its sockets close).
    pub fn is_open(&self, slot: usize) -> bool {
        matches!(self.listen_index.get(slot), Some(Some(SlotAt::Open(_))))
    }

    /// The `(balancer, member)` at `place` in this generation.
    fn find(&self, place: usize) -> Option<(usize, usize)> {
        self.layout
            .members
            .iter()
            .enumerate()
            .find_map(|(b, ms)| ms.iter().position(|&p| p == place).map(|m| (b, m)))
    }
}

/// Where a listener slot's settings are in a `CoreGen`.
#[derive(Debug, Clone, Copy)]
enum SlotAt {
    /// `config.listen[i]`.
    Open(usize),
    /// `removed[i]`.
    Removed(usize),
}

/// Whether a connection made for `old` is one ringlb would make for `new`.
/// `https://` members' connections never carry over: a CA file replaced at the same path may no
/// longer vouch for what they verified.
fn same_connection(new: &MemberConfig, old: &MemberConfig) -> bool {
    new.tls.is_none()
        && old.tls.is_none()
        && new.url == old.url
        && new.addr == old.addr
        && new.protocol == old.protocol
        && new.secret == old.secret
        && new.packet_size == old.packet_size
        && new.host_port == old.host_port
}
