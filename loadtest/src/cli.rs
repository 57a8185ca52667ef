//! Command line of `ringlb-load`: the load run (default, http:// or https:// targets, with the
//! TLS options) and the `origin` server. It only declares options; it never acts on them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like \"10s\" or \"500ms\")"))
}

#[derive(Parser, Debug)]
#[command(
    name = "ringlb-load",
    version,
    about = "HTTP/1.1 load generator and benchmark origin"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A fast HTTP/1.1 origin server for benchmarks and demos.
    Origin(OriginArgs),
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target URL (http://host:port/path or https://…); or use --urls.
    pub url: Option<String>,
    /// Keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// How long to run.
    #[arg(short = 'd', long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Worker threads (default: one per core).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Requests in flight per connection (closed loop only).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Open loop: this many requests per second in total, on a constant schedule; latency is
    /// measured from each request's intended send time (coordinated omission corrected).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body from a file (sent with Content-Length).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// A file of URLs, one per line, each optionally preceded by a weight: "3 http://h/p".
    #[arg(long)]
    pub urls: Option<PathBuf>,
    /// Open a new connection for every request (connection churn).
    #[arg(long)]
    pub connect_per_request: bool,
    /// A request not answered within this counts as a timeout error.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// https: accept any server certificate (handshake signatures are still checked).
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,
    /// https: verify the server against the PEM certificates in this file (default: the system
    /// roots).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// https: resume TLS sessions on new connections (with --connect-per-request); without it
    /// every connection makes a full handshake.
    #[arg(long)]
    pub tls_resume: bool,
    /// https: allow only this TLS version.
    #[arg(long, value_name = "1.2|1.3", value_parser = ["1.2", "1.3"])]
    pub tls_version: Option<String>,
    /// https: offer only this key exchange (x25519: X25519; p256: secp256r1; mlkem: the
    /// X25519MLKEM768 hybrid, TLS 1.3 only). Default: aws-lc-rs's list (the hybrid first in
    /// workspace builds, where ringlb turns on rustls's prefer-post-quantum).
    #[arg(long, value_name = "x25519|p256|mlkem", value_parser = ["x25519", "p256", "mlkem"])]
    pub tls_kx: Option<String>,
    /// https: the server name to send (SNI) and verify (default: the URL's host; an IP host sends
    /// no SNI).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Write the results, with the merged latency histogram, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the latency distribution (percentile spectrum) as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Pin worker threads to these cores, e.g. "1" or "2,3" (default: no pinning).
    #[arg(long)]
    pub cpus: Option<String>,
    /// No live line.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct OriginArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 13)]
    pub body_bytes: usize,
    /// Wait this long before answering each request.
    #[arg(long, value_parser = duration)]
    pub delay: Option<Duration>,
    /// Worker threads (default 1).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Pin worker threads to these cores.
    #[arg(long)]
    pub cpus: Option<String>,
}

/// Parses "1" or "2,3" into core ids.
pub fn parse_cpus(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("bad cpu list \"{s}\""))
        })
        .collect()
}
