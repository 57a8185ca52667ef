//! The open-file limit (RLIMIT_NOFILE): raised at start from its soft value to its hard one, as
//! Go's runtime does (HAProxy raises it to what its maxconn needs), so that a ringlb started from
//! a shell (soft limit 1024) is not held to a thousand descriptors; then compared with what the
//! configuration may need, and a warning names both when the limit falls short (at start and
//! after each reload).
//!
//! Owns: the limit and the estimate of what a configuration needs. Must never: lower the limit,
//! or refuse to start over it (a box may never see `max_connections` at once; the warning says
//! what happens past the limit instead).

use crate::config::Config;

/// Descriptors a worker holds whatever its traffic: its ring or epoll, its eventfd and timers,
/// the pipes it keeps for splice (`splice::KEEP` pipes of two ends) and its admin connections
/// (at most 8).
const PER_WORKER: u64 = 8 + 2 * crate::splice::KEEP as u64 + 8;

/// The process's own files beside its connections: the binary, logs, the state file, the
/// health checker's sockets, the admin listener's connections.
const PROCESS: u64 = 64;

/// Raises the soft limit to the hard one. Returns the soft limit in effect afterwards (`None`:
/// it cannot be read).
pub fn raise() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current.is_some() && now.current != now.maximum {
        let raised = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = ?now.current, to = ?now.maximum,
                "raised the open-file limit to its hard limit"),
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    current()
}

/// The soft limit in effect (`None`: unlimited or unreadable).
pub fn current() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// What `config` may need with every connection taken: one descriptor per client connection and
/// one per member connection in use (`max_connections` of each), the idle member connections
/// every worker may keep, each worker's listening sockets and fixed descriptors, and the
/// process's own files. (A body being spliced holds a pipe of two more while it moves; those are
/// not counted: the estimate is for small requests.)
pub fn need(config: &Config) -> u64 {
    let workers = config.server.workers as u64;
    let idle = config.balancers.iter().fold(0u64, |sum, b| {
        let each = (b.members.len() as u64).saturating_mul(b.max_idle_per_member as u64);
        sum.saturating_add(each)
    });
    let listeners = (config.listen.len() + usize::from(config.admin.is_some())) as u64;
    let per_worker = idle.saturating_add(listeners + PER_WORKER);
    (config.limits.max_connections as u64)
        .saturating_mul(2)
        .saturating_add(workers.saturating_mul(per_worker))
        .saturating_add(PROCESS)
}

/// Warns when `limit` is below what `config` may need: past the limit a new connection is not
/// accepted (each failed accept is logged, and the accept loop waits 50 ms), and a new member
/// connection fails as the member's does.
pub fn check(config: &Config, limit: Option<u64>) {
    let Some(limit) = limit else { return };
    let need = need(config);
    if limit < need {
        tracing::warn!(
            "the open-file limit is {limit}, below the {need} descriptors this configuration may \
             need ([limits] max_connections = {} makes two per connection, plus idle member \
             connections and listeners per worker): past it, new connections wait and member \
             connections fail; raise the hard limit (LimitNOFILE in the unit; \
             packaging/ringlb.service sets 1048576), or lower max_connections",
            config.limits.max_connections
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[server]\nworkers = 2\n{extra}\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [[balancer]]\nname = \"b\"\nmax_idle_per_member = 10\nmembers = [\n\
             {{ url = \"http://127.0.0.1:1\" }}, {{ url = \"http://127.0.0.1:2\" }}]\n\
             [[route]]\nbalancer = \"b\"\n"
        );
        Config::parse(&text).unwrap()
    }

    #[test]
    fn the_need_counts_two_per_connection_and_the_pools_of_every_worker() {
        let c = config("[limits]\nmax_connections = 1000\n");
        // 2 × 1000 connections; per worker 2 members × 10 idle, 1 listener and the fixed ones.
        assert_eq!(need(&c), 2000 + 2 * (20 + 1 + PER_WORKER) + PROCESS);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = current();
        let after = raise();
        assert!(
            after >= before || after.is_none(),
            "{before:?} -> {after:?}"
        );
    }
}
