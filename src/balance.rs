//! Smooth weighted round robin over a balancer's members, one instance per core.
//!
//! Owns: the cursor (current weights), each member's admin status and its failure window on this
//! core. Must never: be shared between cores (no locks). Invariant: a member that is disabled,
//! excluded, or failed within `retry` is never picked; standby members only when no active one is
//! usable.

use std::time::{Duration, Instant};

use crate::config::{BalancerConfig, MemberStatus};

#[derive(Debug, Clone)]
struct Member {
    weight: i64,
    current: i64,
    status: MemberStatus,
    failed_until: Option<Instant>,
}

/// One core's balancer state.
#[derive(Debug, Clone)]
pub struct Balancer {
    members: Vec<Member>,
    retry: Duration,
}

impl Balancer {
    /// Builds the state for one core; `core_id` staggers the start so cores do not move in step.
    pub fn new(cfg: &BalancerConfig, core_id: usize) -> Balancer {
        let mut b = Balancer {
            members: cfg
                .members
                .iter()
                .map(|m| Member {
                    weight: i64::from(m.weight),
                    current: 0,
                    status: m.status,
                    failed_until: None,
                })
                .collect(),
            retry: cfg.retry,
        };
        let total: i64 = b.members.iter().map(|m| m.weight).sum();
        let now = Instant::now();
        for _ in 0..(core_id as i64 % total.max(1)) {
            b.pick(now, 0);
        }
        b
    }

    fn usable(&self, i: usize, now: Instant, exclude: u64) -> bool {
        exclude & (1 << i) == 0 && self.members[i].failed_until.is_none_or(|t| t <= now)
    }

    /// Picks a member, skipping those in the `exclude` bit set. `None`: no member is usable.
    pub fn pick(&mut self, now: Instant, exclude: u64) -> Option<usize> {
        for tier in [MemberStatus::Active, MemberStatus::Standby] {
            let mut total = 0;
            let mut best: Option<usize> = None;
            for i in 0..self.members.len() {
                if self.members[i].status != tier || !self.usable(i, now, exclude) {
                    continue;
                }
                let m = &mut self.members[i];
                m.current += m.weight;
                total += m.weight;
                let current = m.current;
                if best.is_none_or(|b| current > self.members[b].current) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                self.members[b].current -= total;
                return Some(b);
            }
        }
        None
    }

    /// Marks a member failed on this core for the balancer's `retry` period.
    pub fn mark_failed(&mut self, i: usize, now: Instant) {
        self.members[i].failed_until = Some(now + self.retry);
    }

    /// Whether a member is in its failure window.
    pub fn is_failed(&self, i: usize, now: Instant) -> bool {
        self.members[i].failed_until.is_some_and(|t| t > now)
    }

    /// Applies an operator's change. Draining and disabled members are never picked.
    pub fn set_status(&mut self, i: usize, status: MemberStatus, weight: u32) {
        let m = &mut self.members[i];
        m.status = status;
        m.weight = i64::from(weight);
        if status != MemberStatus::Active && status != MemberStatus::Standby {
            m.current = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn balancer(weights: &[(u32, &str)]) -> BalancerConfig {
        let members: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, (w, s))| {
                format!(
                    "{{ url = \"http://127.0.0.1:{}\", weight = {w}, status = \"{s}\" }}",
                    9000 + i
                )
            })
            .collect();
        let text = format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nretry = \"10s\"\nmembers = [{}]\n",
            members.join(", ")
        );
        Config::parse(&text).unwrap().balancers.remove(0)
    }

    fn sequence(b: &mut Balancer, n: usize, exclude: u64) -> Vec<usize> {
        let now = Instant::now();
        (0..n).map(|_| b.pick(now, exclude).unwrap()).collect()
    }

    #[test]
    fn smooth_weighted_5_1_1() {
        let cfg = balancer(&[(5, "active"), (1, "active"), (1, "active")]);
        let mut b = Balancer::new(&cfg, 0);
        assert_eq!(sequence(&mut b, 7, 0), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(sequence(&mut b, 7, 0), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn cores_are_staggered() {
        let cfg = balancer(&[(1, "active"), (1, "active")]);
        assert_eq!(
            sequence(&mut Balancer::new(&cfg, 0), 4, 0),
            vec![0, 1, 0, 1]
        );
        assert_eq!(
            sequence(&mut Balancer::new(&cfg, 1), 4, 0),
            vec![1, 0, 1, 0]
        );
    }

    #[test]
    fn failed_excluded_standby_disabled() {
        let cfg = balancer(&[
            (1, "active"),
            (1, "active"),
            (1, "standby"),
            (1, "disabled"),
        ]);
        let mut b = Balancer::new(&cfg, 0);
        let now = Instant::now();
        b.mark_failed(0, now);
        assert_eq!(sequence(&mut b, 3, 0), vec![1, 1, 1]);
        assert_eq!(sequence(&mut b, 2, 0b10), vec![2, 2]);
        assert_eq!(b.pick(now, 0b110), None);
        assert!(b.is_failed(0, now));
        assert!(!b.is_failed(0, now + Duration::from_secs(11)));
        assert_eq!(b.pick(now + Duration::from_secs(11), 0b110), Some(0));
    }
}
