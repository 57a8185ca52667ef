//! `ringlb-load sweep`: open-loop steps at rising rates until an SLO breaks or errors appear, then
//! a bisection between the last good and the first bad rate (or, with `--ramp`, one staircase that
//! stops at the first breach). Each step is a normal open-loop run (`run.rs`) with a warm-up that
//! is not counted, and with `--admin` a reading of ringlb's status around its measured part.
//!
//! Owns: the search and each step's verdict. Must never: judge a step on figures from its
//! warm-up; go above `--max`; keep searching past `--max` or once bisected to `--precision`.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::SweepArgs;
use crate::client::ERROR_KINDS;
use crate::scrape::{self, ServerStep};
use crate::slo::{share, Slo, Step};
use crate::target::Target;

/// One step's measurements and verdict.
#[derive(Serialize, Clone, Debug)]
pub struct StepResult {
    /// "step", "bisect" or "ramp".
    pub phase: &'static str,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub requests: u64,
    /// Transport errors and 5xx answers.
    pub errors: u64,
    pub latency_us: std::collections::BTreeMap<&'static str, u64>,
    /// The measured value of each SLO's quantile, in --slo order.
    pub slo_us: Vec<u64>,
    pub wakeup_lag_p99_us: u64,
    pub behind_share: f64,
    pub good: bool,
    /// Errors stayed under --max-errors (and something answered).
    pub errors_ok: bool,
    /// Why a step failed ("p99 312ms > 200ms", "errors 1.2%").
    pub broke: Vec<String>,
    pub server: Option<ServerStep>,
}

/// The sweep's settings, parsed.
pub struct Plan {
    pub slos: Vec<Slo>,
    pub step: Step,
    pub precision: f64,
    pub max_errors: f64,
}

impl Plan {
    pub fn of(a: &SweepArgs) -> anyhow::Result<Plan> {
        if a.load.rate.is_some() || a.load.plot.is_some() || a.load.pipeline > 1 {
            anyhow::bail!("sweep sets the rate itself: drop --rate, --plot and --pipeline");
        }
        if a.ramp && a.load.warmup.is_some() {
            anyhow::bail!("--ramp has no warm-ups (its windows follow one another): drop --warmup");
        }
        if !(a.from >= 0.001 && a.from <= a.max && a.max.is_finite()) {
            anyhow::bail!(
                "--from {} and --max {}: rates of at least 0.001/s, --from at most --max",
                a.from,
                a.max
            );
        }
        let precision = share("--precision", &a.precision)?;
        if precision < 0.005 {
            anyhow::bail!("--precision {}: at least 0.5%", a.precision);
        }
        Ok(Plan {
            slos: a
                .slos
                .iter()
                .map(|s| Slo::parse(s))
                .collect::<Result<_, _>>()?,
            step: Step::parse(&a.step)?,
            precision,
            max_errors: share("--max-errors", &a.max_errors)?,
        })
    }
}

/// A step's uncounted start when `--warmup` is not given.
const DEFAULT_WARMUP: Duration = Duration::from_secs(2);

/// How long ringlb may take to publish what its cores counted (they do once a second).
const PUBLISHED: Duration = Duration::from_millis(1100);

/// The most bisection steps (each halves the interval: 2^-12 of it is far below any precision).
const MAX_BISECTIONS: usize = 12;

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// Runs one open-loop step at `rate` (reading ringlb around its measured part, with --admin).
pub fn step(
    a: &SweepArgs,
    plan: &Plan,
    targets: &[Target],
    rate: f64,
    phase: &'static str,
) -> anyhow::Result<StepResult> {
    let mut load = a.load.clone();
    load.rate = Some(rate);
    load.quiet = true;
    let warmup = match phase {
        "ramp" => Duration::ZERO,
        _ => load.warmup.unwrap_or(DEFAULT_WARMUP),
    };
    load.warmup = Some(warmup);
    let began = Instant::now();
    let runner_targets = targets.to_vec();
    let runner = std::thread::spawn(move || crate::run::run(&load, runner_targets));
    let at = |t: Duration| {
        std::thread::sleep(
            (began + Duration::from_millis(50) + t).saturating_duration_since(Instant::now()),
        )
    };
    // ringlb's cores publish once a second, so a reading holds what they counted up to a second
    // before it: the first reading is taken PUBLISHED into the measured part (all it adds is then
    // measured traffic), the last one twice PUBLISHED after the step's last answer.
    let d = a.load.duration;
    let (before, middle) = match &a.admin {
        Some(base) => {
            at(warmup + PUBLISHED.min(d / 2));
            let before = scrape::read(base, a.token.as_deref())?;
            at(warmup + d / 2);
            (Some(before), Some(scrape::read(base, a.token.as_deref())?))
        }
        None => (None, None),
    };
    let o = runner
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let server = match (&a.admin, before, middle) {
        (Some(base), Some(before), Some(middle)) => {
            std::thread::sleep(PUBLISHED + PUBLISHED);
            let after = scrape::read(base, a.token.as_deref())?;
            Some(scrape::step(&before, &middle, &after))
        }
        _ => None,
    };
    Ok(verdict(plan, &o, rate, phase, server))
}

fn verdict(
    plan: &Plan,
    o: &crate::run::Outcome,
    rate: f64,
    phase: &'static str,
    server: Option<ServerStep>,
) -> StepResult {
    let q = |x: f64| crate::report::at_quantile(&o.hist, x);
    let errors = o.errors.iter().sum::<u64>() + o.status[4];
    let share = errors as f64 / (o.requests + o.errors.iter().sum::<u64>()).max(1) as f64;
    let slo_us: Vec<u64> = plan.slos.iter().map(|s| q(s.q)).collect();
    let mut broke: Vec<String> = plan
        .slos
        .iter()
        .zip(&slo_us)
        .filter(|(s, v)| **v > s.limit_us())
        .map(|(s, v)| format!("{} {} > {}", s.name, crate::report::human_us(*v), s.label()))
        .collect();
    let errors_ok = share <= plan.max_errors && o.requests > 0;
    if share > plan.max_errors {
        let kinds: Vec<String> = ERROR_KINDS
            .iter()
            .zip(o.errors)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .chain((o.status[4] > 0).then(|| format!("5xx {}", o.status[4])))
            .collect();
        broke.push(format!(
            "errors {:.2}% ({})",
            share * 100.0,
            kinds.join(", ")
        ));
    }
    if o.requests == 0 {
        broke.push("no answers".into());
    }
    let mut latency: std::collections::BTreeMap<&'static str, u64> =
        QUANTILES.iter().map(|(n, x)| (*n, q(*x))).collect();
    latency.insert("max", if o.hist.is_empty() { 0 } else { o.hist.max() });
    let sched = crate::report::schedule(o);
    StepResult {
        phase,
        offered_rate: rate,
        achieved_rate: o.requests as f64 / o.elapsed.as_secs_f64().max(1e-9),
        requests: o.requests,
        errors,
        latency_us: latency,
        slo_us,
        wakeup_lag_p99_us: sched.wakeup_lag_us["p99"],
        behind_share: sched.behind_share,
        good: broke.is_empty(),
        errors_ok,
        broke,
        server,
    }
}

/// The steps by rising offered rate.
pub fn by_rate(steps: &[StepResult]) -> Vec<&StepResult> {
    let mut v: Vec<&StepResult> = steps.iter().collect();
    v.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    v
}

/// The members ringlb reported (by position, the same in every step), when it was read.
pub fn member_names(steps: &[&StepResult]) -> Vec<String> {
    steps
        .iter()
        .find_map(|s| s.server.as_ref())
        .map(|s| s.members.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default()
}

/// The whole search: every step in the order run, and the highest rate found good.
pub struct Search {
    pub steps: Vec<StepResult>,
    /// The highest rate that met every SLO (None: even --from broke one).
    pub max_good: Option<f64>,
    /// The lowest rate that broke one (None: --max was reached without a breach).
    pub min_bad: Option<f64>,
}

pub fn search(a: &SweepArgs, plan: &Plan, targets: &[Target]) -> anyhow::Result<Search> {
    let mut s = Search {
        steps: Vec::new(),
        max_good: None,
        min_bad: None,
    };
    let phase = if a.ramp { "ramp" } else { "step" };
    let mut rate = a.from;
    loop {
        let r = run_one(a, plan, targets, rate, phase, &mut s)?;
        if !r || rate >= a.max {
            break;
        }
        rate = plan.step.next(rate).min(a.max);
    }
    if a.ramp {
        return Ok(s);
    }
    for _ in 0..MAX_BISECTIONS {
        let (Some(lo), Some(hi)) = (s.max_good, s.min_bad) else {
            break;
        };
        if (hi - lo) / lo <= plan.precision {
            break;
        }
        run_one(a, plan, targets, (lo + hi) / 2.0, "bisect", &mut s)?;
    }
    Ok(s)
}

/// Runs and records one step; prints its line; true when it was good.
fn run_one(
    a: &SweepArgs,
    plan: &Plan,
    targets: &[Target],
    rate: f64,
    phase: &'static str,
    s: &mut Search,
) -> anyhow::Result<bool> {
    let r = step(a, plan, targets, rate, phase)?;
    if !a.load.quiet {
        if s.steps.is_empty() {
            eprintln!("{}", crate::sweep_report::header(plan));
        }
        eprint!("{}", crate::sweep_report::line(&r));
    }
    let good = r.good;
    if good {
        s.max_good = Some(s.max_good.map_or(rate, |g| g.max(rate)));
    } else {
        s.min_bad = Some(s.min_bad.map_or(rate, |b| b.min(rate)));
    }
    s.steps.push(r);
    Ok(good)
}
