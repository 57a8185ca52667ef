//! `ringlb-load`: ringlb's load generator. Closed loop (`-c`, `-d`, `--pipeline`) or open loop
//! (`--rate`, coordinated omission corrected), over HTTP/1.1 or HTTPS (rustls), thread-per-core on
//! compio; `sweep`, the capacity search (open-loop steps, bisection, ringlb's status read around
//! each step); `origin`, a fast plain HTTP/1.1 origin for benchmarks; and `relay`, the
//! benchmark's floor (a byte relay, no HTTP). It reads ringlb only
//! through its documented `/status.json`, never its internals.

mod cli;
mod client;
mod knee;
mod origin;
mod plot;
mod relay;
mod report;
mod run;
mod scrape;
mod slo;
mod sweep;
mod sweep_plot;
mod sweep_report;
mod target;
mod tls;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A compio runtime with the ring flags ringlb uses (ringlb's `runtime`): single-issuer with
/// deferred task work, or where a kernel before 6.1 refuses that, cooperative task work. Built on
/// the thread that runs it.
pub fn runtime() -> std::io::Result<compio::runtime::Runtime> {
    runtime_with(true).or_else(|_| runtime_with(false))
}

fn runtime_with(deferred: bool) -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true)
        .single_issuer(deferred)
        .defer_taskrun(deferred);
    if deferred {
        // Not left to compio's choice, which answers refused flags with epoll; its check that
        // the kernel has the basic operations stays.
        proactor
            .driver_type(compio::driver::DriverType::IoUring)
            .detect_opcode_support(compio::driver::op::OpCodeFlag::basic());
    }
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

fn load(args: cli::LoadArgs) -> anyhow::Result<()> {
    let targets = target::targets(&args)?;
    let outcome = run::run(&args, targets)?;
    print!("{}", report::table(&args, &outcome));
    if let Some(path) = &args.json {
        let j = report::json(&args, &outcome);
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    if let Some(path) = &args.plot {
        let title = format!("latency, {} connections", args.connections);
        plot::draw(path, &outcome.hist, &title)?;
    }
    Ok(())
}

fn sweep(mut a: cli::SweepArgs) -> anyhow::Result<()> {
    if a.token.is_none() {
        a.token = std::env::var("RINGLB_ADMIN_TOKEN").ok();
    }
    let plan = sweep::Plan::of(&a)?;
    let targets = target::targets(&a.load)?;
    let target = a.load.url.clone().unwrap_or_else(|| "--urls".to_string());
    if let Some(base) = &a.admin {
        scrape::read(base, a.token.as_deref())?;
    }
    let search = sweep::search(&a, &plan, &targets)?;
    let summary = knee::summarise(&plan.slos, &search, plan.max_errors);
    print!("{}", sweep_report::summary(&summary, a.max));
    let title = format!("ringlb-load sweep of {target}");
    if let Some(path) = &a.load.json {
        let j = sweep_report::JsonReport {
            target: &target,
            slos: plan.slos.iter().map(|s| s.label()).collect(),
            mode: if a.ramp { "ramp" } else { "steps" },
            summary: &summary,
            steps: &search.steps,
        };
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    if let Some(path) = &a.svg {
        std::fs::write(path, sweep_plot::svg(&plan, &search.steps, &title)?)?;
    }
    if let Some(path) = &a.html {
        let h = sweep_plot::html(&plan, &search.steps, &summary, a.max, &title)?;
        std::fs::write(path, h)?;
    }
    if let Some(path) = &a.textfile {
        std::fs::write(path, sweep_report::textfile(&summary, &target))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(cli::Command::Origin(o)) => origin::run(o),
        Some(cli::Command::Sweep(a)) => sweep(*a),
        Some(cli::Command::Relay(a)) => relay::run(a),
        None => load(cli.load),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringlb-load: {e:#}");
            ExitCode::from(1)
        }
    }
}
