//! Talking to ringlb's admin listener from the tests.

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

/// Whether an external tool is on PATH. When it is not, tests that need it skip loudly, unless
/// RINGLB_REQUIRE_TOOLS=1 (set by scripts/test.sh, which installs them), where they fail.
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("RINGLB_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required (scripts/test.sh installs it) but is not installed");
        }
        eprintln!("!!! SKIPPED: {name} is not installed (scripts/test.sh installs it)");
    }
    found
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
