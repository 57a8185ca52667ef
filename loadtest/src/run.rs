//! A load run: one compio runtime per thread, connections spread over them (sharing one TLS
//! configuration, hence one session cache), an uncounted warm-up (`--warmup`), a live line every
//! second, the threads' histograms, counts and schedule lag merged at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::cli::{parse_cpus, LoadArgs};
use crate::client::{self, new_histogram, Shared, Stats, ERROR_KINDS};
use crate::target::Target;

/// A thread's figures, sent each second (cumulative) and at the end.
pub struct Progress {
    pub thread: usize,
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: [u64; ERROR_KINDS.len()],
    pub status: [u64; 5],
    pub handshakes: [u64; 2],
    pub lag: Histogram<u64>,
    pub behind: u64,
    pub done: bool,
}

/// Everything a run measured.
pub struct Outcome {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: [u64; ERROR_KINDS.len()],
    pub status: [u64; 5],
    /// TLS handshakes: [full, resumed].
    pub handshakes: [u64; 2],
    /// Open loop: the schedule lag (see `Stats::lag`).
    pub lag: Histogram<u64>,
    /// Open loop: requests sent late because their connection was still busy.
    pub behind: u64,
    pub elapsed: Duration,
    pub threads: usize,
    /// Some target was https.
    pub tls: bool,
}

fn snapshot(thread: usize, s: &Stats, done: bool) -> Progress {
    Progress {
        thread,
        hist: s.hist.clone(),
        requests: s.requests,
        errors: s.errors,
        status: s.status,
        handshakes: s.handshakes,
        lag: s.lag.clone(),
        behind: s.behind,
        done,
    }
}

pub fn run(args: &LoadArgs, targets: Vec<Target>) -> anyhow::Result<Outcome> {
    if args.rate.is_some() && args.pipeline > 1 {
        anyhow::bail!(
            "--rate (open loop) sends one request at a time per connection: drop --pipeline"
        );
    }
    if args.rate.is_some_and(|r| !(r >= 0.001 && r.is_finite())) {
        anyhow::bail!("--rate must be a number of requests per second, at least 0.001");
    }
    let month = Duration::from_secs(30 * 24 * 3600);
    if args.duration + args.warmup.unwrap_or_default() > month || args.timeout > month {
        anyhow::bail!("--duration, --warmup and --timeout: at most 30 days");
    }
    let tls = if targets.iter().any(|t| t.tls.is_some()) {
        Some(crate::tls::config(args)?)
    } else {
        None
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.connections.max(1));
    let cpus = match &args.cpus {
        Some(c) => parse_cpus(c)?,
        None => Vec::new(),
    };
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + args.warmup.unwrap_or_default();
    let deadline = measure_from + args.duration;
    let (tx, rx) = mpsc::channel::<Progress>();
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<usize> = (0..args.connections).filter(|c| c % threads == t).collect();
        let tx = tx.clone();
        let targets = targets.clone();
        let tls = tls.clone();
        let cpu = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
        let interval = args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
        let (timeout, pipeline, cpr, total) = (
            args.timeout,
            args.pipeline,
            args.connect_per_request,
            args.connections,
        );
        handles.push(std::thread::spawn(move || {
            if let Some(c) = cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            // Timed sends wake when asked, not up to the default 50 µs later.
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
            let rt = crate::runtime().expect("a compio runtime");
            rt.block_on(async move {
                let shared = Rc::new(Shared {
                    targets,
                    deadline,
                    start,
                    timeout,
                    pipeline,
                    connect_per_request: cpr,
                    interval,
                    tls,
                    stats: RefCell::new(Stats::new()),
                    measure_from,
                });
                let now = Instant::now();
                if now < start {
                    compio::time::sleep(start - now).await;
                }
                let tasks: Vec<_> = conns
                    .into_iter()
                    .map(|id| compio::runtime::spawn(client::run(shared.clone(), id, total)))
                    .collect();
                let ticker = {
                    let shared = shared.clone();
                    let tx = tx.clone();
                    compio::runtime::spawn(async move {
                        loop {
                            compio::time::sleep(Duration::from_secs(1)).await;
                            let _ = tx.send(snapshot(t, &shared.stats.borrow(), false));
                        }
                    })
                };
                for task in tasks {
                    let _ = task.await;
                }
                drop(ticker);
                let _ = tx.send(snapshot(t, &shared.stats.borrow(), true));
            });
        }));
    }
    drop(tx);
    let mut latest: Vec<Option<Progress>> = (0..threads).map(|_| None).collect();
    let mut finished = 0;
    let mut last_print = (start, 0u64);
    // A live line once every thread has reported since the last one.
    let mut reported = vec![false; threads];
    while finished < threads {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(p) => {
                finished += usize::from(p.done);
                let i = p.thread;
                reported[i] = true;
                latest[i] = Some(p);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !args.quiet && reported.iter().all(|&r| r) && finished < threads {
            reported.iter_mut().for_each(|r| *r = false);
            let (requests, errors, hist) = merge(&latest);
            let now = Instant::now();
            let rate =
                (requests - last_print.1) as f64 / now.duration_since(last_print.0).as_secs_f64();
            eprintln!(
                "{:>6.1}s {:>10.0} req/s  errors {:>6}  p99 so far {}",
                now.saturating_duration_since(start).as_secs_f64(),
                rate,
                errors,
                crate::report::human_us(if hist.is_empty() {
                    0
                } else {
                    hist.value_at_quantile(0.99)
                })
            );
            last_print = (now, requests);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let mut out = Outcome {
        hist: new_histogram(),
        requests: 0,
        errors: [0; ERROR_KINDS.len()],
        status: [0; 5],
        handshakes: [0; 2],
        lag: new_histogram(),
        behind: 0,
        elapsed: deadline.saturating_duration_since(measure_from),
        threads,
        tls: tls.is_some(),
    };
    for p in latest.into_iter().flatten() {
        let _ = out.hist.add(&p.hist);
        let _ = out.lag.add(&p.lag);
        out.behind += p.behind;
        out.requests += p.requests;
        for (o, e) in out.errors.iter_mut().zip(p.errors) {
            *o += e;
        }
        for (o, s) in out.status.iter_mut().zip(p.status) {
            *o += s;
        }
        for (o, h) in out.handshakes.iter_mut().zip(p.handshakes) {
            *o += h;
        }
    }
    Ok(out)
}

fn merge(latest: &[Option<Progress>]) -> (u64, u64, Histogram<u64>) {
    let mut h = new_histogram();
    let (mut r, mut e) = (0, 0);
    for p in latest.iter().flatten() {
        let _ = h.add(&p.hist);
        r += p.requests;
        e += p.errors.iter().sum::<u64>();
    }
    (r, e, h)
}
