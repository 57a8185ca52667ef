//! Idle keep-alive connections: parked after 250 ms without a request (no task, no buffers),
//! woken by their next request, closed at their deadline or at shutdown; empty lines between
//! requests (a trickle, a flood, a CR and LF apart, to a parked connection, during a stop) leave a
//! connection idle and stretch none of its deadlines. (That a parked
//! connection still counts against `max_connections` is in lifecycle.rs.)

use std::time::{Duration, Instant};

use crate::support::*;

/// A little longer than ringlb's park delay (250 ms).
const PARKED: Duration = Duration::from_millis(600);

fn request(c: &mut Client, path: &str) -> Resp {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.read_response().expect("a response")
}

/// One member, with `limits` (lines of the `[limits]` table).
fn with_limits(limits: &str, a: &Backend) -> String {
    format!(
        "[limits]\n{limits}\n{}",
        simple_config(&[member(a.addr)], "")
    )
}

/// Sends `times` empty lines (CRLF) on `c`'s socket, one every `every`, from another thread; stops
/// at the first that fails (the connection closed).
fn empty_lines(c: &Client, every: Duration, times: u32) -> std::thread::JoinHandle<()> {
    let mut s = c.s.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..times {
            std::thread::sleep(every);
            if s.write_all(b"\r\n").is_err() {
                return;
            }
        }
    })
}

#[test]
fn an_idle_connection_parks_and_wakes_for_its_next_requests() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/one").text(), "A /one");
    std::thread::sleep(PARKED);
    let r = report_when(p.admin_addr(), |r| r.connections.idle == 1);
    assert_eq!(r.connections.idle, 1, "the idle connection is parked");
    // Two pipelined requests wake it; both are answered, in order, on the same connection.
    c.send(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "A /two");
    assert_eq!(c.read_response().unwrap().text(), "A /three");
    let r = report_when(p.admin_addr(), |r| r.connections.idle == 0);
    assert_eq!(
        r.connections.idle, 0,
        "the status page counts parked connections"
    );
    assert_eq!(r.connections.total, 1, "one client connection");
}

#[test]
fn a_burst_that_parked_and_was_trimmed_serves_on_every_connection() {
    // 300 connections park at once (more than the 64 after which a pause in parking trims the
    // core's slabs and hands memory back); each is then woken in turn, and new ones come.
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    let mut held: Vec<Client> = (0..300)
        .map(|i| {
            let mut c = Client::connect(p.addr);
            assert_eq!(request(&mut c, &format!("/first{i}")).status, 200);
            c
        })
        .collect();
    report_when(p.admin_addr(), |r| r.connections.idle == 300);
    // Past the release (100 ms after the last parking).
    std::thread::sleep(Duration::from_millis(400));
    for (i, c) in held.iter_mut().enumerate() {
        assert_eq!(
            request(c, &format!("/again{i}")).text(),
            format!("A /again{i}")
        );
    }
    for i in 0..50 {
        let mut c = Client::connect(p.addr);
        assert_eq!(
            request(&mut c, &format!("/new{i}")).text(),
            format!("A /new{i}")
        );
    }
    // And they park again, and wake again.
    report_when(p.admin_addr(), |r| r.connections.idle >= 300);
    std::thread::sleep(Duration::from_millis(400));
    for (i, c) in held.iter_mut().enumerate().step_by(7) {
        assert_eq!(
            request(c, &format!("/last{i}")).text(),
            format!("A /last{i}")
        );
    }
}

#[test]
fn a_request_sent_as_the_connection_parks_is_answered() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.set_timeout(Duration::from_secs(5));
    // Requests land just before, at and just after the moment the connection parks.
    for (i, ms) in (230..=270).step_by(5).enumerate() {
        std::thread::sleep(Duration::from_millis(ms));
        let path = format!("/{i}");
        assert_eq!(
            request(&mut c, &path).text(),
            format!("A {path}"),
            "after {ms} ms"
        );
    }
}

#[test]
fn a_parked_connection_closes_at_its_keepalive_timeout() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_limits("keepalive_timeout = \"1500ms\"", &a), 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/").status, 200);
    let idle_since = Instant::now();
    c.set_timeout(Duration::from_millis(1000));
    assert!(
        !c.is_closed(),
        "still open a second into a 1.5 s keep-alive"
    );
    c.set_timeout(Duration::from_secs(5));
    assert!(c.is_closed(), "closed once the keep-alive timeout passed");
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(3500),
        "{waited:?}"
    );
}

#[test]
fn shutdown_closes_parked_connections_at_once() {
    let a = Backend::named("A");
    // With an access log, the process exits only once every core has let go of its state (the
    // log writer waits for the last core's buffer): a parked connection must not keep it alive.
    let dir = crate::support::proxy::TempDir::new();
    let log = dir.0.join("access.log");
    let body = format!(
        "[log]\naccess = \"{}\"\n{}",
        log.display(),
        simple_config(&[member(a.addr)], "")
    );
    let mut p = Ringlb::start(&body, 2);
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(p.addr)).collect();
    for c in &mut clients {
        assert_eq!(request(c, "/").status, 200);
    }
    std::thread::sleep(PARKED);
    let started = Instant::now();
    let status = p.terminate().expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "parked connections held the shutdown up: {:?}",
        started.elapsed()
    );
    for c in &mut clients {
        c.set_timeout(Duration::from_secs(2));
        assert!(c.is_closed());
    }
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(lines.lines().count(), 4, "{lines}");
}

#[test]
fn a_pipelined_burst_that_fills_each_read_exactly_is_answered_without_waiting() {
    // Between requests ringlb waits on a poll it keeps armed (from a connection's second wait
    // that polls),
    // which tells only of bytes that arrived since it last fired. 200 requests of exactly 128
    // bytes in one write: each read after a wait fills its 4 KiB (a power of two) with whole
    // requests and empties `c.buf` exactly while the rest still waits in the socket; the next
    // wait must read before it trusts the poll. One that trusted it would sit on bytes already
    // there until its idle wait ended (the park delay, 250 ms; its last receive then finds
    // them): each answer must come within 200 ms of the one before.
    let a = Backend::start(|r| Reply::Text(r.path.clone()));
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    // Its first wait receives, its second polls once; from the third on, the poll is kept.
    for path in ["/warm", "/again"] {
        assert_eq!(request(&mut c, path).text(), path);
    }
    // Let it go back to waiting on its poll.
    std::thread::sleep(Duration::from_millis(20));
    let mut burst = Vec::new();
    for i in 0..200 {
        let head = format!("GET /{i:03} HTTP/1.1\r\nHost: t\r\nX-Pad: ");
        let pad = 128 - head.len() - 4;
        burst.extend_from_slice(head.as_bytes());
        burst.extend(std::iter::repeat_n(b'p', pad));
        burst.extend_from_slice(b"\r\n\r\n");
    }
    assert_eq!(burst.len(), 200 * 128);
    c.set_timeout(Duration::from_millis(200));
    c.send(&burst);
    for i in 0..200 {
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("no answer to request {i} within 200 ms"));
        assert_eq!(r.text(), format!("/{i:03}"));
    }
}

#[test]
fn a_request_behind_an_urgent_byte_is_answered() {
    // A receive stops short at TCP's urgent mark with bytes still behind it: a short read then
    // does not prove the socket empty, and the kept poll, which told of them already, does not
    // fire again. One segment (corked) holds request 1, an urgent byte, then request 2; with a
    // keep-alive timeout shorter than the park delay, the wait ends at the keep-alive deadline,
    // and its last receive before closing must find request 2 (answered late, not lost).
    let a = Backend::start(|r| Reply::Text(r.path.clone()));
    let p = Ringlb::start(&with_limits("keepalive_timeout = \"200ms\"", &a), 1);
    let mut c = Client::connect(p.addr);
    for path in ["/warm", "/again"] {
        assert_eq!(request(&mut c, path).text(), path);
    }
    std::thread::sleep(Duration::from_millis(20));
    let cork = |on: bool| rustix::net::sockopt::set_tcp_cork(&c.s, on).unwrap();
    cork(true);
    let flags = rustix::net::SendFlags::OOB;
    rustix::net::send(&c.s, b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n!", flags).unwrap();
    rustix::net::send(
        &c.s,
        b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n",
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    cork(false);
    assert_eq!(c.read_response().expect("an answer to /one").text(), "/one");
    assert_eq!(c.read_response().expect("an answer to /two").text(), "/two");
}

#[test]
fn an_empty_line_after_a_request_leaves_the_connection_idle() {
    // Some clients send a CRLF after a request (after a POST's body, classically). It is no
    // request (RFC 9112 2.2): the connection waits idle and parks, and is not refused with a 408
    // at the header timeout, here far shorter than the keep-alive one.
    let a = Backend::named("A");
    let config = with_admin(
        &with_limits("header_timeout = \"300ms\"\nkeepalive_timeout = \"5s\"", &a),
        "",
    );
    let p = Ringlb::start(&config, 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\r\n");
    assert_eq!(c.read_response().expect("a response").text(), "A /one");
    // And one that comes on its own, during the idle wait, and one whose CR and LF come apart
    // (a read that ends with the CR has not begun a request either).
    c.send(b"\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"\r");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"\n");
    std::thread::sleep(PARKED + Duration::from_millis(300));
    let r = report_when(p.admin_addr(), |r| r.connections.idle == 1);
    assert_eq!(r.connections.idle, 1, "the connection parked");
    assert_eq!(request(&mut c, "/two").text(), "A /two");
}

#[test]
fn empty_lines_alone_do_not_stretch_the_keepalive_wait() {
    // A CRLF every 200 ms for 1.4 s after the last answer: the connection still closes at its
    // 1.5 s keep-alive deadline (a wait that each empty line started again would end at 2.9 s at
    // the earliest; the correct one, parked between two late empty lines, at the once-a-second
    // sweep after 1.5 s, so by ~2.5 s), without a word (no 408: no request had begun).
    let a = Backend::named("A");
    let limits = "header_timeout = \"10s\"\nkeepalive_timeout = \"1500ms\"";
    let p = Ringlb::start(&with_limits(limits, &a), 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/").status, 200);
    let idle_since = Instant::now();
    let trickle = empty_lines(&c, Duration::from_millis(200), 7);
    c.set_timeout(Duration::from_secs(8));
    let rest = c.read_until_close().expect("a plain close");
    let waited = idle_since.elapsed();
    trickle.join().unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(2800),
        "{waited:?}"
    );
}

#[test]
fn an_empty_line_to_a_parked_connection_does_not_stretch_its_keepalive_wait() {
    // Parked after its answer, the connection is woken at 2 s by a CRLF, which is no request:
    // it closes at its 3 s keep-alive deadline (the core's once-a-second sweep closes a parked
    // one up to a second after it), not 3 s after the CRLF.
    let a = Backend::named("A");
    let config = with_admin(&with_limits("keepalive_timeout = \"3s\"", &a), "");
    let p = Ringlb::start(&config, 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/").status, 200);
    let idle_since = Instant::now();
    std::thread::sleep(PARKED);
    let r = report_when(p.admin_addr(), |r| r.connections.idle == 1);
    assert_eq!(r.connections.idle, 1, "parked");
    std::thread::sleep(Duration::from_millis(2000).saturating_sub(idle_since.elapsed()));
    c.send(b"\r\n");
    c.set_timeout(Duration::from_secs(8));
    let rest = c.read_until_close().expect("a plain close");
    let waited = idle_since.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        waited >= Duration::from_millis(3000) && waited < Duration::from_millis(4600),
        "{waited:?}"
    );
}

#[test]
fn empty_lines_do_not_hold_up_a_stopping_server() {
    // While ringlb stops, an idle keep-alive connection gets one second (`STOP_LINGER`) for a
    // last request, counted from when its wait saw the stop. A CRLF every 900 ms (the first 800 ms
    // into the stop) is no request: it must not start that second again, once (1.8 s) or each
    // time (until the empty lines end, 13.5 s here, or the shutdown grace).
    let a = Backend::named("A");
    let mut p = Ringlb::start(&with_limits("keepalive_timeout = \"30s\"", &a), 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/").status, 200);
    let trickle = empty_lines(&c, Duration::from_millis(900), 15);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let status = p.terminate().expect("exits");
    let took = started.elapsed();
    trickle.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_millis(1600), "the stop took {took:?}");
}

#[test]
fn a_flood_of_empty_lines_ends_at_the_keepalive_deadline() {
    // Empty lines written as fast as the socket takes them: every receive fills its room, so
    // each wait receives first and never reaches its timer. The connection must still close at
    // its 1 s keep-alive deadline (the writer then fails), not when the flood ends (6 s here),
    // nor before it (a read that ends between a CR and its LF is no request begun, so no head
    // collects empty lines until a 431).
    let a = Backend::named("A");
    let p = Ringlb::start(&with_limits("keepalive_timeout = \"1s\"", &a), 1);
    let mut c = Client::connect(p.addr);
    assert_eq!(request(&mut c, "/").status, 200);
    let mut s = c.s.try_clone().unwrap();
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = b"\r\n".repeat(32 * 1024);
        while started.elapsed() < Duration::from_secs(6) {
            if s.write_all(&chunk).is_err() {
                return started.elapsed();
            }
        }
        started.elapsed()
    });
    let took = flood.join().unwrap();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3500),
        "the flood was read for {took:?}"
    );
}
