//! One core's idle backend connections, per member: checkout, checkin, expiry.
//!
//! Owns: idle connections and when each went idle. Must never: hand out a connection idle longer
//! than `idle_ttl`, or hold more than `max_idle` per member. Invariant: only connections whose last
//! exchange ended cleanly are checked in (the caller's duty). A connection may still have been
//! closed or written to by its member while it idled: the caller checks it at checkout
//! (`io::idle_and_open`).

use std::time::{Duration, Instant};

/// Idle connections of one balancer on one core.
#[derive(Debug)]
pub struct Pool<S> {
    idle: Vec<Vec<(S, Instant)>>,
    max_idle: usize,
    ttl: Duration,
}

impl<S> Pool<S> {
    pub fn new(members: usize, max_idle: usize, ttl: Duration) -> Pool<S> {
        Pool {
            idle: (0..members).map(|_| Vec::new()).collect(),
            max_idle,
            ttl,
        }
    }

    /// The most recently used idle connection to `member` that has not expired.
    pub fn checkout(&mut self, member: usize, now: Instant) -> Option<S> {
        self.checkout_aged(member, now).map(|(s, _)| s)
    }

    /// As `checkout`, with how long the connection was idle.
    pub fn checkout_aged(&mut self, member: usize, now: Instant) -> Option<(S, Duration)> {
        let list = &mut self.idle[member];
        while let Some((s, since)) = list.pop() {
            let idle = now.saturating_duration_since(since);
            if idle < self.ttl {
                return Some((s, idle));
            }
            // Expired: the oldest are at the front, so everything left is older still.
            drop(s);
            list.clear();
        }
        None
    }

    /// Returns a reusable connection; closes it when the member's list is full.
    pub fn checkin(&mut self, member: usize, conn: S, now: Instant) {
        let list = &mut self.idle[member];
        if list.len() < self.max_idle {
            list.push((conn, now));
        }
    }

    /// Closes every idle connection past its time to live.
    pub fn sweep(&mut self, now: Instant) {
        for list in &mut self.idle {
            list.retain(|(_, since)| now.saturating_duration_since(*since) < self.ttl);
        }
    }

    /// Closes every idle connection to `member`.
    pub fn clear_member(&mut self, member: usize) {
        self.idle[member].clear();
    }

    /// Closes every idle connection.
    pub fn clear_all(&mut self) {
        self.idle.iter_mut().for_each(Vec::clear);
    }

    /// Takes every idle connection to `member` with when each went idle (a reload moving them to
    /// the new generation's pool).
    pub fn take_member(&mut self, member: usize) -> Vec<(S, Instant)> {
        std::mem::take(&mut self.idle[member])
    }

    /// Gives `member` the idle connections `take_member` took (oldest first), up to `max_idle`.
    pub fn put_member(&mut self, member: usize, mut conns: Vec<(S, Instant)>) {
        let extra = conns.len().saturating_sub(self.max_idle);
        conns.drain(..extra);
        self.idle[member] = conns;
    }

    pub fn idle_count(&self, member: usize) -> usize {
        self.idle[member].len()
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
            old.checkin(1, i, now);
        }
        let mut new = Pool::new(1, 2, Duration::from_secs(4));
        new.put_member(0, old.take_member(1));
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
        p.checkin(0, "a", now);
        p.checkin(0, "b", now);
        p.checkin(0, "c", now);
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
        p.checkin(0, 1, t0);
        p.checkin(0, 2, t0 + Duration::from_secs(3));
        assert_eq!(p.checkout(0, t0 + Duration::from_secs(5)), Some(2));
        p.checkin(0, 3, t0);
        assert_eq!(p.checkout(0, t0 + Duration::from_secs(5)), None);
        p.checkin(0, 4, t0);
        p.checkin(0, 5, t0 + Duration::from_secs(3));
        p.sweep(t0 + Duration::from_secs(5));
        assert_eq!(p.idle_count(0), 1);
    }
}
