//! Sticky sessions (Apache `stickysession`, `route`, `nofailover`) against the real binary: the
//! session cookie and the `;jsessionid=` path parameter (looked up first) keep a session on the
//! member with that route on every core; an unknown route or a session id without one is balanced
//! normally; a disabled or refusing member's sessions move to another member, or get 503 with
//! `nofailover` (with `all_failed = "try_all"` too, while another member is usable); a full member
//! is waited for, not left; the access log's `route=`; config errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::proxy::TempDir;
use crate::support::*;

/// One balancer "app" over `(address, route)` members, sticky on `JSESSIONID|jsessionid`.
fn sticky_config(members: &[(SocketAddr, &str)], extra: &str) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(a, r)| format!("{{ url = \"http://{a}\", route = \"{r}\" }}"))
        .collect();
    simple_config(
        &members,
        &format!("sticky_session = \"JSESSIONID|jsessionid\"\n{extra}"),
    )
}

/// `GET path` on a fresh connection with extra header lines (each ending in CRLF).
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.read_response().expect("a response")
}

/// The session cookie of a session on `route`.
fn session(route: &str) -> String {
    format!("Cookie: theme=dark; JSESSIONID=5A3C9E01F2.{route}; lang=en\r\n")
}

fn backend(r: &Resp) -> &str {
    r.header("x-backend").unwrap_or("-")
}

#[test]
fn the_session_cookie_keeps_each_session_on_its_member_on_every_core() {
    let (a, b, c) = (
        Backend::named("A"),
        Backend::named("B"),
        Backend::named("C"),
    );
    let p = Ringlb::start(
        &sticky_config(&[(a.addr, "n1"), (b.addr, "n2"), (c.addr, "n3")], ""),
        2,
    );
    for (route, name) in [("n1", "A"), ("n2", "B"), ("n3", "C")] {
        // Fresh connections land on either core; every core sends the session to its member.
        for i in 0..10 {
            let r = get_with(p.addr, &format!("/fresh/{i}"), &session(route));
            assert_eq!((r.status, backend(&r)), (200, name), "{route}, request {i}");
        }
        let mut conn = Client::connect(p.addr);
        for i in 0..10 {
            conn.send(
                format!(
                    "GET /kept/{i} HTTP/1.1\r\nHost: t\r\n{}\r\n",
                    session(route)
                )
                .as_bytes(),
            );
            let r = conn.read_response().unwrap();
            assert_eq!((r.status, backend(&r)), (200, name), "{route}, kept {i}");
        }
    }
    assert_eq!((a.count(), b.count(), c.count()), (20, 20, 20));
    // The cookie forms Apache reads: quoted, comma-separated, spaces around '=', a later Cookie
    // header; names are case-sensitive (a lowercase jsessionid cookie is not the session).
    for cookie in [
        "Cookie: JSESSIONID=\"5A3C.n2\"\r\n",
        "Cookie: a=1, JSESSIONID=5A3C.n2, b=2\r\n",
        "Cookie: JSESSIONID = 5A3C.n2\r\n",
        "Cookie: a=1\r\nCookie: JSESSIONID=5A3C.n2\r\n",
        "Cookie: XJSESSIONID=5A3C.n1; JSESSIONID=5A3C.n2\r\n",
        "Cookie: jsessionid=5A3C.n1; JSESSIONID=5A3C.n2\r\n",
    ] {
        for _ in 0..3 {
            let r = get_with(p.addr, "/forms", cookie);
            assert_eq!(backend(&r), "B", "{cookie:?}");
        }
    }
}

#[test]
fn the_path_parameter_names_the_member_before_the_cookie() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(&sticky_config(&[(a.addr, "n1"), (b.addr, "n2")], ""), 2);
    for i in 0..10 {
        let path = format!("/shop;jsessionid=77AB.n1/cart/{i}?x=1");
        let r = get_with(p.addr, &path, &session("n2"));
        assert_eq!((r.status, backend(&r)), (200, "A"), "{path}");
        // The member gets the path with its parameter, as the client sent it.
        assert_eq!(r.text(), format!("A {path}"));
        let r = get_with(p.addr, &format!("/shop;jsessionid=77AB.n2/{i}"), "");
        assert_eq!(backend(&r), "B");
    }
    // The query is not the path: there the cookie decides.
    for _ in 0..5 {
        let r = get_with(p.addr, "/shop?jsessionid=77AB.n1", &session("n2"));
        assert_eq!(backend(&r), "B");
    }
}

#[test]
fn an_unknown_route_or_a_session_without_one_is_balanced_normally() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(&sticky_config(&[(a.addr, "n1"), (b.addr, "n2")], ""), 1);
    for header in [
        "Cookie: JSESSIONID=5A3C.n9\r\n",
        "Cookie: JSESSIONID=5A3C\r\n",
        "Cookie: JSESSIONID=5A3C.\r\n",
        "Cookie: JSESSIONID=5A3C.N1\r\n",
        "Cookie: SESSION=5A3C.n1\r\n",
        "X-Cookie: JSESSIONID=5A3C.n1\r\n",
        "",
    ] {
        let (a0, b0) = (a.count(), b.count());
        for _ in 0..20 {
            assert_eq!(get_with(p.addr, "/", header).status, 200, "{header:?}");
        }
        let (da, db) = (a.count() - a0, b.count() - b0);
        assert!(
            da >= 5 && db >= 5,
            "{header:?}: round robin over both members, got A {da}, B {db}"
        );
    }
}

#[test]
fn a_disabled_members_sessions_move_or_get_503_with_nofailover() {
    for nofailover in [false, true] {
        let (a, b) = (Backend::named("A"), Backend::named("B"));
        let p = Ringlb::start(
            &with_admin(
                &sticky_config(
                    &[(a.addr, "n1"), (b.addr, "n2")],
                    &format!("nofailover = {nofailover}"),
                ),
                "",
            ),
            2,
        );
        for _ in 0..5 {
            assert_eq!(backend(&get_with(p.addr, "/", &session("n1"))), "A");
        }
        set_member_status(p.admin_addr(), 0, "disabled");
        let before = a.count();
        for i in 0..10 {
            let r = get_with(p.addr, "/moved", &session("n1"));
            if nofailover {
                assert_eq!(r.status, 503, "nofailover: request {i}: {}", r.text());
            } else {
                assert_eq!((r.status, backend(&r)), (200, "B"), "request {i}");
            }
            // Other sessions and requests without one are not affected.
            assert_eq!(backend(&get_with(p.addr, "/", &session("n2"))), "B");
            assert_eq!(backend(&get_with(p.addr, "/", "")), "B");
        }
        assert_eq!(a.count(), before, "a disabled member got a request");
        // Enabled again, it has its sessions back.
        set_member_status(p.admin_addr(), 0, "active");
        for _ in 0..5 {
            let r = get_with(p.addr, "/back", &session("n1"));
            assert_eq!(
                (r.status, backend(&r)),
                (200, "A"),
                "nofailover={nofailover}"
            );
        }
    }
}

#[test]
fn a_refusing_members_sessions_move_or_get_503_with_nofailover() {
    for nofailover in [false, true] {
        let b = Backend::named("B");
        let dead = closed_port();
        let p = Ringlb::start(
            &sticky_config(
                &[(dead, "n1"), (b.addr, "n2")],
                &format!("nofailover = {nofailover}\nretry = \"60s\""),
            ),
            2,
        );
        // The first requests meet the refusal (the request moves or fails at once); later ones
        // find the member marked failed.
        for i in 0..10 {
            let r = get_with(p.addr, &format!("/{i}"), &session("n1"));
            if nofailover {
                assert_eq!(r.status, 503, "nofailover: request {i}: {}", r.text());
            } else {
                assert_eq!((r.status, backend(&r)), (200, "B"), "request {i}");
            }
        }
        assert!(
            p.wait_log(&format!("http://{dead}")),
            "the refusal is logged"
        );
        for _ in 0..5 {
            let r = get_with(p.addr, "/", "");
            assert_eq!(
                (r.status, backend(&r)),
                (200, "B"),
                "nofailover={nofailover}"
            );
        }
    }
}

#[test]
fn a_session_waits_for_its_members_max_conns_share_instead_of_moving() {
    let a = Backend::start(|r| {
        let d = if r.path == "/slow" { 800 } else { 0 };
        Reply::Delay(
            Duration::from_millis(d),
            Box::new(Reply::Full {
                status: 200,
                headers: vec![("X-Backend".into(), "A".into())],
                body: r.path.clone().into_bytes(),
                chunked: false,
            }),
        )
    });
    let b = Backend::named("B");
    let members = [
        format!(
            "{{ url = \"http://{}\", route = \"n1\", max_conns = 1 }}",
            a.addr
        ),
        format!("{{ url = \"http://{}\", route = \"n2\" }}", b.addr),
    ];
    for queue_timeout in ["5s", "0s"] {
        let p = Ringlb::start(
            &simple_config(
                &members,
                &format!(
                    "sticky_session = \"JSESSIONID|jsessionid\"\nqueue_timeout = \"{queue_timeout}\""
                ),
            ),
            1,
        );
        let slow_before = a.requests().iter().filter(|r| r.path == "/slow").count();
        let proxy = p.addr;
        let slow = std::thread::spawn(move || get_with(proxy, "/slow", &session("n1")));
        assert!(wait_until(|| a
            .requests()
            .iter()
            .filter(|r| r.path == "/slow")
            .count()
            > slow_before));
        // A holds its one connection: a request without a session goes to B at once.
        assert_eq!(backend(&get_with(p.addr, "/free", "")), "B");
        let started = Instant::now();
        let r = get_with(p.addr, "/next", &session("n1"));
        if queue_timeout == "5s" {
            // The session waits for its member (until the slow request ends), not for B.
            assert_eq!((r.status, backend(&r)), (200, "A"), "{}", r.text());
            assert!(started.elapsed() < Duration::from_secs(5));
        } else {
            // No queueing: 503 at once, and the session still does not move.
            assert_eq!(r.status, 503, "{}", r.text());
        }
        assert_eq!(slow.join().unwrap().status, 200);
        assert!(
            b.requests().iter().all(|r| r.path != "/next"),
            "the session moved to B"
        );
    }
}

#[test]
fn the_access_log_names_the_route_taken() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let dead = closed_port();
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let p = Ringlb::start(
        &format!(
            "[log]\naccess = \"{}\"\n{}",
            path.display(),
            sticky_config(&[(a.addr, "n1"), (b.addr, "n2"), (dead, "n3")], "")
        ),
        1,
    );
    let cases = [
        ("/cookie", session("n2"), "B", "route=n2"),
        ("/path;jsessionid=9F.n1", String::new(), "A", "route=n1"),
        ("/none", String::new(), "", "route=-"),
        ("/unknown", session("n9"), "", "route=-"),
        // The session's member refused: the request moved, so no route was taken.
        ("/moved", session("n3"), "", "route=-"),
    ];
    for (target, header, name, _) in &cases {
        let r = get_with(p.addr, target, header);
        assert_eq!(r.status, 200, "{target}");
        if !name.is_empty() {
            assert_eq!(backend(&r), *name, "{target}");
        }
    }
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert!(wait_until(|| lines().len() == cases.len()), "{:?}", lines());
    let lines = lines();
    for (target, _, name, route) in &cases {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"GET {target} HTTP/1.1\"")))
            .unwrap_or_else(|| panic!("no line for {target}: {lines:?}"));
        assert!(line.contains(&format!(" {route} ")), "{target}: {line}");
        let member = match *name {
            "A" => a.addr.to_string(),
            "B" => b.addr.to_string(),
            _ => continue,
        };
        assert!(
            line.contains(&format!(" member={member} ")),
            "{target}: {line}"
        );
    }
    let moved = lines.iter().find(|l| l.contains("GET /moved")).unwrap();
    assert!(!moved.contains(&format!("member={dead}")), "{moved}");
}

#[test]
fn sticky_config_errors_name_the_key_and_line() {
    let head = "[[listen]]\naddress = \"127.0.0.1:0\"\n\n[[balancer]]\nname = \"app\"\n";
    let tail = "\n[[route]]\nbalancer = \"app\"\n";
    let cases = [
        (
            "sticky_session = \"JSESSIONID|jsessionid\"\nmembers = [\n  { url = \"http://127.0.0.1:1\", route = \"n1\" },\n  { url = \"http://127.0.0.1:2\", route = \"n1\" },\n]\n",
            "balancer[0].members[1].route",
            9,
        ),
        (
            "sticky_session = \"JSESSIONID|\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n",
            "balancer[0].sticky_session",
            6,
        ),
        (
            "sticky_session = \"JSESSION ID\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n",
            "balancer[0].sticky_session",
            6,
        ),
        (
            "sticky_session = \"JSESSIONID\"\nsticky_session_sep = \"..\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n",
            "balancer[0].sticky_session_sep",
            7,
        ),
        (
            "sticky_session_sep = \".\"\nmembers = [{ url = \"http://127.0.0.1:1\" }]\n",
            "balancer[0].sticky_session_sep",
            6,
        ),
        (
            "sticky_session = \"JSESSIONID\"\nmembers = [\n  { url = \"http://127.0.0.1:1\", route = \"node.1\" },\n]\n",
            "balancer[0].members[0].route",
            8,
        ),
    ];
    for (body, key, line) in cases {
        let dir = TempDir::new();
        let file = dir.0.join("sticky.toml");
        std::fs::write(&file, format!("{head}{body}{tail}")).unwrap();
        let file = file.to_string_lossy().into_owned();
        let (code, _, err) = run_cli(&["check", "--config", &file]);
        assert_eq!(code, 1, "{key}: {err}");
        assert!(err.contains(&format!("key `{key}`")), "{key}: {err}");
        assert!(err.contains(&format!("line {line},")), "{key}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let (code, _, err) = run_cli(&["run", "--config", &file]);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(err.contains(&format!("key `{key}`")), "{key}: {err}");
    }
    // One name stands for both the cookie and the path parameter.
    let dir = TempDir::new();
    let file = dir.0.join("ok.toml");
    std::fs::write(
        &file,
        format!("{head}sticky_session = \"JSESSIONID\"\nmembers = [{{ url = \"http://127.0.0.1:1\", route = \"n1\" }}]\n{tail}"),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["check", "--config", &file.to_string_lossy()]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn one_name_is_both_the_cookie_and_the_path_parameter() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let members = [
        format!("{{ url = \"http://{}\", route = \"web-1\" }}", a.addr),
        format!("{{ url = \"http://{}\", route = \"web-2\" }}", b.addr),
    ];
    let p = Ringlb::start(
        &simple_config(
            &members,
            "sticky_session = \"ROUTEID\"\nsticky_session_sep = \":\"",
        ),
        1,
    );
    for _ in 0..5 {
        assert_eq!(
            backend(&get_with(p.addr, "/", "Cookie: ROUTEID=abc:web-2\r\n")),
            "B"
        );
        assert_eq!(backend(&get_with(p.addr, "/x;ROUTEID=abc:web-1", "")), "A");
        // The default separator is not this balancer's: no route.
        let (a0, b0) = (a.count(), b.count());
        for _ in 0..4 {
            get_with(p.addr, "/", "Cookie: ROUTEID=abc.web-2\r\n");
        }
        assert!(a.count() > a0 && b.count() > b0, "balanced normally");
    }
}

#[test]
fn with_try_all_a_failed_members_sessions_go_elsewhere_while_another_member_is_usable() {
    let b = Backend::named("B");
    let dead = closed_port();
    let p = Ringlb::start(
        &with_admin(
            &sticky_config(
                &[(dead, "n1"), (b.addr, "n2")],
                "all_failed = \"try_all\"\nretry = \"60s\"",
            ),
            "",
        ),
        1,
    );
    for i in 0..10 {
        let r = get_with(p.addr, &format!("/{i}"), &session("n1"));
        assert_eq!((r.status, backend(&r)), (200, "B"), "request {i}");
    }
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members[1].responses.get("2xx") == Some(&10)
    });
    let refused = r.balancers[0].members[0].failures.get("connect_refused");
    // The first request found the member refusing and marked it failed; `try_all` tries failed
    // members only when no member is usable, so later requests of the session went straight to B.
    assert_eq!(
        refused,
        Some(&1),
        "{:?}",
        r.balancers[0].members[0].failures
    );
}
