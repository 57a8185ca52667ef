//! ringlb as systemd sees it: the real binary started with `NOTIFY_SOCKET` naming a datagram
//! socket this test binds (as systemd does for a `Type=notify` unit), checked for `READY=1` once
//! serving, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a reload by SIGHUP and by
//! `ringlb reload` (the unit's `ExecReload`), `WATCHDOG=1` with `WATCHDOG_USEC` set (and none when
//! `WATCHDOG_PID` names another process), `STOPPING=1` on SIGTERM; and its log lines when stderr
//! is the journal (`JOURNAL_STREAM` naming stderr's device and inode: `<N>` priorities, no
//! timestamps) or is not.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::proxy::{driver, ringlb_bin, unsafe_kill, TempDir};

/// A ringlb process with its stderr in a file; killed on drop if still running.
struct Proc {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(dir: &TempDir, config: &str, env: &[(&str, String)]) -> Proc {
        let path = dir.0.join("ringlb.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.0.join("stderr.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(ringlb_bin());
        cmd.args(["run", "--config"])
            .arg(&path)
            .args(["--workers", "2", "--driver", &driver()])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log has `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a successful exit.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}: {}", self.logs());
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ringlb did not stop on SIGTERM: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The socket systemd would listen on, and every message received so far.
struct Manager {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl Manager {
    fn bind(dir: &TempDir) -> Manager {
        let path = dir.0.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap().to_string())
    }

    /// The next message (bounded wait) for which `want` holds; messages before it are kept in
    /// `seen`.
    fn expect(&mut self, what: &str, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {within:?}; received: {:?}",
                self.seen
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if want(&msg) {
                return msg;
            }
        }
    }

    /// Whether a message with `key` arrives within `within` (for the negative checks).
    fn arrives(&mut self, key: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|l| !l.is_zero())
        {
            self.sock.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if has(&msg, key) {
                    return true;
                }
            }
        }
        false
    }
}

/// Whether the notification has the line `key`.
fn has(msg: &str, key: &str) -> bool {
    msg.lines().any(|l| l == key)
}

fn config(admin: bool) -> String {
    let admin = if admin {
        "[admin]\naddress = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    format!(
        "{admin}[[listen]]\naddress = \"127.0.0.1:0\"\n[[balancer]]\nname = \"app\"\n\
         members = [{{ url = \"http://127.0.0.1:9\" }}]\n[[route]]\npath = \"/\"\nbalancer = \"app\"\n"
    )
}

const SOON: Duration = Duration::from_secs(15);

#[test]
fn tells_systemd_ready_reloading_watchdog_and_stopping() {
    let dir = TempDir::new();
    let mut systemd = Manager::bind(&dir);
    // WatchdogSec=1s: fed about every 500 ms while both cores publish.
    let mut p = Proc::start(
        &dir,
        &config(false),
        &[systemd.env(), ("WATCHDOG_USEC", "1000000".into())],
    );
    let ready = systemd.expect("READY=1", SOON, |m| has(m, "READY=1"));
    assert!(ready.contains("STATUS=serving"), "{ready}");
    // Readiness comes once serving: the ready line is logged before it.
    assert!(p.logs().contains("ringlb ready"), "{}", p.logs());

    systemd.expect("WATCHDOG=1", Duration::from_secs(5), |m| {
        has(m, "WATCHDOG=1")
    });
    systemd.expect("a second WATCHDOG=1", Duration::from_secs(5), |m| {
        has(m, "WATCHDOG=1")
    });

    unsafe_kill(p.pid(), "HUP");
    let reloading = systemd.expect("RELOADING=1", SOON, |m| has(m, "RELOADING=1"));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading}");
    let after = systemd.expect("READY=1 after the reload", SOON, |m| has(m, "READY=1"));
    assert!(after.contains("generation 2"), "{after}");
    p.wait_log("configuration reloaded");

    // A reload the file fails: systemd is still told the reload is over (the old file serves).
    std::fs::write(dir.0.join("ringlb.toml"), "[[listen]]\naddress = \"bad\"\n").unwrap();
    unsafe_kill(p.pid(), "HUP");
    systemd.expect("RELOADING=1 (bad file)", SOON, |m| has(m, "RELOADING=1"));
    let after = systemd.expect("READY=1 after a failed reload", SOON, |m| has(m, "READY=1"));
    assert!(
        after.contains("generation 2"),
        "still generation 2: {after}"
    );

    p.terminate();
    assert!(
        systemd.arrives("STOPPING=1", Duration::from_secs(2)),
        "no STOPPING=1: {:?}",
        systemd.seen
    );
    assert!(
        !systemd.arrives("READY=1", Duration::from_millis(200)),
        "READY=1 after STOPPING=1: {:?}",
        systemd.seen
    );
}

#[test]
fn ringlb_reload_tells_systemd_and_a_watchdog_for_another_pid_is_not_fed() {
    let dir = TempDir::new();
    let mut systemd = Manager::bind(&dir);
    let mut p = Proc::start(
        &dir,
        &config(true),
        &[
            systemd.env(),
            ("WATCHDOG_USEC", "400000".into()),
            // Meant for another process (a parent that forked ringlb): not ours to feed.
            ("WATCHDOG_PID", "1".into()),
        ],
    );
    systemd.expect("READY=1", SOON, |m| has(m, "READY=1"));
    let logs = p.wait_log("admin endpoint on http://");
    let admin = logs
        .split("admin endpoint on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the admin address")
        .to_string();
    // The unit's ExecReload.
    let out = Command::new(ringlb_bin())
        .args(["reload", "--admin", &format!("http://{admin}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2"));
    systemd.expect("RELOADING=1", SOON, |m| has(m, "RELOADING=1"));
    systemd.expect("READY=1 after the reload", SOON, |m| has(m, "READY=1"));
    assert!(
        !systemd.arrives("WATCHDOG=1", Duration::from_millis(1500)),
        "fed a watchdog meant for pid 1: {:?}",
        systemd.seen
    );
    p.terminate();
    assert!(
        systemd.arrives("STOPPING=1", Duration::from_secs(2)),
        "no STOPPING=1: {:?}",
        systemd.seen
    );
}

#[test]
fn without_notify_socket_nothing_is_sent_and_ringlb_runs_as_before() {
    let dir = TempDir::new();
    let systemd = Manager::bind(&dir);
    // WATCHDOG_USEC alone (no NOTIFY_SOCKET) must not make ringlb send anywhere.
    let mut p = Proc::start(&dir, &config(false), &[("WATCHDOG_USEC", "400000".into())]);
    p.wait_log("ringlb ready");
    systemd
        .sock
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(systemd.sock.recv(&mut buf).is_err(), "something was sent");
    p.terminate();
}

/// stderr's file as `JOURNAL_STREAM` writes it: `<device>:<inode>`.
fn journal_stream(path: &std::path::Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

#[test]
fn logs_syslog_priorities_without_timestamps_when_stderr_is_the_journal() {
    let dir = TempDir::new();
    // The file the child's stderr will be (Proc::start creates it; make it first to read its
    // inode, then reuse the same path: `File::create` truncates, the inode stays).
    let log = dir.0.join("stderr.log");
    std::fs::write(&log, "").unwrap();
    let stream = journal_stream(&log);
    // max_conns = 3 over 2 workers: a warning at start.
    let config = config(false).replace("9\" }", "9\", max_conns = 3 }");
    let mut p = Proc::start(&dir, &config, &[("JOURNAL_STREAM", stream.clone())]);
    assert_eq!(journal_stream(&p.log), stream, "same file");
    p.wait_log("ringlb ready");
    // A reload of a bad file: an error.
    std::fs::write(dir.0.join("ringlb.toml"), "[[listen]]\naddress = \"bad\"\n").unwrap();
    unsafe_kill(p.pid(), "HUP");
    p.wait_log("reload failed");
    p.terminate();
    let logs = p.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() > 3, "{logs}");
    for l in &lines {
        let priority = l
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "a line without a syslog priority: {l:?}\n{logs}"
        );
        assert!(!l.contains(" INFO ") && !l.contains("\x1b["), "{l:?}");
        // No timestamp of its own (tracing's starts with the year).
        assert!(!l[3..].starts_with("20"), "a timestamp: {l:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("<6>ringlb ready")),
        "{logs}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<4>max_conns = 3")),
        "a warning is <4>: {logs}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<3>reload failed")),
        "an error is <3>: {logs}"
    );
}

#[test]
fn logs_as_before_when_journal_stream_names_another_file() {
    let dir = TempDir::new();
    let other = dir.0.join("other");
    std::fs::write(&other, "").unwrap();
    // Inherited from a parent whose stderr was the journal, while ours is a file.
    let mut p = Proc::start(
        &dir,
        &config(false),
        &[("JOURNAL_STREAM", journal_stream(&other))],
    );
    let logs = p.wait_log("ringlb ready");
    p.terminate();
    let ready = logs
        .lines()
        .find(|l| l.contains("ringlb ready"))
        .expect("the ready line");
    assert!(!ready.starts_with('<'), "{ready}");
    assert!(ready.starts_with("20") && ready.contains("INFO"), "{ready}");
}
