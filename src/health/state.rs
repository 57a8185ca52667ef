//! One member's health-check state (Apache mod_proxy_hcheck's): up or down, the runs of passes
//! and failures that move it, and what the last check found.
//!
//! Owns: the state machine. Must never: take a member down before `hcfails` consecutive failures
//! or bring it back before `hcpasses` consecutive passes. Invariant: a member starts up (as in
//! Apache: it is not held out until a first check passes); `pass_seq` counts every pass, so a
//! core that saw a different value knows a check passed since it last looked.

use std::time::{Duration, Instant};

use crate::config::{HcMethod, HealthCheck};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub passed: bool,
    /// A short text: "200", "cpong", "connect refused", "timeout", "status 503 not in 200-399".
    pub text: String,
    pub latency: Duration,
}

/// A state change a check caused (logged once, by the checker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    WentDown,
    CameUp,
}

/// One member's health, as the checker keeps it on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHealth {
    pub method: HcMethod,
    /// Taken out by its checks.
    pub down: bool,
    pub consecutive_passes: u32,
    pub consecutive_fails: u32,
    /// The last check's text; empty before the first.
    pub last_result: String,
    pub last_latency_us: u64,
    pub last_checked: Option<Instant>,
    /// Checks run so far.
    pub checks: u64,
    /// Checks passed so far.
    pub pass_seq: u64,
    /// When the last passing check started (what it saw was true from then on at the latest).
    pub last_pass: Option<Instant>,
    /// The board's `health_version` when `down` last changed.
    pub since_version: u64,
}

impl MemberHealth {
    pub fn new(method: HcMethod) -> MemberHealth {
        MemberHealth {
            method,
            down: false,
            consecutive_passes: 0,
            consecutive_fails: 0,
            last_result: String::new(),
            last_latency_us: 0,
            last_checked: None,
            checks: 0,
            pass_seq: 0,
            last_pass: None,
            since_version: 0,
        }
    }

    /// Records a check's result and moves the state as `hc` says.
    pub fn record(&mut self, hc: &HealthCheck, probe: Probe, now: Instant) -> Change {
        self.checks += 1;
        self.last_latency_us = probe.latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.last_result = probe.text;
        self.last_checked = Some(now);
        if probe.passed {
            self.pass_seq += 1;
            self.last_pass = Some(now.checked_sub(probe.latency).unwrap_or(now));
            self.consecutive_passes = self.consecutive_passes.saturating_add(1);
            self.consecutive_fails = 0;
            if self.down && self.consecutive_passes >= hc.passes {
                self.down = false;
                return Change::CameUp;
            }
        } else {
            self.consecutive_fails = self.consecutive_fails.saturating_add(1);
            self.consecutive_passes = 0;
            if !self.down && self.consecutive_fails >= hc.fails {
                self.down = true;
                return Change::WentDown;
            }
        }
        Change::None
    }

    /// "up" or "down".
    pub fn state_name(&self) -> &'static str {
        if self.down {
            "down"
        } else {
            "up"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(passes: u32, fails: u32) -> HealthCheck {
        HealthCheck {
            method: HcMethod::Get,
            uri: "/".into(),
            interval: Duration::from_secs(1),
            passes,
            fails,
            timeout: Duration::from_secs(1),
            expect: vec![(200, 399)],
            body_excludes: None,
        }
    }

    fn probe(passed: bool) -> Probe {
        Probe {
            passed,
            text: if passed { "200" } else { "timeout" }.into(),
            latency: Duration::from_micros(150),
        }
    }

    #[test]
    fn starts_up_goes_down_after_fails_and_up_after_passes() {
        let hc = hc(2, 3);
        let mut h = MemberHealth::new(HcMethod::Get);
        let now = Instant::now();
        assert!(!h.down);
        assert_eq!(h.record(&hc, probe(false), now), Change::None);
        assert_eq!(h.record(&hc, probe(false), now), Change::None);
        assert_eq!(h.record(&hc, probe(false), now), Change::WentDown);
        assert!(h.down);
        assert_eq!(h.consecutive_fails, 3);
        assert_eq!(h.record(&hc, probe(false), now), Change::None, "once");
        assert_eq!(h.record(&hc, probe(true), now), Change::None);
        assert_eq!(h.consecutive_fails, 0);
        assert_eq!(h.record(&hc, probe(false), now), Change::None);
        assert_eq!(h.consecutive_passes, 0, "a failure breaks the run");
        assert_eq!(h.record(&hc, probe(true), now), Change::None);
        assert_eq!(h.record(&hc, probe(true), now), Change::CameUp);
        assert!(!h.down);
        assert_eq!((h.checks, h.pass_seq), (8, 3));
        assert_eq!(h.last_result, "200");
        assert_eq!(h.last_latency_us, 150);
        assert_eq!(h.last_checked, Some(now));
    }

    #[test]
    fn one_failure_is_enough_by_default() {
        let hc = hc(1, 1);
        let mut h = MemberHealth::new(HcMethod::Get);
        let now = Instant::now();
        assert_eq!(h.record(&hc, probe(true), now), Change::None);
        assert_eq!(h.record(&hc, probe(false), now), Change::WentDown);
        assert_eq!(h.record(&hc, probe(true), now), Change::CameUp);
    }
}
