//! One core's idle backend connections, per member: checkout, checkin, expiry.
//!
//! Owns: idle connections, when each went idle and how long its member keeps one idle (its
//! `Keep-Alive: timeout` less a margin, `http::keep_alive`), and closing expired ones a few at a
//! time. A connection expires after `idle_ttl` or its member's limit, whichever is shorter. Must
//! never: hand out an expired connection, hold more than `max_idle` per member, or close more
//! expired connections in one sweep than the caller's budget (each close is a system call and a FIN
//! on the worker's CPU, about 7 µs on loopback: closing the hundreds a traffic spike left idle all
//! at once would stall every connection the worker serves). A failed member's idle connections, and
//! those left behind by a checkout that found the newest dead, are marked expired (`expire_member`)
//! and go the same way (a reload carries over none that expired). Those a reload does not carry
//! over are handed to the caller (`take_member` leaves the expired ones behind, `put_member`
//! returns the excess, `drain` the rest), which closes them within the same budget (`Retiring`).
//! What closes at once is at most one connection at checkin (the one checked in when the list is
//! full and its front one has not expired, or when `idle_ttl` or its limit is zero; or the expired
//! one that makes room). Invariant: each member's list is in the order its connections expire (when
//! each went idle, plus `idle_ttl` or its limit, whichever is shorter), soonest at the front
//! (checkin inserts each where it belongs); so its expired connections are a prefix. Connections a
//! reload carries to a pool with another `idle_ttl` may be out of that order, and `expire_member`
//! leaves them so, all expired: that only delays a sweep, or makes a checkout connect afresh while
//! a live one waits, as every checkout checks the one it takes. Only connections whose last
//! exchange ended cleanly are checked in (the caller's duty). A connection may still have been
//! closed or written to by its member while it idled: the caller checks it at checkout
//! (`io::idle_and_open`); when it finds them unfit, it gives up after a few and marks the rest
//! expired (`expire_member`) rather than close them all in one request. Expired connections not yet
//! swept are never handed out: checkout looks at the one that expires last only, and takes it only
//! if it has not expired.

use std::time::{Duration, Instant};

/// The most expired connections one core closes per sweep (the tick sweeps every 100 ms): about
/// 0.1 ms of the worker's time at most, 160 connections a second.
pub const CLOSES_PER_SWEEP: usize = 16;

/// An idle connection: since when, and the longest its member keeps one idle (its `Keep-Alive`
/// timeout less a margin; `Duration::MAX` when it gave none).
#[derive(Debug)]
pub struct Idle<S> {
    conn: S,
    since: Instant,
    limit: Duration,
}

/// Idle connections of one balancer on one core.
#[derive(Debug)]
pub struct Pool<S> {
    idle: Vec<Vec<Idle<S>>>,
    max_idle: usize,
    ttl: Duration,
}

impl<S> Idle<S> {
    /// How long it may stay idle under `ttl`: that, or its member's shorter limit.
    fn life(&self, ttl: Duration) -> Duration {
        ttl.min(self.limit)
    }
}

/// Whether `e` has been idle for its time under `ttl`.
fn expired<S>(e: &Idle<S>, ttl: Duration, now: Instant) -> bool {
    now.saturating_duration_since(e.since) >= e.life(ttl)
}

/// Whether `a` expires after `b` under `ttl` (compared as durations from the earlier `since`,
/// which no `ttl` can overflow). Under one life (the usual case: one member, one limit) that is
/// whether `a` came later, which needs no subtraction.
fn expires_after<S>(a: &Idle<S>, b: &Idle<S>, ttl: Duration) -> bool {
    let (la, lb) = (a.life(ttl), b.life(ttl));
    if la == lb {
        return a.since > b.since;
    }
    if a.since >= b.since {
        (a.since - b.since).saturating_add(la) > lb
    } else {
        la > (b.since - a.since).saturating_add(lb)
    }
}

impl<S> Pool<S> {
    pub fn new(members: usize, max_idle: usize, ttl: Duration) -> Pool<S> {
        Pool {
            idle: (0..members).map(|_| Vec::new()).collect(),
            max_idle,
            ttl,
        }
    }

    /// The idle connection to `member` that expires last (of those under the same limit, the
    /// most recently used), unless it has expired.
    pub fn checkout(&mut self, member: usize, now: Instant) -> Option<S> {
        self.checkout_aged(member, now).map(|(s, _)| s)
    }

    /// As `checkout`, with how long the connection was idle. Only the one that expires last is
    /// looked at: when it has expired, so have the others, none is handed out, and `sweep` closes
    /// them.
    pub fn checkout_aged(&mut self, member: usize, now: Instant) -> Option<(S, Duration)> {
        let list = &mut self.idle[member];
        let last = list.last()?;
        let idle = now.saturating_duration_since(last.since);
        if idle >= last.life(self.ttl) {
            return None;
        }
        list.pop().map(|e| (e.conn, idle))
    }

    /// Returns a reusable connection; `limit`: the longest it may stay idle by what its member
    /// said, when it said (`Done::idle_limit`). When the member's list is full, an expired
    /// connection at its front makes room (closed); otherwise `conn` is closed, as it is with an
    /// `idle_ttl` or a `limit` of zero (no reuse).
    pub fn checkin(&mut self, member: usize, conn: S, now: Instant, limit: Option<Duration>) {
        let new = Idle {
            conn,
            since: now,
            limit: limit.unwrap_or(Duration::MAX),
        };
        if new.life(self.ttl).is_zero() {
            return; // no reuse: closed now rather than left for the sweep
        }
        let list = &mut self.idle[member];
        if list.len() >= self.max_idle {
            if !list.first().is_some_and(|e| expired(e, self.ttl, now)) {
                return;
            }
            list.remove(0);
        }
        // In the order they expire: at the end, unless its member's limit ends it before others.
        let at = list
            .iter()
            .rposition(|e| !expires_after(e, &new, self.ttl))
            .map_or(0, |i| i + 1);
        list.insert(at, new);
    }

    /// Closes at most one expired connection per member (the front one, when it has expired),
    /// members in turn from `start` (modulo their number), while `budget` lasts (taken off it);
    /// the caller repeats it, over all its pools, for as long as it closes any. Returns whether
    /// it closed one.
    pub fn sweep_round(&mut self, now: Instant, budget: &mut usize, start: usize) -> bool {
        let mut closed = false;
        let n = self.idle.len();
        for k in 0..n {
            if *budget == 0 {
                break;
            }
            let list = &mut self.idle[(start % n + k) % n];
            if list.first().is_some_and(|e| expired(e, self.ttl, now)) {
                list.remove(0);
                *budget -= 1;
                closed = true;
            }
        }
        closed
    }

    /// Marks every idle connection to `member` expired, as of `now`: none is handed out again (to a
    /// checkout whose clock is not older than `now`: callers read it after their last await), and
    /// the sweep closes them within its budget (a member marked failed, or a checkout that found
    /// the newest ones dead: after a member restarted, all of them are, and closing up to
    /// `max_idle` here would be one stall).
    pub fn expire_member(&mut self, member: usize, now: Instant) {
        let Some(past) = now.checked_sub(self.ttl) else {
            // Not reached on Linux for any sane `idle_ttl`; never reuse them either way.
            self.idle[member].clear();
            return;
        };
        for e in &mut self.idle[member] {
            e.since = e.since.min(past); // all expired now, whatever their order
        }
    }

    /// Takes every idle connection out (a reload: those it did not carry over), for the caller to
    /// close within its budget (`Retiring`).
    pub fn drain(&mut self) -> impl Iterator<Item = S> + '_ {
        self.idle
            .iter_mut()
            .flat_map(|list| list.drain(..).map(|e| e.conn))
    }

    /// Takes every idle connection to `member` that has not expired, each with when it went idle
    /// and its member's limit (a reload moving them to the new generation's pool, where they
    /// expire by the new `idle_ttl` or that limit, whichever is shorter); expired ones stay, for
    /// `drain` (with a longer `idle_ttl` there, one expired here, or marked so, would be handed
    /// out again).
    pub fn take_member(&mut self, member: usize, now: Instant) -> Vec<Idle<S>> {
        let ttl = self.ttl;
        let (gone, kept) = std::mem::take(&mut self.idle[member])
            .into_iter()
            .partition(|e| expired(e, ttl, now));
        self.idle[member] = gone;
        kept
    }

    /// Gives `member` the idle connections `take_member` took (in their order), up to
    /// `max_idle`; returns those at the front over it, for the caller to close (`Retiring`).
    pub fn put_member(&mut self, member: usize, mut conns: Vec<Idle<S>>) -> Vec<S> {
        let extra = conns.len().saturating_sub(self.max_idle);
        let over = conns.drain(..extra).map(|e| e.conn).collect();
        self.idle[member] = conns;
        over
    }

    pub fn idle_count(&self, member: usize) -> usize {
        self.idle[member].len()
    }
}

/// Connections to close, a few at a time: those a reload took out of the old generation's pools
/// and did not carry over. The tick's sweep closes them first, within its budget.
#[derive(Debug)]
pub struct Retiring<S> {
    conns: Vec<S>,
}

impl<S> Default for Retiring<S> {
    fn default() -> Self {
        Retiring { conns: Vec::new() }
    }
}

impl<S> Retiring<S> {
    pub fn add(&mut self, conns: impl IntoIterator<Item = S>) {
        self.conns.extend(conns);
    }

    /// Closes as many as `budget` allows (taken off it).
    pub fn close_some(&mut self, budget: &mut usize) {
        let n = (*budget).min(self.conns.len());
        self.conns.truncate(self.conns.len() - n);
        *budget -= n;
    }

    /// Takes over what an older generation's `Retiring` had not closed yet.
    pub fn append(&mut self, older: Retiring<S>) {
        self.conns.extend(older.conns);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_move_between_pools_oldest_dropped_first() {
        let now = Instant::now();
        let mut old = Pool::new(2, 3, Duration::from_secs(4));
        for i in 0..3 {
            old.checkin(1, i, now, None);
        }
        let mut new = Pool::new(1, 2, Duration::from_secs(4));
        let over = new.put_member(0, old.take_member(1, now));
        assert_eq!(
            over,
            [0],
            "the oldest is over the new max_idle, for the caller to close"
        );
        assert_eq!(old.idle_count(1), 0);
        assert_eq!(new.checkout(0, now), Some(2));
        assert_eq!(new.checkout(0, now), Some(1));
        assert_eq!(
            new.checkout(0, now),
            None,
            "the oldest was over the new max_idle"
        );
    }

    #[test]
    fn reuse_lifo_and_cap() {
        let now = Instant::now();
        let mut p = Pool::new(2, 2, Duration::from_secs(4));
        p.checkin(0, "a", now, None);
        p.checkin(0, "b", now, None);
        p.checkin(0, "c", now, None);
        assert_eq!(p.idle_count(0), 2);
        assert_eq!(p.checkout(0, now), Some("b"));
        assert_eq!(p.checkout(0, now), Some("a"));
        assert_eq!(p.checkout(0, now), None);
        assert_eq!(p.checkout(1, now), None);
    }

    #[test]
    fn expired_are_never_handed_out() {
        let t0 = Instant::now();
        let mut p = Pool::new(1, 8, Duration::from_secs(4));
        p.checkin(0, 1, t0, None);
        p.checkin(0, 2, t0 + Duration::from_secs(3), None);
        assert_eq!(p.checkout(0, t0 + Duration::from_secs(5)), Some(2));
        p.checkin(0, 3, t0, None);
        assert_eq!(p.checkout(0, t0 + Duration::from_secs(5)), None);
        p.checkin(0, 4, t0, None);
        p.checkin(0, 5, t0 + Duration::from_secs(3), None);
        let mut budget = 8;
        while p.sweep_round(t0 + Duration::from_secs(5), &mut budget, 0) {}
        assert_eq!(p.idle_count(0), 1);
        assert_eq!(budget, 5, "three were closed");
    }

    #[test]
    fn a_sweep_closes_at_most_its_budget_the_oldest_first_one_per_member_a_round() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut p = Pool::new(2, 64, Duration::from_secs(4));
        for i in 0..10 {
            p.checkin(0, i, t0 + Duration::from_millis(i), None);
        }
        p.checkin(0, 10, later, None);
        for i in 0..3 {
            p.checkin(1, 100 + i, t0, None);
        }
        let mut budget = 4;
        assert!(p.sweep_round(later, &mut budget, 0));
        assert_eq!((budget, p.idle_count(0), p.idle_count(1)), (2, 10, 2));
        while p.sweep_round(later, &mut budget, 0) {}
        assert_eq!((budget, p.idle_count(0), p.idle_count(1)), (0, 9, 1));
        let mut budget = 20;
        while p.sweep_round(later, &mut budget, 0) {}
        assert_eq!((budget, p.idle_count(0), p.idle_count(1)), (11, 1, 0));
        assert_eq!(p.checkout(0, later), Some(10), "the fresh one stayed");
        assert_eq!(p.checkout(0, later), None);
    }

    #[test]
    fn a_round_starts_at_the_member_it_is_given() {
        let t0 = Instant::now();
        let mut p = Pool::new(3, 8, Duration::from_secs(4));
        for m in 0..3 {
            p.checkin(m, m, t0, None);
        }
        let mut budget = 1;
        assert!(p.sweep_round(t0 + Duration::from_secs(5), &mut budget, 4));
        assert_eq!(
            (p.idle_count(0), p.idle_count(1), p.idle_count(2)),
            (1, 0, 1)
        );
    }

    #[test]
    fn expired_by_hand_they_are_never_handed_out_and_the_sweep_closes_them_in_order() {
        let t0 = Instant::now();
        let mut p = Pool::new(2, 8, Duration::from_secs(60));
        for (i, k) in [1u32, 2, 3].into_iter().enumerate() {
            p.checkin(0, k, t0 + Duration::from_millis(i as u64), None);
        }
        p.checkin(1, 9, t0, None);
        let now = t0 + Duration::from_secs(1);
        p.expire_member(0, now);
        assert_eq!(p.checkout(0, now), None);
        assert_eq!(p.idle_count(0), 3, "left for the sweep");
        // A connection checked in afterwards is handed out; the expired ones stay behind it.
        p.checkin(0, 4, now, None);
        assert_eq!(p.checkout(0, now), Some(4));
        let mut budget = 2;
        while p.sweep_round(now, &mut budget, 0) {}
        assert_eq!(p.idle[0].iter().map(|e| e.conn).collect::<Vec<_>>(), [3]);
        assert_eq!(p.checkout(1, now), Some(9), "another member is untouched");
    }

    #[test]
    fn expired_connections_are_not_carried_to_a_pool_with_a_longer_ttl() {
        let t0 = Instant::now();
        let mut old = Pool::new(1, 4, Duration::from_secs(4));
        old.checkin(0, 1, t0, None);
        old.checkin(0, 2, t0 + Duration::from_secs(3), None);
        let now = t0 + Duration::from_secs(5);
        let mut new = Pool::new(1, 4, Duration::from_secs(60));
        assert!(new.put_member(0, old.take_member(0, now)).is_empty());
        assert_eq!(new.checkout(0, now), Some(2));
        assert_eq!(
            new.checkout(0, now),
            None,
            "1 had expired under the old ttl"
        );
        old.checkin(0, 3, now, None);
        old.expire_member(0, now);
        assert!(new.put_member(0, old.take_member(0, now)).is_empty());
        assert_eq!(new.checkout(0, now), None, "marked expired stays so");
        // The expired ones stayed behind, for the reload to close within its budget.
        assert_eq!(old.drain().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(old.idle_count(0), 0);
    }

    #[test]
    fn retiring_connections_close_within_the_budget() {
        let mut r = Retiring::default();
        r.add(0..20);
        let mut budget = 16;
        r.close_some(&mut budget);
        assert_eq!((r.len(), budget), (4, 0));
        let mut budget = 16;
        r.close_some(&mut budget);
        assert_eq!(
            (r.len(), budget),
            (0, 12),
            "what is left of the budget goes on"
        );
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn with_an_idle_ttl_of_zero_nothing_is_kept() {
        let now = Instant::now();
        let mut p = Pool::new(1, 8, Duration::ZERO);
        p.checkin(0, 1, now, None);
        assert_eq!(p.idle_count(0), 0);
        assert_eq!(p.checkout(0, now), None);
    }

    #[test]
    fn expired_connections_left_for_the_sweep_are_never_handed_out_and_make_room() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut p = Pool::new(1, 2, Duration::from_secs(4));
        p.checkin(0, "a", t0, None);
        p.checkin(0, "b", t0, None);
        assert_eq!(p.checkout(0, later), None);
        assert_eq!(p.idle_count(0), 2, "left for the sweep");
        p.checkin(0, "c", later, None);
        assert_eq!(p.idle_count(0), 2, "the oldest expired one made room");
        assert_eq!(p.checkout(0, later), Some("c"));
        assert_eq!(p.checkout(0, later), None, "b expired");
        p.checkin(0, "d", later, None);
        p.checkin(0, "e", later, None);
        p.checkin(0, "f", later, None);
        assert_eq!(
            p.checkout(0, later),
            Some("e"),
            "full of fresh ones: f was closed"
        );
    }
    #[test]
    fn a_member_s_limit_shortens_idle_ttl_and_outlives_a_reload() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pool::new(1, 8, s(4));
        p.checkin(0, 1, t0, Some(s(1)));
        assert_eq!(p.checkout(0, t0 + Duration::from_millis(999)), Some(1));
        p.checkin(0, 1, t0, Some(s(1)));
        assert_eq!(p.checkout(0, t0 + s(1)), None, "past the member's limit");
        let mut budget = 16;
        assert!(p.sweep_round(t0 + s(1), &mut budget, 0), "and swept");
        assert_eq!(p.idle_count(0), 0);
        // A limit above idle_ttl changes nothing; a zero one keeps nothing.
        p.checkin(0, 2, t0, Some(s(60)));
        assert_eq!(p.checkout(0, t0 + s(4)), None);
        p.checkin(0, 2, t0, Some(s(60)));
        assert_eq!(p.checkout(0, t0 + Duration::from_millis(3999)), Some(2));
        let mut p = Pool::new(1, 8, s(4));
        p.checkin(0, 3, t0, Some(Duration::ZERO));
        assert_eq!(p.idle_count(0), 0, "closed at once");
        // Carried to a pool with a longer idle_ttl, the member's limit still holds.
        p.checkin(0, 4, t0, Some(s(2)));
        let mut new = Pool::new(1, 8, s(60));
        assert!(new.put_member(0, p.take_member(0, t0)).is_empty());
        assert_eq!(new.checkout(0, t0 + s(2)), None);
        assert_eq!(new.checkout(0, t0 + Duration::from_millis(1999)), Some(4));
    }

    #[test]
    fn connections_are_kept_in_the_order_they_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pool::new(1, 8, s(4));
        p.checkin(0, "old", t0, None); // expires at 4 s
        p.checkin(0, "short", t0 + s(1), Some(s(1))); // at 2 s: before "old"
        p.checkin(0, "new", t0 + s(1), None); // at 5 s
        p.checkin(0, "zero", t0 + s(1), Some(Duration::ZERO)); // never kept
        let order = |p: &Pool<&'static str>| p.idle[0].iter().map(|e| e.conn).collect::<Vec<_>>();
        assert_eq!(order(&p), ["short", "old", "new"]);
        // A reload at 2 s carries the live ones over, in their order, and leaves the expired one.
        let at = t0 + s(2);
        let mut new = Pool::new(1, 8, s(4));
        assert!(new.put_member(0, p.take_member(0, at)).is_empty());
        assert_eq!(order(&new), ["old", "new"]);
        assert_eq!(p.drain().collect::<Vec<_>>(), ["short"]);
        // The one that expired first is swept first; the one that expires last is handed out.
        let mut p = Pool::new(1, 8, s(4));
        p.checkin(0, "old", t0, None);
        p.checkin(0, "short", t0 + s(1), Some(s(1)));
        let mut budget = 16;
        while p.sweep_round(at, &mut budget, 0) {}
        assert_eq!((order(&p), budget), (vec!["old"], 15));
        assert_eq!(p.checkout(0, at), Some("old"));
    }

    /// `expires_after` (with its shortcut under one life) says what the instants themselves say.
    #[test]
    fn expires_after_agrees_with_the_instants_it_compares() {
        let t0 = Instant::now();
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        // Few distinct values, so equal instants and equal lives come up often.
        let mut half_seconds = |n| Duration::from_millis(rng.below(n) as u64 * 500);
        for _ in 0..20_000 {
            let [since_a, since_b, limit_a, limit_b] = [(); 4].map(|_| half_seconds(4));
            let ttl = Duration::from_millis(500) + half_seconds(3);
            // A drawn limit of zero stands for a member that gave none.
            let idle = |since: Duration, limit: Duration| Idle {
                conn: (),
                since: t0 + since,
                limit: if limit.is_zero() {
                    Duration::MAX
                } else {
                    limit
                },
            };
            let (a, b) = (idle(since_a, limit_a), idle(since_b, limit_b));
            let by_instants = a.since + a.life(ttl) > b.since + b.life(ttl);
            assert_eq!(
                expires_after(&a, &b, ttl),
                by_instants,
                "{a:?} {b:?} {ttl:?}"
            );
        }
    }
}
