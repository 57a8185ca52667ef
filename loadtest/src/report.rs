//! The end-of-run table and the JSON results (with the merged histogram, for https the TLS
//! handshake counts, and in open loop the generator's schedule lag with its warning). It formats
//! an `Outcome`; it never measures anything itself.

use serde::Serialize;

use crate::cli::LoadArgs;
use crate::client::ERROR_KINDS;
use crate::run::Outcome;

pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

#[derive(Serialize)]
pub struct JsonReport {
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    pub status: std::collections::BTreeMap<String, u64>,
    pub latency_us: std::collections::BTreeMap<&'static str, u64>,
    pub latency_mean_us: f64,
    /// TLS handshakes (zero when no target is https).
    pub handshakes: Handshakes,
    pub handshakes_per_second: f64,
    /// Resumed handshakes over all handshakes (0 when there were none).
    pub resumed_share: f64,
    /// The merged histogram: [value_us, count] for every recorded value bucket.
    pub histogram: Vec<[u64; 2]>,
    /// Open loop only: how late the generator sent.
    pub schedule: Option<Schedule>,
}

/// The open loop's own lateness: timed wake-ups (percentiles in µs) and requests that found
/// their connection still busy with the previous one.
#[derive(Serialize)]
pub struct Schedule {
    pub wakeup_lag_us: std::collections::BTreeMap<&'static str, u64>,
    pub behind: u64,
    pub behind_share: f64,
    /// The generator's lateness may have inflated the latencies (see `lag_warning`).
    pub warning: Option<String>,
}

/// Open loop: the schedule summary.
pub fn schedule(o: &Outcome) -> Schedule {
    let q = |x: f64| at_quantile(&o.lag, x);
    let sent = o.lag.len() + o.behind;
    Schedule {
        wakeup_lag_us: [("p50", q(0.5)), ("p99", q(0.99)), ("max", q(1.0))]
            .into_iter()
            .collect(),
        behind: o.behind,
        behind_share: o.behind as f64 / sent.max(1) as f64,
        warning: lag_warning(o),
    }
}

/// A wake-up p99 over 1 ms and over a tenth of the measured p99 means the generator's own
/// lateness is a real part of what it reports.
pub fn lag_warning(o: &Outcome) -> Option<String> {
    if o.lag.is_empty() {
        return None;
    }
    let lag99 = o.lag.value_at_quantile(0.99);
    let p99 = quantile(o, 0.99);
    (lag99 > 1000 && lag99 * 10 > p99).then(|| {
        format!(
            "the generator's wake-ups were late (p99 {}) against a latency p99 of {}: part of \
             what is reported is the generator, not the server (give it a core of its own, or \
             fewer connections)",
            human_us(lag99),
            human_us(p99)
        )
    })
}

#[derive(Serialize)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
}

/// (handshakes per second, resumed share).
fn handshake_rates(o: &Outcome, secs: f64) -> (f64, f64) {
    let [full, resumed] = o.handshakes;
    let total = full + resumed;
    let share = if total == 0 {
        0.0
    } else {
        resumed as f64 / total as f64
    };
    (total as f64 / secs, share)
}

pub fn json(args: &LoadArgs, o: &Outcome) -> JsonReport {
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let (handshakes_per_second, resumed_share) = handshake_rates(o, secs);
    let mut latency: std::collections::BTreeMap<&'static str, u64> = QUANTILES
        .iter()
        .map(|(n, q)| (*n, quantile(o, *q)))
        .collect();
    latency.insert("max", if o.hist.is_empty() { 0 } else { o.hist.max() });
    JsonReport {
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        rate: args.rate,
        connections: args.connections,
        threads: o.threads,
        pipeline: args.pipeline,
        duration_s: secs,
        requests: o.requests,
        requests_per_second: o.requests as f64 / secs,
        errors: ERROR_KINDS
            .iter()
            .zip(o.errors)
            .map(|(k, v)| (*k, v))
            .collect(),
        status: (0..5)
            .map(|i| (format!("{}xx", i + 1), o.status[i]))
            .collect(),
        latency_us: latency,
        latency_mean_us: if o.hist.is_empty() {
            0.0
        } else {
            o.hist.mean()
        },
        handshakes: Handshakes {
            full: o.handshakes[0],
            resumed: o.handshakes[1],
        },
        handshakes_per_second,
        resumed_share,
        histogram: o
            .hist
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect(),
        schedule: args.rate.map(|_| schedule(o)),
    }
}

fn quantile(o: &Outcome, q: f64) -> u64 {
    at_quantile(&o.hist, q)
}

/// The value at quantile `q` of `h`, 0 for an empty histogram.
pub fn at_quantile(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

pub fn table(args: &LoadArgs, o: &Outcome) -> String {
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let mut s = format!(
        "\n{} loop, {} connections, {} threads{}{}\n",
        if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        args.connections,
        o.threads,
        args.rate
            .map(|r| format!(", rate {r}/s"))
            .unwrap_or_default(),
        if args.pipeline > 1 {
            format!(", pipeline {}", args.pipeline)
        } else {
            String::new()
        },
    );
    s.push_str(&format!(
        "  requests   {:>12}   in {secs:.2}s\n",
        o.requests
    ));
    s.push_str(&format!(
        "  req/s      {:>12.0}\n",
        o.requests as f64 / secs
    ));
    let errors: Vec<String> = ERROR_KINDS
        .iter()
        .zip(o.errors)
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    s.push_str(&format!(
        "  errors     {:>12}   {}\n",
        o.errors.iter().sum::<u64>(),
        errors.join(", ")
    ));
    if o.tls {
        let (rate, share) = handshake_rates(o, secs);
        s.push_str(&format!(
            "  handshakes {:>12}   {rate:.0}/s, resumed {:.1}% (full {}, resumed {})\n",
            o.handshakes[0] + o.handshakes[1],
            share * 100.0,
            o.handshakes[0],
            o.handshakes[1]
        ));
    }
    s.push_str(&format!(
        "  status     1xx {} 2xx {} 3xx {} 4xx {} 5xx {}\n  latency   ",
        o.status[0], o.status[1], o.status[2], o.status[3], o.status[4]
    ));
    for (name, q) in QUANTILES {
        s.push_str(&format!(" {name} {}", human_us(quantile(o, q))));
    }
    s.push_str(&format!(
        " max {}\n",
        human_us(if o.hist.is_empty() { 0 } else { o.hist.max() })
    ));
    if args.rate.is_some() {
        let sc = schedule(o);
        s.push_str(&format!(
            "  schedule   wake-up lag p50 {} p99 {} max {}; {} sent behind a busy connection ({:.2}%)\n",
            human_us(sc.wakeup_lag_us["p50"]),
            human_us(sc.wakeup_lag_us["p99"]),
            human_us(sc.wakeup_lag_us["max"]),
            sc.behind,
            sc.behind_share * 100.0
        ));
        if let Some(w) = sc.warning {
            s.push_str(&format!("  warning    {w}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::new_histogram;

    fn outcome(latency_us: u64, lag_us: u64) -> Outcome {
        let (mut hist, mut lag) = (new_histogram(), new_histogram());
        for _ in 0..1000 {
            hist.record(latency_us).unwrap();
            lag.record(lag_us).unwrap();
        }
        Outcome {
            hist,
            requests: 1000,
            errors: [0; ERROR_KINDS.len()],
            status: [0, 1000, 0, 0, 0],
            handshakes: [0; 2],
            lag,
            behind: 10,
            elapsed: std::time::Duration::from_secs(1),
            threads: 1,
            tls: false,
        }
    }

    #[test]
    fn the_generator_warns_when_its_own_lateness_shows() {
        // Late by 2 ms on a 5 ms p99: a real part of it.
        assert!(lag_warning(&outcome(5_000, 2_000)).is_some());
        // Late by 2 ms on a 2 s p99: noise.
        assert!(lag_warning(&outcome(2_000_000, 2_000)).is_none());
        // Late by 200 µs: under a millisecond, whatever the p99.
        assert!(lag_warning(&outcome(300, 200)).is_none());
        let s = schedule(&outcome(300, 200));
        assert_eq!(s.behind, 10);
        assert!((s.behind_share - 10.0 / 1010.0).abs() < 1e-12);
        assert!((199..=201).contains(&s.wakeup_lag_us["p99"]));
    }
}
