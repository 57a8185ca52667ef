//! Active health checks (Apache mod_proxy_hcheck): one checker thread for the whole box, with its
//! own compio runtime and one task per checked member (probe, record on the board, sleep to the
//! next interval). The cores apply a state change within about 100 ms (`Board::changed`,
//! `core::apply_if_changed`) and passes at their once-a-second publication (`core::publish`), both
//! through `applied::Applied`.
//!
//! Owns: the checker thread and its tasks, and the log line of each state change. Must never: run
//! on a worker (a check per core would multiply the members' check traffic by the core count and
//! let cores disagree), touch a core's balancer, or hold the board lock across I/O. Invariant:
//! each checked member is probed once per `hcinterval` by this one thread; the thread stops
//! promptly when the server stops, and `Checker::stop` joins it.

pub mod applied;
pub mod probe;
pub mod state;
pub mod verdict;

use crate::tls::upstream::{MemberConfigs, MemberTlsConfig};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{join, join_all, select};

use crate::board::Board;
use crate::config::{Config, HcMethod};
use crate::generation::Generation;
use crate::layout::Layout;
use crate::runtime;
use state::Change;

/// The running checker thread.
pub struct Checker {
    stop: futures_channel::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checker {
    /// Starts the checks of `generation`'s members when some member is checked (`Ok(None)` when
    /// none is); returns once its runtime is up. A reload stops the checker and starts one for
    /// the new generation; results are kept on the board by member place, so a member the
    /// reload kept keeps its health state.
    pub fn start(generation: &Generation, board: Arc<Board>) -> anyhow::Result<Option<Checker>> {
        let config = generation.config.clone();
        let tls = generation.member_tls.for_core();
        let layout = generation.layout.clone();
        let checked = config
            .balancers
            .iter()
            .flat_map(|b| &b.members)
            .filter(|m| m.health.method != HcMethod::None)
            .count();
        if checked == 0 {
            return Ok(None);
        }
        let (stop, stopped) = futures_channel::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("ringlb-health".into())
            .spawn(move || {
                let rt = match runtime::build(config.server.driver) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!(
                            "health checker: cannot start the {:?} driver: {e}",
                            config.server.driver
                        )));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                rt.block_on(run(&config, &board, &tls, &layout, stopped));
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!(e),
            Err(_) => anyhow::bail!("the health checker thread died while starting"),
        }
        tracing::info!(members = checked, "health checks started");
        Ok(Some(Checker { stop, thread }))
    }

    /// Stops the checks (a check in progress is abandoned) and joins the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Every checked member's loop, until `stopped` fires (dropping the loops cancels their I/O).
async fn run(
    config: &Config,
    board: &Board,
    tls: &MemberConfigs,
    layout: &Layout,
    stopped: futures_channel::oneshot::Receiver<()>,
) {
    let loops = config.balancers.iter().enumerate().flat_map(|(b, bc)| {
        bc.members
            .iter()
            .enumerate()
            .filter(|(_, mc)| mc.health.method != HcMethod::None)
            .map(move |(m, _)| {
                let place = layout.member(b, m);
                check_member(config, board, tls[b][m].as_ref(), (b, m), place)
            })
    });
    let work = join(join_all(loops), crate::deadline::turn_wheel());
    select(std::pin::pin!(work), stopped).await;
}

/// Checks one member every `hcinterval` (the first check at once), on a fixed grid: a check that
/// ran past its slot is followed by the next at once, never by an extra one.
async fn check_member(
    config: &Config,
    board: &Board,
    tls: Option<&MemberTlsConfig>,
    (b, m): (usize, usize),
    place: usize,
) {
    let member = &config.balancers[b].members[m];
    let hc = &member.health;
    let request = verdict::request(member);
    let mut next = Instant::now();
    loop {
        let probe = probe::probe(member, tls, request.as_deref()).await;
        tracing::debug!(
            member = %member.url,
            passed = probe.passed,
            result = %probe.text,
            latency_us = probe.latency.as_micros() as u64,
            "health check"
        );
        let text = probe.text.clone();
        let now = Instant::now();
        let change = board.lock().record_health(place, hc, probe, now);
        if change != Change::None {
            board.changed();
        }
        log_change(config, b, m, change, &text);
        // On a fixed grid; a check that ran past its slot (a timeout as long as the interval) is
        // followed by the next one at once rather than a slot later.
        next += hc.interval;
        if next <= now {
            next = now;
        }
        compio::time::sleep(next - now).await;
    }
}

fn log_change(config: &Config, b: usize, m: usize, change: Change, text: &str) {
    let balancer = &config.balancers[b].name;
    let member = &config.balancers[b].members[m];
    let hc = &member.health;
    match change {
        Change::None => {}
        Change::WentDown => tracing::warn!(
            balancer = %balancer,
            member = %member.url,
            reason = %text,
            "member down: {} consecutive health check failure(s) ({} check)",
            hc.fails,
            hc.method.name()
        ),
        Change::CameUp => tracing::info!(
            balancer = %balancer,
            member = %member.url,
            "member up again: {} consecutive health check pass(es) ({} check)",
            hc.passes,
            hc.method.name()
        ),
    }
}
