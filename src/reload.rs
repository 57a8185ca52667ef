//! Live configuration reload, on the main thread: re-read and validate the whole file, keep the
//! settings that cannot change while running (saying "restart needed"), and publish the result as
//! the next generation on the board, where every core adopts it within about 100 ms
//! (`core::publish`). SIGHUP, `POST /api/reload` and `ringlb reload` all end here.
//!
//! Owns: the messages of the control channel the main thread listens on (`server.rs` creates and
//! reads it: signals, and reload requests from admin connections), what a reload may change, and
//! counting failed reloads. Must never: run on a worker
//! (reading and validating a file takes milliseconds), publish a configuration that did not
//! validate, or change a setting a running process cannot apply (workers, driver, listeners, the
//! admin address, the upgrade socket, the access log path, the log level); those stay as they are
//! until a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::Board;
use crate::cli::Overrides;
use crate::config::Config;

/// What the main thread is asked to do.
pub enum Control {
    /// A signal arrived (forwarded by the signal thread).
    Signal(i32),
    /// An admin request asks for a reload; the answer is the generation number every core runs,
    /// or why nothing changed.
    Reload(futures_channel::oneshot::Sender<Result<u64, String>>),
    /// An admin change was made: write the state file (`[admin] state_file`).
    SaveState,
    /// A new process took the listening sockets (`handover`): stop as on SIGTERM.
    Upgraded,
}

/// Where an admin connection sends its reload request.
pub type ControlSender = std::sync::mpsc::Sender<Control>;

/// How long a reload waits for every core to adopt the new generation before it answers.
const ADOPT_WAIT: Duration = Duration::from_secs(5);

/// The file a reload reads and the command-line overrides applied to it, as at start.
pub struct Source {
    pub path: PathBuf,
    pub overrides: Overrides,
}

/// Reads `source` and publishes it as the next generation. `Ok`: its number (once every core
/// runs it, or after `ADOPT_WAIT`); `Err`: why the running configuration stays.
pub fn reload(source: &Source, board: &Board) -> Result<u64, String> {
    let running = board.lock().generation.config.clone();
    let mut next = Config::load(&source.path).map_err(|e| format!("config error: {e}"))?;
    source.overrides.apply(&mut next);
    for what in keep_restart_only(&running, &mut next) {
        tracing::warn!("reload: {what} changed in the file: restart needed (running as before)");
    }
    let member_tls =
        crate::tls::upstream::Upstreams::load(&next).map_err(|e| format!("member TLS: {e}"))?;
    let number = board.lock().publish_generation(Arc::new(next), member_tls);
    board.changed();
    let started = Instant::now();
    while !board.lock().all_cores_adopted() {
        if started.elapsed() >= ADOPT_WAIT {
            tracing::warn!(
                generation = number,
                "reload: not every core runs the new generation yet"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::info!(generation = number, "configuration reloaded");
    Ok(number)
}

/// Counts a failed reload and logs why.
pub fn failed(board: &Board, why: &str) {
    board.lock().reload_failures += 1;
    tracing::error!("reload failed, the running configuration stays: {why}");
}

/// Puts back into `next` the running values of settings that need a restart; returns their names
/// where the file changed them.
fn keep_restart_only(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if next.server.workers != running.server.workers {
        changed.push("server.workers");
        next.server.workers = running.server.workers;
    }
    if next.server.driver != running.server.driver {
        changed.push("server.driver");
        next.server.driver = running.server.driver;
    }
    if next.server.upgrade_socket != running.server.upgrade_socket {
        changed.push("server.upgrade_socket");
        next.server.upgrade_socket = running.server.upgrade_socket.clone();
    }
    if next.access_log != running.access_log {
        changed.push("log.access");
        next.access_log = running.access_log.clone();
    }
    if next.log_level != running.log_level {
        changed.push("log.level");
        next.log_level = running.log_level.clone();
    }
    let listeners = |c: &Config| -> Vec<String> {
        c.listen
            .iter()
            .map(|l| format!("{:?}", (l.address, l.tls.is_some(), l.redirect_https)))
            .collect()
    };
    // Port 0 was resolved at start: compare with what the file said then, not the bound port.
    let mut as_written = running.listen.clone();
    for (r, n) in as_written.iter_mut().zip(&next.listen) {
        if n.address.port() == 0 && r.address.ip() == n.address.ip() {
            r.address = n.address;
        }
    }
    let was = Config {
        listen: as_written,
        ..running.clone()
    };
    if listeners(&was) != listeners(next) {
        changed.push("listen (addresses, tls, redirect_https)");
    }
    // The listeners and their certificates stay as started (SIGHUP re-reads the same files).
    next.listen = running.listen.clone();
    // The token may change with the address kept; with the address changed, the running admin
    // section stays whole (a token validated for a new loopback address must not open the
    // running public one).
    let admin_address = |c: &Config| c.admin.as_ref().map(|a| a.address);
    if admin_address(next) != admin_address(running) {
        changed.push("admin.address");
        next.admin = running.admin.clone();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[server]\nworkers = 2\n{extra}[[listen]]\naddress = \"127.0.0.1:0\"\n[[balancer]]\nname = \"b\"\n\
             members = [{{ url = \"http://127.0.0.1:9\" }}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let mut running = config("");
        // As at start: port 0 resolved.
        running.listen[0].address = "127.0.0.1:40000".parse().unwrap();
        let mut next = config("");
        assert!(keep_restart_only(&running, &mut next).is_empty());
        assert_eq!(next.listen[0].address.port(), 40000);

        let mut next = Config::parse(
            "[server]\nworkers = 3\n[[listen]]\naddress = \"127.0.0.1:8081\"\n[[balancer]]\n\
             name = \"b\"\nmembers = [{ url = \"http://127.0.0.1:10\" }]\n",
        )
        .unwrap();
        let changed = keep_restart_only(&running, &mut next);
        assert_eq!(
            changed,
            ["server.workers", "listen (addresses, tls, redirect_https)"]
        );
        assert_eq!(next.server.workers, 2);
        assert_eq!(next.listen[0].address.port(), 40000);
        // What may change live did.
        assert_eq!(next.balancers[0].members[0].url, "http://127.0.0.1:10");
    }

    #[test]
    fn a_moved_admin_listener_keeps_its_running_token() {
        let running = config("[admin]\naddress = \"0.0.0.0:9900\"\ntoken = \"secret-token-1\"\n");
        // Valid alone: loopback needs no token.
        let mut next = config("[admin]\naddress = \"127.0.0.1:9900\"\n");
        assert_eq!(keep_restart_only(&running, &mut next), ["admin.address"]);
        let admin = next.admin.unwrap();
        assert_eq!(admin.address.to_string(), "0.0.0.0:9900");
        assert_eq!(admin.token.as_deref(), Some("secret-token-1"));
    }
}
