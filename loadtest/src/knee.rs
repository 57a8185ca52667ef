//! The sweep's conclusions: the highest rate that met each SLO, and who saturated first: the
//! member (or ringlb itself) whose latency knee comes at the lowest rate, with the evidence.
//!
//! Owns: the knee rule: a series knees at the lowest rate from which on its p99 stays above twice
//! its baseline (the least of its three lowest rates) plus 1 ms, or its errors pass 0.1 %. Must never: name a member
//! without a measured rise (or errors) to show for it.

use serde::Serialize;

use crate::report::human_us;
use crate::slo::Slo;
use crate::sweep::{Search, StepResult};

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

fn sorted(steps: &[StepResult]) -> Vec<&StepResult> {
    let mut v: Vec<&StepResult> = steps.iter().collect();
    v.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    v
}

fn member_series(steps: &[&StepResult], i: usize) -> Series {
    steps
        .iter()
        .filter_map(|s| {
            let m = s.server.as_ref()?.members.get(i)?;
            (m.requests > 0).then_some((
                s.offered_rate,
                m.member_p99_us,
                m.errors * 1000 > m.requests,
            ))
        })
        .collect()
}

fn client_series(steps: &[&StepResult]) -> Series {
    steps
        .iter()
        .map(|s| {
            (
                s.offered_rate,
                s.latency_us["p99"],
                s.errors * 1000 > s.requests,
            )
        })
        .collect()
}

/// The first knee: the member's, else ringlb's (or the target's without --admin).
fn first_knee(steps: &[&StepResult]) -> Option<Knee> {
    let names: Vec<String> = steps
        .iter()
        .find_map(|s| s.server.as_ref())
        .map(|s| s.members.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    let knees: Vec<(usize, (f64, u64, u64))> = (0..names.len())
        .filter_map(|i| Some((i, knee(&member_series(steps, i))?)))
        .collect();
    if let Some(&(i, (rate, base, at))) = knees.iter().min_by(|a, b| a.1 .0.total_cmp(&b.1 .0)) {
        let others: Vec<String> = (0..names.len())
            .filter(|j| *j != i)
            .filter_map(|j| {
                let s = member_series(steps, j);
                let at = s.iter().find(|p| p.0 >= rate)?.1;
                Some(format!(
                    "{} {} → {}",
                    names[j],
                    human_us(s.first()?.1),
                    human_us(at)
                ))
            })
            .collect();
        return Some(Knee {
            who: names[i].clone(),
            rate,
            evidence: format!(
                "its own p99 went from {} to {} at {rate:.0}/s{}",
                human_us(base),
                human_us(at),
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" while the others stayed flat ({})", others.join("; "))
                }
            ),
        });
    }
    let (rate, base, at) = knee(&client_series(steps))?;
    let who = if names.is_empty() {
        "the target"
    } else {
        "ringlb"
    };
    Some(Knee {
        who: who.into(),
        rate,
        evidence: format!(
            "the client's p99 went from {} to {} at {rate:.0}/s{}",
            human_us(base),
            human_us(at),
            if names.is_empty() {
                ""
            } else {
                " while every member's own p99 stayed flat"
            }
        ),
    })
}

pub fn summarise(slos: &[Slo], s: &Search) -> Summary {
    let steps = sorted(&s.steps);
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
        })
        .collect();
    Summary {
        max_rate: s.max_good,
        bounded: s.min_bad.is_some(),
        per_slo,
        first_knee: first_knee(&steps),
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
