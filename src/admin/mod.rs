//! The admin listener (`[admin] address`), served by the workers like any listener: `/status`
//! (HTML, with the balancer-manager's forms), `/status.json`, `/metrics` (Prometheus), the member
//! API, `POST /api/reload` (handed to the main thread, answered without holding the worker) and
//! `/healthz` (the one path that needs no credentials: it says only whether the process serves).
//!
//! Owns: admin request handling, in this order: `Host` check, credentials, cross-site check for
//! changes (`auth`), the form token for the page's forms (`csrf`), then the request. The worker
//! serving an admin request publishes its own statistics first (on demand, unless a page being
//! built holds the board); the other workers' come from their last once-a-second publication.
//! The pages built from the whole board are built off the worker (`offload`); the member API and
//! the page's form change the board under its lock on a blocking-pool thread (`off_worker`), so
//! no worker ever blocks on the board for an admin request. Must never: serve
//! anything but `/healthz`'s answer, or change anything, to a request without the right
//! credentials when some are configured, to a `Host` it does not answer to, or (a change) to
//! another site's page.
//! Invariant: the board's lock is held only while a response is built, never across an await.

pub mod api;
pub mod auth;
mod charts;
pub mod csrf;
pub mod form;
pub mod html;
pub mod metrics;
mod offload;
pub mod prom;
pub mod report;
pub mod text;
pub mod tls_report;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

use crate::board::Board;
use crate::core::Core;
use crate::http::parse::{parse_request, HeadError, HeadScan, RequestHead};
use crate::io::{read_more, write_range, IoFail};
use crate::reload::ControlSender;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// A response from the admin endpoint.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    extra: String,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            extra: String::new(),
        }
    }
}

/// The largest admin request head.
const MAX_HEAD: usize = 16384;

/// Serves one admin connection: one request, one response, close.
pub async fn serve(core: &Core, mut stream: TcpStream, _peer: SocketAddr) {
    let mut buf = Vec::with_capacity(4096);
    let mut head = RequestHead::default();
    // The whole head (and body) must arrive within header_timeout of the accept, however slowly
    // it trickles.
    let deadline = Instant::now() + core.gen().config.limits.header_timeout;
    let mut scan = HeadScan::default();
    let reply = loop {
        if scan.worth_parsing(&buf, MAX_HEAD) {
            match parse_request(&buf, MAX_HEAD, 100, &mut head) {
                Ok(()) => break None,
                Err(HeadError::Partial) => {}
                Err(e) => break Some(Reply::new(e.status(), "text/plain", "bad request\n".into())),
            }
        }
        let read = match crate::deadline::left(deadline) {
            Some(left) => read_more(&mut stream, &mut buf, 4096, left).await,
            None => Err(IoFail::Timeout),
        };
        match read {
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                break Some(Reply::new(408, "text/plain", "request timeout\n".into()))
            }
            Err(_) => return,
        }
    };
    let reply = match reply {
        Some(r) => r,
        None => {
            let body_len = match head.body {
                crate::http::framing::BodyKind::Length(n) if n as usize <= MAX_ADMIN_BODY => {
                    n as usize
                }
                crate::http::framing::BodyKind::Empty => 0,
                _ => return,
            };
            while buf.len() < head.head_len + body_len {
                let Some(left) = crate::deadline::left(deadline) else {
                    return;
                };
                if read_more(&mut stream, &mut buf, 4096, left).await.is_err() {
                    return;
                }
            }
            // One request per connection: bytes past its body are not part of it.
            buf.truncate(head.head_len + body_len);
            respond(core, &buf, &head).await
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nServer: ringlb\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\n{}Connection: close\r\n\r\n",
        reply.status,
        status_reason(reply.status),
        reply.content_type,
        reply.body.len(),
        reply.extra
    )
    .into_bytes();
    out.extend_from_slice(reply.body.as_bytes());
    let n = out.len();
    let _ = write_range(&mut stream, &mut out, 0..n, ADMIN_TIMEOUT).await;
}

fn status_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        422 => "Unprocessable Content",
        _ => crate::http::reply::reason(status),
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs on a CPU only when nothing else there wants
/// to, and a worker that wakes takes the CPU back at once instead of waiting out a time slice.
/// For the page thread, whose builds (a fraction of a millisecond with a few members, more with
/// many) may land on a worker's core: a build then takes no CPU time a worker wants, and on cores
/// the workers keep saturated it still gets the scheduler's minimal share. The cost is borne
/// while a build holds the board's lock: whoever blocks on it (a worker's tick after a whole
/// busy second, the main thread, the health checker, an admin change made off its worker)
/// waits for a build that runs only where a CPU is free. A worker that blocks frees its own CPU,
/// and the scheduler moves an idle-class thread there without the usual cache-hotness delay, so
/// the wait stays about one build; where workers or other normal-class work keep every CPU busy,
/// it can last far longer. Once in this class the thread cannot leave it without `CAP_SYS_NICE`.
/// Where the kernel refuses, the reason is logged and the thread keeps the normal class.
#[allow(unsafe_code)]
fn yield_to_workers() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a live, initialised sched_param that the kernel only reads; pid 0 names
    // the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!("the status page thread keeps the normal scheduling class: {e}");
    }
}

/// Lets the calling thread (one started from a worker, which inherited its pinning: a blocking-pool
/// thread checking a password or making an admin change, the page thread) run where the process
/// may run (the main thread's CPUs: it is never pinned, so `CPUAffinity=` or `taskset` still
/// hold), so that its work takes no time from the worker's own core.
fn unpin() {
    let main = rustix::process::getpid();
    let Ok(allowed) = rustix::thread::sched_getaffinity(Some(main)) else {
        return;
    };
    if let Err(e) = rustix::thread::sched_setaffinity(None, &allowed) {
        tracing::debug!("a helper thread stays on its worker's core: {e}");
    }
}

/// Lets the request through `auth`'s checks, then answers it.
async fn respond(core: &Core, buf: &[u8], head: &RequestHead) -> Reply {
    // Liveness for keepalived's `vrrp_script`, load-balancer probes and watchdogs: no credentials,
    // no figures, nothing but whether this process takes new connections. A query (a probe's
    // cache-buster, a scraper's counter) changes nothing.
    // A target that is not UTF-8 is refused before this (400; the test of the admin token sends
    // one), so this is the target as sent.
    let target = std::str::from_utf8(&buf[head.path.clone()]).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/healthz" {
        return healthz(core, head.method(buf));
    }
    // An absolute-form target names a host of its own, which the Host check would not see.
    if head.authority.is_some() {
        return Reply::new(
            400,
            "text/plain",
            "use a path, not a URL, as the target\n".into(),
        );
    }
    let gen = core.gen();
    let admin = gen.config.admin.as_ref();
    let host = head.host.clone().map(|h| &buf[h]);
    if admin.is_some_and(|a| !auth::host_allowed(a, host)) {
        return Reply::new(
            403,
            "text/plain",
            "this admin listener does not answer to that Host: add the name to [admin] hosts\n"
                .into(),
        );
    }
    let via = match auth::authenticate(admin, buf, head).await {
        Ok(via) => via,
        Err(auth::Refusal::Busy) => {
            return Reply::new(503, "text/plain", "busy checking passwords\n".into())
        }
        Err(auth::Refusal::Credentials) => {
            // Each wrong guess costs the guesser a quarter of a second (this connection only).
            compio::time::sleep(Duration::from_millis(250)).await;
            let mut r = Reply::new(
                401,
                "text/plain",
                "credentials are required: Authorization: Bearer <token>, or log in (HTTP Basic)\n"
                    .into(),
            );
            r.extra = "WWW-Authenticate: Basic realm=\"ringlb admin\", charset=\"UTF-8\"\r\n\
WWW-Authenticate: Bearer realm=\"ringlb admin\"\r\n"
                .into();
            return r;
        }
    };
    let method = head.method(buf);
    if method != b"GET"
        && method != b"HEAD"
        && via != auth::Via::Bearer
        && !auth::same_origin(buf, head)
    {
        return Reply::new(
            403,
            "text/plain",
            "refused: a change from another site's page (Origin / Sec-Fetch-Site)\n".into(),
        );
    }
    if is_reload(buf, head) {
        return reload(core).await;
    }
    let method = std::str::from_utf8(head.method(buf)).unwrap_or("");
    // The serving core's own figures are published now (unless a page being built holds the
    // board); the other cores' are at most a second old.
    crate::core::try_publish(core, Instant::now());
    if let Some(page) = offload::Page::of(method, path, query) {
        return offload::build(core.board.clone(), core.tls.clone(), page).await;
    }
    handle(core, method, path, &buf[head.head_len..]).await
}

/// The requests that are not a page built from the whole board: the member API, the form, TLS
/// reload, 404 and 405. `path` is the target without its query.
async fn handle(core: &Core, method: &str, path: &str, body: &[u8]) -> Reply {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["status"]) => {
            let failed = Reply::new(503, "text/plain", CHANGE_FAILED.into());
            let body = body.to_vec();
            off_worker(core, failed, move |board, control| {
                form::change(board, control, &body)
            })
            .await
        }
        (_, ["api", "balancers", b, "members", m]) => {
            let error = serde_json::json!({ "error": CHANGE_FAILED.trim_end() });
            let failed = Reply::new(503, "application/json", error.to_string() + "\n");
            let request = [method, b, m].map(str::to_owned);
            let body = body.to_vec();
            off_worker(core, failed, move |board, control| {
                let [method, b, m] = &request;
                api::change(board, control, method, b, m, &body)
            })
            .await
        }
        ("POST", ["api", "tls", "reload"]) => {
            match crate::core::tls_listening(&core.gen().config, &core.tls) {
                None => Reply::new(
                    404,
                    "application/json",
                    "{\"error\":\"no TLS listener\"}\n".into(),
                ),
                Some(tls) => match tls.reload() {
                    Ok(n) => {
                        tracing::info!(certificates = n, "TLS certificates reloaded (admin API)");
                        Reply::new(200, "application/json", format!("{{\"reloaded\":{n}}}\n"))
                    }
                    Err(e) => {
                        tracing::error!(
                            "TLS certificates NOT reloaded, the loaded ones stay in use: {e}"
                        );
                        let body = serde_json::json!({ "error": e }).to_string();
                        Reply::new(422, "application/json", body + "\n")
                    }
                },
            }
        }
        (_, ["status"] | ["status.json"] | ["metrics"]) => {
            Reply::new(405, "text/plain", "use GET\n".into())
        }
        _ => Reply::new(
            404,
            "text/plain",
            "not found: try /status, /status.json or /metrics\n".into(),
        ),
    }
}

/// The answer to an admin change that panicked on its way (the panic is in the log).
const CHANGE_FAILED: &str = "the change could not be run (see the log)\n";

/// Runs `change` (an admin change: it locks the board; given the core's board and its line to
/// the main thread) on a blocking-pool thread, at the normal priority, on the process's CPUs, and
/// awaits its answer: the worker goes on serving while the change waits for the board, and as a
/// waiter in `Board::lock` it makes queued page builds give way, so it usually waits one build at
/// most (the page thread may have read no waiter just before, and the main thread and the health
/// checker take the board too). `failed` if it panicked (caught here, not left to the pool; the
/// board's lock survives a panic). At most `ADMIN_CONNECTIONS_PER_CORE` changes per core are in
/// flight (the admin listener's cap), far under the blocking pool's limit, so a flood of changes
/// never makes the worker wait for a pool thread. A change whose client goes away meanwhile is
/// still made (its answer is dropped), as a change on the worker was.
async fn off_worker(
    core: &Core,
    failed: Reply,
    change: impl FnOnce(&Board, Option<&ControlSender>) -> Reply + Send + 'static,
) -> Reply {
    let (board, control) = (core.board.clone(), core.control.clone());
    let answer = compio::runtime::spawn_blocking(move || {
        unpin();
        let change = || change(&board, control.as_ref());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(change)).ok()
    })
    .await;
    answer.ok().flatten().unwrap_or(failed)
}

/// After an admin change on the board (its lock released): every core applies it, and the main
/// thread writes the state file (off the workers).
fn members_changed(board: &Board, control: Option<&ControlSender>, config: &crate::config::Config) {
    board.changed();
    if let (Some(control), Some(_)) = (control, config.state_file()) {
        let _ = control.send(crate::reload::Control::SaveState);
    }
}

fn is_reload(buf: &[u8], head: &RequestHead) -> bool {
    head.method(buf) == b"POST" && &buf[head.path.clone()] == b"/api/reload"
}

/// `POST /api/reload`: asks the main thread to reload the file and waits (without holding the
/// worker) for its answer: `200 {"generation": N}` once every core runs generation N, or `422
/// {"error": ...}` with the running configuration unchanged.
async fn reload(core: &Core) -> Reply {
    let json =
        |status, v: serde_json::Value| Reply::new(status, "application/json", v.to_string() + "\n");
    let Some(control) = &core.control else {
        return json(
            404,
            serde_json::json!({ "error": "started without a config file (demo): nothing to reload" }),
        );
    };
    let (tx, rx) = futures_channel::oneshot::channel();
    if control.send(crate::reload::Control::Reload(tx)).is_err() {
        return json(503, serde_json::json!({ "error": "stopping" }));
    }
    match rx.await {
        Ok(Ok(generation)) => json(200, serde_json::json!({ "generation": generation })),
        Ok(Err(e)) => json(422, serde_json::json!({ "error": e })),
        Err(_) => json(503, serde_json::json!({ "error": "stopping" })),
    }
}

/// `/healthz`: 200 "ok" while serving; 503 "draining" during `stop_delay` (still serving) and
/// "stopping" once stopping.
fn healthz(core: &Core, method: &[u8]) -> Reply {
    match method {
        b"GET" if core.is_stopping() => Reply::new(503, "text/plain", "stopping\n".into()),
        b"GET" if core.board.is_draining() => Reply::new(503, "text/plain", "draining\n".into()),
        b"GET" => Reply::new(200, "text/plain", "ok\n".into()),
        _ => Reply::new(405, "text/plain", "use GET\n".into()),
    }
}
