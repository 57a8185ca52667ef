//! Test harness: the real ringlb binary, mock members and a strict client, all on loopback.

pub mod admin;
pub mod ajp_container;
pub mod backend;
pub mod client;
pub mod lenient;
pub mod load;
pub mod pki;
pub mod proxy;
pub mod raw_member;

pub use admin::{
    admin, promtool_accepts, report, report_when, set_member_status, tool, unavailable, with_admin,
};
pub use backend::{closed_port, hash, pattern, reserved_port, Backend, Blackhole, Reply};
pub use client::{get, Client, Resp};
pub use pki::Pki;
pub use proxy::{member, public_and_admin, run_cli, simple_config, Ringlb};

/// Polls `cond` every 10 ms for at most 10 s.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}
