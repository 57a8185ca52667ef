//! The admin pages that read the whole board (`/status`, `/status.json`, `/metrics`), built on
//! a thread of their own while the worker that took the request goes on serving.
//!
//! Owns: choosing those pages, and building each on a short-lived thread, not pinned to any
//! core, which takes the board's lock, builds the page and hands it back. Building one merges
//! every member's histograms (milliseconds with many members); on the worker it would stall that
//! worker's connections meanwhile, and a worker's own publication only ever `try_lock`s the
//! board, so it never waits for this thread either. Must never: touch anything of the worker's
//! (it has only the board, the TLS state and the page's options), or hold the lock across
//! anything but building the page.

use std::sync::Arc;

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

/// Builds `page` on a new thread and waits for it without holding the worker; 503 if no thread
/// could be started, 500 if building failed.
pub async fn build(board: Arc<Board>, tls: Arc<TlsState>, page: Page) -> Reply {
    let (tx, rx) = futures_channel::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("ringlb-admin-page".into())
        .spawn(move || {
            unpin();
            let _ = tx.send(render(&board, &tls, page));
        });
    if started.is_err() {
        return Reply::new(503, "text/plain", "busy: no thread for the page\n".into());
    }
    rx.await.unwrap_or_else(|_| {
        Reply::new(
            500,
            "text/plain",
            "the page could not be built (see the log)\n".into(),
        )
    })
}

/// The page, built under the board's lock: the generation in effect and the figures agree.
fn render(board: &Board, tls: &TlsState, page: Page) -> Reply {
    let board = board.lock();
    let config = &board.generation.config;
    let tls = crate::core::tls_listening(config, tls);
    match page {
        Page::Html { refresh } => {
            let report = report::StatusReport::build(config, &board, tls);
            Reply::new(
                200,
                "text/html; charset=utf-8",
                html::render(&report, refresh, super::csrf::token()),
            )
        }
        Page::Json => {
            let report = report::StatusReport::build(config, &board, tls);
            // Compact: the per-member histograms and series make it large (`jq .` to read).
            Reply::new(
                200,
                "application/json",
                serde_json::to_string(&report).unwrap_or_default(),
            )
        }
        Page::Metrics => Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(config, &board, tls),
        ),
    }
}

/// Lets this thread run on any CPU: it was started by a worker pinned to one, and must not take
/// that worker's core when another is idle.
fn unpin() {
    let mut all = rustix::thread::CpuSet::new();
    for cpu in 0..rustix::thread::CpuSet::MAX_CPU {
        all.set(cpu);
    }
    let _ = rustix::thread::sched_setaffinity(None, &all);
}
