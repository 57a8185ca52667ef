//! ringlb: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Map of the code (one concept per file):
//! - `cli`, `config`: command line and the validated TOML configuration.
//! - `server`: binds listeners, starts one pinned `worker` per core, handles signals.
//! - `worker`: one core's compio runtime and its `Core` (balancers, pools); accept loops.
//! - `conn`: one client connection: read the head, refuse bad ones, keep-alive.
//! - `proxy`: one request's trip to a member and back, with failover and retry.
//! - `ajp/`: AJP13 members: codec, FORWARD_REQUEST and response mapping, the exchange.
//! - `http/`: parse (httparse), framing and chunked (body ends), rewrite (heads), reply (errors).
//! - `route` (host + longest prefix), `balance` (smooth weighted round robin), `pool` (idle conns).
//! - `io`: the few compio socket calls; `notify`: a single-core wake-up signal.
//! - `stats` (per-core counters and histograms), `board` (where cores publish them once a second),
//!   `admin/` (the admin listener: status page, JSON, Prometheus metrics, member API).
//! - `access_log`: Apache combined lines, buffered per core, written by one writer thread.
//! - `demo`: the built-in demo backends.
//!
//! One request's path: accept (worker) -> read head + parse (conn, http::parse) -> route ->
//! balancer pick -> pool checkout or connect -> write rewritten head and body (proxy,
//! http::rewrite) -> read response head -> write rewritten head -> stream body -> pool checkin ->
//! next request on the same connection, or close.

#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod ajp;
pub mod allocator;
pub mod balance;
pub mod board;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod core;
pub mod deadline;
pub mod demo;
pub mod http;
pub mod io;
pub mod notify;
pub mod outcome;
pub mod park;
pub mod pool;
pub mod proxy;
pub mod route;
pub mod server;
pub mod stats;
pub mod status_cli;
pub mod worker;
