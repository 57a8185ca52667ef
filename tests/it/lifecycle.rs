//! The process and connection lifecycle: CLI and config errors, timeouts, connection limits,
//! graceful shutdown, workers and drivers.

use std::time::{Duration, Instant};

use crate::support::*;

fn write_config(text: &str) -> (crate::support::proxy::TempDir, String) {
    let dir = crate::support::proxy::TempDir::new();
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

#[test]
fn bad_config_names_key_and_line() {
    let (_d, path) = write_config(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[balancer]]\nname = \"app\"\nretry = \"soon\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n",
    );
    let (code, _, err) = run_cli(&["run", "--config", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("balancer[0].retry"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (code, _, err) = run_cli(&["check", "--config", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("balancer[0].retry"), "{err}");
}

#[test]
fn check_accepts_a_good_config() {
    let (_d, path) = write_config(
        "[[listen]]\naddress = \"127.0.0.1:0\"\n[[balancer]]\nname = \"app\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n[[route]]\nbalancer = \"app\"\n",
    );
    let (code, out, _) = run_cli(&["check", "--config", &path]);
    assert_eq!(code, 0);
    assert!(
        out.contains("is valid") && out.contains("balancer app"),
        "{out}"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, err) = run_cli(&["run", "--config", "/nonexistent/ringlb.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read /nonexistent/ringlb.toml"),
        "{err}"
    );
}

#[test]
fn driver_in_use_is_logged() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 2);
    let driver = crate::support::proxy::driver();
    assert!(
        p.logs()
            .iter()
            .any(|l| l.contains("ringlb ready") && l.contains(&driver)),
        "{:?}",
        p.logs()
    );
    assert_eq!(get(p.addr, "/").status, 200);
}

#[test]
fn header_timeout_closes_a_slow_client() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nheader_timeout = \"300ms\"\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let mut c = Client::connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let started = Instant::now();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 408);
    assert!(c.is_closed());
    assert!(started.elapsed() < Duration::from_secs(3));
    // A client that sends nothing at all is closed too.
    let mut idle = Client::connect(p.addr);
    assert!(idle.is_closed());
    assert_eq!(a.count(), 0);
}

#[test]
fn keepalive_timeout_closes_an_idle_connection() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nkeepalive_timeout = \"300ms\"\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let mut c = Client::connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    let started = Instant::now();
    assert!(c.is_closed());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn max_connections_holds_new_connections_in_the_backlog() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nmax_connections = 1\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let mut first = Client::connect(p.addr);
    first.send(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.read_response().unwrap().status, 200);
    let mut second = Client::connect(p.addr);
    second.send(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n");
    second.set_timeout(Duration::from_millis(300));
    assert!(
        second.read_response().is_none(),
        "served beyond max_connections"
    );
    // By now the first connection has idled long enough to be parked (no task, no buffers): it
    // still holds its place.
    second.set_timeout(Duration::from_millis(500));
    assert!(
        second.read_response().is_none(),
        "a parked connection gave its place up"
    );
    // It wakes on its client's close and gives the place up.
    drop(first);
    second.set_timeout(Duration::from_secs(10));
    assert_eq!(second.read_response().unwrap().status, 200);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let a = Backend::start(|_| {
        Reply::Delay(
            Duration::from_millis(700),
            Box::new(Reply::Text("finished".into())),
        )
    });
    let mut p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 2);
    let addr = p.addr;
    let mut c = Client::connect(addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(wait_until(|| a.count() == 1), "request reached the member");
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = Client::connect(addr);
    idle.send(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n");
    let waiter = std::thread::spawn(move || {
        let r = c.read_response();
        (r, c.is_closed())
    });
    let status = p.terminate().expect("exits within the grace period");
    assert!(status.success(), "{status:?}");
    let (r, closed) = waiter.join().unwrap();
    let r = r.expect("the in-flight request was answered");
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    assert!(closed);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ringlb.toml");
    let (code, out, err) = run_cli(&["check", "--config", path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("route host app.example.org path / -> app"),
        "{out}"
    );
}

#[test]
fn a_body_ending_at_the_close_that_the_stop_grace_cuts_ends_with_a_reset() {
    // The member stalls in the middle of a chunked body decoded for an HTTP/1.0 client; the stop's
    // grace runs out. A clean close would make the cut body look whole.
    use crate::support::raw_member::RawMember;
    use std::io::{Read, Write};
    let m = RawMember::start(|c| {
        if c.read_request().is_some() {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(b"10000\r\n");
            out.extend_from_slice(&pattern(1000));
            let _ = c.write(&out);
            std::thread::sleep(Duration::from_secs(6));
        }
    });
    let body = format!(
        "[server]\nshutdown_grace = \"1s\"\n{}",
        simple_config(&[member(m.addr)], "")
    );
    let mut p = Ringlb::start(&body, 1);
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < 1000 || !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the body started");
        got.extend_from_slice(&chunk[..n]);
    }
    let status = p.terminate().expect("ringlb stops");
    assert!(status.success(), "{status:?}");
    let end = loop {
        match s.read(&mut chunk) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(
        end,
        Some(std::io::ErrorKind::ConnectionReset),
        "a clean close would make the cut body look whole"
    );
}

/// The soft and hard open-file limits of process `pid`, from /proc.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn a_low_soft_open_file_limit_is_raised_to_the_hard_one() {
    let a = Backend::named("A");
    let body = format!(
        "[limits]\nmax_connections = 100\n{}",
        simple_config(&[member(a.addr)], "")
    );
    let p = Ringlb::start_with_nofile(&body, 1, (128, 1024));
    assert_eq!(open_file_limits(p.pid()), (1024, 1024));
    assert!(
        !p.logs().iter().any(|l| l.contains("open-file limit is")),
        "100 connections fit in 1024 descriptors: no warning"
    );
    assert_eq!(get(p.addr, "/").header("X-Backend"), Some("A"));
}

#[test]
fn an_open_file_limit_below_what_max_connections_needs_is_named_at_start_and_reload() {
    let a = Backend::named("A");
    let config = |max: u32| {
        with_admin(
            &format!(
                "[limits]\nmax_connections = {max}\n{}",
                simple_config(&[member(a.addr)], "")
            ),
            "",
        )
    };
    let p = Ringlb::start_with_nofile(&config(100), 1, (512, 512));
    let warning = "the open-file limit is 512, below the";
    assert!(
        !p.logs().iter().any(|l| l.contains(warning)),
        "100 connections fit in 512 descriptors"
    );
    p.rewrite_config(&config(100_000));
    crate::support::proxy::unsafe_kill(p.pid(), "HUP");
    assert!(p.wait_log("max_connections = 100000 makes two per connection"));
    assert!(
        p.logs().iter().any(|l| l.contains(warning)),
        "{:?}",
        p.logs()
    );
    // Named, not refused: ringlb serves on.
    assert_eq!(get(p.addr, "/").header("X-Backend"), Some("A"));
    let q = Ringlb::start_with_nofile(&config(100_000), 1, (512, 512));
    assert!(
        q.logs().iter().any(|l| l.contains(warning)),
        "{:?}",
        q.logs()
    );
}
