//! Command line of `ringlb-load`: the load run (default, http:// or https:// targets, with the
//! TLS options), the capacity `sweep` (which takes the load run's options too), the `origin`
//! server and the `relay` (the benchmark's floor). It only declares options; it never acts on them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like \"10s\" or \"500ms\")"))
}

fn capacity(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n >= 1.0 && n.is_finite() => Ok(n),
        _ => Err("a rate of at least 1 (requests per second)".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "ringlb-load",
    version,
    about = "HTTP/1.1 load generator, benchmark origin and floor relay"
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
    /// Capacity sweep: open-loop steps at rising rates until an SLO breaks or errors appear, then
    /// a bisection to the highest rate that meets every SLO; with --admin, per-member figures
    /// from ringlb's status.json at every step.
    Sweep(Box<SweepArgs>),
    /// The benchmark's floor: a byte relay with one member connection per client connection, one
    /// receive and one send per message each way, no HTTP parsing (not a proxy).
    Relay(RelayArgs),
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// "LISTEN=MEMBER,MEMBER…": listen on LISTEN and pair each client connection with a member, in
    /// turn (each is "PORT", on 127.0.0.1, or "ADDR:PORT"; repeatable).
    #[arg(long = "route", required = true)]
    pub routes: Vec<String>,
    /// Pin the relay's one thread to this core.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// A latency objective, "p99=200ms" (p50, p90, p99, p99.9, p99.99; repeatable). At least one.
    #[arg(long = "slo", required = true)]
    pub slos: Vec<String>,
    /// The first rate (requests per second).
    #[arg(long, default_value_t = 100.0)]
    pub from: f64,
    /// How the rate rises: "x1.25" (multiply) or "+500" (add); with --ramp, the rise per window.
    #[arg(long, default_value = "x1.25")]
    pub step: String,
    /// The highest rate to try.
    #[arg(long, default_value_t = 200_000.0)]
    pub max: f64,
    /// Bisect until the last good and first bad rates are this close ("5%").
    #[arg(long, default_value = "5%")]
    pub precision: String,
    /// A step fails when errors and 5xx answers exceed this share of its requests ("0.1%").
    #[arg(long, default_value = "0.1%")]
    pub max_errors: String,
    /// Instead of steps with warm-ups and a bisection: one slow staircase of back-to-back
    /// --duration windows, rising by --step, that stops at the first breach and never goes back
    /// above it (for boxes that must not be hammered).
    #[arg(long)]
    pub ramp: bool,
    /// ringlb's admin listener ("http://127.0.0.1:9900"): scrape /status.json around every step
    /// for per-member rates, latencies, in-flight, pool hits, errors and ringlb's CPU.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The admin token (default: $RINGLB_ADMIN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Write the report as HTML with its SVG charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the charts as one SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the maximum rate per SLO for node_exporter's textfile collector
    /// (`ringlb_sweep_max_rate{slo,target}`).
    #[arg(long, value_name = "FILE")]
    pub textfile: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target URL (http://host:port/path or https://…); or use --urls.
    pub url: Option<String>,
    /// Keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure (after the warm-up).
    #[arg(short = 'd', long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Run this long first without counting anything (connections open, caches warm, the rate
    /// settles). Default: none; in a sweep, 2 s before every step (a ramp has none).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Duration>,
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
    /// Serve at most this many requests per second per thread: each thread is one first-come
    /// first-served server taking 1/N s per request (by timer, no CPU), so a faster arrival rate
    /// queues. For capacity tests (a member that saturates).
    #[arg(long, value_parser = capacity)]
    pub capacity: Option<f64>,
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
