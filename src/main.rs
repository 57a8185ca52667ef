//! The `ringlb` binary: parse the command line, load the config, start the server, wait for a
//! signal. Errors reach the user as one clear line, never as a panic or a debug dump.

use std::process::ExitCode;

use clap::Parser;
use ringlb::cli::{Cli, Command};
use ringlb::config::Config;
use ringlb::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ringlb::logging::init as init_logging;
use ringlb::sd_notify::SdNotify;

fn serve(config: Config, source: Option<ringlb::reload::Source>, upgrade: bool) -> ExitCode {
    // systemd (Type=notify): told once serving, around reloads, at the stop; nothing without it.
    let sd = SdNotify::from_env();
    // `--upgrade`: the running process's listening sockets first (it keeps serving meanwhile).
    let (taken_from, inherited) = if upgrade {
        let Some(path) = config.server.upgrade_socket.clone() else {
            eprintln!("ringlb: --upgrade needs [server] upgrade_socket in the configuration");
            return ExitCode::from(2);
        };
        match ringlb::handover::take(&path) {
            Ok((conn, sockets)) => (Some(conn), sockets),
            Err(e) => {
                eprintln!("ringlb: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        (None, Vec::new())
    };
    let mut server = match Server::start(config, source, inherited) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringlb: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(conn) = taken_from {
        // Serving: the old process may stop now. If it does not answer, it goes on serving and
        // this one stops (two processes must not share the sockets for good).
        if let Err(e) = ringlb::handover::ready(&conn) {
            eprintln!("ringlb: upgrade failed, the running ringlb keeps serving: {e}");
            server.stop();
            return ExitCode::from(1);
        }
    }
    if let Err(e) = server.offer_upgrades() {
        eprintln!("ringlb: {e}; a later upgrade will not find this process");
    }
    // The listeners are bound and every worker runs (`Server::start` returned).
    sd.ready(&server.status_line());
    if let Err(e) = server.wait_for_signal(&sd) {
        eprintln!("ringlb: cannot wait for signals: {e}");
        sd.stopping();
    }
    server.stop();
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            overrides,
            upgrade,
        } => {
            let mut cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ringlb: config error: {e}");
                    return ExitCode::from(2);
                }
            };
            overrides.apply(&mut cfg);
            init_logging(&cfg.log_level);
            let source = ringlb::reload::Source {
                path: config,
                overrides,
            };
            serve(cfg, Some(source), upgrade)
        }
        Command::ImportApache { file } => import_apache(&file),
        Command::Man { dir } => match ringlb::man::write_pages(&dir) {
            Ok(pages) => {
                for p in pages {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "ringlb: cannot write the man pages into {}: {e}",
                    dir.display()
                );
                ExitCode::from(1)
            }
        },
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => match ringlb::tls::check::check(&c) {
                Ok((lines, warnings)) => {
                    print!("{} is valid\n{}", config.display(), c.summary());
                    for l in lines {
                        println!("{l}");
                    }
                    for w in warnings {
                        println!("warning: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ringlb: {}: certificate error: {e}", config.display());
                    ExitCode::from(1)
                }
            },
            Err(e) => {
                eprintln!("ringlb: config error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Reload {
            admin,
            token,
            config,
        } => {
            let (admin, token) = ringlb::status_cli::admin_of(admin, token, config.as_deref());
            match ringlb::status_cli::reload(&admin, token.as_deref()) {
                Ok(generation) => {
                    println!("reloaded: every core runs generation {generation}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ringlb: {e:#}");
                    if let Some(file) = config {
                        eprintln!(
                            "ringlb: {admin} and its token were read from {}: a running ringlb keeps \
                             the [admin] address it started with and checks the token of the \
                             configuration it runs, so after changing either there, restart it",
                            file.display()
                        );
                    }
                    ExitCode::from(1)
                }
            }
        }
        Command::Status { admin, token } => {
            match ringlb::status_cli::fetch(&admin, token.as_deref()) {
                Ok(report) => {
                    print!("{}", ringlb::status_cli::render(&report));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ringlb: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo {
            listen,
            admin,
            overrides,
        } => {
            let backends = ringlb::demo::start_backend("A")
                .and_then(|a| Ok((a, ringlb::demo::start_backend("B")?)));
            let (a, b) = match backends {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ringlb: cannot start the demo backends: {e}");
                    return ExitCode::from(1);
                }
            };
            let mut cfg = ringlb::demo::config(listen, admin, a, b);
            overrides.apply(&mut cfg);
            init_logging(&cfg.log_level);
            println!("ringlb demo: proxy on http://{listen}/ balancing over backend A (http://{a}) and B (http://{b})");
            println!("try:  for i in 1 2 3 4; do curl -s http://{listen}/hello; done");
            println!(
                "then: open http://{admin}/status  (or: ringlb status --admin http://{admin})"
            );
            println!("stop: Ctrl-C");
            serve(cfg, None, false)
        }
    }
}

/// `ringlb import-apache FILE`: the configuration on stdout, notes and verdict on stderr.
fn import_apache(file: &std::path::Path) -> ExitCode {
    let imported = match ringlb::import::apache(file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ringlb: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", imported.toml);
    for n in &imported.notes {
        eprintln!("{}: {}", n.at, n.text);
    }
    match imported.invalid {
        None => {
            eprintln!("ringlb: imported; check it with `ringlb check --config <file>`");
            ExitCode::SUCCESS
        }
        Some(why) => {
            eprintln!("ringlb: the result is not a valid ringlb configuration: {why}");
            ExitCode::from(1)
        }
    }
}
