//! Regressions for what the attacker review and the fuzz targets of the integrity work found after
//! the first fixes: a member status line ringlb could not relay (no reason, a status outside
//! 100–599), Tomcat's `;` path parameters hiding a dot segment, separators in paths, trailers that
//! frame or route, percent-encoded unreserved characters and `;` parameters in routing, underscore aliases of the forwarding headers, interim responses (rewritten by
//! the header policy; no retry once one was relayed) and the Host an AJP container sees.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::ajp_container::{end_response, send_headers, AjpContainer};
use crate::support::raw_member::RawMember;
use crate::support::*;

/// A client whose reads give up after `secs` seconds.
fn client(p: &Ringlb, secs: u64) -> Client {
    let c = Client::connect(p.addr);
    c.set_timeout(Duration::from_secs(secs));
    c
}

#[test]
fn odd_member_status_lines_are_relayed_or_refused_never_panic() {
    let m = RawMember::answering(|r| match r.path.as_str() {
        "/no-reason" => b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        "/latin1" => b"HTTP/1.1 200 Gr\xfc\xdfe\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        "/low" => b"HTTP/1.1 042 Low\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        _ => b"HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    for (path, status) in [
        ("/no-reason", 200),
        ("/latin1", 200),
        ("/low", 502),
        ("/high", 502),
    ] {
        let mut c = client(&p, 3);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("{path}: no response"));
        assert_eq!(r.status, status, "{path}");
    }
    assert!(
        !p.logs().iter().any(|l| l.contains("panicked")),
        "{:?}",
        p.logs()
    );
}

#[test]
fn path_parameters_cannot_hide_a_dot_segment_and_separators_are_refused() {
    let (pb, ad) = (Backend::named("P"), Backend::named("A"));
    let p = Ringlb::start(&public_and_admin(pb.addr, ad.addr), 1);
    let ask = |target: &str| get(p.addr, target);
    let r = ask("/public/..;/admin/x");
    assert_eq!((r.status, r.header("x-backend")), (200, Some("A")));
    assert_eq!(
        ad.requests().last().map(|r| r.path.clone()).as_deref(),
        Some("/admin/x")
    );
    for target in [
        "/public/..%2fadmin",
        "/public/..%5Cadmin",
        "/public/..\\admin",
        "/x%00.jsp",
    ] {
        assert_eq!(ask(target).status, 400, "{target}");
    }
    assert_eq!(pb.count(), 0, "a refused path reached the public member");
}

#[test]
fn trailers_that_frame_or_route_are_refused() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    for trailer in [
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Host: evil",
    ] {
        let mut c = client(&p, 3);
        c.send(
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n{trailer}\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response().expect("a response");
        assert_eq!(r.status, 400, "{trailer}");
        assert!(c.is_closed(), "{trailer}");
    }
    assert_eq!(a.count(), 0);
}

#[test]
fn underscore_aliases_of_forwarding_headers_never_reach_a_member() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = client(&p, 3);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\nX_Custom: kept\r\n\r\n");
    assert_eq!(c.read_response().expect("a response").status, 200);
    let req = a.requests().pop().expect("the request");
    assert_eq!(req.header("x_forwarded_for"), None);
    assert_eq!(req.header("x_custom"), Some("kept"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// Reads from `s` until `end` has been seen or `limit` passes.
fn read_until(s: &mut TcpStream, end: &[u8], limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline && !got.windows(end.len()).any(|w| w == end) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

#[test]
fn interim_responses_are_rewritten_and_end_all_retries() {
    // The first request on a connection gets a 103 (with hop-by-hop headers) and a 200; the second
    // (on the pooled connection) a 103, then the member closes.
    let m = RawMember::start(|c| {
        let mut first = true;
        while let Some(_req) = c.read_request() {
            let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n\r\n";
            if !c.write(hint) {
                return;
            }
            if !first {
                return;
            }
            first = false;
            if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
                return;
            }
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = String::from_utf8_lossy(&read_until(&mut s, b"\r\n\r\nok", Duration::from_secs(3)))
        .into_owned();
    let hint = got.split("\r\n\r\n").next().unwrap_or("");
    assert!(hint.starts_with("HTTP/1.1 103"), "{got:?}");
    assert!(hint.contains("Link: </s.css>"), "{got:?}");
    for dropped in ["X-Drop", "Keep-Alive", "Connection"] {
        assert!(
            !hint.contains(dropped),
            "{dropped} reached the client: {got:?}"
        );
    }
    assert!(got.ends_with("ok"), "{got:?}");
    s.write_all(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = String::from_utf8_lossy(&read_until(&mut s, b"\r\n\r\n", Duration::from_secs(3)))
        .into_owned();
    assert!(got.starts_with("HTTP/1.1 103"), "{got:?}");
    // The 103 reached the client: the broken response is not sent again to a fresh connection.
    std::thread::sleep(Duration::from_millis(300));
    let twos = m.requests().iter().filter(|r| r.path == "/two").count();
    assert_eq!(
        twos, 1,
        "the request was sent again after a response byte reached the client"
    );
}

#[test]
fn an_ajp_container_sees_the_host_ringlb_routed_on() {
    let ajp = AjpContainer::start(|_| {
        let mut out = send_headers(200, b"OK", &[]);
        out.extend_from_slice(&end_response(true));
        out
    });
    let p = Ringlb::start(&simple_config(&[ajp.member()], ""), 1);
    let mut c = client(&p, 3);
    c.send(b"GET http://public.example/x HTTP/1.1\r\nHost: intranet.example\r\n\r\n");
    assert_eq!(c.read_response().expect("a response").status, 200);
    let fwd = ajp.forwards().pop().expect("a FORWARD_REQUEST");
    assert_eq!(
        fwd.coded(0xA00B),
        [&b"public.example"[..]],
        "the Host header"
    );
}

#[test]
fn no_100_continue_after_an_ajp_response_has_started() {
    // The container answers at once, then asks for the body: the client, which sent
    // `Expect: 100-continue`, must not get a `100 Continue` inside the response.
    let ajp = AjpContainer::start(|_| {
        let mut out = send_headers(
            200,
            b"OK",
            &[(crate::support::ajp_container::RespName::Coded(0xA003), b"2")],
        );
        out.extend_from_slice(b"AB\x00\x03\x06\x1f\xfa"); // GET_BODY_CHUNK
        out
    });
    let p = Ringlb::start(&simple_config(&[ajp.member()], ""), 1);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let got = read_until(&mut s, b"100 Continue", Duration::from_secs(1));
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(
        !got.contains("100 Continue"),
        "a 100 inside the response: {got:?}"
    );
}
