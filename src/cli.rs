//! Command-line interface (clap): `run`, `check`, `status`, `reload`, `demo`, the hidden `man`
//! (packaging), and the flags that override the file. The man pages are generated from these
//! definitions (`man`): what `--help` says is what `man ringlb` says.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Driver;

#[derive(Parser, Debug)]
#[command(
    name = "ringlb",
    version,
    about = "Thread-per-core io_uring HTTP load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by the commands that start a server.
#[derive(clap::Args, Debug, Clone)]
pub struct Overrides {
    /// Worker threads (0 = one per core, at most 1024); overrides server.workers.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=crate::config::MAX_WORKERS as i64))]
    pub workers: Option<u16>,
    /// io driver: auto, io_uring or epoll; overrides server.driver.
    #[arg(long)]
    pub driver: Option<Driver>,
    /// Log level (error, warn, info, debug, trace); overrides log.level.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl Overrides {
    /// Applies the flags to a configuration read from the file (at start and at each reload).
    pub fn apply(&self, config: &mut crate::config::Config) {
        if let Some(w) = self.workers {
            config.server.workers = if w == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                usize::from(w)
            };
        }
        if let Some(d) = self.driver {
            config.server.driver = d;
        }
        if let Some(l) = &self.log_level {
            config.log_level = l.clone();
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy with a config file.
    Run {
        #[arg(long, short, default_value = "ringlb.toml")]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Take the listening sockets of the ringlb running with the same `[server]
        /// upgrade_socket` (a binary upgrade: it stops once this one serves).
        #[arg(long)]
        upgrade: bool,
    },
    /// Translate an Apache httpd configuration (mod_proxy_balancer, mod_proxy_ajp, mod_ssl) into a
    /// ringlb one on stdout; what was not carried over goes to stderr with its file and line.
    /// Exits 0 when the result is a valid configuration, 1 when it is not.
    ImportApache {
        /// The Apache file to start from (a vhost file, or apache2.conf: includes are followed).
        file: PathBuf,
    },
    /// Validate a config file, print a summary, exit 0 (valid) or 1 (invalid).
    Check {
        #[arg(long, short, default_value = "ringlb.toml")]
        config: PathBuf,
    },
    /// Make a running ringlb re-read its config file (as SIGHUP does) and wait until every core
    /// runs it; prints the new generation number, or why the running configuration stays.
    Reload {
        /// The admin listener's URL (default: from --config, else http://127.0.0.1:9900).
        #[arg(long)]
        admin: Option<String>,
        /// Bearer token, when `[admin] token` is set (or RINGLB_ADMIN_TOKEN; default: from
        /// --config).
        #[arg(long, env = "RINGLB_ADMIN_TOKEN")]
        token: Option<String>,
        /// The configuration file being reloaded: its `[admin]` address and token are used
        /// (what systemd's ExecReload passes, so no token needs to be in the unit).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a running ringlb's status tables (from its admin listener).
    Status {
        /// The admin listener's URL.
        #[arg(long, default_value = "http://127.0.0.1:9900")]
        admin: String,
        /// Bearer token, when `[admin] token` is set (or RINGLB_ADMIN_TOKEN).
        #[arg(long, env = "RINGLB_ADMIN_TOKEN")]
        token: Option<String>,
    },
    /// Write the manual pages (ringlb.1, ringlb-<command>.1) into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// The directory to write them into (created if missing).
        dir: PathBuf,
    },
    /// Start the proxy in front of two built-in demo backends.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the demo's admin endpoint (status page, metrics) listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: std::net::SocketAddr,
        #[command(flatten)]
        overrides: Overrides,
    },
}
