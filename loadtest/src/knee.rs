//! The sweep's conclusions: the highest rate that met each SLO, and who saturated first: the
//! member (or ringlb itself) whose latency knee comes at the lowest rate, with the evidence.
//!
//! Owns: the knee rule: a series knees at the lowest rate from which on its p99 stays above twice
//! its baseline (the least of its three lowest rates) plus 1 ms, or its errors pass
//! `--max-errors`. Must never: name a member
//! without a measured rise (or errors) to show for it.

use serde::Serialize;

use crate::report::human_us;
use crate::slo::Slo;
use crate::sweep::{by_rate, member_names, Search, StepResult};

#[derive(Serialize, Debug)]
pub struct Summary {
    /// The highest rate that met every SLO (null: even the first rate broke one).
    pub max_rate: Option<f64>,
    /// Whether a breach was found (false: `--max` was reached, the answer is "at least").
    pub bounded: bool,
    pub per_slo: Vec<SloMax>,
    /// Who saturates first, when the sweep saw a knee.
    pub first_knee: Option<Knee>,
}

#[derive(Serialize, Debug)]
pub struct SloMax {
    pub slo: String,
    /// The highest rate where this SLO held and errors stayed under the limit.
    pub max_rate: Option<f64>,
    /// Some step broke this SLO; when none did (the sweep stopped on another SLO, on errors or at
    /// `--max`), `max_rate` is only a lower bound.
    pub bounded: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct Knee {
    /// A member ("balancer/url"), "ringlb" (the client's latency rose with every member's
    /// flat) or "the target" (no --admin).
    pub who: String,
    pub rate: f64,
    pub evidence: String,
}

/// (rate, p99 µs, errored) points of one series, by rising rate.
type Series = Vec<(f64, u64, bool)>;

/// The lowest rate from which on `series` stays kneed, with its baseline and the value there (a
/// lone spike at a low rate, a step's warm-up noise, is not a knee).
fn knee(series: &Series) -> Option<(f64, u64, u64)> {
    let baseline = series.iter().take(3).map(|p| p.1).min()?;
    let kneed = |p: &(f64, u64, bool)| p.2 || p.1 > 2 * baseline + 1000;
    let from = series.len() - series.iter().rev().take_while(|p| kneed(p)).count();
    series.get(from).map(|(r, v, _)| (*r, baseline, *v))
}

/// Errors over `share` of `requests`.
fn errored(errors: u64, requests: u64, share: f64) -> bool {
    errors as f64 > share * requests as f64
}

fn member_series(steps: &[&StepResult], i: usize, max_errors: f64) -> Series {
    steps
        .iter()
        .filter_map(|s| {
            let m = s.server.as_ref()?.members.get(i)?;
            let err = errored(m.errors, m.requests, max_errors);
            (m.requests > 0).then_some((s.offered_rate, m.member_p99_us, err))
        })
        .collect()
}

fn client_series(steps: &[&StepResult]) -> Series {
    steps
        .iter()
        .map(|s| (s.offered_rate, s.latency_us["p99"], !s.errors_ok))
        .collect()
}

/// The member whose own p99 knees at the lowest rate, with the others' for contrast.
fn member_knee(steps: &[&StepResult], names: &[String], max_errors: f64) -> Option<Knee> {
    let series: Vec<Series> = (0..names.len())
        .map(|i| member_series(steps, i, max_errors))
        .collect();
    let (i, (rate, base, at)) = (0..names.len())
        .filter_map(|i| Some((i, knee(&series[i])?)))
        .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))?;
    let others: Vec<String> = (0..names.len())
        .filter(|j| *j != i)
        .filter_map(|j| {
            let (first, then) = (series[j].first()?, series[j].iter().find(|p| p.0 >= rate)?);
            let (from, to) = (human_us(first.1), human_us(then.1));
            Some(format!("{} {from} → {to}", names[j]))
        })
        .collect();
    let contrast = if others.is_empty() {
        String::new()
    } else {
        format!(" while the others stayed flat ({})", others.join("; "))
    };
    Some(Knee {
        who: names[i].clone(),
        rate,
        evidence: format!(
            "its own p99 went from {} to {} at {rate:.0}/s{contrast}",
            human_us(base),
            human_us(at)
        ),
    })
}

/// The first knee: a member's, else ringlb's (or the target's, without --admin).
fn first_knee(steps: &[&StepResult], max_errors: f64) -> Option<Knee> {
    let names = member_names(steps);
    if let Some(k) = member_knee(steps, &names, max_errors) {
        return Some(k);
    }
    let (rate, base, at) = knee(&client_series(steps))?;
    let (who, contrast) = if names.is_empty() {
        ("the target", "")
    } else {
        ("ringlb", " while every member's own p99 stayed flat")
    };
    Some(Knee {
        who: who.into(),
        rate,
        evidence: format!(
            "the client's p99 went from {} to {} at {rate:.0}/s{contrast}",
            human_us(base),
            human_us(at)
        ),
    })
}

pub fn summarise(slos: &[Slo], s: &Search, max_errors: f64) -> Summary {
    let steps = by_rate(&s.steps);
    let per_slo = slos
        .iter()
        .enumerate()
        .map(|(i, slo)| SloMax {
            slo: slo.label(),
            max_rate: steps
                .iter()
                .filter(|st| st.errors_ok && st.slo_us[i] <= slo.limit_us())
                .map(|st| st.offered_rate)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r)))),
            bounded: steps
                .iter()
                .any(|st| st.errors_ok && st.slo_us[i] > slo.limit_us()),
        })
        .collect();
    Summary {
        max_rate: s.max_good,
        bounded: s.min_bad.is_some(),
        per_slo,
        first_knee: first_knee(&steps, max_errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knee_is_a_rise_over_the_baseline() {
        let flat: Series = vec![
            (100.0, 300, false),
            (200.0, 320, false),
            (400.0, 900, false),
        ];
        assert_eq!(knee(&flat), None, "under 2 × 300 + 1000 µs is no knee");
        let spike: Series = vec![
            (100.0, 4800, false),
            (200.0, 360, false),
            (400.0, 400, false),
        ];
        assert_eq!(knee(&spike), None, "a lone spike at a low rate is no knee");
        let back: Series = vec![
            (100.0, 300, false),
            (200.0, 3000, false),
            (400.0, 300, false),
        ];
        assert_eq!(knee(&back), None, "a rise that falls back is no knee");
        let rising: Series = vec![
            (100.0, 2600, false),
            (200.0, 2700, false),
            (400.0, 3100, false),
            (800.0, 61_000, false),
        ];
        assert_eq!(knee(&rising), Some((800.0, 2600, 61_000)));
        let erroring: Series = vec![(100.0, 300, false), (200.0, 300, true)];
        assert_eq!(knee(&erroring), Some((200.0, 300, 300)));
        assert_eq!(knee(&vec![]), None);
    }
}
