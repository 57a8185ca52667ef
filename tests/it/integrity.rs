//! Message integrity between client, ringlb and member: framing that a `Connection` header cannot
//! remove, strict chunked coding (size lines, extensions, trailers) and Transfer-Encoding lists,
//! pooled connections that must not be reused or replayed on, AJP responses checked before they
//! reach a client, routing on the normalised path, heads trickled faster than the timers tick
//! (request, PROXY header, TLS handshake, AJP response), the admin listener's own limits, and
//! access-log lines for refused requests. Raw mock members (support/raw_member.rs,
//! support/ajp_container.rs) show exactly which bytes were forwarded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ajp_container::{
    body_chunk, end_response, read_packet, send_headers, AjpContainer, RespName,
};
use crate::support::proxy::TempDir;
use crate::support::raw_member::{read_until_close, tiny_window_client, Opts, RawMember, RawReq};
use crate::support::*;

/// Polls `cond` every 10 ms for at most `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client whose reads give up after `secs` seconds.
fn client(p: &Ringlb, secs: u64) -> Client {
    let c = Client::connect(p.addr);
    c.set_timeout(Duration::from_secs(secs));
    c
}

/// Sends `raw` on a fresh connection; `None` when ringlb answers `status` with
/// `Connection: close` and then closes, else what happened instead.
fn refusal(p: &Ringlb, raw: &[u8], status: u16) -> Option<String> {
    let what = String::from_utf8_lossy(raw);
    let mut c = client(p, 3);
    c.try_send(raw);
    let Some(r) = c.read_response() else {
        return Some(format!("{what:?}: no response"));
    };
    if r.status != status {
        return Some(format!("{what:?}: got {} {:?}", r.status, r.text()));
    }
    if r.header("connection") != Some("close") {
        return Some(format!("{what:?}: no Connection: close"));
    }
    if !c.is_closed() {
        return Some(format!("{what:?}: connection left open"));
    }
    None
}

fn assert_refused(p: &Ringlb, raw: &[u8], status: u16) {
    if let Some(wrong) = refusal(p, raw, status) {
        panic!("expected {status}: {wrong}");
    }
}

/// Sends each request and asserts, for all of them, that ringlb refuses it with its status.
fn assert_all_refused(p: &Ringlb, cases: &[(Vec<u8>, u16)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(raw, status)| refusal(p, raw, *status).map(|w| format!("want {status}: {w}")))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A raw member that answers every request with its path as the body.
fn echo_path_member() -> RawMember {
    RawMember::answering(|r| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
            r.path.len(),
            r.path
        )
        .into_bytes()
    })
}

/// A raw member that answers every request with the body it received.
fn echo_body_member() -> RawMember {
    RawMember::answering(|r| {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            r.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&r.body);
        out
    })
}

fn describe(reqs: &[RawReq]) -> String {
    reqs.iter()
        .map(|r| match &r.garbage {
            Some(g) => format!("[conn {} garbage {:?}]", r.conn, String::from_utf8_lossy(g)),
            None => format!(
                "[conn {} {:?} body {:?}]",
                r.conn,
                r.head_text(),
                String::from_utf8_lossy(&r.body)
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- 1. A Connection header cannot remove framing headers ----

/// Sends `first` (a POST of "hello") and a pipelined `GET /second` on one connection; both must be
/// answered, and the member must see exactly two requests, the first with its framing header
/// (`framing_header: framing_value`) and its body.
fn two_requests_keep_their_framing(first: &[u8], framing_header: &str, framing_value: &str) {
    let m = echo_path_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut c = client(&p, 3);
    let mut raw = first.to_vec();
    raw.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&raw);
    let r1 = c.read_response().expect("a response to the first request");
    let r2 = c.read_response().expect("a response to the second request");
    assert_eq!((r1.status, r1.text().as_str()), (200, "/first"));
    assert_eq!((r2.status, r2.text().as_str()), (200, "/second"));
    let reqs = m.requests();
    assert_eq!(
        reqs.len(),
        2,
        "the member must see two requests:\n{}",
        describe(&reqs)
    );
    let (a, b) = (&reqs[0], &reqs[1]);
    assert!(
        a.garbage.is_none() && b.garbage.is_none(),
        "{}",
        describe(&reqs)
    );
    assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/first"));
    assert_eq!(
        a.header(framing_header).map(str::to_ascii_lowercase),
        Some(framing_value.to_string()),
        "the member needs the framing header: {}",
        a.head_text()
    );
    assert_eq!(a.body, b"hello", "{}", describe(&reqs));
    assert_eq!((b.method.as_str(), b.path.as_str()), ("GET", "/second"));
}

#[test]
fn connection_naming_transfer_encoding_keeps_request_framing() {
    two_requests_keep_their_framing(
        b"POST /first HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "transfer-encoding",
        "chunked",
    );
}

#[test]
fn connection_naming_content_length_keeps_request_framing() {
    two_requests_keep_their_framing(
        b"POST /first HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
        "content-length",
        "5",
    );
}

#[test]
fn connection_naming_content_length_keeps_response_framing() {
    let m = RawMember::answering(|r| {
        if r.path == "/first" {
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond".to_vec()
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut c = client(&p, 1);
    c.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(
        r.header("content-length"),
        Some("5"),
        "the client needs the response's framing: {:?}",
        r.headers
    );
    assert_eq!(r.text(), "hello");
    c.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c
        .read_response()
        .expect("a second response on the connection");
    assert_eq!((r.status, r.text().as_str()), (200, "second"));
}

fn ajp_ok() -> Vec<u8> {
    [
        send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"2")]),
        body_chunk(b"ok"),
        end_response(true),
    ]
    .concat()
}

#[test]
fn ajp_forward_request_keeps_content_length_named_in_connection() {
    let m = AjpContainer::start(|_| ajp_ok());
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let mut c = client(&p, 3);
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response().expect("a response");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let f = m.forwards();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].method, 4, "POST");
    assert_eq!(
        f[0].coded(0xA008),
        vec![b"5".as_slice()],
        "FORWARD_REQUEST must carry content-length (0xA008): {:?}",
        f[0].headers
    );
}

// ---- 2 and 11. Strict chunked coding: size lines, extensions, trailers ----

fn chunked_post(body: &[u8]) -> Vec<u8> {
    let mut raw = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn malformed_chunk_size_lines_get_400_and_never_reach_a_member() {
    let m = echo_body_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    // Each is a complete body if the bytes after the hex digits were taken for an extension.
    let bodies: &[&[u8]] = &[
        b"1g\r\nX\r\n0\r\n\r\n",
        b"0x5\r\n\r\n",
        b"5 6\r\nhello\r\n0\r\n\r\n",
        b"0 anything\r\n\r\n",
        b"5;\x01\r\nhello\r\n0\r\n\r\n",
    ];
    let cases: Vec<(Vec<u8>, u16)> = bodies.iter().map(|b| (chunked_post(b), 400)).collect();
    assert_all_refused(&p, &cases);
    assert_eq!(
        (m.connections(), m.received_len()),
        (0, 0),
        "a malformed body reached the member:\n{}",
        describe(&m.requests())
    );
}

#[test]
fn bad_trailers_and_extensions_get_400_and_never_reach_a_member() {
    let m = echo_body_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let bodies: &[&[u8]] = &[
        b"5\r\nhello\r\n0\r\nPOST / HTTP/1.1\r\n\r\n",
        b"5\r\nhello\r\n0\r\nGET /x HTTP/1.1\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\r\n\tfolded\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n",
        b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
        b"5;a=\x7f\r\nhello\r\n0\r\n\r\n",
    ];
    let cases: Vec<(Vec<u8>, u16)> = bodies.iter().map(|b| (chunked_post(b), 400)).collect();
    assert_all_refused(&p, &cases);
    assert_eq!(
        m.received_len(),
        0,
        "a malformed body reached the member:\n{}",
        describe(&m.requests())
    );
}

/// A chunked body, the chunk-size line the member must see, and the trailer lines it must see.
type ChunkCase = (&'static [u8], &'static [u8], &'static [&'static [u8]]);

#[test]
fn valid_chunk_extensions_and_trailers_go_through_as_they_are() {
    let m = echo_body_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let cases: &[ChunkCase] = &[
        (b"5;name=value\r\nhello\r\n0\r\n\r\n", b"5;name=value", &[]),
        (
            b"5 ; name=\"quoted\"\r\nhello\r\n0\r\n\r\n",
            b"5 ; name=\"quoted\"",
            &[],
        ),
        (b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", b"5", &[b"X-T: 1"]),
        (
            b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            b"5;a=b",
            &[b"X-T: 1"],
        ),
    ];
    for (i, (body, size_line, trailers)) in cases.iter().enumerate() {
        let what = String::from_utf8_lossy(body);
        let mut c = client(&p, 3);
        c.send(&chunked_post(body));
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("{what:?}: no response"));
        assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{what:?}");
        let reqs = m.requests();
        assert_eq!(reqs.len(), i + 1, "{what:?}:\n{}", describe(&reqs));
        let seen = &reqs[i];
        assert_eq!(seen.body, b"hello", "{what:?}");
        assert_eq!(
            seen.chunk_lines.first().map(Vec::as_slice),
            Some(*size_line),
            "{what:?}: the chunk-size line is forwarded as it is"
        );
        assert_eq!(
            seen.trailers,
            trailers.iter().map(|t| t.to_vec()).collect::<Vec<_>>(),
            "{what:?}: trailers are forwarded as they are"
        );
    }
}

// ---- 10. Transfer-Encoding lists ----

#[test]
fn transfer_encoding_lists_are_refused_with_400_or_501() {
    let m = echo_body_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let cases: &[(&str, u16)] = &[
        ("Transfer-Encoding: ,chunked", 400),
        ("Transfer-Encoding: chunked,", 400),
        ("Transfer-Encoding: chunked, chunked", 400),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding:", 400),
        ("Transfer-Encoding: identity, chunked", 501),
        ("Transfer-Encoding: gzip, chunked", 501),
        ("Transfer-Encoding: gzip", 501),
    ];
    let cases: Vec<(Vec<u8>, u16)> = cases
        .iter()
        .map(|(te, status)| {
            let raw =
                format!("POST /up HTTP/1.1\r\nHost: t\r\n{te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            (raw.into_bytes(), *status)
        })
        .collect();
    assert_all_refused(&p, &cases);
    assert_eq!(
        m.received_len(),
        0,
        "a refused request reached the member:\n{}",
        describe(&m.requests())
    );
}

#[test]
fn transfer_encoding_in_other_case_reaches_the_member_as_chunked() {
    let m = echo_body_member();
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    let mut c = client(&p, 3);
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1, "{}", describe(&reqs));
    assert_eq!(
        reqs[0].count("transfer-encoding"),
        1,
        "{}",
        reqs[0].head_text()
    );
    assert!(
        reqs[0]
            .head_text()
            .contains("\r\nTransfer-Encoding: chunked\r\n"),
        "the member must receive exactly `Transfer-Encoding: chunked`: {:?}",
        reqs[0].head_text()
    );
}

// ---- 3. A pooled connection with bytes waiting is not reused ----

#[test]
fn pooled_connection_with_late_bytes_is_not_reused() {
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "HEAD answered with a body",
            "HEAD",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            "hello",
        ),
        (
            "204 declaring a body",
            "GET",
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            "hello",
        ),
        (
            "204 followed by body bytes",
            "GET",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "hello",
        ),
        (
            "an extra whole response",
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, method, answer, late) in cases {
        let release = Arc::new(AtomicBool::new(false));
        let gate = release.clone();
        let m = RawMember::start(move |c| {
            while let Some(req) = c.read_request() {
                if req.path == "/first" {
                    if !c.write(answer.as_bytes()) {
                        return;
                    }
                    // The late bytes go out once the client has the response.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while !gate.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let sent = c.write(late.as_bytes());
                    c.mark();
                    if !sent {
                        return;
                    }
                } else if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal") {
                    return;
                }
            }
        });
        let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
        let mut c = client(&p, 3);
        c.send(format!("{method} /first HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c
            .read_response_to(method == "HEAD")
            .unwrap_or_else(|| panic!("{what}: no first response"));
        assert!(r.status == 200 || r.status == 204, "{what}: {}", r.status);
        release.store(true, Ordering::SeqCst);
        assert!(
            wait_for(Duration::from_secs(5), || m.marks() == 1),
            "{what}"
        );
        let mut c = client(&p, 3);
        c.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        let got = c.read_response().map(|r| (r.status, r.text()));
        if got != Some((200, "real".to_string())) {
            wrong.push(format!("{what}: got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the next request must get the member's answer to it (200 \"real\"), not the late bytes:\n{}",
        wrong.join("\n")
    );
}

// ---- 4 and 5. No replay after a write timeout; no panic on a blocked interim relay ----

#[test]
fn post_whose_write_times_out_on_a_reused_connection_is_not_replayed() {
    // Each member connection answers its first request; on the second (a reused connection) it
    // reads the head and then stops reading, with the smallest window the kernel allows.
    let m = RawMember::start_with(Opts::tiny_window(), |c| {
        if c.read_request().is_none() || !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        {
            return;
        }
        if let Some(head) = c.read_head() {
            c.record(&head);
            c.stall(Duration::from_secs(10));
        }
    });
    let p = Ringlb::start(
        &simple_config(&[member(m.addr)], "response_timeout = \"1s\""),
        1,
    );
    let mut warm = client(&p, 3);
    warm.send(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(warm.read_response().expect("a response").status, 200);
    let body = pattern(64 * 1024);
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut c = client(&p, 5);
    c.send(&raw);
    let r = c.read_response();
    let posts: Vec<RawReq> = m
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(
        matches!(r.as_ref().map(|r| r.status), Some(502 | 504)),
        "the client must get 502 or 504, got {:?}",
        r.map(|r| (r.status, r.text()))
    );
    assert!(
        posts.first().is_some_and(|r| r.conn == 0),
        "the POST went out on the reused connection: {}",
        describe(&posts)
    );
    assert_eq!(
        posts.len(),
        1,
        "the POST must never be sent again:\n{}",
        describe(&posts)
    );
}

#[test]
fn interim_responses_to_a_client_that_does_not_read_do_not_panic() {
    let m = RawMember::start(|c| {
        while let Some(req) = c.read_request() {
            if req.path != "/hints" {
                if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine") {
                    return;
                }
                continue;
            }
            let hint = format!(
                "HTTP/1.1 103 Early Hints\r\nLink: <{}>\r\n\r\n",
                "l".repeat(60_000)
            );
            let _ = c.s.set_write_timeout(Some(Duration::from_secs(2)));
            for _ in 0..100 {
                if !c.write(hint.as_bytes()) {
                    break;
                }
            }
            c.wait_peer_close(Duration::from_secs(10));
            return;
        }
    });
    let p = Ringlb::start(
        &format!(
            "[limits]\nbody_timeout = \"1s\"\n{}",
            simple_config(&[member(m.addr)], "response_timeout = \"1s\"")
        ),
        1,
    );
    let mut s = tiny_window_client(p.addr);
    s.write_all(b"GET /hints HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The client never reads. ringlb gives up on the exchange (and closes the member connection)
    // once its write to the client has been blocked for its timeout.
    wait_for(Duration::from_secs(5), || m.peer_closed() == 1);
    let mut fresh = client(&p, 3);
    fresh.send(b"GET /fresh HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = fresh.read_response();
    // Give the log reader a moment to catch up with what ringlb printed.
    wait_for(Duration::from_millis(300), || {
        p.logs().iter().any(|l| l.contains("panicked"))
    });
    let panics: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "ringlb panicked: {panics:?}");
    assert_eq!(
        r.map(|r| (r.status, r.text())),
        Some((200, "fine".to_string())),
        "ringlb answers a fresh client afterwards"
    );
    drop(s);
}

// ---- 6. AJP responses are checked before they reach a client ----

/// A container that answers `/case/<i>` with `cases[i]`.
fn ajp_cases(cases: Vec<Vec<u8>>) -> AjpContainer {
    AjpContainer::start(move |f| {
        let uri = String::from_utf8_lossy(&f.uri).into_owned();
        let i: usize = uri
            .strip_prefix("/case/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        cases[i].clone()
    })
}

/// Sends `GET /case/<i>` on a fresh raw connection; returns what came back and whether ringlb
/// closed the connection (within two seconds).
fn ajp_case(p: &Ringlb, i: usize) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(format!("GET /case/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_until_close(&mut s, Duration::from_secs(2))
}

/// Sends `GET /case/<i>`; `None` when ringlb answers 502 and closes, else what it did instead
/// (read without waiting for a close that will not come).
fn ajp_case_is_502(p: &Ringlb, i: usize) -> Option<String> {
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(format!("GET /case/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut head_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = match head_at {
            // A wrong answer: take what follows its head for a moment, then stop.
            Some(t) => t + Duration::from_millis(200),
            None => deadline,
        };
        if now >= until {
            let text = String::from_utf8_lossy(&got).into_owned();
            return Some(if got.starts_with(b"HTTP/1.1 502 ") {
                format!("502 but the connection was left open: {text:?}")
            } else {
                format!("got {text:?}")
            });
        }
        s.set_read_timeout(Some(until - now)).unwrap();
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if head_at.is_none()
            && got.windows(4).any(|w| w == b"\r\n\r\n")
            && !got.starts_with(b"HTTP/1.1 502 ")
        {
            head_at = Some(Instant::now());
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    if !got.starts_with(b"HTTP/1.1 502 ") {
        return Some(format!("got {text:?} and a close"));
    }
    if text.contains("X-Injected") {
        return Some(format!("the bad header reached the client: {text:?}"));
    }
    None
}

#[test]
fn ajp_cr_or_lf_in_reason_or_header_value_is_502() {
    let named = |v: &'static [u8]| {
        send_headers(
            200,
            b"OK",
            &[
                (RespName::Named(b"X-A"), v),
                (RespName::Coded(0xA003), b"2"),
            ],
        )
    };
    let reason = |r: &'static [u8]| send_headers(200, r, &[(RespName::Coded(0xA003), b"2")]);
    let heads = [
        ("CRLF in the reason", reason(b"OK\r\nX-Injected: 1")),
        ("LF in the reason", reason(b"OK\nX-Injected: 1")),
        ("CR in the reason", reason(b"OK\rX-Injected: 1")),
        ("CRLF in a header value", named(b"1\r\nX-Injected: 1")),
        ("LF in a header value", named(b"1\nX-Injected: 1")),
        ("CR in a header value", named(b"1\rX-Injected: 1")),
        (
            "LF in a coded header value",
            send_headers(
                200,
                b"OK",
                &[
                    (RespName::Coded(0xA001), b"text/plain\nX-Injected: 1"),
                    (RespName::Coded(0xA003), b"2"),
                ],
            ),
        ),
    ];
    let m = ajp_cases(
        heads
            .iter()
            .map(|(_, h)| [h.clone(), body_chunk(b"ok"), end_response(true)].concat())
            .collect(),
    );
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let wrong: Vec<String> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, (what, _))| ajp_case_is_502(&p, i).map(|w| format!("{what}: {w}")))
        .collect();
    assert!(
        wrong.is_empty(),
        "the client must get 502 and a close, and nothing of the bad header:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn ajp_status_out_of_range_or_interim_is_502() {
    let statuses = [0u16, 99, 1000, 100, 103, 199];
    let m = ajp_cases(
        statuses
            .iter()
            .map(|&s| {
                [
                    send_headers(s, b"Odd", &[(RespName::Coded(0xA003), b"2")]),
                    body_chunk(b"ok"),
                    end_response(true),
                ]
                .concat()
            })
            .collect(),
    );
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let wrong: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, status)| ajp_case_is_502(&p, i).map(|w| format!("status {status}: {w}")))
        .collect();
    assert!(
        wrong.is_empty(),
        "the client must get 502 and a close:\n{}",
        wrong.join("\n")
    );
}

/// Splits a raw response into head and body bytes.
fn head_and_body(raw: &[u8]) -> (u16, Vec<u8>) {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(n)) => (r.code.unwrap_or(0), raw[n..].to_vec()),
        _ => panic!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

#[test]
fn ajp_body_longer_than_content_length_is_cut_and_closed() {
    let m = ajp_cases(vec![[
        send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"5")]),
        body_chunk(b"0123456789"),
        end_response(true),
    ]
    .concat()]);
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let (got, closed) = ajp_case(&p, 0);
    let (status, body) = head_and_body(&got);
    assert_eq!(status, 200);
    assert!(
        body.len() <= 5,
        "the client got more than the declared 5 body bytes: {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        closed,
        "the connection must close (no second response can be smuggled)"
    );
}

#[test]
fn an_ajp_cpong_inside_a_body_cuts_it_without_a_502_in_the_middle() {
    // A CPONG (or any protocol error) after SEND_HEADERS: the head and some body went out, so a
    // 502 would land inside the body. The answer is cut: no last chunk for HTTP/1.1, a reset for
    // HTTP/1.0 (whose body ends at the close).
    let cpong = vec![b'A', b'B', 0, 1, 9];
    let m = ajp_cases(vec![[
        send_headers(200, b"OK", &[]),
        body_chunk(b"01234"),
        cpong,
        body_chunk(b"56789"),
        end_response(true),
    ]
    .concat()]);
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let (got, closed) = ajp_case(&p, 0);
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "{text}");
    assert!(!text.contains("502") && !text.contains("56789"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "no last chunk: {text}");
    let mut c = Client::connect(p.addr);
    c.set_timeout(Duration::from_secs(5));
    c.send(b"GET /case/0 HTTP/1.0\r\n\r\n");
    let end = c.read_until_close();
    assert_eq!(
        end.as_ref().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "{:?}",
        end.map(|a| String::from_utf8_lossy(&a).into_owned())
    );
}

#[test]
fn ajp_body_shorter_than_content_length_closes_the_client() {
    let m = ajp_cases(vec![[
        send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"10")]),
        body_chunk(b"01234"),
        end_response(true),
    ]
    .concat()]);
    let p = Ringlb::start(&simple_config(&[m.member()], ""), 1);
    let (got, closed) = ajp_case(&p, 0);
    let (status, body) = head_and_body(&got);
    assert_eq!((status, body.as_slice()), (200, b"01234".as_slice()));
    assert!(
        closed,
        "a response cut short must close the client connection, not keep it alive as if complete"
    );
}

// ---- 7. Routing on the normalised path ----

#[test]
fn routing_uses_the_normalised_path() {
    let (pb, ad) = (Backend::named("P"), Backend::named("A"));
    let p = Ringlb::start(&public_and_admin(pb.addr, ad.addr), 1);
    let ask = |target: &str| get(p.addr, target);
    let cases = [
        ("/public/../admin", "A", "/admin"),
        ("/public/%2e%2e/admin", "A", "/admin"),
        ("/public/%2E%2E/admin", "A", "/admin"),
        ("/public/./../admin", "A", "/admin"),
        ("//admin", "A", "/admin"),
        ("/public/x/../y?q=/../z", "P", "/public/y?q=/../z"),
        ("/public/a", "P", "/public/a"),
    ];
    let mut wrong = Vec::new();
    for (target, by, seen) in cases {
        let r = ask(target);
        let served_by = r.header("x-backend").map(str::to_string);
        if (r.status, served_by.as_deref()) != (200, Some(by)) {
            wrong.push(format!(
                "{target} must be served by {by}, got {} from {served_by:?}: {:?}",
                r.status,
                r.text()
            ));
            continue;
        }
        let last = if by == "A" {
            ad.requests().last().cloned()
        } else {
            pb.requests().last().cloned()
        };
        let path = last.map(|r| r.path);
        if path.as_deref() != Some(seen) {
            wrong.push(format!("{target}: {by} must see {seen}, saw {path:?}"));
        }
    }
    for target in ["/../admin", "/public/../../admin"] {
        let before = (pb.count(), ad.count());
        let r = ask(target);
        if r.status != 400 || (pb.count(), ad.count()) != before {
            wrong.push(format!(
                "{target} escapes the root: must get 400 and reach nobody, got {} {:?}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---- 8. Trickled heads (each must end at its one deadline), and the admin listener's limits ----

/// Sends `head` to `addr` one byte every `every` (for at most 4 s) and returns when the server
/// cut the connection off (answered or closed it), and what it answered.
fn trickle(addr: std::net::SocketAddr, head: &[u8], every: Duration) -> (Option<Duration>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    // The read timeout paces the trickle.
    s.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for &byte in head {
        if started.elapsed() > Duration::from_secs(4) {
            return (None, String::new());
        }
        if s.write_all(&[byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let cut = started.elapsed();
    (Some(cut), String::from_utf8_lossy(&answer).into_owned())
}

/// A head that never ends: 400 bytes of one header's value.
fn endless_head(path: &str) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Slow: ").into_bytes();
    head.extend_from_slice(&[b'a'; 400]);
    head
}

#[test]
fn admin_listener_cuts_off_a_trickled_head_within_header_timeout() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &format!(
                "[limits]\nheader_timeout = \"1s\"\n{}",
                simple_config(&[member(a.addr)], "")
            ),
            "",
        ),
        1,
    );
    // A byte every 30 ms: each read is quick (under the deadline wheel's tick), the head is not.
    let (cut, answer) = trickle(
        p.admin_addr(),
        &endless_head("/status.json"),
        Duration::from_millis(30),
    );
    let cut = cut.expect("the admin listener kept a trickling client for 4 s");
    assert!(
        cut < Duration::from_secs(2),
        "cut off after {cut:?}, not within header_timeout + 1 s"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}

#[test]
fn a_proxy_listener_cuts_off_a_trickled_head_at_header_timeout() {
    // Each read gets what is left of header_timeout; once nothing is left the head has timed
    // out, however quickly its bytes keep coming (a read with a zero limit would still wait two
    // ticks of the deadline wheel, longer than this trickle's pace).
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nheader_timeout = \"300ms\"\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let (cut, answer) = trickle(p.addr, &endless_head("/"), Duration::from_millis(30));
    let cut = cut.expect("ringlb kept a trickling client for 4 s");
    assert!(cut < Duration::from_secs(2), "cut off after {cut:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(a.count(), 0);
}

#[test]
fn a_control_byte_in_a_trickled_head_is_refused_at_once_not_at_a_line_end() {
    // A NUL (or another control byte, or DEL) can be part of no head: the read that brings it is
    // parsed, whatever else is pending.
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "[limits]\nheader_timeout = \"10s\"\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    // Each head's line goes on for 100 bytes (3 s at this pace) after its control byte.
    let tail = [b'a'; 100];
    for head in [
        [&b"G\x00ET"[..], &tail, b" / HTTP/1.1\r\nHost: t\r\n\r\n"].concat(),
        [
            &b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: a\x01"[..],
            &tail,
            b"\r\n\r\n",
        ]
        .concat(),
        [&b"GET /\x7f"[..], &tail, b" HTTP/1.1\r\nHost: t\r\n\r\n"].concat(),
    ] {
        let (cut, answer) = trickle(p.addr, &head, Duration::from_millis(30));
        let cut = cut.expect("ringlb kept a trickling client for 4 s");
        let sent = head.iter().position(|&b| b < 0x09 || b == 0x7f).unwrap() + 1;
        // Each byte waits 30 ms for an answer: until the control byte, and a second more.
        let by = Duration::from_millis(30 * sent as u64 + 1000);
        assert!(cut < by, "answered after {cut:?}, not by {by:?}");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    }
    assert_eq!(a.count(), 0);
}

#[test]
fn a_trickled_proxy_header_is_cut_off_at_header_timeout() {
    // A PROXY v2 header announcing 1,012 bytes (under its 2 KiB limit), sent a byte every 30 ms.
    let a = Backend::named("A");
    let p = Ringlb::start_whole(
        &format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\
             trusted_proxies = [\"127.0.0.0/8\"]\n[limits]\nheader_timeout = \"300ms\"\n{}",
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    header.extend_from_slice(&(12u16 + 1000).to_be_bytes());
    header.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    header.extend_from_slice(&[0x20, 0x03, 0xe5]); // a TLV of 997 bytes, trickled
    header.extend_from_slice(&[b'x'; 997]);
    let (cut, answer) = trickle(p.addr, &header, Duration::from_millis(30));
    let cut = cut.expect("ringlb kept a trickling PROXY header for 4 s");
    assert!(cut < Duration::from_secs(2), "cut off after {cut:?}");
    assert_eq!(answer, "", "closed without an answer");
    assert_eq!(a.count(), 0);
}

#[test]
fn a_trickled_tls_handshake_is_cut_off_at_header_timeout() {
    // A handshake record announcing 16,128 bytes, sent a byte every 30 ms.
    let pki = crate::support::pki::Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = Ringlb::start(
        &format!(
            "{}[limits]\nheader_timeout = \"300ms\"\n{}",
            crate::support::pki::Pki::listen_tls(&[site], ""),
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    let mut record = vec![0x16, 0x03, 0x01, 0x3f, 0x00];
    record.extend_from_slice(&[0u8; 400]);
    let (cut, _) = trickle(p.addr, &record, Duration::from_millis(30));
    let cut = cut.expect("ringlb kept a trickling TLS handshake for 4 s");
    assert!(cut < Duration::from_secs(2), "cut off after {cut:?}");
    assert_eq!(a.count(), 0);
}

#[test]
fn an_ajp_member_trickling_its_headers_is_504_at_response_timeout() {
    // SEND_HEADERS with a 400-byte header value, a byte every 30 ms once the request came.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let member = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_packet(&mut s).expect("a FORWARD_REQUEST");
        let slow = [b'a'; 400];
        let packet = send_headers(200, b"OK", &[(RespName::Named(b"X-Slow"), &slow)]);
        let started = Instant::now();
        for byte in packet {
            if started.elapsed() > Duration::from_secs(4) || s.write_all(&[byte]).is_err() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        started.elapsed()
    });
    let p = Ringlb::start(
        &simple_config(
            &[format!("{{ url = \"ajp://{addr}\" }}")],
            "response_timeout = \"300ms\"",
        ),
        1,
    );
    let started = Instant::now();
    let r = get(p.addr, "/");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(took < Duration::from_secs(2), "504 after {took:?}");
    drop(p);
    member.join().unwrap();
}

#[test]
fn admin_listener_answers_when_the_proxy_connection_limit_is_reached() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &format!(
                "[limits]\nmax_connections = 4\n{}",
                simple_config(&[member(a.addr)], "")
            ),
            "",
        ),
        1,
    );
    // Four idle keep-alive connections, each surely accepted (it was answered).
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = client(&p, 3);
        c.send(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().expect("a response").status, 200);
        held.push(c);
    }
    // Several in a row: an accept already waiting when the limit was reached lets one through.
    for i in 0..3 {
        let mut c = Client::connect(p.admin_addr());
        c.set_timeout(Duration::from_secs(3));
        c.send(b"GET /status.json HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = c.read_response();
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "admin request {i}: the admin listener must not wait for a proxy connection slot"
        );
    }
    drop(held);
}

// ---- 9. Refused requests are access-logged ----

/// The status and member fields of an access-log line.
fn status_and_member(line: &str) -> Option<(u16, String)> {
    let after_date = line.split_once("] \"")?.1;
    // The request field ends at the first `" ` (quotes inside it are escaped as \x22).
    let rest = after_date.split_once("\" ")?.1;
    let status = rest.split(' ').next()?.parse().ok()?;
    let member = rest
        .split(" member=")
        .nth(1)?
        .split(' ')
        .next()?
        .to_string();
    Some((status, member))
}

#[test]
fn refused_requests_are_access_logged_without_a_member() {
    let a = Backend::named("A");
    let dir = TempDir::new();
    let path = dir.0.join("access.log");
    let p = Ringlb::start(
        &format!(
            "[log]\naccess = \"{}\"\n[limits]\nheader_timeout = \"1s\"\nmax_request_header_bytes = 1024\n{}",
            path.display(),
            simple_config(&[member(a.addr)], "")
        ),
        1,
    );
    // The header timeout first: it runs while the others are sent.
    let mut slow = client(&p, 5);
    slow.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n");
    assert_refused(&p, b"GET / HTTP/1.1\r\nHost: t\r\nBad{Name: x\r\n\r\n", 400);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2000));
    assert_refused(&p, long_uri.as_bytes(), 414);
    assert_refused(&p, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405);
    assert_eq!(
        slow.read_response().map(|r| r.status),
        Some(408),
        "the header timeout"
    );
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    wait_for(Duration::from_secs(3), || lines().len() >= 4);
    let lines = lines();
    let mut seen: Vec<(u16, String)> = lines
        .iter()
        .map(|l| status_and_member(l).unwrap_or_else(|| panic!("unparsable line {l:?}")))
        .collect();
    seen.sort();
    assert_eq!(
        seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [400, 405, 408, 414],
        "one line per refused request: {lines:?}"
    );
    for (status, member) in &seen {
        assert!(
            member.is_empty() || member == "-",
            "{status}: no member served it, the line says {member:?}"
        );
    }
    assert_eq!(a.count(), 0);
}

// ---- 12. A pooled connection the member closed is not written to ----

#[test]
fn post_on_a_pooled_connection_the_member_closed_is_sent_once() {
    // The member closes a keep-alive connection once it has been idle for 0.1 s.
    let m = RawMember::start(|c| {
        while c.read_request().is_some() {
            if !c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
                return;
            }
            let _ = c.s.set_read_timeout(Some(Duration::from_millis(100)));
        }
    });
    let p = Ringlb::start(&simple_config(&[member(m.addr)], ""), 1);
    for i in 0..6 {
        if i > 0 {
            // The scenario itself: each POST comes after the member closed the idle connection.
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut c = client(&p, 3);
        c.send(format!("POST /{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi").as_bytes());
        let r = c.read_response();
        assert_eq!(
            r.map(|r| (r.status, r.text())),
            Some((200, "ok".to_string())),
            "POST {i}"
        );
    }
    let posts = m.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 6, "{}", describe(&m.requests()));
}

#[test]
fn a_local_answer_to_head_has_no_body_on_a_kept_connection() {
    let dir = crate::support::proxy::TempDir::new();
    let page = dir.0.join("503.html");
    std::fs::write(&page, "<h1>back soon</h1>").unwrap();
    let p = Ringlb::start(
        &simple_config(
            &[member(closed_port())],
            &format!("error_pages = {{ 503 = \"{}\" }}", page.display()),
        ),
        1,
    );
    let mut c = Client::connect(p.addr);
    for _ in 0..2 {
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response_to(true).expect("an answer to HEAD");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("content-length"), Some("18"));
        assert!(r.body.is_empty());
    }
    // Had a body followed the HEAD answers, this would read it as its status line.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("an answer to GET");
    assert_eq!((r.status, r.text().as_str()), (503, "<h1>back soon</h1>"));
}

#[test]
fn an_ajp_body_too_long_for_tomcat_7_to_read_the_length_of_goes_without_it() {
    // Tomcat 7 reads a Content-Length of 2^31 - 1 or more as none: the body packet ringlb sends
    // unasked after a request with a length would stay unread by an application that ignores the
    // body, and be read as the container's next message. Such a body goes as a chunked upload does:
    // no Content-Length, nothing unasked, each packet on GET_BODY_CHUNK. One byte shorter keeps its
    // length and its unasked first packet.
    use crate::support::ajp_container::decode_forward;
    use std::net::TcpListener;
    use std::sync::mpsc;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let mut s = s.unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let fwd = decode_forward(&read_packet(&mut s).unwrap()).unwrap();
            let length = fwd.coded(0xA008).first().map(|v| v.to_vec());
            // Whatever arrives unasked within 500 ms.
            let unasked = read_packet(&mut s);
            let asked = if unasked.is_none() {
                s.write_all(b"AB\x00\x03\x06\x1f\xfa").unwrap(); // GET_BODY_CHUNK
                read_packet(&mut s)
            } else {
                None
            };
            tx.send((length, unasked, asked)).unwrap();
            let mut out = send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"0")]);
            out.extend_from_slice(&end_response(false));
            s.write_all(&out).unwrap();
        }
    });
    let p = Ringlb::start(
        &simple_config(&[format!("{{ url = \"ajp://{addr}\" }}")], ""),
        1,
    );
    for (length, told) in [
        ("2147483647", None),
        ("2147483646", Some(&b"2147483646"[..])),
    ] {
        let mut c = Client::connect(p.addr);
        c.send(
            format!("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n").as_bytes(),
        );
        c.send(b"first bytes");
        let (got_length, unasked, asked) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got_length.as_deref(), told, "{length}");
        // A body packet: its length, then the data.
        let data = |p: Option<Vec<u8>>| p.map(|p| p[2..].to_vec());
        match told {
            None => {
                assert_eq!(unasked, None, "nothing goes unasked");
                assert_eq!(data(asked).as_deref(), Some(&b"first bytes"[..]));
            }
            Some(_) => {
                assert_eq!(data(unasked).as_deref(), Some(&b"first bytes"[..]));
            }
        }
        assert_eq!(c.read_response().unwrap().status, 200);
    }
}

#[test]
fn a_request_head_too_large_for_one_ajp_packet_is_a_500_counted_for_its_member() {
    let m = AjpContainer::start(|_| [send_headers(200, b"OK", &[]), end_response(true)].concat());
    let p = Ringlb::start(&with_admin(&simple_config(&[m.member()], ""), ""), 1);
    let mut c = Client::connect(p.addr);
    let big = "x".repeat(9000);
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().unwrap().status, 500);
    assert!(m.forwards().is_empty(), "nothing reached the container");
    let r = crate::support::admin::report_when(p.admin_addr(), |r| {
        r.balancers[0].members[0].responses.get("5xx") == Some(&1)
    });
    assert_eq!(r.balancers[0].members[0].responses.get("5xx"), Some(&1));
}
