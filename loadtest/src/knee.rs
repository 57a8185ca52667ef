//! The sweep's conclusions: the highest rate that met each SLO, and who saturated first: the
//! member (or ringlb itself) whose latency knee comes at the lowest rate, with the evidence.
//!
//! Owns: the knee rule: a series knees at the lowest rate from which on its p99 stays above twice
//! its baseline (the least of its three lowest rates) plus 1 ms, or its errors pass
//! `--max-errors`; of members kneeing at the same lowest rate, the one with the highest p99 there
//! is named. Must never: name a member without a measured rise (or errors) to show for it, or call
//! a member that rose too flat.

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

/// The member whose own p99 knees at the lowest rate (of several kneeing there, the one with the
/// highest p99 at it: the others' rise is then as likely the machine's or ringlb's), with the
/// others' for contrast: those that stayed flat, and those that rose too.
fn member_knee(steps: &[&StepResult], names: &[String], max_errors: f64) -> Option<Knee> {
    let series: Vec<Series> = (0..names.len())
        .map(|i| member_series(steps, i, max_errors))
        .collect();
    let knees: Vec<Option<(f64, u64, u64)>> = series.iter().map(knee).collect();
    let (i, (rate, base, at)) = (0..names.len())
        .filter_map(|i| Some((i, knees[i]?)))
        .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.1 .2.cmp(&a.1 .2)))?;
    let (mut flat, mut rose) = (Vec::new(), Vec::new());
    for j in (0..names.len()).filter(|j| *j != i) {
        let Some(first) = series[j].first() else {
            continue;
        };
        let Some(then) = series[j].iter().find(|p| p.0 >= rate) else {
            continue;
        };
        let line = format!("{} {} → {}", names[j], human_us(first.1), human_us(then.1));
        match knees[j] {
            Some(k) if k.0 <= rate => rose.push(line),
            _ => flat.push(line),
        }
    }
    let mut contrast = String::new();
    if !flat.is_empty() {
        contrast += &format!(" while the others stayed flat ({})", flat.join("; "));
    }
    if !rose.is_empty() {
        contrast += &format!("; kneeing at the same rate, lower: {}", rose.join("; "));
    }
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

    fn step(rate: f64, member_p99s: &[u64]) -> StepResult {
        let member = |(i, p99): (usize, &u64)| crate::scrape::MemberStep {
            name: format!("app/http://127.0.0.1:{}", 9000 + i),
            requests: 100,
            share: 0.5,
            total_p50_us: 0,
            total_p99_us: 0,
            member_p50_us: 0,
            member_p99_us: *p99,
            in_flight: 0,
            pool_hit_rate: 1.0,
            errors: 0,
        };
        StepResult {
            phase: "step",
            offered_rate: rate,
            achieved_rate: rate,
            requests: 100,
            errors: 0,
            latency_us: [("p99", 1000)].into_iter().collect(),
            slo_us: vec![],
            wakeup_lag_p99_us: 0,
            behind_share: 0.0,
            good: true,
            errors_ok: true,
            broke: vec![],
            server: Some(crate::scrape::ServerStep {
                cpu_us_per_request: 1.0,
                members: member_p99s.iter().enumerate().map(member).collect(),
            }),
        }
    }

    /// Both members knee at the sweep's last rate (a CI run: the fast one 683 µs → 6.72 ms, the
    /// slow one 4.38 → 19.45 ms): the slow one, the higher there, is named, and the fast one's
    /// rise is not called flat.
    #[test]
    fn of_two_members_kneeing_at_one_rate_the_higher_is_named() {
        let steps = [
            step(200.0, &[683, 4380]),
            step(300.0, &[700, 5000]),
            step(450.0, &[690, 6100]),
            step(759.0, &[6720, 19_450]),
        ];
        let refs: Vec<&StepResult> = steps.iter().collect();
        let names = member_names(&refs);
        let k = member_knee(&refs, &names, 0.01).unwrap();
        assert_eq!(k.who, "app/http://127.0.0.1:9001", "{k:?}");
        assert_eq!(k.rate, 759.0);
        assert!(!k.evidence.contains("stayed flat"), "{}", k.evidence);
        assert!(k.evidence.contains("9000 683µs → 6.72ms"), "{}", k.evidence);
        // One that stayed flat is called so.
        let steps = [step(200.0, &[683, 4380]), step(759.0, &[700, 19_450])];
        let refs: Vec<&StepResult> = steps.iter().collect();
        let k = member_knee(&refs, &names, 0.01).unwrap();
        assert!(
            k.evidence
                .contains("stayed flat (app/http://127.0.0.1:9000"),
            "{}",
            k.evidence
        );
    }
}
