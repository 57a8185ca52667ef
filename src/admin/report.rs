//! The status report: the board's data as a stable, documented structure (docs/status.md). It is
//! `/status.json` as it is, and the source of the HTML page and of `ringlb status`.
//!
//! Must never: change a field's name or unit without bumping `schema`. Invariant: percentiles come
//! from histograms merged across cores, never from averaged percentiles.

use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use crate::board::{BoardData, WINDOW_SECS};
use crate::config::Config;
use crate::stats::{CoreCounters, FAILURE_NAMES, LAG_BOUNDS_US, REFUSED_STATUSES};
use crate::tls::TlsState;

/// Version of this schema.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub schema: u32,
    pub version: String,
    pub uptime_seconds: u64,
    pub workers: usize,
    pub driver: String,
    pub connections: Connections,
    /// Requests answered per second over the recent window.
    pub requests_per_second: f64,
    /// Requests refused by ringlb itself, by status ("400", "405", "408", "414", "431").
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Requests no route matched (404).
    pub not_found: u64,
    pub window_seconds: u64,
    pub balancers: Vec<BalancerReport>,
    /// Requests answered with a redirect to https (`redirect_https`).
    #[serde(default)]
    pub redirected: u64,
    /// Connections a `proxy_protocol` listener closed, by reason ("untrusted", "missing",
    /// "invalid", "incomplete").
    #[serde(default)]
    pub proxy_rejected: std::collections::BTreeMap<String, u64>,
    /// TLS handshakes and certificates; absent when no listener speaks TLS.
    #[serde(default)]
    pub tls: Option<super::tls_report::TlsReport>,
    /// The configuration generation in effect.
    #[serde(default)]
    pub config: ConfigReport,
    /// CPU time the ringlb process has used since start (user + system, every thread), seconds.
    /// Diff two readings over the requests between them for ringlb's CPU per request.
    #[serde(default)]
    pub process_cpu_seconds: f64,
    /// Each worker's loop lag since start (how late its 100 ms tick ran), by worker.
    #[serde(default)]
    pub loop_lag: Vec<LoopLag>,
}

/// One worker's loop lag since start, as `ringlb_worker_loop_lag_seconds` counts it: the ticks,
/// the sum of their lateness, and how many were later than each bound. Counts only grow: two
/// readings diffed give an interval's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoopLag {
    pub ticks: u64,
    pub sum_us: u64,
    /// `[bound_us, ticks later than it]` for 1 ms, 5 ms, 25 ms, 100 ms, 500 ms and 2.5 s.
    pub over: Vec<[u64; 2]>,
}

impl LoopLag {
    /// The bound whose late ticks the page and `ringlb status` show beside the mean.
    pub const SHOWN_US: u64 = 25_000;

    /// The mean lag of its ticks (µs; 0 before the first).
    pub fn mean_us(&self) -> u64 {
        self.sum_us / self.ticks.max(1)
    }

    /// The ticks later than `bound_us`, one of the bounds in `over` (0 for another).
    pub fn over(&self, bound_us: u64) -> u64 {
        self.over
            .iter()
            .find(|o| o[0] == bound_us)
            .map_or(0, |o| o[1])
    }

    fn build(c: &CoreCounters) -> LoopLag {
        let ticks = c.loop_lag.iter().sum();
        let mut within = 0;
        let over = LAG_BOUNDS_US
            .iter()
            .zip(&c.loop_lag)
            .map(|(&bound, &n)| {
                within += n;
                [bound, ticks - within]
            })
            .collect();
        LoopLag {
            ticks,
            sum_us: c.loop_lag_sum_us,
            over,
        }
    }
}

/// CPU seconds this process has used (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// One whole second of a member's recent traffic (the last `window_seconds`, oldest first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SecondPoint {
    /// Seconds since ringlb started.
    pub second: u64,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// A histogram since start as it stands: every recorded value bucket as
/// `[highest value in the bucket (µs), count]`. Each count only grows, so two readings diffed
/// bucket by bucket give the exact histogram of the requests between them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Buckets {
    pub count: u64,
    pub sum_us: u64,
    pub buckets: Vec<[u64; 2]>,
}

impl Buckets {
    fn of<T: Counter>(h: &Histogram<T>, sum_us: u64) -> Buckets {
        Buckets {
            count: h.len(),
            sum_us,
            buckets: h
                .iter_recorded()
                .map(|v| {
                    [
                        h.highest_equivalent(v.value_iterated_to()),
                        v.count_at_value().as_u64(),
                    ]
                })
                .collect(),
        }
    }
}

/// Which configuration runs: its generation (1 at start, one more per successful reload), when it
/// was loaded, and how many reloads failed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigReport {
    pub generation: u64,
    /// Seconds since the Unix epoch.
    pub loaded_at: u64,
    pub reload_failures: u64,
    /// Whether every core runs `generation` yet.
    pub adopted: bool,
}

impl ConfigReport {
    pub fn build(b: &BoardData) -> ConfigReport {
        let g = &b.generation;
        ConfigReport {
            generation: g.number,
            loaded_at: g
                .loaded_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            reload_failures: b.reload_failures,
            adopted: b.all_cores_adopted(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connections {
    pub active: u64,
    /// Of the active ones, those idle long enough to be parked (no task, no buffers).
    pub idle: u64,
    pub total: u64,
    /// Connections accepted by each worker (the kernel spreads them over the workers' listeners).
    pub per_worker: Vec<u64>,
    /// Of the active ones, those carrying a tunnel after a 101 (a WebSocket).
    #[serde(default)]
    pub tunnels: u64,
    /// Tunnels opened since start.
    #[serde(default)]
    pub tunnels_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BalancerReport {
    pub name: String,
    /// Requests answered 503 because no member was usable.
    pub unavailable: u64,
    pub members: Vec<MemberReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberReport {
    pub index: usize,
    pub url: String,
    /// `host:port`, also accepted by the admin API to name the member.
    pub address: String,
    /// active | standby | disabled | draining
    pub status: String,
    /// The settings that differ from the configuration file's: set through the admin API (and
    /// kept in the state file, when there is one).
    #[serde(default)]
    pub overridden: Vec<String>,
    /// Skipped after a connect failure on at least one core right now.
    pub failed: bool,
    pub weight: u32,
    pub selected: u64,
    pub in_flight: u64,
    pub drained: bool,
    /// Responses by class: "1xx" … "5xx".
    pub responses: std::collections::BTreeMap<String, u64>,
    /// Failures by kind: connect_refused, connect_timeout, response_timeout, reset,
    /// invalid_response, tls.
    pub failures: std::collections::BTreeMap<String, u64>,
    pub retries: u64,
    pub failovers: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Times a core marked it failed (connect failure, `failontimeout`, `failonstatus`).
    #[serde(default)]
    pub marked_failed: u64,
    /// Its active health check.
    #[serde(default)]
    pub health: HealthReport,
    /// Request head received → last response byte written.
    pub total: Latency,
    /// Connect to the member (new connections only).
    pub connect: Latency,
    /// Request sent → response head received.
    pub response_head: Latency,
    /// Per second over the last `window_seconds` (of `total`).
    #[serde(default)]
    pub series: Vec<SecondPoint>,
    /// `total` and `response_head` since start, bucket by bucket (monotonic counts).
    #[serde(default)]
    pub histograms: MemberHistograms,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MemberHistograms {
    pub total: Buckets,
    pub response_head: Buckets,
}

/// A member's active health check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct HealthReport {
    /// none | tcp | options | head | get | cping
    pub method: String,
    /// up | down (a member that is not checked is up)
    pub state: String,
    /// Every core has applied `state`.
    pub applied: bool,
    /// The last check's result ("200", "cpong", "timeout", "status 503 not in 200-399", ...);
    /// empty before the first check.
    pub last_result: String,
    pub last_latency_us: u64,
    /// Seconds since the last check; null before the first.
    pub seconds_since_check: Option<u64>,
    pub consecutive_passes: u32,
    pub consecutive_fails: u32,
    /// Checks run since start, and of those the ones that passed.
    pub checks: u64,
    pub passes: u64,
}

impl HealthReport {
    fn of(b: &BoardData, bi: usize, mi: usize) -> HealthReport {
        let h = b.health_of(bi, mi);
        HealthReport {
            method: h.method.name().into(),
            state: h.state_name().into(),
            applied: b.health_in_effect(bi, mi),
            last_result: h.last_result.clone(),
            last_latency_us: h.last_latency_us,
            seconds_since_check: h.last_checked.map(|t| t.elapsed().as_secs()),
            consecutive_passes: h.consecutive_passes,
            consecutive_fails: h.consecutive_fails,
            checks: h.checks,
            passes: h.pass_seq,
        }
    }
}

/// A latency distribution over the recent window and since start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub window: Percentiles,
    pub lifetime: Percentiles,
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of<T: Counter>(h: &Histogram<T>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |x: f64| h.highest_equivalent(h.value_at_quantile(x));
        Percentiles {
            count: h.len(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.highest_equivalent(h.max()),
        }
    }
}

impl StatusReport {
    /// Builds the report from the board (taken under its lock).
    pub fn build(config: &Config, b: &BoardData, tls: Option<&TlsState>) -> StatusReport {
        let now_sec = b.now_sec();
        let mut window_requests = 0;
        let balancers = config
            .balancers
            .iter()
            .enumerate()
            .map(|(bi, bc)| BalancerReport {
                name: bc.name.clone(),
                unavailable: b
                    .cores
                    .iter()
                    .map(|c| {
                        c.unavailable
                            .get(b.balancer_place(bi))
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum(),
                members: bc
                    .members
                    .iter()
                    .enumerate()
                    .map(|(mi, mc)| {
                        let mb = b.member(bi, mi);
                        let c = mb.counters();
                        let admin = b.admin_of(bi, mi);
                        let latency = |phase: usize| Latency {
                            window: Percentiles::of(&mb.window(phase, now_sec)),
                            lifetime: Percentiles::of(&mb.lifetime[phase]),
                        };
                        let total = latency(0);
                        window_requests += total.window.count;
                        MemberReport {
                            index: mi,
                            url: mc.url.clone(),
                            address: mc.host_port.clone(),
                            status: admin.status.name().into(),
                            overridden: [
                                ("status", admin.status != mc.status),
                                ("weight", admin.weight != mc.weight),
                            ]
                            .iter()
                            .filter(|(_, differs)| *differs)
                            .map(|(name, _)| (*name).to_string())
                            .collect(),
                            failed: c.failed_cores > 0,
                            weight: admin.weight,
                            selected: c.selected,
                            in_flight: c.in_flight,
                            drained: b.drained(bi, mi),
                            responses: (0..5)
                                .map(|i| (format!("{}xx", i + 1), c.responses[i]))
                                .collect(),
                            failures: FAILURE_NAMES
                                .iter()
                                .zip(c.failures)
                                .map(|(name, n)| (name.to_string(), n))
                                .collect(),
                            retries: c.retries,
                            failovers: c.failovers,
                            pool_hits: c.pool_hits,
                            pool_misses: c.pool_misses,
                            bytes_sent: c.bytes_sent,
                            bytes_received: c.bytes_received,
                            marked_failed: c.marked_failed,
                            health: HealthReport::of(b, bi, mi),
                            total,
                            connect: latency(1),
                            response_head: latency(2),
                            series: series(mb, now_sec),
                            histograms: MemberHistograms {
                                total: Buckets::of(&mb.lifetime[0], c.latency_sum_us[0]),
                                response_head: Buckets::of(&mb.lifetime[2], c.latency_sum_us[2]),
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        let uptime = b.started.elapsed().as_secs();
        let span = uptime.clamp(1, WINDOW_SECS) as f64;
        StatusReport {
            schema: SCHEMA,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: uptime,
            workers: b.workers,
            driver: b.driver.into(),
            connections: Connections {
                active: b.cores.iter().map(|c| c.connections_active).sum(),
                idle: b.cores.iter().map(|c| c.connections_parked).sum(),
                total: b.cores.iter().map(|c| c.connections_total).sum(),
                per_worker: b.cores.iter().map(|c| c.connections_total).collect(),
                tunnels: b.cores.iter().map(|c| c.tunnels_open).sum(),
                tunnels_total: b.cores.iter().map(|c| c.tunnels_total).sum(),
            },
            requests_per_second: (window_requests as f64 / span * 10.0).round() / 10.0,
            refused: REFUSED_STATUSES
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), b.cores.iter().map(|c| c.refused[i]).sum()))
                .collect(),
            not_found: b.cores.iter().map(|c| c.not_found).sum(),
            window_seconds: WINDOW_SECS,
            balancers,
            redirected: b.cores.iter().map(|c| c.redirected).sum(),
            proxy_rejected: crate::proxy_protocol::Rejected::NAMES
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        r.to_string(),
                        b.cores.iter().map(|c| c.proxy_rejected[i]).sum(),
                    )
                })
                .collect(),
            tls: tls.map(|t| super::tls_report::TlsReport::build(config, b, t)),
            config: ConfigReport::build(b),
            process_cpu_seconds: process_cpu_seconds(),
            loop_lag: b.cores.iter().map(LoopLag::build).collect(),
        }
    }
}

/// A member's last whole seconds: requests and percentiles of each.
fn series(mb: &crate::board::MemberBoard, now_sec: u64) -> Vec<SecondPoint> {
    mb.seconds(0, now_sec)
        .into_iter()
        .map(|(second, h)| match h.filter(|h| !h.is_empty()) {
            // Two quantiles only: this runs 60 times per member per report.
            Some(h) => SecondPoint {
                second,
                requests: h.len(),
                p50_us: h.highest_equivalent(h.value_at_quantile(0.5)),
                p99_us: h.highest_equivalent(h.value_at_quantile(0.99)),
            },
            None => SecondPoint {
                second,
                ..SecondPoint::default()
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_lag_counts_the_ticks_later_than_each_bound() {
        let mut c = CoreCounters::default();
        for ms in [0, 3, 3, 30, 200, 3_000] {
            c.record_loop_lag(std::time::Duration::from_millis(ms));
        }
        let lag = LoopLag::build(&c);
        assert_eq!(lag.ticks, 6);
        assert_eq!(lag.sum_us, 3_236_000);
        let expected: Vec<[u64; 2]> = vec![
            [1_000, 5],
            [5_000, 3],
            [25_000, 3],
            [100_000, 2],
            [500_000, 1],
            [2_500_000, 1],
        ];
        assert_eq!(lag.over, expected);
        assert_eq!(
            (lag.mean_us(), lag.over(25_000), lag.over(7)),
            (539_333, 3, 0)
        );
        assert_eq!(LoopLag::default().mean_us(), 0);
    }
}
