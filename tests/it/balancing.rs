//! Retries across members, passive marking (`failontimeout`, `failonstatus`), the balancing
//! methods, `lbset` tiers, hot spares, slow start and `max_conns` with its queue, against the
//! real binary on loopback.

use std::time::{Duration, Instant};

use crate::support::*;

/// A member that reads each request and closes without a byte of response.
fn closes_without_answer() -> Backend {
    Backend::start(|_| Reply::Close)
}

fn with(addr: std::net::SocketAddr, extra: &str) -> String {
    format!("{{ url = \"http://{addr}\", {extra} }}")
}

fn backend_of(r: &Resp) -> String {
    r.header("x-backend").unwrap_or("-").to_string()
}

#[test]
fn an_idempotent_request_a_member_drops_goes_to_another_member() {
    let dropper = closes_without_answer();
    let b = Backend::named("B");
    let p = Ringlb::start(
        &simple_config(&[member(dropper.addr), member(b.addr)], ""),
        1,
    );
    for i in 0..6 {
        let r = get(p.addr, &format!("/{i}"));
        assert_eq!(
            (r.status, backend_of(&r).as_str()),
            (200, "B"),
            "request {i}"
        );
    }
    assert!(
        dropper.count() >= 3,
        "round robin sent the dropper its share first"
    );
    assert_eq!(b.count(), 6);
    // PUT and DELETE are idempotent too: each goes to the dropper first, then to B.
    let before = dropper.count();
    let mut c = Client::connect(p.addr);
    for _ in 0..4 {
        c.send(b"PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert!(
        dropper.count() > before,
        "a PUT reached the dropper and was moved"
    );
    let puts = b
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 4);
}

#[test]
fn a_post_that_reached_a_member_is_never_moved() {
    let dropper = closes_without_answer();
    let b = Backend::named("B");
    let p = Ringlb::start(
        &simple_config(&[member(dropper.addr), member(b.addr)], ""),
        1,
    );
    // One worker's round robin starts at the first member.
    let mut c = Client::connect(p.addr);
    c.send(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.read_response().unwrap().status, 502);
    assert_eq!(dropper.count(), 1);
    assert!(
        b.requests().iter().all(|r| r.method != "POST"),
        "not replayed elsewhere"
    );
}

#[test]
fn maxattempts_bounds_the_moves() {
    let droppers: Vec<Backend> = (0..3).map(|_| closes_without_answer()).collect();
    let members: Vec<String> = droppers.iter().map(|d| member(d.addr)).collect();
    let p = Ringlb::start(&simple_config(&members, "maxattempts = 1"), 1);
    assert_eq!(get(p.addr, "/x").status, 502);
    let seen: usize = droppers.iter().map(Backend::count).sum();
    assert_eq!(seen, 2, "the first member and one other");
    drop(p);
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    assert_eq!(get(p.addr, "/y").status, 502);
    let seen: usize = droppers.iter().map(Backend::count).sum();
    assert_eq!(
        seen,
        2 + 3,
        "by default every member once (maxattempts = members - 1)"
    );
}

#[test]
fn failontimeout_marks_the_member_failed() {
    let slow = Backend::start(|_| {
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::Text("late".into())))
    });
    let b = Backend::named("B");
    let cfg = simple_config(
        &[member(slow.addr), member(b.addr)],
        "response_timeout = \"300ms\"\nfailontimeout = true\nretry = \"60s\"",
    );
    let p = Ringlb::start(&cfg, 1);
    assert_eq!(
        get(p.addr, "/first").status,
        504,
        "a timed-out GET is not replayed"
    );
    for i in 0..6 {
        assert_eq!(
            backend_of(&get(p.addr, &format!("/{i}"))),
            "B",
            "request {i}"
        );
    }
    assert_eq!(slow.count(), 1);
    assert!(p.wait_log("failontimeout"), "the marking is logged");
    // Without failontimeout the slow member keeps its share.
    let p = Ringlb::start(
        &simple_config(
            &[member(slow.addr), member(b.addr)],
            "response_timeout = \"300ms\"",
        ),
        1,
    );
    let statuses: Vec<u16> = (0..4)
        .map(|i| get(p.addr, &format!("/n{i}")).status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 504).count(),
        2,
        "{statuses:?}"
    );
}

#[test]
fn failonstatus_passes_the_answer_on_and_marks_the_member() {
    let busy = Backend::start(|_| Reply::Full {
        status: 503,
        headers: vec![("X-Backend".into(), "busy".into())],
        body: b"maintenance".to_vec(),
        chunked: false,
    });
    let b = Backend::named("B");
    let cfg = simple_config(
        &[member(busy.addr), member(b.addr)],
        "failonstatus = [503]\nretry = \"60s\"",
    );
    let p = Ringlb::start(&cfg, 1);
    let first = get(p.addr, "/");
    assert_eq!((first.status, first.text().as_str()), (503, "maintenance"));
    for _ in 0..6 {
        assert_eq!(backend_of(&get(p.addr, "/")), "B");
    }
    assert_eq!(busy.count(), 1);
    assert!(p.wait_log("failonstatus"));
    let logs = p.logs().join("\n");
    assert_eq!(
        logs.matches("(failonstatus)").count(),
        1,
        "logged once: {logs}"
    );
}

/// Sends `GET path` on a thread; the response arrives through the handle.
fn in_background(addr: std::net::SocketAddr, path: &str) -> std::thread::JoinHandle<Resp> {
    let path = path.to_string();
    std::thread::spawn(move || get(addr, &path))
}

/// A member whose `/slow` answers after `d`, other paths at once.
fn slow_on_path(name: &'static str, d: Duration) -> Backend {
    Backend::start(move |r| {
        let reply = Reply::Full {
            status: 200,
            headers: vec![("X-Backend".into(), name.into())],
            body: name.as_bytes().to_vec(),
            chunked: false,
        };
        if r.path == "/slow" {
            Reply::Delay(d, Box::new(reply))
        } else {
            reply
        }
    })
}

fn busy_member_is_avoided(method: &str) {
    let a = slow_on_path("A", Duration::from_secs(2));
    let b = slow_on_path("B", Duration::from_secs(2));
    let cfg = simple_config(
        &[member(a.addr), member(b.addr)],
        &format!("method = \"{method}\""),
    );
    let p = Ringlb::start(&cfg, 1);
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() + b.count() == 1));
    let busy = if a.count() == 1 { "A" } else { "B" };
    for i in 0..6 {
        let r = get(p.addr, &format!("/{i}"));
        assert_ne!(
            backend_of(&r),
            busy,
            "{method}: request {i} went to the busy member"
        );
    }
    assert_eq!(backend_of(&held.join().unwrap()), busy);
}

#[test]
fn least_busy_avoids_the_member_with_a_request_in_flight() {
    busy_member_is_avoided("least_busy");
}

#[test]
fn p2c_avoids_the_member_with_a_request_in_flight() {
    busy_member_is_avoided("p2c");
}

#[test]
fn round_robin_ignores_requests_in_flight() {
    let a = slow_on_path("A", Duration::from_secs(2));
    let b = slow_on_path("B", Duration::from_secs(2));
    let p = Ringlb::start(&simple_config(&[member(a.addr), member(b.addr)], ""), 1);
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() + b.count() == 1));
    let seen: Vec<String> = (0..4)
        .map(|i| backend_of(&get(p.addr, &format!("/{i}"))))
        .collect();
    assert_eq!(seen.iter().filter(|s| *s == "A").count(), 2, "{seen:?}");
    held.join().unwrap();
}

#[test]
fn max_conns_sends_the_rest_elsewhere_or_queues_then_503() {
    let a = slow_on_path("A", Duration::from_millis(800));
    let b = Backend::named("B");
    // Two members: a request beyond A's max_conns goes to B.
    let cfg = simple_config(
        &[with(a.addr, "max_conns = 1, weight = 1000"), member(b.addr)],
        "",
    );
    let p = Ringlb::start(&cfg, 1);
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() == 1));
    assert_eq!(backend_of(&get(p.addr, "/x")), "B");
    held.join().unwrap();
    // One member, no queue: 503 at once.
    let p = Ringlb::start(&simple_config(&[with(a.addr, "max_conns = 1")], ""), 1);
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() == 2));
    let started = Instant::now();
    assert_eq!(get(p.addr, "/x").status, 503);
    assert!(started.elapsed() < Duration::from_millis(500));
    held.join().unwrap();
    // With a queue the request waits for the slot.
    let p = Ringlb::start(
        &simple_config(&[with(a.addr, "max_conns = 1")], "queue_timeout = \"5s\""),
        1,
    );
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() == 3));
    let r = get(p.addr, "/x");
    assert_eq!((r.status, backend_of(&r).as_str()), (200, "A"));
    assert_eq!(held.join().unwrap().status, 200);
    // A queue that runs out: 503.
    let p = Ringlb::start(
        &simple_config(
            &[with(a.addr, "max_conns = 1")],
            "queue_timeout = \"200ms\"",
        ),
        1,
    );
    let held = in_background(p.addr, "/slow");
    assert!(wait_until(|| a.count() == 5));
    assert_eq!(get(p.addr, "/x").status, 503);
    held.join().unwrap();
}

#[test]
fn lower_lbset_first_then_the_next() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let dead = closed_port();
    let members = [with(a.addr, "lbset = 1"), with(b.addr, "lbset = 0")];
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    for _ in 0..4 {
        assert_eq!(backend_of(&get(p.addr, "/")), "B");
    }
    let members = [with(a.addr, "lbset = 1"), with(dead, "lbset = 0")];
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    for _ in 0..4 {
        assert_eq!(backend_of(&get(p.addr, "/")), "A");
    }
}

#[test]
fn a_hot_spare_stands_in_for_a_failed_member_and_standby_waits() {
    let (a, s, t) = (
        Backend::named("A"),
        Backend::named("S"),
        Backend::named("T"),
    );
    let dead = closed_port();
    let members = [
        member(a.addr),
        member(dead),
        with(s.addr, "status = \"hot_spare\""),
        with(t.addr, "status = \"hot_standby\""),
    ];
    let p = Ringlb::start(&simple_config(&members, "retry = \"60s\""), 1);
    let seen: Vec<String> = (0..8).map(|_| backend_of(&get(p.addr, "/"))).collect();
    assert!(seen.iter().all(|s| s == "A" || s == "S"), "{seen:?}");
    assert!(seen.iter().filter(|s| *s == "S").count() >= 3, "{seen:?}");
    assert_eq!(
        t.count(),
        0,
        "the standby waits while actives or spares can serve"
    );
}

#[test]
fn a_returning_member_ramps_up_under_slow_start() {
    let (addr, reserved) = reserved_port();
    let b = Backend::named("B");
    let cfg = simple_config(
        &[member(addr), member(b.addr)],
        "retry = \"200ms\"\nslow_start = \"3s\"",
    );
    let p = Ringlb::start(&cfg, 1);
    assert_eq!(
        backend_of(&get(p.addr, "/")),
        "B",
        "the first member is down"
    );
    reserved.listen(64).unwrap();
    let a = Backend::on(reserved.into(), |_| Reply::Full {
        status: 200,
        headers: vec![("X-Backend".into(), "A".into())],
        body: b"A".to_vec(),
        chunked: false,
    });
    // Once the retry period is over, the member gets a small share at first...
    assert!(wait_until(|| backend_of(&get(p.addr, "/")) == "A"));
    let early = (0..20)
        .filter(|_| backend_of(&get(p.addr, "/")) == "A")
        .count();
    assert!(
        early <= 5,
        "{early} of 20 right after its return (round robin gives 10)"
    );
    // ... and its whole share once the slow start is over.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut full = 0;
    while Instant::now() < deadline {
        full = (0..20)
            .filter(|_| backend_of(&get(p.addr, "/")) == "A")
            .count();
        if full == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(full, 10);
    assert!(a.count() > 10);
}

#[test]
fn balancing_keys_are_checked() {
    let b = Backend::named("B");
    for (extra, member_extra, key) in [
        ("method = \"random\"", "", "balancer[0].method"),
        ("failonstatus = [700]", "", "balancer[0].failonstatus"),
        ("", "lbset = 100", "balancer[0].members[0].lbset"),
        ("", "max_conns = 0", "balancer[0].members[0].max_conns"),
        ("all_failed = \"maybe\"", "", "balancer[0].all_failed"),
        ("retry = \"0s\"", "", "balancer[0].retry"),
        (
            "queue_timeout = \"9000000000s\"",
            "",
            "balancer[0].queue_timeout",
        ),
    ] {
        let m = if member_extra.is_empty() {
            member(b.addr)
        } else {
            with(b.addr, member_extra)
        };
        let Err(err) = Ringlb::try_start(&simple_config(&[m], extra), 1) else {
            panic!("{key}: the config was accepted");
        };
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains("line "), "{key}: {err}");
    }
}

#[test]
fn all_failed_refuses_or_tries_every_member() {
    let busy = |name: &'static str| {
        Backend::start(move |_| Reply::Full {
            status: 503,
            headers: vec![("X-Backend".into(), name.into())],
            body: b"maintenance".to_vec(),
            chunked: false,
        })
    };
    let (a, b) = (busy("A"), busy("B"));
    let members = [member(a.addr), member(b.addr)];
    for (setting, expect_member) in [("", false), ("all_failed = \"try_all\"", true)] {
        let extra = format!("failonstatus = [503]\nretry = \"60s\"\n{setting}");
        let p = Ringlb::start(&simple_config(&members, &extra), 1);
        // Both members answer 503 once and are marked failed.
        assert_eq!(backend_of(&get(p.addr, "/")), "A");
        assert_eq!(backend_of(&get(p.addr, "/")), "B");
        let r = get(p.addr, "/");
        assert_eq!(r.status, 503);
        assert_eq!(
            r.header("x-backend").is_some(),
            expect_member,
            "{setting:?}"
        );
    }
}
