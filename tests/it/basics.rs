//! Balancing, routing, header rewriting, keep-alive, pipelining and the HTTP/1.1 message rules.

use std::time::{Duration, Instant};

use crate::support::raw_member::RawMember;
use crate::support::*;

#[test]
fn round_robin_alternates_members_on_one_core() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(&simple_config(&[member(a.addr), member(b.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    let mut seen = Vec::new();
    for _ in 0..6 {
        c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200);
        seen.push(r.header("x-backend").unwrap().to_string());
    }
    assert_eq!(seen, ["A", "B", "A", "B", "A", "B"]);
    assert_eq!((a.count(), b.count()), (3, 3));
}

#[test]
fn weights_5_1_1_give_5_1_1() {
    let (a, b, c3) = (
        Backend::named("A"),
        Backend::named("B"),
        Backend::named("C"),
    );
    let members = [
        format!("{{ url = \"http://{}\", weight = 5 }}", a.addr),
        member(b.addr),
        member(c3.addr),
    ];
    let p = Ringlb::start(&simple_config(&members, ""), 1);
    let mut c = Client::connect(p.addr);
    let mut seen = String::new();
    for _ in 0..14 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        seen.push_str(c.read_response().unwrap().header("x-backend").unwrap());
    }
    assert_eq!(seen, "AABACAAAABACAA");
}

#[test]
fn routes_by_host_and_longest_prefix_and_404s_the_rest() {
    let (a, b, h) = (
        Backend::named("A"),
        Backend::named("B"),
        Backend::named("H"),
    );
    let config = format!(
        "[[balancer]]\nname = \"a\"\nmembers = [{}]\n[[balancer]]\nname = \"b\"\nmembers = [{}]\n\
[[balancer]]\nname = \"h\"\nmembers = [{}]\n\
[[route]]\npath = \"/\"\nhost = \"www.example.org\"\nbalancer = \"a\"\n\
[[route]]\npath = \"/api\"\nhost = \"www.example.org\"\nbalancer = \"b\"\n\
[[route]]\npath = \"/\"\nhost = \"other.example.org\"\nbalancer = \"h\"\n",
        member(a.addr),
        member(b.addr),
        member(h.addr)
    );
    let p = Ringlb::start(&config, 1);
    let mut c = Client::connect(p.addr);
    let mut ask = |host: &str, path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        (r.status, r.header("x-backend").unwrap_or("-").to_string())
    };
    assert_eq!(ask("www.example.org", "/"), (200, "A".into()));
    assert_eq!(ask("WWW.example.org:8080", "/api/v1"), (200, "B".into()));
    assert_eq!(ask("other.example.org", "/api"), (200, "H".into()));
    assert_eq!(ask("nobody.example.org", "/"), (404, "-".into()));
    // A 404 on a whole request keeps the connection usable.
    assert_eq!(ask("www.example.org", "/again"), (200, "A".into()));
}

#[test]
fn rewrites_headers_for_the_member() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(
        b"GET /h?q=1 HTTP/1.1\r\nHost: front.example:8443\r\nConnection: keep-alive, X-Private\r\n\
X-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n\
Proxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Forwarded-For: 203.0.113.7\r\n\
X-Forwarded-Host: spoofed\r\nX-Forwarded-Proto: https\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    let r = &a.requests()[0];
    assert_eq!(r.path, "/h?q=1");
    assert_eq!(r.header("host"), Some(a.addr.to_string().as_str()));
    // ringlb's own Connection, not the client's (so that Apache and Tomcat give their keep-alive
    // timeout: `a_member_s_keep_alive_timeout_…` below, and tests/it/tomcat.rs).
    assert_eq!(
        (r.header("connection"), r.count("connection")),
        (Some("keep-alive"), 1)
    );
    for gone in [
        "x-private",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "trailer",
    ] {
        assert_eq!(r.header(gone), None, "{gone} reached the member");
    }
    // The client is no trusted proxy: its X-Forwarded-* are replaced (tests/it/forwarding.rs).
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(r.count("x-forwarded-for"), 1);
    assert_eq!(r.header("x-forwarded-host"), Some("front.example:8443"));
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
    assert_eq!(r.header("accept"), Some("text/plain"));
}

#[test]
fn preserve_host_sends_the_clients_host() {
    let a = Backend::named("A");
    let config = format!(
        "[[balancer]]\nname = \"app\"\nmembers = [{}]\n[[route]]\npath = \"/\"\nbalancer = \"app\"\npreserve_host = true\n",
        member(a.addr)
    );
    let p = Ringlb::start(&config, 1);
    get(p.addr, "/");
    assert_eq!(a.requests()[0].header("host"), Some("test.local"));
}

#[test]
fn absolute_form_is_routed_by_authority_and_sent_in_origin_form() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let config = format!(
        "[[balancer]]\nname = \"a\"\nmembers = [{}]\n[[balancer]]\nname = \"b\"\nmembers = [{}]\n\
[[route]]\npath = \"/\"\nbalancer = \"a\"\n[[route]]\nhost = \"app.example.org\"\npath = \"/\"\nbalancer = \"b\"\n",
        member(a.addr),
        member(b.addr)
    );
    let p = Ringlb::start(&config, 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET http://app.example.org/p?x=1 HTTP/1.1\r\nHost: app.example.org\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("x-backend"), Some("B"));
    let req = &b.requests()[0];
    assert_eq!(req.path, "/p?x=1");
    assert_eq!(req.header("x-forwarded-host"), Some("app.example.org"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let a = Backend::start(|r| Reply::Text(format!("echo {} {}", r.path, r.body.len())));
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nPOST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloPOST /3 HTTP/1.1\r\nHost: t\r\n\
Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let bodies: Vec<String> = (0..4).map(|_| c.read_response().unwrap().text()).collect();
    assert_eq!(bodies, ["echo /1 0", "echo /2 5", "echo /3 3", "echo /4 0"]);
}

#[test]
fn http10_and_connection_close() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Client::connect(p.addr);
    c.send(b"GET /old HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "A /old"));
    assert!(c.is_closed());
    // HTTP/1.0 with keep-alive: kept.
    let mut c = Client::connect(p.addr);
    c.send(b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        c.read_response().unwrap().header("connection"),
        Some("keep-alive")
    );
    c.send(b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "A /2");
    // HTTP/1.1 Connection: close.
    let mut c = Client::connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(
        c.read_response().unwrap().header("connection"),
        Some("close")
    );
    assert!(c.is_closed());
}

#[test]
fn head_204_304_have_no_body() {
    let a = Backend::start(|r| match r.path.as_str() {
        "/204" => Reply::Full {
            status: 204,
            headers: vec![],
            body: vec![],
            chunked: false,
        },
        "/304" => Reply::Full {
            status: 304,
            headers: vec![],
            body: vec![],
            chunked: false,
        },
        _ => Reply::Text("twelve bytes".into()),
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to(true).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("12")));
    for path in ["/204", "/304"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status.to_string(), path[1..]);
    }
    // The connection is still in step: no stray body bytes were sent.
    c.send(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().text(), "twelve bytes");
}

#[test]
fn chunked_and_close_delimited_responses() {
    let a = Backend::start(|r| match r.path.as_str() {
        "/chunked" => Reply::Full {
            status: 200,
            headers: vec![],
            body: pattern(5000),
            chunked: true,
        },
        _ => Reply::RawClose(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()),
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, pattern(5000));
    // An HTTP/1.0 client gets the chunked body decoded, delimited by close.
    let mut c10 = Client::connect(p.addr);
    c10.send(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c10.read_response().unwrap();
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, pattern(5000));
    // Close-delimited: framed as chunked for an HTTP/1.1 client, whose connection stays open.
    c.send(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(
        (
            r.text().as_str(),
            r.header("transfer-encoding"),
            r.header("connection")
        ),
        ("until close", Some("chunked"), None)
    );
    c.send(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().body, pattern(5000));
    // Passed through as it is to an HTTP/1.0 client, then its connection is closed.
    let mut c10 = Client::connect(p.addr);
    c10.send(b"GET /close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let all = c10.read_until_close().unwrap();
    assert!(
        all.ends_with(b"\r\nConnection: close\r\n\r\nuntil close"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let a = Backend::start(|r| Reply::Text(format!("got {}", r.body.len())));
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.set_timeout(Duration::from_secs(1));
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response().expect("100 Continue within a second");
    assert_eq!(interim.status, 100);
    c.send(b"data");
    c.set_timeout(Duration::from_secs(10));
    assert_eq!(c.read_response().unwrap().text(), "got 4");
    assert_eq!(a.requests()[0].header("expect"), None);
}

#[test]
fn interim_103_is_relayed() {
    let a = Backend::start(|_| {
        Reply::Raw(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let first = c.read_response().unwrap();
    assert_eq!(
        (first.status, first.header("link")),
        (103, Some("</s.css>"))
    );
    assert_eq!(c.read_response().unwrap().text(), "ok");
}

#[test]
fn member_connections_are_pooled_and_reused() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    for i in 0..10 {
        // A new client connection each time: the member connection is reused regardless.
        assert_eq!(get(p.addr, &format!("/{i}")).status, 200);
    }
    assert_eq!(a.count(), 10);
    assert_eq!(a.connections(), 1);
}

#[test]
fn expired_member_connections_close_a_few_at_a_time() {
    // Member connections that went idle together expire together. ringlb closes at most 16 a
    // core per 100 ms tick (`pool::CLOSES_PER_SWEEP`), so the member sees their ends spread over
    // several ticks, never more than a tick's worth close together, not one burst that would
    // stall the worker; none before its idle_ttl.
    let ends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = ends.clone();
    let m = RawMember::start(move |c| {
        while c.read_request().is_some() {
            // Slow enough that each client's request needs a member connection of its own.
            std::thread::sleep(Duration::from_millis(500));
            if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
                return;
            }
        }
        e.lock().unwrap().push(Instant::now());
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], "idle_ttl = \"1s\""), 1);
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let addr = p.addr;
            std::thread::spawn(move || (get(addr, &format!("/{i}")).status, Instant::now()))
        })
        .collect();
    let answered: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(answered.iter().all(|(status, _)| *status == 200));
    // A connection goes idle just before its client has the answer.
    let first_idle = answered.iter().map(|(_, at)| *at).min().unwrap();
    let opened = m.connections();
    // More than three ticks' worth: split over two once-a-second sweeps, as the code before
    // closed them, one part would still be more than 24.
    assert!(opened >= 49, "only {opened} member connections opened");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ends.lock().unwrap().len() < opened && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut ends = ends.lock().unwrap().clone();
    assert_eq!(ends.len(), opened, "every expired connection was closed");
    ends.sort();
    assert!(
        ends[0] >= first_idle + Duration::from_millis(900),
        "one closed {:?} after the first answer, before its idle_ttl",
        ends[0] - first_idle
    );
    // The most that ended within 30 ms of each other: one tick's 16 at most (ticks are 100 ms
    // apart), with room for the member's threads noticing late; all at once before.
    let bunched = (0..ends.len())
        .map(|i| ends[i..].partition_point(|t| *t < ends[i] + Duration::from_millis(30)))
        .max()
        .unwrap();
    assert!(bunched <= 24, "{bunched} of {opened} closed within 30 ms");
}

#[test]
fn idle_member_connections_expire_after_idle_ttl() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], "idle_ttl = \"200ms\""), 1);
    get(p.addr, "/1");
    get(p.addr, "/2");
    assert_eq!(a.connections(), 1);
    // Waiting past the TTL is the behaviour under test, not synchronisation.
    std::thread::sleep(Duration::from_millis(400));
    get(p.addr, "/3");
    assert_eq!(a.connections(), 2);
}

/// A member that answers with `Keep-Alive: <value>`, and whether ringlb reused its connection for
/// a request `after` the one before (it keeps its pool `idle_ttl = "60s"`).
fn reused_after(keep_alive: &'static str, after: Duration) -> bool {
    let a = Backend::start(move |r| Reply::Full {
        status: 200,
        headers: vec![("Keep-Alive".into(), keep_alive.into())],
        body: r.path.clone().into_bytes(),
        chunked: false,
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], "idle_ttl = \"60s\""), 1);
    let r = get(p.addr, "/1");
    assert_eq!(r.header("keep-alive"), None, "hop-by-hop: never relayed");
    // Waiting is the behaviour under test, not synchronisation.
    std::thread::sleep(after);
    assert_eq!(get(p.addr, "/2").text(), "/2");
    match a.connections() {
        1 => true,
        2 => false,
        n => panic!("{n} connections for two requests"),
    }
}

#[test]
fn a_member_s_keep_alive_timeout_ends_the_reuse_of_its_connections_before_it_does() {
    // timeout=1: ringlb keeps the connection half of it (500 ms), not its own 60 s.
    assert!(reused_after(
        "timeout=1, max=100",
        Duration::from_millis(100)
    ));
    assert!(!reused_after(
        "timeout=1, max=100",
        Duration::from_millis(800)
    ));
    // The same wait within a longer timeout, or with none readable, reuses it.
    assert!(reused_after(
        "timeout=5, max=100",
        Duration::from_millis(800)
    ));
    assert!(reused_after("max=100", Duration::from_millis(800)));
    assert!(reused_after("timeout=1s", Duration::from_millis(800)));
    // timeout=0 (a member's timeout under a second, rounded down): never pooled.
    assert!(!reused_after("timeout=0", Duration::from_millis(100)));
}
