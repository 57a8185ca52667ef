//! What one core has applied of the health checks' results: the board's health version and, per
//! member, how many passes it has seen (a pass since then ends a passive failure window).
//!
//! Owns: the comparison of the board's health state with this core's. Must never: be shared
//! between cores or touch a balancer itself (the caller applies what it is told, under the board
//! lock it already holds, at most every 100 ms). Invariant: a pass counted on the board is reported to
//! each core exactly once.

use std::time::Instant;

use crate::board::BoardData;
use crate::layout::Layout;

/// One core's view of the health results it applied.
#[derive(Default)]
pub struct Applied {
    version: u64,
    /// By member place: the board's `pass_seq` when this core last looked.
    passes: Vec<u64>,
}

impl Applied {
    /// The board's health version this core has applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the board's health version moved (or with `force`: a new generation's balancers),
    /// calls `set(balancer, member, down, passed_at)` for every member of `layout` (`passed_at`:
    /// when the latest check passed, if one passed since the last call).
    pub fn apply(
        &mut self,
        board: &BoardData,
        layout: &Layout,
        force: bool,
        mut set: impl FnMut(usize, usize, bool, Option<Instant>),
    ) {
        if board.health_version == self.version && !force {
            return;
        }
        if self.passes.len() < board.health.len() {
            self.passes.resize(board.health.len(), 0);
        }
        for (b, places) in layout.members.iter().enumerate() {
            for (m, &place) in places.iter().enumerate() {
                let h = &board.health[place];
                let seen = &mut self.passes[place];
                let passed_at = if h.pass_seq != *seen {
                    h.last_pass
                } else {
                    None
                };
                *seen = h.pass_seq;
                set(b, m, h.down, passed_at);
            }
        }
        self.version = board.health_version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::state::Probe;
    use std::time::Duration;

    #[test]
    fn passes_are_reported_once_and_state_follows_the_board() {
        let mut config = Config::parse(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nhcmethod = \"tcp\"\n\
members = [{ url = \"http://127.0.0.1:9\" }, { url = \"http://127.0.0.1:10\" }]\n",
        )
        .unwrap();
        config.server.workers = 1;
        let hc = config.balancers[0].members[0].health.clone();
        let mut board = BoardData::for_tests(config);
        let layout = board.generation.layout.clone();
        let mut applied = Applied::default();
        let mut calls = Vec::new();
        applied.apply(&board, &layout, false, |b, m, down, passed| {
            calls.push((b, m, down, passed))
        });
        assert!(calls.is_empty(), "nothing happened yet");
        let probe = |passed| Probe {
            passed,
            text: String::new(),
            latency: Duration::ZERO,
        };
        let now = Instant::now();
        board.record_health(0, &hc, probe(true), now);
        applied.apply(&board, &layout, false, |b, m, down, passed| {
            calls.push((b, m, down, passed))
        });
        assert_eq!(calls, [(0, 0, false, Some(now)), (0, 1, false, None)]);
        calls.clear();
        applied.apply(&board, &layout, false, |b, m, down, passed| {
            calls.push((b, m, down, passed))
        });
        assert!(calls.is_empty(), "the same version is applied once");
        board.record_health(1, &hc, probe(false), now);
        assert!(!board.health_in_effect(0, 1));
        applied.apply(&board, &layout, false, |b, m, down, passed| {
            calls.push((b, m, down, passed))
        });
        assert_eq!(calls, [(0, 0, false, None), (0, 1, true, None)]);
        assert_eq!(applied.version(), board.health_version);
    }
}
