//! `/metrics`: Prometheus text exposition (format 0.0.4) of the board: counters, gauges, and
//! latency histograms as `_bucket{le=...}`/`_sum`/`_count`, labelled by balancer and member;
//! health-check families for the members that are checked; each worker's loop lag, a histogram
//! labelled by worker.
//!
//! Must never: emit a family's samples apart from each other, or a bucket count that decreases
//! with `le` (promtool checks both; a test runs it). Invariant: latency bucket counts come from
//! the merged lifetime histograms, and the loop lag's from each core's own counts since start,
//! so the series stay cumulative across scrapes.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::prom::{escape, family, scalar};
use crate::board::BoardData;
use crate::config::{Config, HcMethod};
use crate::health::state::MemberHealth;
use crate::stats::{CoreCounters, MemberCounters, FAILURE_NAMES, LAG_BOUNDS_US, REFUSED_STATUSES};

/// A per-member family: name, type, help, and how to read it from the summed counters.
type CounterFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MemberCounters) -> u64,
);

/// Bucket bounds in seconds: tens of microseconds to a minute.
pub const BUCKETS: [f64; 19] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Renders the whole exposition.
pub fn render(config: &Config, b: &BoardData, tls: Option<&crate::tls::TlsState>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let sum_cores =
        |f: &dyn Fn(&crate::stats::CoreCounters) -> u64| -> u64 { b.cores.iter().map(f).sum() };
    scalar(
        &mut out,
        "ringlb_uptime_seconds",
        "gauge",
        "Seconds since ringlb started.",
        b.started.elapsed().as_secs(),
    );
    scalar(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        super::report::process_cpu_seconds(),
    );
    let cfg = super::report::ConfigReport::build(b);
    scalar(
        &mut out,
        "ringlb_config_generation",
        "gauge",
        "The configuration generation in effect (1 at start, one more per reload).",
        cfg.generation,
    );
    scalar(
        &mut out,
        "ringlb_config_loaded_timestamp_seconds",
        "gauge",
        "When the configuration in effect was loaded (Unix time).",
        cfg.loaded_at,
    );
    scalar(
        &mut out,
        "ringlb_config_reload_failures_total",
        "counter",
        "Reloads that failed; the running configuration stayed.",
        cfg.reload_failures,
    );
    scalar(
        &mut out,
        "ringlb_workers",
        "gauge",
        "Worker threads (one per core).",
        b.workers,
    );
    scalar(
        &mut out,
        "ringlb_connections_active",
        "gauge",
        "Open client connections.",
        sum_cores(&|c| c.connections_active),
    );
    scalar(
        &mut out,
        "ringlb_connections_idle",
        "gauge",
        "Open client connections parked idle (no request for 250 ms or more).",
        sum_cores(&|c| c.connections_parked),
    );
    scalar(
        &mut out,
        "ringlb_response_bytes_spliced_total",
        "counter",
        "Response body bytes moved from member to client inside the kernel (splice), not through user space.",
        sum_cores(&|c| c.spliced_bytes),
    );
    scalar(
        &mut out,
        "ringlb_request_bytes_spliced_total",
        "counter",
        "Request body bytes moved from client to member inside the kernel (splice), not through user space.",
        sum_cores(&|c| c.spliced_request_bytes),
    );
    scalar(
        &mut out,
        "ringlb_tunnels_open",
        "gauge",
        "Open client connections carrying a tunnel after a 101 Switching Protocols (WebSocket).",
        sum_cores(&|c| c.tunnels_open),
    );
    scalar(
        &mut out,
        "ringlb_tunnels_total",
        "counter",
        "Tunnels opened (101 Switching Protocols relayed to a client).",
        sum_cores(&|c| c.tunnels_total),
    );
    scalar(
        &mut out,
        "ringlb_connections_total",
        "counter",
        "Client connections accepted.",
        sum_cores(&|c| c.connections_total),
    );
    family(
        &mut out,
        "ringlb_refused_requests_total",
        "counter",
        "Requests refused by ringlb, by status.",
    );
    for (i, s) in REFUSED_STATUSES.iter().enumerate() {
        let _ = writeln!(
            out,
            "ringlb_refused_requests_total{{status=\"{s}\"}} {}",
            sum_cores(&|c| c.refused[i])
        );
    }
    family(
        &mut out,
        "ringlb_proxy_protocol_rejected_total",
        "counter",
        "Connections a proxy_protocol listener closed, by reason.",
    );
    for (i, r) in crate::proxy_protocol::Rejected::NAMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "ringlb_proxy_protocol_rejected_total{{reason=\"{r}\"}} {}",
            sum_cores(&|c| c.proxy_rejected[i])
        );
    }
    loop_lag(&mut out, &b.cores);
    scalar(
        &mut out,
        "ringlb_redirected_requests_total",
        "counter",
        "Requests answered with a redirect to https (redirect_https).",
        sum_cores(&|c| c.redirected),
    );
    if let Some(t) = tls {
        super::tls_report::TlsReport::build(config, b, t).metrics(&mut out);
    }
    scalar(
        &mut out,
        "ringlb_not_found_requests_total",
        "counter",
        "Requests no route matched (404).",
        sum_cores(&|c| c.not_found),
    );
    family(
        &mut out,
        "ringlb_unavailable_requests_total",
        "counter",
        "Requests answered 503: no usable member.",
    );
    for (bi, bc) in config.balancers.iter().enumerate() {
        let n: u64 = b
            .cores
            .iter()
            .map(|c| {
                c.unavailable
                    .get(b.balancer_place(bi))
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        let _ = writeln!(
            out,
            "ringlb_unavailable_requests_total{{balancer=\"{}\"}} {n}",
            escape(&bc.name)
        );
    }

    // Per member: labels and summed counters, computed once.
    let members: Vec<(String, MemberCounters, usize, usize)> = config
        .balancers
        .iter()
        .enumerate()
        .flat_map(|(bi, bc)| {
            bc.members.iter().enumerate().map(move |(mi, mc)| {
                (
                    format!(
                        "balancer=\"{}\",member=\"{}\"",
                        escape(&bc.name),
                        escape(&mc.host_port)
                    ),
                    b.member(bi, mi).counters(),
                    bi,
                    mi,
                )
            })
        })
        .collect();
    let simple: [CounterFamily; 10] = [
        (
            "ringlb_member_selected_total",
            "counter",
            "Times the balancer picked the member.",
            |c| c.selected,
        ),
        (
            "ringlb_member_in_flight",
            "gauge",
            "Requests being served by the member.",
            |c| c.in_flight,
        ),
        (
            "ringlb_member_failed_cores",
            "gauge",
            "Cores on which the member is skipped after a passive failure (connect failure, failontimeout, failonstatus).",
            |c| c.failed_cores,
        ),
        (
            "ringlb_member_marked_failed_total",
            "counter",
            "Times a core marked the member failed (connect failure, failontimeout, failonstatus).",
            |c| c.marked_failed,
        ),
        (
            "ringlb_member_retries_total",
            "counter",
            "Requests retried on a fresh connection.",
            |c| c.retries,
        ),
        (
            "ringlb_member_failovers_total",
            "counter",
            "Requests moved to another member after this one failed.",
            |c| c.failovers,
        ),
        (
            "ringlb_member_pool_hits_total",
            "counter",
            "Requests sent on a pooled connection.",
            |c| c.pool_hits,
        ),
        (
            "ringlb_member_pool_misses_total",
            "counter",
            "Requests that needed a new connection.",
            |c| c.pool_misses,
        ),
        (
            "ringlb_member_sent_bytes_total",
            "counter",
            "Bytes written to the member.",
            |c| c.bytes_sent,
        ),
        (
            "ringlb_member_received_bytes_total",
            "counter",
            "Bytes read from the member.",
            |c| c.bytes_received,
        ),
    ];
    for (name, kind, help, get) in simple {
        family(&mut out, name, kind, help);
        for (labels, c, _, _) in &members {
            let _ = writeln!(out, "{name}{{{labels}}} {}", get(c));
        }
    }
    family(
        &mut out,
        "ringlb_member_weight",
        "gauge",
        "The member's weight.",
    );
    for (labels, _, bi, mi) in &members {
        let _ = writeln!(
            out,
            "ringlb_member_weight{{{labels}}} {}",
            b.admin_of(*bi, *mi).weight
        );
    }
    family(
        &mut out,
        "ringlb_member_up",
        "gauge",
        "1 when the member may take new requests (active, standby or hot spare, not failed, not down by its health check).",
    );
    for (labels, c, bi, mi) in &members {
        let status = b.admin_of(*bi, *mi).status;
        let up = status.takes_traffic() && c.failed_cores == 0 && !b.health_of(*bi, *mi).down;
        let _ = writeln!(
            out,
            "ringlb_member_up{{{labels},status=\"{}\"}} {}",
            status.name(),
            u8::from(up)
        );
    }
    family(
        &mut out,
        "ringlb_member_responses_total",
        "counter",
        "Responses to clients by status class.",
    );
    for (labels, c, _, _) in &members {
        for (i, n) in c.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringlb_member_responses_total{{{labels},class=\"{}xx\"}} {n}",
                i + 1
            );
        }
    }
    family(
        &mut out,
        "ringlb_member_failures_total",
        "counter",
        "Member failures by kind.",
    );
    for (labels, c, _, _) in &members {
        for (i, n) in c.failures.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringlb_member_failures_total{{{labels},kind=\"{}\"}} {n}",
                FAILURE_NAMES[i]
            );
        }
    }
    health(&mut out, b, &members);
    let histograms = [
        (
            "ringlb_request_duration_seconds",
            "Request head received to last response byte written.",
        ),
        (
            "ringlb_upstream_connect_duration_seconds",
            "Connecting to the member (new connections).",
        ),
        (
            "ringlb_upstream_response_head_duration_seconds",
            "Request sent to response head received.",
        ),
    ];
    for (phase, (name, help)) in histograms.iter().enumerate() {
        family(&mut out, name, "histogram", help);
        for (labels, c, bi, mi) in &members {
            histogram(
                &mut out,
                name,
                labels,
                &b.member(*bi, *mi).lifetime[phase],
                c.latency_sum_us[phase],
            );
        }
    }
    out
}

type HealthGauge = (&'static str, &'static str, fn(&MemberHealth) -> Option<f64>);

/// The health gauges: name, help, value (`None`: no sample yet).
fn health_gauges() -> [HealthGauge; 5] {
    [
        (
            "ringlb_member_health_up",
            "1 while the member's health check has it up, 0 while down.",
            |h| Some(f64::from(u8::from(!h.down))),
        ),
        (
            "ringlb_member_health_consecutive_passes",
            "Health checks passed in a row.",
            |h| Some(f64::from(h.consecutive_passes)),
        ),
        (
            "ringlb_member_health_consecutive_fails",
            "Health checks failed in a row.",
            |h| Some(f64::from(h.consecutive_fails)),
        ),
        (
            "ringlb_member_health_check_duration_seconds",
            "How long the last health check took.",
            |h| h.last_checked.map(|_| h.last_latency_us as f64 / 1e6),
        ),
        (
            "ringlb_member_health_check_age_seconds",
            "Seconds since the last health check.",
            |h| h.last_checked.map(|t| t.elapsed().as_secs() as f64),
        ),
    ]
}

/// The health-check families, for checked members only.
fn health(out: &mut String, b: &BoardData, members: &[(String, MemberCounters, usize, usize)]) {
    let checked: Vec<(&str, &MemberHealth)> = members
        .iter()
        .map(|(labels, _, bi, mi)| (labels.as_str(), b.health_of(*bi, *mi)))
        .filter(|(_, h)| h.method != HcMethod::None)
        .collect();
    for (name, help, get) in health_gauges() {
        family(out, name, "gauge", help);
        for (labels, h) in &checked {
            if let Some(v) = get(h) {
                let _ = writeln!(out, "{name}{{{labels},method=\"{}\"}} {v}", h.method.name());
            }
        }
    }
    family(
        out,
        "ringlb_member_health_checks_total",
        "counter",
        "Health checks run, by result.",
    );
    for (labels, h) in &checked {
        let m = h.method.name();
        let _ = writeln!(
            out,
            "ringlb_member_health_checks_total{{{labels},method=\"{m}\",result=\"pass\"}} {}",
            h.pass_seq
        );
        let _ = writeln!(
            out,
            "ringlb_member_health_checks_total{{{labels},method=\"{m}\",result=\"fail\"}} {}",
            h.checks.saturating_sub(h.pass_seq)
        );
    }
}

/// `ringlb_worker_loop_lag_seconds`: each worker's tick lateness, one histogram per worker (a
/// worker kept busy by its own connections shows apart from the others).
fn loop_lag(out: &mut String, cores: &[CoreCounters]) {
    let name = "ringlb_worker_loop_lag_seconds";
    family(
        out,
        name,
        "histogram",
        "How late each worker's 100 ms tick ran: the time its event loop was busy with other work, \
         or its thread descheduled, past the moment the tick was due.",
    );
    for (worker, c) in cores.iter().enumerate() {
        let mut below = 0;
        for (i, bound) in LAG_BOUNDS_US.iter().enumerate() {
            below += c.loop_lag[i];
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{worker=\"{worker}\",le=\"{le}\"}} {below}"
            );
        }
        let count: u64 = c.loop_lag.iter().sum();
        let _ = writeln!(
            out,
            "{name}_bucket{{worker=\"{worker}\",le=\"+Inf\"}} {count}"
        );
        let sum = c.loop_lag_sum_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{worker=\"{worker}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{worker=\"{worker}\"}} {count}");
    }
}

fn histogram<T: hdrhistogram::Counter>(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &Histogram<T>,
    sum_us: u64,
) {
    for le in BUCKETS {
        let le_us = (le * 1e6) as u64;
        let n = if h.is_empty() {
            0
        } else {
            h.count_between(0, le_us)
        };
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_lag_buckets_are_cumulative_and_inf_is_the_count() {
        let mut cores = vec![CoreCounters::default(), CoreCounters::default()];
        for ms in [0, 1, 3, 30, 30, 3_000] {
            cores[1].record_loop_lag(std::time::Duration::from_millis(ms));
        }
        let mut out = String::new();
        loop_lag(&mut out, &cores);
        let worker1: Vec<&str> = out.lines().filter(|l| l.contains("worker=\"1\"")).collect();
        assert_eq!(
            worker1,
            [
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"0.001\"} 2",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"0.005\"} 3",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"0.025\"} 3",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"0.1\"} 5",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"0.5\"} 5",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"2.5\"} 5",
                "ringlb_worker_loop_lag_seconds_bucket{worker=\"1\",le=\"+Inf\"} 6",
                "ringlb_worker_loop_lag_seconds_sum{worker=\"1\"} 3.064",
                "ringlb_worker_loop_lag_seconds_count{worker=\"1\"} 6",
            ]
        );
        assert!(out.contains("ringlb_worker_loop_lag_seconds_count{worker=\"0\"} 0"));
        assert!(out.starts_with("# HELP ringlb_worker_loop_lag_seconds "));
    }
}
