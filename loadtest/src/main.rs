//! `ringlb-load`: ringlb's load generator. Closed loop (`-c`, `-d`, `--pipeline`) or open loop
//! (`--rate`, coordinated omission corrected), over HTTP/1.1 or HTTPS (rustls), thread-per-core on
//! compio, plus `origin`, a fast plain HTTP/1.1 origin for benchmarks. It does not depend on the
//! proxy's internals.

mod cli;
mod client;
mod origin;
mod plot;
mod report;
mod run;
mod target;
mod tls;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A compio runtime with the ring flags ringlb uses.
pub fn runtime() -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true);
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

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(cli::Command::Origin(o)) => origin::run(o),
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
