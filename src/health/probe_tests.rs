//! Checks against scripted members over loopback, on a compio runtime of their own: what each
//! answer (or its absence) makes of a check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::*;
use crate::config::Config;

/// Member 0 of a balancer over `addr` with the `hc*` keys `keys`.
fn member(addr: SocketAddr, keys: &str) -> MemberConfig {
    let c = Config::parse(&format!(
        "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n{keys}\n\
members = [{{ url = \"http://{addr}\" }}]\n"
    ))
    .unwrap();
    c.balancers[0].members[0].clone()
}

/// Checks a member that reads the request head, writes `answer` and closes (`None`: it waits
/// without answering until the check gives up). Returns the probe and the request it read.
fn check(keys: &str, answer: Option<Vec<u8>>) -> (Probe, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let m = member(listener.local_addr().unwrap(), keys);
    let script = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        match answer {
            Some(a) => {
                let _ = s.write_all(&a);
            }
            None => {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let _ = s.read(&mut buf);
            }
        }
        got
    });
    let probe = run_probe(&m);
    (probe, script.join().unwrap())
}

fn run_probe(m: &MemberConfig) -> Probe {
    let rt = crate::runtime::build(crate::config::Driver::Auto).unwrap();
    rt.block_on(async {
        compio::runtime::spawn(crate::deadline::turn_wheel()).detach();
        let req = crate::health::verdict::request(m);
        probe(m, None, req.as_deref()).await
    })
}

fn text(p: &Probe) -> (bool, &str) {
    (p.passed, p.text.as_str())
}

#[test]
fn a_get_sends_the_request_and_passes_on_an_expected_status() {
    let (p, req) = check(
        "hcmethod = \"get\"\nhcuri = \"/health\"",
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
    );
    assert_eq!(text(&p), (true, "200"));
    let req = String::from_utf8(req).unwrap();
    assert!(
        req.starts_with("GET /health HTTP/1.1\r\nHost: 127.0.0.1:"),
        "{req}"
    );
    assert!(req.contains("Connection: close\r\n"), "{req}");
}

#[test]
fn a_status_outside_hcexpect_fails() {
    let answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n".to_vec();
    let (p, _) = check("hcmethod = \"head\"", Some(answer.clone()));
    assert_eq!(text(&p), (false, "status 503 not in 200-399"));
    let (p, _) = check(
        "hcmethod = \"options\"\nhcexpect = \"200-299,503\"",
        Some(answer),
    );
    assert_eq!(text(&p), (true, "503"));
}

#[test]
fn interim_responses_are_skipped() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec();
    let (p, _) = check("hcmethod = \"get\"", Some(answer));
    assert_eq!(text(&p), (true, "204"));
}

#[test]
fn body_excludes_reads_chunked_and_close_delimited_bodies() {
    let keys = "hcmethod = \"get\"\nhcbody_excludes = \"Under maintenance\"";
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
6\r\nUnder \r\nb\r\nmaintenance\r\n0\r\n\r\n"
        .to_vec();
    let (p, _) = check(keys, Some(chunked));
    assert_eq!(text(&p), (false, "body contains \"Under maintenance\""));
    let until_close = b"HTTP/1.1 200 OK\r\n\r\nall fine here".to_vec();
    let (p, _) = check(keys, Some(until_close));
    assert_eq!(text(&p), (true, "200"));
    let (p, _) = check(
        keys,
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc".to_vec()),
    );
    assert_eq!(text(&p), (false, "body: closed"), "a body cut short fails");
}

#[test]
fn only_the_first_64_kib_of_a_body_are_searched() {
    let mut body = vec![b'x'; MAX_BODY];
    body.extend_from_slice(b"Under maintenance");
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(&body);
    let keys = "hcmethod = \"get\"\nhcbody_excludes = \"Under maintenance\"";
    let (p, _) = check(keys, Some(answer));
    assert_eq!(text(&p), (true, "200"));
}

#[test]
fn garbage_silence_and_refusal_fail_with_their_reason() {
    let (p, _) = check(
        "hcmethod = \"get\"",
        Some(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()),
    );
    assert!(!p.passed);
    assert!(p.text.starts_with("invalid response"), "{}", p.text);
    let (p, _) = check("hcmethod = \"get\"", Some(Vec::new()));
    assert_eq!(text(&p), (false, "read: closed"));
    let (p, _) = check("hcmethod = \"get\"\nhctimeout = \"300ms\"", None);
    assert_eq!(text(&p), (false, "timeout"));
    assert!(p.latency >= Duration::from_millis(300), "{:?}", p.latency);
    assert!(p.latency < Duration::from_secs(2), "{:?}", p.latency);
    // Bound but not listening: connections are refused, and no one else can take the port.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    closed.bind(&any.into()).unwrap();
    let addr = closed.local_addr().unwrap().as_socket().unwrap();
    let p = run_probe(&member(addr, "hcmethod = \"tcp\""));
    assert_eq!(text(&p), (false, "connect refused"));
}

#[test]
fn tcp_passes_on_a_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = run_probe(&member(
        listener.local_addr().unwrap(),
        "hcmethod = \"tcp\"",
    ));
    assert_eq!(text(&p), (true, "connected"));
}
