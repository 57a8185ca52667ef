//! A balancer's member choice on one core: which members may take a request (admin status,
//! `lbset` tiers, hot spares and standbys, passive failure windows, health-check results,
//! `max_conns`) and, among them, which one (`method`: smooth weighted round robin, least busy,
//! power of two choices; weights ramped by `slow_start`).
//!
//! Owns: each member's state on this core: cursor, requests in flight, failure window, health.
//! Must never: be shared between cores (no locks, no atomics), allocate per pick, or pick a member
//! that is disabled, draining, excluded, at its `max_conns` share, or failed (passively or by its
//! health check) unless the balancer says `all_failed = "try_all"`. Invariant: hot spares and
//! standbys take traffic only in the cases `pick` documents; `in_flight` is the count of requests
//! between `begin` and `end` on this core.

use std::time::{Duration, Instant};

use crate::config::{AllFailed, BalanceMethod, BalancerConfig, MemberStatus};

/// Weights are scaled so that a slow start can ramp in small steps.
const SCALE: i64 = 1000;

#[derive(Debug, Clone)]
struct Member {
    weight: i64,
    current: i64,
    status: MemberStatus,
    lbset: u32,
    /// Passive failure window (connect failure, `failontimeout`, `failonstatus`); it was marked
    /// `retry` before its end.
    failed_until: Option<Instant>,
    /// Taken out by its health check.
    down: bool,
    /// When it last came back (slow start ramps from here).
    returned: Option<Instant>,
    in_flight: u32,
    /// This core's share of `max_conns`.
    max_in_flight: u32,
}

/// One tier's candidates.
enum Tier {
    /// Members that can take the request now (a bit set).
    Members(u64),
    /// Members could take it but are all at their `max_conns` share.
    Busy,
    /// No member of this tier can take it.
    Empty,
}

/// The result of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Member(usize),
    /// Members could take it but all of them are at their `max_conns` share: wait or 503.
    Full,
    /// No member can take it.
    None,
}

/// One core's balancer state.
#[derive(Debug, Clone)]
pub struct Balancer {
    members: Vec<Member>,
    retry: Duration,
    method: BalanceMethod,
    all_failed: AllFailed,
    slow_start: Duration,
    /// The distinct `lbset` values, lowest first.
    sets: Vec<u32>,
    rng: u64,
}

impl Balancer {
    /// Builds the state for one core of `workers`; `core_id` staggers the start so cores do not
    /// move in step.
    pub fn new(cfg: &BalancerConfig, core_id: usize, workers: usize) -> Balancer {
        let mut sets: Vec<u32> = cfg.members.iter().map(|m| m.lbset).collect();
        sets.sort_unstable();
        sets.dedup();
        let mut b = Balancer {
            members: cfg
                .members
                .iter()
                .map(|m| Member {
                    weight: i64::from(m.weight),
                    current: 0,
                    status: m.status,
                    lbset: m.lbset,
                    failed_until: None,
                    down: false,
                    returned: None,
                    in_flight: 0,
                    max_in_flight: m
                        .max_conns
                        .map_or(u32::MAX, |c| c.div_ceil(workers.max(1) as u32)),
                })
                .collect(),
            retry: cfg.retry,
            method: cfg.method,
            all_failed: cfg.all_failed,
            slow_start: cfg.slow_start,
            sets,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (core_id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        };
        let total: i64 = b.members.iter().map(|m| m.weight).sum();
        let now = Instant::now();
        for _ in 0..(core_id as i64 % total.max(1)) {
            b.pick(now, 0);
        }
        b
    }

    /// Member `i` continues member `from` of `old` (a reload kept it): its failure window, health
    /// verdict and slow start carry over. Requests in flight stay counted on `old`, where they end.
    pub fn carry(&mut self, i: usize, old: &Balancer, from: usize) {
        let (m, o) = (&mut self.members[i], &old.members[from]);
        m.failed_until = o.failed_until;
        m.down = o.down;
        m.returned = o.returned;
    }

    /// Whether a member may take this request at all: its status takes traffic and it was not
    /// already tried for it (it may still be failed, or at its share).
    fn enabled(&self, i: usize, exclude: u64) -> bool {
        exclude & (1 << i) == 0 && self.members[i].status.takes_traffic()
    }

    fn healthy(&self, i: usize, now: Instant) -> bool {
        let m = &self.members[i];
        !m.down && m.failed_until.is_none_or(|t| t <= now)
    }

    fn full(&self, i: usize) -> bool {
        self.members[i].in_flight >= self.members[i].max_in_flight
    }

    /// Picks a member, skipping those in the `exclude` bit set:
    /// - the lowest `lbset` with a usable active member (or hot spare standing in for an
    ///   unusable active member of that set, one for one, in file order);
    /// - else a usable standby, lowest `lbset` first;
    /// - else, with `all_failed = "try_all"`, the same again ignoring failure windows and checks.
    ///
    /// A tier whose usable members are all at their `max_conns` share is busy: the request waits
    /// for it (`Full`) rather than spilling into a higher `lbset`, the standbys or failed members.
    pub fn pick(&mut self, now: Instant, exclude: u64) -> Pick {
        self.expire(now);
        for ignore_failures in [false, true] {
            if ignore_failures && self.all_failed != AllFailed::TryAll {
                break;
            }
            let usable = |b: &Balancer, i: usize| {
                b.enabled(i, exclude) && (ignore_failures || b.healthy(i, now))
            };
            for standby in [false, true] {
                for set in 0..self.sets.len() {
                    match self.tier(self.sets[set], standby, usable) {
                        Tier::Members(c) => return Pick::Member(self.choose(c, now)),
                        Tier::Busy => return Pick::Full,
                        Tier::Empty => {}
                    }
                }
            }
        }
        Pick::None
    }

    /// The candidates of one tier: the usable active members of `set` that are not at their
    /// share, and as many usable hot spares as active members of the set cannot take traffic (a
    /// full member is busy, not unusable: no spare stands in for it); or the set's standbys.
    fn tier(&self, set: u32, standby: bool, usable: impl Fn(&Balancer, usize) -> bool) -> Tier {
        let mut cands = 0u64;
        let mut busy = false;
        let mut missing = 0;
        let first = if standby {
            MemberStatus::Standby
        } else {
            MemberStatus::Active
        };
        for (i, m) in self.members.iter().enumerate() {
            if m.lbset != set {
                continue;
            }
            if m.status == first && usable(self, i) {
                if self.full(i) {
                    busy = true;
                } else {
                    cands |= 1 << i;
                }
            } else if !standby
                && m.status != MemberStatus::Standby
                && m.status != MemberStatus::HotSpare
            {
                missing += 1;
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if missing == 0 {
                break;
            }
            if m.lbset == set && m.status == MemberStatus::HotSpare && usable(self, i) {
                missing -= 1;
                if self.full(i) {
                    busy = true;
                } else {
                    cands |= 1 << i;
                }
            }
        }
        if cands != 0 {
            Tier::Members(cands)
        } else if busy {
            Tier::Busy
        } else {
            Tier::Empty
        }
    }

    /// Ends failure windows that are over (the member starts its slow start).
    fn expire(&mut self, now: Instant) {
        for m in &mut self.members {
            if m.failed_until.is_some_and(|t| t <= now) {
                m.failed_until = None;
                m.returned = Some(now);
            }
        }
    }

    /// A member's weight now (scaled), ramped during its slow start; never below 1.
    fn effective(&self, i: usize, now: Instant) -> i64 {
        let m = &self.members[i];
        let full = m.weight * SCALE;
        match m.returned {
            Some(t) if !self.slow_start.is_zero() => {
                let since = now.saturating_duration_since(t);
                if since >= self.slow_start {
                    full
                } else {
                    let f = since.as_millis() as i64;
                    (full * f / self.slow_start.as_millis().max(1) as i64).max(1)
                }
            }
            _ => full,
        }
    }

    /// Chooses among the candidate bit set by the balancer's method.
    fn choose(&mut self, cands: u64, now: Instant) -> usize {
        match self.method {
            BalanceMethod::RoundRobin => self.smooth(cands, now),
            BalanceMethod::LeastBusy => {
                // Round robin among the least busy (in flight per unit of weight).
                let mut least: Option<usize> = None;
                for i in bits(cands) {
                    if least.is_none_or(|l| self.busier(l, i, now)) {
                        least = Some(i);
                    }
                }
                let l = least.unwrap_or(0);
                let ties = bits(cands)
                    .filter(|&i| !self.busier(i, l, now) && !self.busier(l, i, now))
                    .fold(0u64, |acc, i| acc | 1 << i);
                self.smooth(ties, now)
            }
            BalanceMethod::P2c => match self.draw(cands, now) {
                None => None,
                Some(a) => match self.draw(cands & !(1 << a), now) {
                    Some(b) if self.busier(a, b, now) => Some(b),
                    _ => Some(a),
                },
            },
        }
        .unwrap_or(0)
    }

    /// Whether `a` has more requests in flight per unit of (effective) weight than `b`.
    fn busier(&self, a: usize, b: usize, now: Instant) -> bool {
        let (ma, mb) = (&self.members[a], &self.members[b]);
        i64::from(ma.in_flight) * self.effective(b, now)
            > i64::from(mb.in_flight) * self.effective(a, now)
    }

    /// Smooth weighted round robin over `cands` (nginx's algorithm).
    fn smooth(&mut self, cands: u64, now: Instant) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in bits(cands) {
            let w = self.effective(i, now);
            let m = &mut self.members[i];
            m.current += w;
            total += w;
            let current = m.current;
            if best.is_none_or(|b| current > self.members[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        self.members[b].current -= total;
        Some(b)
    }

    /// One member of `cands` drawn with probability proportional to its effective weight.
    fn draw(&mut self, cands: u64, now: Instant) -> Option<usize> {
        let total: i64 = bits(cands).map(|i| self.effective(i, now)).sum();
        if total == 0 {
            return None;
        }
        let mut r = (self.next_random() % total as u64) as i64;
        for i in bits(cands) {
            r -= self.effective(i, now);
            if r < 0 {
                return Some(i);
            }
        }
        None
    }

    /// xorshift64*: cheap, per core, good enough to spread choices.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Whether member `i` could take a request now (a sticky session's member). A failed member
    /// only with `all_failed = "try_all"` and no member healthy (busy or not).
    pub fn can_take(&mut self, i: usize, now: Instant, exclude: u64) -> Pick {
        self.expire(now);
        let failed_ok = self.all_failed == AllFailed::TryAll
            && !(0..self.members.len()).any(|j| self.enabled(j, exclude) && self.healthy(j, now));
        if !self.enabled(i, exclude) || !(failed_ok || self.healthy(i, now)) {
            Pick::None
        } else if self.full(i) {
            Pick::Full
        } else {
            Pick::Member(i)
        }
    }

    /// Requests in flight to member `i` on this core.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.members[i].in_flight
    }

    /// A request starts on member `i` on this core.
    pub fn begin(&mut self, i: usize) {
        self.members[i].in_flight += 1;
    }

    /// A request on member `i` ended. Returns whether it was at its share (someone may wait).
    pub fn end(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        let was_full = m.in_flight >= m.max_in_flight;
        m.in_flight = m.in_flight.saturating_sub(1);
        was_full
    }

    /// Marks a member failed on this core for the balancer's `retry` period. Returns whether it
    /// was not failed before (the caller logs and counts a new marking only).
    pub fn mark_failed(&mut self, i: usize, now: Instant) -> bool {
        let m = &mut self.members[i];
        let new = m.failed_until.is_none_or(|t| t <= now);
        m.failed_until = Some(now + self.retry);
        new
    }

    /// The end of the earliest failure window still running, if any.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| m.failed_until)
            .filter(|&t| t > now)
            .min()
    }

    /// Whether a member is in its failure window.
    pub fn is_failed(&self, i: usize, now: Instant) -> bool {
        self.members[i].failed_until.is_some_and(|t| t > now)
    }

    /// Applies a health-check state: `down` takes it out; coming back, or a check that passed
    /// (`passed_at`) after it was marked failed, ends its failure window and starts its slow start.
    pub fn set_health(&mut self, i: usize, down: bool, passed_at: Option<Instant>, now: Instant) {
        let retry = self.retry;
        let m = &mut self.members[i];
        let marked = m.failed_until.and_then(|t| t.checked_sub(retry));
        let cleared = marked.is_some_and(|f| passed_at.is_some_and(|p| p > f));
        let back = (m.down && !down) || cleared;
        m.down = down;
        if cleared {
            m.failed_until = None;
        }
        if back {
            m.returned = Some(now);
        }
    }

    /// Applies an operator's change. Draining and disabled members are never picked; a member
    /// enabled again starts its slow start.
    pub fn set_status(&mut self, i: usize, status: MemberStatus, weight: u32, now: Instant) {
        let m = &mut self.members[i];
        if !m.status.takes_traffic() && status.takes_traffic() {
            m.returned = Some(now);
        }
        m.status = status;
        m.weight = i64::from(weight);
        if !status.takes_traffic() {
            m.current = 0;
        }
    }
}

/// The indices of the set bits of `set`, lowest first.
fn bits(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = set.trailing_zeros() as usize;
        set &= set.wrapping_sub(1);
        (i < 64).then_some(i)
    })
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
