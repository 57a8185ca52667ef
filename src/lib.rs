//! ringlb: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Map of the code (one concept per file):
//! - `cli`, `config`: command line and the validated TOML configuration.
//! - `server`: starts one pinned `worker` per core, handles signals and reload requests on the
//!   main thread; `listeners`: the listening sockets (one per worker and address) and their
//!   slots, bound at start and by reloads; `reload`: re-reading the file into the next `generation`;
//!   `handover`: giving the listening sockets to a new binary (`ringlb run --upgrade`);
//!   `layout`: members' stable places (identity) across generations; `sd_notify`: telling systemd
//!   (readiness, reloads, stop, the watchdog fed from the cores' heartbeats on the board);
//!   `logging`: log lines for a terminal, or for the journal when stderr is the journal.
//! - `worker`: one core's event loop and the only place connection tasks start (accept loops,
//!   the parked-connection watcher, the tick); `runtime`: a thread's compio runtime (the driver,
//!   the io_uring's set-up flags); `core`: what one core owns (`Core`: its generation,
//!   counters, parked connections) and the connection guards; `core_gen`: one core's state of a
//!   generation (router, cursors, pools) and the carry-over to the next.
//! - `conn`: one client connection's life: read the head, normalise the path, refuse bad ones,
//!   keep-alive, park when idle (`park`); `client`: the connection's buffers and parsed head;
//!   `readiness`: a plain client's readability between requests (one poll kept armed).
//! - `proxy`: one request's trip once parsed: gather a small body, route, pick, pooled (checked)
//!   or new member connection, run the exchange, act on its `outcome` (answer, retry, fail over).
//! - `outcome`: the result type both exchanges return, and the one retry rule.
//! - `tunnel`: after a member's 101 on a route with `upgrade`, bytes copied both ways (WebSocket).
//! - `http/`: parse (httparse), framing and chunked (body ends), path (normal form), policy (which
//!   headers go where), rewrite (heads), reply (ringlb's own answers), exchange (the HTTP member
//!   exchange).
//! - `ajp/`: AJP13 members: codec, FORWARD_REQUEST and response mapping, the exchange.
//! - `route` (host + longest prefix), `select` (the member for one attempt: sticky session, pick,
//!   queue; passive marking), `sticky` (the session's route), `balance` (one core's choice:
//!   tiers, spares, failures, methods, slow start), `pool` (idle conns), `trust` (trusted proxies:
//!   whose X-Forwarded-* ringlb believes).
//! - `stream`: a client or member connection's transport (TCP, with a TLS session on TLS listeners
//!   and to `https://` members); `tls/`: rustls driven over ringlb's buffers (`session`), the
//!   listeners' certificates and their reload, SNI (`store`), member TLS (`upstream`);
//!   `redirect`: `redirect_https`.
//! - `io`: the socket calls; `splice`: a large `Content-Length` body (a response, or an upload)
//!   moved between plain sockets through a pipe, inside the kernel; `deadline`: the per-core timer
//!   wheel; `coop`: once the thread received 1 MiB (or answered 1024 requests) since a task last
//!   gave way, the next to count gives way; `notify`: a wake-up signal; `allocator`: returning
//!   freed memory to the OS.
//! - `stats` (per-core counters and histograms), `board` (where cores publish them once a second),
//!   `admin/` (the admin listener: status page, JSON, Prometheus metrics, member API).
//! - `health/`: active health checks, one checker thread per box (probe, state machine, the
//!   results each core applies at its once-a-second publication).
//! - `access_log`: Apache combined lines, buffered per core, written by one writer thread.
//! - `demo`: the built-in demo backends; `status_cli`: `ringlb status` and `ringlb reload`.
//! - `boxed!` (defined here): a future boxed without first building it on the stack and copying it.
//!
//! One request's path: accept (worker) -> read head + parse (conn, http::parse) -> normalise the
//! path (http::path) -> gather a small body, route, balancer pick (proxy) -> checked pool checkout
//! or connect -> exchange (http::exchange or ajp::exchange: write the rewritten head and body, read
//! the response head, write the rewritten head, stream the body, or splice it) -> outcome: pool
//! checkin, or a retry as outcome::retry allows, or a 502/504 -> next request on the same
//! connection, or close; after a 101 to an upgrade its route allows, a tunnel (tunnel) until
//! either side ends it.

#![deny(unsafe_code)]

/// `Box::pin($f)`, with the box allocated before the future is made, which lets the optimiser
/// write the future straight into it (release builds do; a debug build may still copy).
/// `Box::pin` builds the future on the stack and then copies all of it, its largest state
/// included, into the box: a request's state machine (`conn::handle`) is kilobytes, and that copy
/// was 0.7 % of a worker's CPU in scenario (a), once per request.
macro_rules! boxed {
    ($f:expr) => {
        ::std::boxed::Box::into_pin(::std::boxed::Box::write(
            ::std::boxed::Box::new_uninit(),
            $f,
        ))
    };
}
pub(crate) use boxed;

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
pub mod coop;
pub mod core;
pub mod core_gen;
pub mod deadline;
pub mod demo;
pub mod fd_limit;
pub mod generation;
pub mod handover;
pub mod health;
pub mod http;
pub mod import;
pub mod io;
pub mod layout;
pub mod listeners;
pub mod logging;
pub mod man;
pub mod notify;
pub mod outcome;
pub mod park;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod readiness;
pub mod redirect;
pub mod reload;
pub mod reset;
pub mod route;
pub mod runtime;
pub mod sd_notify;
pub mod select;
pub mod server;
pub mod slab;
pub mod splice;
pub mod state_file;
pub mod stats;
pub mod status_cli;
pub mod sticky;
pub mod stream;
#[cfg(test)]
pub mod test_rng;
pub mod tls;
pub mod trust;
pub mod tunnel;
pub mod worker;
