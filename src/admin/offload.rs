//! The admin pages that read the whole board (`/status`, `/status.json`, `/metrics`), built on
//! the page thread while the worker that took the request goes on serving.
//!
//! Owns: choosing those pages, and the page thread (`ringlb-pages`, started at the first such
//! request, on the CPUs the process may use, not a worker's core, in `SCHED_IDLE`: a worker that
//! wakes on a CPU where a page is being built takes it back at once; see `yield_to_workers` for
//! what that costs whoever waits for the board meanwhile), which builds them one at a time and
//! hands each back. Reading the board merges every member's histograms (milliseconds
//! with many members); on the worker it would stall that worker's connections meanwhile. One at a
//! time, and each after whoever already waits for the board (`Board::lock_after_waiters`): a
//! mutex lets a thread that just released it take it again before a woken waiter does, and a
//! queue of scrapes would otherwise keep a waiting worker (its tick's once-a-second wait), an
//! admin change (made off the worker, `super::off_worker`) or the main thread out for as long as
//! the queue lasts. Pages are written after the lock is released; only `/metrics` is written
//! under it. Must never: touch anything of a worker's (a build has only the board, the TLS state
//! and the page's options), or hold the lock across anything but building the page.

use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::admin::{html, metrics, report, Reply};
use crate::board::Board;
use crate::tls::TlsState;

/// A page built from the whole board.
pub enum Page {
    Html { refresh: Option<u32> },
    Json,
    Metrics,
}

impl Page {
    /// The page a GET of `path` (without the query) asks for, if it is one of these.
    pub fn of(method: &str, path: &str, query: &str) -> Option<Page> {
        if method != "GET" {
            return None;
        }
        match path.trim_matches('/') {
            "status" | "" => Some(Page::Html {
                refresh: query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("refresh="))
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|&n| n > 0),
            }),
            "status.json" => Some(Page::Json),
            "metrics" => Some(Page::Metrics),
            _ => None,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The page thread's queue (`None`: it could not be started).
fn page_thread() -> Option<&'static Sender<Job>> {
    static PAGES: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    PAGES
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let thread = std::thread::Builder::new()
                .name("ringlb-pages".into())
                .spawn(move || {
                    super::unpin();
                    super::yield_to_workers();
                    for job in rx {
                        // A build that panics answers 500 (its sender is dropped); the thread
                        // goes on with the next.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match thread {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::error!("cannot start the status page thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Builds `page` on the page thread and waits for it without holding the worker; 503 if there
/// is no page thread, 500 if building failed.
pub async fn build(board: Arc<Board>, tls: Arc<TlsState>, page: Page) -> Reply {
    let (tx, rx) = futures_channel::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(render(&board, &tls, page));
    });
    if page_thread().is_none_or(|q| q.send(job).is_err()) {
        return Reply::new(503, "text/plain", "no thread to build the page\n".into());
    }
    rx.await.unwrap_or_else(|_| {
        Reply::new(
            500,
            "text/plain",
            "the page could not be built (see the log)\n".into(),
        )
    })
}

/// How long a page build gives way to those waiting for the board (a worker's tick, an admin
/// change, the main thread) before it takes the board anyway.
const GIVE_WAY: Duration = Duration::from_millis(10);

/// The page. Its figures are read under the board's lock (the generation in effect and the
/// figures agree), after anyone already waiting for the board; the HTML and JSON are written
/// after the lock is released (`StatusReport` owns its data).
fn render(board: &Board, tls: &TlsState, page: Page) -> Reply {
    let guard = board.lock_after_waiters(GIVE_WAY);
    let config = &guard.generation.config;
    let tls = crate::core::tls_listening(config, tls);
    if let Page::Metrics = page {
        return Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(config, &guard, tls),
        );
    }
    let report = report::StatusReport::build(config, &guard, tls);
    drop(guard);
    match page {
        Page::Html { refresh } => Reply::new(
            200,
            "text/html; charset=utf-8",
            html::render(&report, refresh, super::csrf::token()),
        ),
        _ => Reply::new(
            200,
            "application/json",
            // Compact: the per-member histograms and series make it large (`jq .` to read).
            serde_json::to_string(&report).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    fn of(method: &str, target: &str) -> Option<&'static str> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Page::of(method, path, query).map(|p| match p {
            Page::Html { refresh: None } => "html",
            Page::Html { refresh: Some(5) } => "html refresh 5",
            Page::Html { .. } => "html other refresh",
            Page::Json => "json",
            Page::Metrics => "metrics",
        })
    }

    /// The same requests the worker answered with these pages before they moved here.
    #[test]
    fn the_pages_built_from_the_board() {
        assert_eq!(of("GET", "/status"), Some("html"));
        assert_eq!(of("GET", "/"), Some("html"));
        assert_eq!(of("GET", "//status/"), Some("html"));
        assert_eq!(of("GET", "/status?x=1&refresh=5"), Some("html refresh 5"));
        assert_eq!(of("GET", "/status?refresh=0"), Some("html"));
        assert_eq!(of("GET", "/status?refresh=x"), Some("html"));
        assert_eq!(of("GET", "/status.json"), Some("json"));
        assert_eq!(of("GET", "/metrics"), Some("metrics"));
        assert_eq!(of("GET", "/metrics?name[]=x"), Some("metrics"));
        // The form, other methods and other paths are not pages (`handle`).
        assert_eq!(of("POST", "/status"), None);
        assert_eq!(of("HEAD", "/metrics"), None);
        assert_eq!(of("GET", "/api/balancers"), None);
        assert_eq!(of("GET", "/status/x"), None);
    }
}
