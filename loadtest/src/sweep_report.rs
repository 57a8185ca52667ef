//! The sweep's words: the live table (a line per step as it finishes, with a line per member
//! under `--admin`), the summary, the JSON report and the node_exporter textfile.
//!
//! Owns: their formats. Must never: measure or judge (that is `sweep.rs` and `knee.rs`).

use std::fmt::Write;

use serde::Serialize;

use crate::knee::Summary;
use crate::report::human_us;
use crate::sweep::{Plan, StepResult};

pub fn header(plan: &Plan) -> String {
    let slos: Vec<String> = plan.slos.iter().map(|s| s.label()).collect();
    format!(
        "sweep, SLO {}; per step: offered and achieved rate, client latency, errors, the \
         generator's wake-up lag\n{:>7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}  verdict",
        slos.join(" and "),
        "phase",
        "offered/s",
        "got/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        "lag p99"
    )
}

pub fn line(r: &StepResult) -> String {
    let mut s = format!(
        "{:>7} {:>10.0} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}  {}\n",
        r.phase,
        r.offered_rate,
        r.achieved_rate,
        human_us(r.latency_us["p50"]),
        human_us(r.latency_us["p99"]),
        human_us(r.latency_us["p99.9"]),
        human_us(r.latency_us["max"]),
        r.errors,
        human_us(r.wakeup_lag_p99_us),
        if r.good {
            "ok".to_string()
        } else {
            r.broke.join("; ")
        }
    );
    if let Some(server) = &r.server {
        for m in &server.members {
            let _ = writeln!(
                s,
                "{:>18} {:>5.1}%  own p50 {} p99 {}  in flight {}  pool hits {:.0}%  errors {}  {}",
                "",
                m.share * 100.0,
                human_us(m.member_p50_us),
                human_us(m.member_p99_us),
                m.in_flight,
                m.pool_hit_rate * 100.0,
                m.errors,
                m.name
            );
        }
        let _ = writeln!(
            s,
            "{:>18} ringlb CPU {:.1} µs per request",
            "", server.cpu_us_per_request
        );
    }
    s
}

pub fn summary(sum: &Summary, max: f64) -> String {
    let mut s = String::from("\nsummary\n");
    match (sum.max_rate, sum.bounded) {
        (Some(r), true) => {
            let _ = writeln!(s, "  every SLO holds up to {r:.0} requests/s");
        }
        (Some(r), false) => {
            let _ = writeln!(
                s,
                "  every SLO held up to --max ({r:.0}/s): the capacity is at least that ({max:.0} asked)"
            );
        }
        (None, _) => s.push_str("  even the first rate broke an SLO: lower --from\n"),
    }
    for p in &sum.per_slo {
        let _ = writeln!(
            s,
            "  {:<14} max {}{}",
            p.slo,
            p.max_rate
                .map_or("none of the rates tried".into(), |r| format!("{r:.0}/s")),
            if p.bounded || p.max_rate.is_none() {
                ""
            } else {
                " or more (it never broke before the sweep stopped)"
            }
        );
    }
    match &sum.first_knee {
        Some(k) => {
            let _ = writeln!(
                s,
                "  first to saturate: {} (from {:.0}/s): {}",
                k.who, k.rate, k.evidence
            );
        }
        None => s.push_str("  no latency knee within the rates tried\n"),
    }
    s
}

#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub target: &'a str,
    pub slos: Vec<String>,
    pub mode: &'static str,
    pub summary: &'a Summary,
    pub steps: &'a [StepResult],
}

/// Prometheus text for node_exporter's textfile collector: the max rate per SLO (for an SLO that
/// never broke, the highest rate tried: a lower bound, so the headroom it gives errs low).
pub fn textfile(sum: &Summary, target: &str) -> String {
    let mut s = String::from(
        "# HELP ringlb_sweep_max_rate The highest request rate that met the SLO in the last sweep.\n\
         # TYPE ringlb_sweep_max_rate gauge\n",
    );
    let target = target.replace('\\', "\\\\").replace('"', "\\\"");
    for p in &sum.per_slo {
        if let Some(r) = p.max_rate {
            let _ = writeln!(
                s,
                "ringlb_sweep_max_rate{{slo=\"{}\",target=\"{target}\"}} {r:.0}",
                p.slo
            );
        }
    }
    s
}
