//! Live configuration reload, on the main thread: re-read and validate the whole file, keep the
//! settings that cannot change while running (saying "restart needed"), and publish the result as
//! the next generation on the board, where every core adopts it within about 100 ms
//! (`core::publish`). SIGHUP, `POST /api/reload` and `ringlb reload` all end here; the main thread
//! tells systemd `RELOADING=1` before and `READY=1` after each one (`Server::reload_notified`,
//! `sd_notify`).
//!
//! Owns: the messages of the control channel the main thread listens on (`server.rs` creates and
//! reads it: signals, and reload requests from admin connections), what a reload may change, and
//! counting failed reloads. Must never: run on a worker
//! (reading and validating a file takes milliseconds), publish a configuration that did not
//! validate, or change a setting a running process cannot apply (workers, driver, the admin
//! address, the upgrade socket, the access log path, the log level); those stay as they are until
//! a restart. Listeners may change: the main thread binds the new ones before publishing
//! (`listeners`, `server`), each worker closes its sockets of a removed one at its first tick on
//! the generation (`worker`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::Board;
use crate::cli::Overrides;
use crate::config::Config;
use crate::generation::ListenerSlots;
use crate::tls::upstream::Upstreams;

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

/// Reads and validates `source` as the next configuration, with the running values of the
/// settings that need a restart put back (each one the file changed is logged).
pub fn read(source: &Source, board: &Board) -> Result<Config, String> {
    let running = board.lock().generation.config.clone();
    let mut next = Config::load(&source.path).map_err(|e| format!("config error: {e}"))?;
    source.overrides.apply(&mut next);
    for what in keep_restart_only(&running, &mut next) {
        tracing::warn!("reload: {what} changed in the file: restart needed (running as before)");
    }
    Ok(next)
}

/// Publishes `next` (its listeners' slots in `listeners`, the sockets bound for each worker in
/// `sockets`) as the next generation. Returns its number once every core runs it (or after
/// `ADOPT_WAIT`).
pub fn publish(
    board: &Board,
    next: Config,
    member_tls: Upstreams,
    listeners: ListenerSlots,
    sockets: Vec<Vec<(usize, std::net::TcpListener)>>,
) -> u64 {
    let number = {
        let mut b = board.lock();
        for (mine, new) in b.sockets.iter_mut().zip(sockets) {
            mine.extend(new);
        }
        b.publish_generation(Arc::new(next), member_tls, listeners)
    };
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
    number
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
        let running = config("");
        let mut next = config("");
        assert!(keep_restart_only(&running, &mut next).is_empty());

        let mut next = Config::parse(
            "[server]\nworkers = 3\n[[listen]]\naddress = \"127.0.0.1:8081\"\n[[balancer]]\n\
             name = \"b\"\nmembers = [{ url = \"http://127.0.0.1:10\" }]\n",
        )
        .unwrap();
        let changed = keep_restart_only(&running, &mut next);
        assert_eq!(changed, ["server.workers"]);
        assert_eq!(next.server.workers, 2);
        // What may change live did (listeners too: `listeners::Listeners::plan` binds them).
        assert_eq!(next.listen[0].address.port(), 8081);
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
