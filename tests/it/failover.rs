//! Failover and gateway errors: dead members are skipped, safe retries happen once, unsafe ones
//! never, and every failure maps to the right status.

use std::time::Duration;

use crate::support::raw_member::RawMember;
use crate::support::*;

#[test]
fn a_closed_member_port_fails_over_without_losing_requests() {
    let a = Backend::named("A");
    let dead = closed_port();
    let p = Ringlb::start(
        &simple_config(&[member(dead), member(a.addr)], "retry = \"60s\""),
        2,
    );
    for i in 0..20 {
        let r = get(p.addr, &format!("/{i}"));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-backend"), Some("A"));
    }
    assert_eq!(a.count(), 20);
    assert!(
        p.wait_log(&format!("http://{dead}")),
        "the failed member is logged"
    );
}

#[test]
fn all_members_down_is_503() {
    let p = Ringlb::start(
        &simple_config(&[member(closed_port()), member(closed_port())], ""),
        1,
    );
    let mut c = Client::connect(p.addr);
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 503);
    }
}

#[test]
fn standby_only_when_no_active_member_and_disabled_never() {
    let (a, s, d) = (
        Backend::named("A"),
        Backend::named("S"),
        Backend::named("D"),
    );
    let members = [
        member(a.addr),
        format!("{{ url = \"http://{}\", status = \"standby\" }}", s.addr),
        format!("{{ url = \"http://{}\", status = \"disabled\" }}", d.addr),
    ];
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    for _ in 0..5 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("A"));
    }
    drop(p);
    let dead = closed_port();
    let members = [
        member(dead),
        format!("{{ url = \"http://{}\", status = \"standby\" }}", s.addr),
        format!("{{ url = \"http://{}\", status = \"disabled\" }}", d.addr),
    ];
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    for _ in 0..5 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("S"));
    }
    assert_eq!(d.count(), 0);
}

#[test]
fn a_failed_member_comes_back_after_retry() {
    let (dead, reserved) = reserved_port();
    let b = Backend::named("B");
    let p = Ringlb::start(
        &simple_config(&[member(dead), member(b.addr)], "retry = \"300ms\""),
        1,
    );
    assert_eq!(get(p.addr, "/").status, 200);
    // The member comes up on the same port; after `retry` it gets traffic again.
    reserved.listen(16).unwrap();
    let revived: std::net::TcpListener = reserved.into();
    std::thread::sleep(Duration::from_millis(400));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = revived.accept() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Backend: R\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(());
        }
    });
    let backends: Vec<String> = (0..2)
        .map(|_| get(p.addr, "/").header("x-backend").unwrap().to_string())
        .collect();
    assert!(backends.contains(&"R".to_string()), "{backends:?}");
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
}

/// A member that answers, says keep-alive, and then closes: the pooled connection is dead.
fn closes_after_each_response() -> Backend {
    Backend::start(|r| {
        Reply::RawClose(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                r.path.len(),
                r.path
            )
            .into_bytes(),
        )
    })
}

#[test]
fn idempotent_request_on_a_dead_pooled_connection_is_retried() {
    let a = closes_after_each_response();
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "/one");
    c.send(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "/two");
    assert_eq!(a.count(), 2);
    assert_eq!(a.connections(), 2);
}

#[test]
fn post_never_goes_on_a_pooled_connection_the_member_closed() {
    let a = closes_after_each_response();
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    // Wait until the member has closed its side, so the pooled connection is surely dead.
    assert!(wait_until(|| a.count() == 1));
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    // The check before reuse finds the pooled connection closed: the POST goes, once, on a new
    // connection.
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/two");
    assert_eq!(a.count(), 2);
    assert_eq!(a.connections(), 2);
}

#[test]
fn member_closing_without_response_is_502() {
    let a = Backend::start(|_| Reply::Close);
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.header("connection")), (502, Some("close")));
    assert_eq!(a.count(), 1, "not retried");
}

#[test]
fn slow_member_is_504_after_response_timeout() {
    let a = Backend::start(|_| {
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::Text("late".into())))
    });
    let p = Ringlb::start(
        &simple_config(&[member(a.addr)], "response_timeout = \"300ms\""),
        1,
    );
    let started = std::time::Instant::now();
    let r = get(p.addr, "/");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_member_trickling_its_head_is_504_at_response_timeout_not_per_read() {
    // A status line, then a header line every 100 ms for 2 s: each read is quick, the head is not.
    let mut parts = vec![b"HTTP/1.1 200 OK\r\n".to_vec()];
    parts.extend((0..20).map(|i| format!("X-Trickle-{i}: 1\r\n").into_bytes()));
    parts.push(b"Content-Length: 4\r\n\r\nlate".to_vec());
    let a = Backend::start(move |_| Reply::RawParts(parts.clone(), Duration::from_millis(100)));
    let p = Ringlb::start(
        &simple_config(&[member(a.addr)], "response_timeout = \"300ms\""),
        1,
    );
    let started = std::time::Instant::now();
    let r = get(p.addr, "/");
    assert_eq!(r.status, 504);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn connect_timeout_fails_over_and_marks_the_member() {
    let hole = Blackhole::start().expect("a full backlog drops SYNs on this kernel");
    let b = Backend::named("B");
    let p = Ringlb::start(
        &simple_config(
            &[member(hole.addr), member(b.addr)],
            "connect_timeout = \"200ms\"\nretry = \"60s\"",
        ),
        1,
    );
    let started = std::time::Instant::now();
    assert_eq!(get(p.addr, "/1").header("x-backend"), Some("B"));
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "the connect did time out"
    );
    // Marked failed: the next requests go straight to B, without waiting for a timeout.
    let started = std::time::Instant::now();
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("B"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "no request waited for a connect timeout"
    );
}

#[test]
fn a_balancers_error_pages_answer_its_gateway_errors_with_their_status() {
    let dir = crate::support::proxy::TempDir::new();
    let page = |name: &str, text: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let pages = format!(
        "error_pages = {{ 502 = \"{}\", 503 = \"{}\", 504 = \"{}\" }}\nresponse_timeout = \"300ms\"",
        page("502.html", "<h1>broken</h1>"),
        page("503.html", "<h1>back soon</h1>"),
        page("504.txt", "too slow"),
    );
    // 503: no member can be reached; the connection stays, as for the plain 503.
    let p = Ringlb::start(&simple_config(&[member(closed_port())], &pages), 1);
    let mut c = Client::connect(p.addr);
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "<h1>back soon</h1>");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    drop(p);
    // 502: the member closed without answering.
    let a = Backend::start(|_| Reply::Close);
    let p = Ringlb::start(&simple_config(&[member(a.addr)], &pages), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (502, "<h1>broken</h1>"));
    drop(p);
    // 504: the member did not answer in time.
    let slow = Backend::start(|_| {
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::Text("late".into())))
    });
    let p = Ringlb::start(&simple_config(&[member(slow.addr)], &pages), 1);
    let r = get(p.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (504, "too slow"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // A member's own 503 is its answer, relayed as it is (Apache's ProxyErrorOverride Off).
    let own = Backend::start(|_| Reply::Full {
        status: 503,
        headers: vec![],
        body: b"member says".to_vec(),
        chunked: false,
    });
    let q = Ringlb::start(&simple_config(&[member(own.addr)], &pages), 1);
    let r = get(q.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (503, "member says"));
}

/// The sockets a process holds open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn after_a_member_restart_one_request_drops_two_dead_pooled_connections_and_the_sweep_the_rest() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const HELD: usize = 6;
    let (arrived, die) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let gone = Arc::new(AtomicUsize::new(0));
    let (a2, d2, g2) = (arrived.clone(), die.clone(), gone.clone());
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    // The first HELD connections each answer one request once all HELD have arrived (so ringlb
    // holds HELD at once), then close together when told: a restart. Later ones answer all.
    let m = RawMember::start(move |c| {
        let Some(_) = c.read_request() else { return };
        if c.index < HELD {
            a2.fetch_add(1, Ordering::SeqCst);
            assert!(wait_until(|| a2.load(Ordering::SeqCst) >= HELD));
            c.write(ok);
            let _ = wait_until(|| d2.load(Ordering::SeqCst));
            g2.fetch_add(1, Ordering::SeqCst);
            return; // the connection closes as the script ends
        }
        while c.write(ok) && c.read_request().is_some() {}
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], "idle_ttl = \"60s\""), 1);
    let base = sockets_of(p.pid());
    let held: Vec<_> = (0..HELD)
        .map(|_| std::thread::spawn(move || get(p.addr, "/").status))
        .collect();
    for h in held {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert!(
        wait_until(|| sockets_of(p.pid()) == base + HELD),
        "{HELD} pooled"
    );
    die.store(true, Ordering::SeqCst);
    assert!(wait_until(|| gone.load(Ordering::SeqCst) == HELD));
    std::thread::sleep(Duration::from_millis(200)); // the FINs reach ringlb's pooled sockets
    let dropped = |p: &Ringlb| {
        p.logs()
            .iter()
            .filter(|l| l.contains("pooled connection closed or readable; dropped"))
            .count()
    };
    assert_eq!(get(p.addr, "/next").status, 200);
    assert_eq!(
        m.connections(),
        HELD + 1,
        "a fresh connection after two dead ones"
    );
    // The log lines reach the test through a reader thread: wait for them, then for no more.
    assert!(wait_until(|| dropped(&p) >= 2));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(dropped(&p), 2, "one request drops two, not all {HELD}");
    // The other four never go out again; the sweep closes them (long before `idle_ttl`), and the
    // fresh connection is the one reused.
    assert!(
        wait_until(|| sockets_of(p.pid()) == base + 1),
        "ringlb holds {} sockets, expected {}",
        sockets_of(p.pid()),
        base + 1
    );
    assert_eq!(get(p.addr, "/again").status, 200);
    assert_eq!(
        m.connections(),
        HELD + 1,
        "the fresh pooled connection reused"
    );
    assert_eq!(dropped(&p), 2);
}

#[test]
fn a_member_marked_failed_never_reuses_its_pooled_connections_and_they_close_before_idle_ttl() {
    let a = Backend::start(|r| match r.path.as_str() {
        "/busy" => Reply::Full {
            status: 503,
            headers: vec![],
            body: b"busy".to_vec(),
            chunked: false,
        },
        "/slow" => Reply::Delay(
            Duration::from_millis(300),
            Box::new(Reply::Text("ok".into())),
        ),
        _ => Reply::Text("ok".into()),
    });
    let cfg = simple_config(
        &[member(a.addr)],
        "failonstatus = [503]\nretry = \"300ms\"\nidle_ttl = \"60s\"",
    );
    let p = Ringlb::start(&cfg, 1);
    let base = sockets_of(p.pid());
    // Two at once: two pooled connections.
    let two: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(p.addr, "/slow").status))
        .collect();
    for t in two {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(a.connections(), 2);
    assert!(wait_until(|| sockets_of(p.pid()) == base + 2), "two pooled");
    // The newest answers 503 (not pooled again) and marks the member failed: the other expires.
    assert_eq!(get(p.addr, "/busy").status, 503);
    assert!(p.wait_log("(failonstatus)"));
    assert!(
        wait_until(|| sockets_of(p.pid()) == base),
        "the sweep closes the expired one long before idle_ttl: {} sockets, expected {base}",
        sockets_of(p.pid())
    );
    std::thread::sleep(Duration::from_millis(400)); // past `retry`
    assert_eq!(get(p.addr, "/back").status, 200);
    assert_eq!(
        a.connections(),
        3,
        "a fresh connection once the member is back"
    );
}
