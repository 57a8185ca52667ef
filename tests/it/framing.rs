//! Strict framing (RFC 9112 as a proxy must apply it): malformed requests get the right 4xx, are
//! closed, and never reach a member; malformed responses give 502 or a truncated close.

use crate::support::*;

fn refused(p: &Ringlb, raw: &[u8]) -> u16 {
    let mut c = Client::connect(p.addr);
    c.send(raw);
    let r = c
        .read_response()
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "{:?}",
        String::from_utf8_lossy(raw)
    );
    assert!(
        c.is_closed(),
        "connection left open after {:?}",
        String::from_utf8_lossy(raw)
    );
    r.status
}

#[test]
fn malformed_requests_get_400_and_never_reach_a_member() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Bare: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Nul: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad{Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
        b"GET /\0 HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for raw in cases {
        assert_eq!(refused(&p, raw), 400, "{:?}", String::from_utf8_lossy(raw));
    }
    // A transfer coding ringlb does not implement is 501, not 400.
    let unimplemented: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    ];
    for raw in unimplemented {
        assert_eq!(refused(&p, raw), 501, "{:?}", String::from_utf8_lossy(raw));
    }
    assert_eq!(a.count(), 0, "a malformed request reached the member");
}

#[test]
fn oversized_heads_get_431_and_414() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nmax_request_header_bytes = 1024\nmax_headers = 10\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2000));
    assert_eq!(refused(&p, long_uri.as_bytes()), 414);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "h".repeat(2000)
    );
    assert_eq!(refused(&p, big_header.as_bytes()), 431);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-N: 1\r\n".repeat(20)
    );
    assert_eq!(refused(&p, many.as_bytes()), 431);
    assert_eq!(a.count(), 0);
}

#[test]
fn connect_method_is_refused() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    assert_eq!(
        refused(&p, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        405
    );
    assert_eq!(a.count(), 0);
}

#[test]
fn bad_chunk_in_a_small_body_is_refused_before_anything_is_forwarded() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.try_send(b"5\r\nworldXX0\r\n\r\n");
    let r = c.read_response().expect("a 400");
    assert_eq!(r.status, 400);
    assert!(c.is_closed());
    assert_eq!(
        a.connections(),
        0,
        "nothing of the request reached the member"
    );
}

#[test]
fn bad_chunk_mid_stream_aborts_both_connections() {
    let a = Backend::named("A");
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    let mut c = Client::connect(p.addr);
    // Past 64 KiB the body is streamed: the head is on its way to the member before the bad part.
    let big = 70 * 1024;
    c.send(
        format!("POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{big:x}\r\n")
            .as_bytes(),
    );
    c.send(&vec![b'x'; big]);
    c.send(b"\r\n");
    assert!(wait_until(|| a.connections() == 1));
    c.try_send(b"5\r\nworldXX0\r\n\r\n");
    let r = c.read_response().expect("a 400");
    assert_eq!(r.status, 400);
    assert!(c.is_closed());
    // The member never saw a complete request, and its connection was not reused.
    assert_eq!(a.count(), 0);
    assert_eq!(get(p.addr, "/next").status, 200);
    assert_eq!(a.connections(), 2);
}

#[test]
fn malformed_response_heads_give_502_and_close() {
    let a = Backend::start(|r| match r.path.as_str() {
        "/cl-te" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
        ),
        "/two-cl" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        ),
        "/status" => Reply::Raw(b"HTTP/1.1 2OO OK\r\n\r\n".to_vec()),
        _ => Reply::Raw(b"garbage\r\n\r\n".to_vec()),
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    for path in ["/cl-te", "/two-cl", "/status", "/garbage"] {
        let mut c = Client::connect(p.addr);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed());
    }
    // None of those member connections was reused.
    assert_eq!(a.connections(), 4);
}

#[test]
fn bad_chunk_in_response_truncates_and_closes() {
    let a = Backend::start(|r| match r.path.as_str() {
        "/first" => {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec())
        }
        "/later" => Reply::RawParts(
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
                b"zz\r\n".to_vec(),
            ],
            std::time::Duration::from_millis(100),
        ),
        _ => Reply::Text("fine".into()),
    });
    let p = Ringlb::start(&simple_config(&[member(a.addr)], ""), 1);
    // A bad chunk before anything reached the client: 502 and close.
    let mut c = Client::connect(p.addr);
    c.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.header("connection")), (502, Some("close")));
    assert!(c.is_closed());
    // A bad chunk after the head and a first chunk went out: the body is cut short, then close.
    let mut c = Client::connect(p.addr);
    c.send(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.read_response().is_none(), "no terminating chunk");
    assert_eq!(get(p.addr, "/again").text(), "fine");
    assert_eq!(
        a.connections(),
        3,
        "no member connection was reused after an error"
    );
    // For an HTTP/1.0 client (the body decoded, ended by the close): the 502 closes plainly, whole;
    // the body cut after "hello" ends with a reset.
    let mut c = Client::connect(p.addr);
    c.set_timeout(std::time::Duration::from_secs(5));
    c.send(b"GET /first HTTP/1.0\r\n\r\n");
    let all = c.read_until_close().expect("the 502 closes plainly");
    assert!(all.starts_with(b"HTTP/1.1 502 "), "{all:?}");
    let mut c = Client::connect(p.addr);
    c.set_timeout(std::time::Duration::from_secs(5));
    c.send(b"GET /later HTTP/1.0\r\n\r\n");
    let end = c.read_until_close().map_err(|e| e.kind());
    assert_eq!(end.err(), Some(std::io::ErrorKind::ConnectionReset));
}
