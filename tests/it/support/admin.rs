//! Talking to ringlb's admin listener from the tests, and the one rule for a real peer (a tool)
//! a test needs but cannot find: the test fails (`unavailable`).

use std::net::SocketAddr;
use std::time::Duration;

use ringlb::admin::report::StatusReport;

use super::client::{Client, Resp};

/// Sends one admin request (with an optional bearer token) and reads the response.
pub fn admin(addr: SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> Resp {
    let mut c = Client::connect(addr);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response().expect("an admin response")
}

pub fn report(addr: SocketAddr) -> StatusReport {
    let r = admin(addr, "GET", "/status.json", "", None);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("status.json parses into the documented schema")
}

/// Polls `/status.json` (the board refreshes once a second) until `cond` holds; bounded.
pub fn report_when(addr: SocketAddr, cond: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = report(addr);
        if cond(&r) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sets member `i` of balancer "app" to `status` through the admin API and waits (bounded) until
/// every core applied it.
pub fn set_member_status(admin_addr: SocketAddr, i: usize, status: &str) {
    let path = format!("/api/balancers/app/members/{i}");
    let body = format!(r#"{{"status":"{status}"}}"#);
    let r = admin(admin_addr, "POST", &path, &body, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let applied = || {
        let v: serde_json::Value =
            serde_json::from_slice(&admin(admin_addr, "GET", &path, "", None).body).unwrap();
        v["status"] == status && v["applied"] == true
    };
    assert!(
        super::wait_until(applied),
        "member {i} never became {status} on every core"
    );
}

/// A config body with an admin listener on an ephemeral loopback port.
pub fn with_admin(body: &str, admin_extra: &str) -> String {
    format!("[admin]\naddress = \"127.0.0.1:0\"\n{admin_extra}\n\n{body}")
}

/// Whether an external tool is on PATH. When it is not, the test that needs it fails
/// (`unavailable`).
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        unavailable(name);
    }
    found
}

/// A real peer a test needs is not here: the test fails, naming it. Only a run started with
/// RINGLB_ALLOW_MISSING_TOOLS=1, by hand, skips what needs it instead, loudly (for a partial run
/// on a machine where scripts/test.sh cannot install the peers).
pub fn unavailable(what: &str) {
    let allowed = std::env::var("RINGLB_ALLOW_MISSING_TOOLS").as_deref() == Ok("1");
    unavailable_when(what, allowed);
}

fn unavailable_when(what: &str, allowed: bool) {
    if !allowed {
        panic!("{what} is required and not available here (scripts/test.sh installs the peers)");
    }
    eprintln!("!!! SKIPPED: {what} is not available (RINGLB_ALLOW_MISSING_TOOLS=1)");
}

#[test]
#[should_panic(expected = "no-such-peer is required and not available here")]
fn a_missing_peer_fails_the_test() {
    unavailable_when("no-such-peer", false);
}

#[test]
fn a_missing_peer_is_skipped_only_where_the_run_allows_it() {
    // Returns (the caller then skips) instead of failing.
    unavailable_when("no-such-peer", true);
}

/// `promtool check metrics` accepts this exposition (skipped, as `tool` says, without promtool).
pub fn promtool_accepts(body: &[u8]) {
    use std::io::Write;
    if !tool("promtool") {
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
