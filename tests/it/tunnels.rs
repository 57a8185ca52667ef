//! Upgrade tunnels (issue 14): a request with `Upgrade` and `Connection: upgrade` on a route with
//! `upgrade = [...]` goes to the member with exactly those two hop-by-hop headers; a 101 is relayed
//! and bytes then flow both ways (those past either head first), half-closes are passed on, an
//! idle tunnel closes after `tunnel_timeout` and a stop closes tunnels when the grace ends; a
//! non-101 is an ordinary response that ends the connection; without the route's consent, h2c, or
//! from HTTP/1.0 no Upgrade is forwarded; AJP members are never picked for one. The real peer: a
//! Python `websockets` echo server and client, plain and over TLS.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::admin::{report_when, unavailable, with_admin};
use crate::support::ajp_container::{end_response, send_headers, AjpContainer};
use crate::support::pki::Pki;
use crate::support::proxy::{member, simple_config, Ringlb, TempDir};

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

const HANDSHAKE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What a scripted member saw on one connection.
#[derive(Default, Clone, Debug)]
struct Seen {
    head: String,
    /// Bytes after the head (the tunnel's, after a 101).
    after: Vec<u8>,
    /// The member read an end of stream after the head.
    eof: bool,
}

/// A member that reads one request head per connection and answers `answer`; after a 101 it
/// echoes what it reads and, at the end of its input, sends "bye" and shuts down its side.
struct Member {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
}

impl Member {
    fn start(answer: &'static [u8]) -> Member {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
        let all = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let one = Arc::new(Mutex::new(Seen::default()));
                all.lock().unwrap().push(one.clone());
                std::thread::spawn(move || serve(s, answer, &one));
            }
        });
        Member { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        let all = self.seen.lock().unwrap();
        all.iter().map(|s| s.lock().unwrap().clone()).collect()
    }
}

fn serve(mut s: TcpStream, answer: &[u8], seen: &Mutex<Seen>) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let end = loop {
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let early = got.split_off(end);
    seen.lock().unwrap().head = String::from_utf8_lossy(&got).into_owned();
    let _ = s.write_all(answer);
    let switched = answer.starts_with(b"HTTP/1.1 101");
    if switched && !early.is_empty() {
        let _ = s.write_all(&early);
    }
    seen.lock().unwrap().after.extend_from_slice(&early);
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                seen.lock().unwrap().eof = true;
                if switched {
                    let _ = s.write_all(b"bye");
                    let _ = s.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                seen.lock().unwrap().after.extend_from_slice(&buf[..n]);
                if switched && s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn tunnel_route(members: &str, route_extra: &str) -> String {
    format!(
        "{}{route_extra}\n",
        simple_config(&[members.to_string()], "")
    )
}

/// Reads from `s` until `got` ends with `want` (bounded).
fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65536];
    while !got.ends_with(want) {
        assert!(
            Instant::now() < deadline,
            "waited for {want:?}, got {:?}",
            String::from_utf8_lossy(got)
        );
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {want:?}; got {:?}",
                String::from_utf8_lossy(got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(got)),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Polls `cond` for up to 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_101_opens_a_tunnel_both_ways_with_half_closes_passed_on_and_one_log_line() {
    // The member's first tunnel bytes come in the same write as its 101.
    const SWITCH_AND_DATA: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nsrv-first";
    let m = Member::start(SWITCH_AND_DATA);
    let dir = TempDir::new();
    let log = dir.0.join("access.log");
    let body = format!(
        "[log]\naccess = \"{}\"\n{}",
        log.display(),
        with_admin(
            &tunnel_route(&member(m.addr), "upgrade = [\"websocket\"]"),
            ""
        )
    );
    let p = Ringlb::start(&body, 1);
    let mut s = connect(p.addr);
    // Bytes right after the request head are the tunnel's first.
    s.write_all(&[HANDSHAKE, b"hello"].concat()).unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"srv-firsthello");
    let text = String::from_utf8_lossy(&got).into_owned();
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let head = &text[..head_end];
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Accept: x\r\n"), "{head}");
    assert!(
        !head.contains("Content-Length") && !head.contains("Transfer-Encoding"),
        "{head}"
    );
    assert_eq!(&text[head_end..], "srv-firsthello");
    // The member got the handshake with exactly the two hop-by-hop headers ringlb re-adds.
    let seen = &m.seen()[0];
    assert_eq!(
        seen.head.matches("Upgrade: websocket\r\n").count(),
        1,
        "{}",
        seen.head
    );
    assert!(
        seen.head.contains("\r\nConnection: upgrade\r\n"),
        "{}",
        seen.head
    );
    assert!(!seen.head.contains("keep-alive"), "{}", seen.head);
    assert!(seen
        .head
        .contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    let r = report_when(p.admin_addr(), |r| r.connections.tunnels == 1);
    assert_eq!(
        r.connections.tunnels, 1,
        "the open tunnel is on the status page"
    );
    s.write_all(b"more").unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"more");
    // The client half-closes: the member sees the end, answers and closes its side, and the
    // client reads that answer, then the end.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye");
    assert!(m.seen()[0].eof);
    let r = report_when(p.admin_addr(), |r| {
        r.connections.tunnels == 0 && r.connections.tunnels_total == 1
    });
    assert_eq!((r.connections.tunnels, r.connections.tunnels_total), (0, 1));
    let line = wait_for_line(&log, " 101 ");
    // Down: srv-first, hello, more, bye; up: hello, more.
    assert!(line.contains("\"GET /chat HTTP/1.1\" 101 21 "), "{line}");
    assert!(line.contains(" tunnel_up_bytes=9"), "{line}");
}

fn wait_for_line(log: &std::path::Path, needle: &str) -> String {
    let mut line = String::new();
    eventually("the access log line", || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        match text.lines().find(|l| l.contains(needle)) {
            Some(l) => {
                line = l.to_string();
                true
            }
            None => false,
        }
    });
    line
}

#[test]
fn without_the_routes_consent_no_upgrade_is_forwarded_and_a_101_is_a_502() {
    let m = Member::start(SWITCH);
    let p = Ringlb::start(&tunnel_route(&member(m.addr), ""), 1);
    let mut s = connect(p.addr);
    s.write_all(HANDSHAKE).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    let head = &m.seen()[0].head;
    assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
}

#[test]
fn h2c_http10_and_unlisted_protocols_go_as_plain_requests() {
    let m = Member::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let p = Ringlb::start(&tunnel_route(&member(m.addr), "upgrade = [\"any\"]"), 1);
    for req in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket, h2c\r\nConnection: upgrade\r\n\r\n",
    ] {
        let mut s = connect(p.addr);
        s.write_all(req).unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, b"ok");
        assert!(got.starts_with(b"HTTP/1.1 200 "));
    }
    for seen in m.seen() {
        let lower = seen.head.to_ascii_lowercase();
        assert!(!lower.contains("upgrade"), "{}", seen.head);
        assert!(!lower.contains("http2-settings"), "{}", seen.head);
    }
    assert_eq!(m.seen().len(), 4);
}

#[test]
fn a_refused_upgrade_is_an_ordinary_answer_and_the_last_on_its_connection() {
    let m = Member::start(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno");
    let p = Ringlb::start(
        &tunnel_route(&member(m.addr), "upgrade = [\"websocket\"]"),
        1,
    );
    let mut s = connect(p.addr);
    // Bytes after the handshake (early tunnel data that looks like a request) are never read as
    // a next request.
    s.write_all(&[HANDSHAKE, b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"].concat())
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nno"), "{text}");
    std::thread::sleep(Duration::from_millis(200));
    let seen = m.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].after.is_empty(), "{seen:?}");
}

#[test]
fn ringlbs_own_answer_to_an_upgrade_ends_the_connection() {
    let closed = crate::support::backend::closed_port();
    // No usable member (503), and an excluded path (404: asked, though the route never allowed it).
    let body = format!(
        "{}[[route]]\npath = \"/chat\"\nexclude = true\n",
        tunnel_route(&member(closed), "upgrade = [\"websocket\"]")
    );
    let p = Ringlb::start(&body, 1);
    for (target, status) in [("/ws", "503"), ("/chat", "404")] {
        let mut s = connect(p.addr);
        let handshake = String::from_utf8_lossy(HANDSHAKE).replace("/chat", target);
        s.write_all(
            &[
                handshake.as_bytes(),
                b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n",
            ]
            .concat(),
        )
        .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    }
}

#[test]
fn an_idle_tunnel_closes_after_tunnel_timeout() {
    let m = Member::start(SWITCH);
    let p = Ringlb::start(
        &tunnel_route(
            &member(m.addr),
            "upgrade = [\"websocket\"]\ntunnel_timeout = \"400ms\"",
        ),
        1,
    );
    let mut s = connect(p.addr);
    s.write_all(HANDSHAKE).unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"\r\n\r\n");
    let opened = Instant::now();
    // Traffic keeps it open...
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(250));
        s.write_all(b"x").unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, b"x");
    }
    // ...silence closes it.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = opened.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(took >= Duration::from_millis(1000), "closed after {took:?}");
    eventually("the member's side closed", || m.seen()[0].eof);
}

/// A TLS client's tunnel to the member at `addr` (route options `extra`): the client sees its
/// end as unexpected, without close_notify (`client::End::Cut`), which would tell it the stream
/// ended as its peer meant.
fn assert_tls_tunnel_ends_without_close_notify(addr: std::net::SocketAddr, extra: &str) {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let route = tunnel_route(&member(addr), extra);
    let p = Ringlb::start(&format!("{}{route}", Pki::listen_tls(&[site], "")), 1);
    let mut c = crate::support::Client::connect_tls(p.addr, "site.test", pki.client_config())
        .expect("a TLS connection");
    c.set_timeout(Duration::from_secs(10));
    c.send(HANDSHAKE);
    let e = c.read_until_close().expect_err("no close_notify");
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
}

#[test]
fn a_tls_client_gets_no_close_notify_from_a_tunnel_that_idled_out() {
    // Neither side ended the tunnel.
    let m = Member::start(SWITCH);
    assert_tls_tunnel_ends_without_close_notify(
        m.addr,
        "upgrade = [\"websocket\"]\ntunnel_timeout = \"300ms\"",
    );
}

#[test]
fn a_tls_client_gets_no_close_notify_from_a_tunnel_its_member_reset() {
    // The member's side broke: the client learns nothing more comes, not that it ended as meant.
    use crate::support::raw_member::RawMember;
    let m = RawMember::start(|c| {
        if c.read_head().is_some() && c.write(SWITCH) {
            std::thread::sleep(Duration::from_millis(200));
            socket2::SockRef::from(&c.s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    });
    assert_tls_tunnel_ends_without_close_notify(m.addr, "upgrade = [\"websocket\"]");
}

#[test]
fn a_stop_closes_tunnels_when_the_grace_ends() {
    let m = Member::start(SWITCH);
    let body = format!(
        "[server]\nshutdown_grace = \"1s\"\n{}",
        tunnel_route(&member(m.addr), "upgrade = [\"websocket\"]")
    );
    let mut p = Ringlb::start(&body, 1);
    let mut s = connect(p.addr);
    s.write_all(HANDSHAKE).unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"\r\n\r\n");
    let stopping = Instant::now();
    let status = p.terminate().expect("ringlb stops");
    assert!(status.success(), "{status:?}");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert!(
        took >= Duration::from_millis(600),
        "the tunnel had its grace: {took:?}"
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn ajp_members_are_never_picked_for_an_upgrade() {
    let http = Member::start(SWITCH);
    let ajp = AjpContainer::start(|_| [send_headers(200, b"OK", &[]), end_response(true)].concat());
    let members = format!("{}, {}", member(http.addr), ajp.member());
    let p = Ringlb::start(&tunnel_route(&members, "upgrade = [\"websocket\"]"), 1);
    for _ in 0..4 {
        let mut s = connect(p.addr);
        s.write_all(HANDSHAKE).unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, b"\r\n\r\n");
        assert!(
            got.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(ajp.forwards().is_empty());
    assert_eq!(http.seen().len(), 4);
    // Plain requests still go round both.
    for _ in 0..4 {
        let mut s = connect(p.addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
    }
    assert!(!ajp.forwards().is_empty());
}

/// The Python `websockets` peer (Debian's python3-websockets, for Debian's python3): present,
/// or the test fails (`unavailable`).
fn websockets_python() -> Option<&'static str> {
    const PYTHON: &str = "/usr/bin/python3";
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(PYTHON);
    }
    unavailable("python3-websockets");
    None
}

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/ws_peer.py");

/// The echo server, stopped (by pid) on drop.
struct WsServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl WsServer {
    fn start(python: &str) -> WsServer {
        let mut child = std::process::Command::new(python)
            .args([PEER, "serve"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let port: u16 = line.trim().parse().expect("the server's port");
        WsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(python: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(python)
        .arg(PEER)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the WebSocket client failed: {text}");
    text
}

#[test]
fn a_real_websocket_client_and_server_talk_through_ringlb_plain_and_over_tls() {
    let Some(python) = websockets_python() else {
        return;
    };
    let server = WsServer::start(python);
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let route = tunnel_route(&member(server.addr), "upgrade = [\"websocket\"]");
    let plain = Ringlb::start(&route, 1);
    let tls = Ringlb::start(&format!("{}{route}", Pki::listen_tls(&[site], "")), 1);
    let ca = pki.ca_path();
    for url in [
        format!("ws://{}/echo", plain.addr),
        format!("wss://{}/echo", tls.addr),
    ] {
        let text = run_client(python, &["client", &url, ca.to_str().unwrap()]);
        for check in [
            "text",
            "binary",
            "10MiB",
            "ping",
            "client-close",
            "server-close",
        ] {
            assert!(
                text.contains(&format!("ok {check}\n")),
                "{url}: {check}: {text}"
            );
        }
    }
}

#[test]
fn two_hundred_websockets_stay_open_together() {
    let Some(python) = websockets_python() else {
        return;
    };
    let server = WsServer::start(python);
    let body = with_admin(
        &tunnel_route(&member(server.addr), "upgrade = [\"websocket\"]"),
        "",
    );
    let p = Ringlb::start(&body, 2);
    let url = format!("ws://{}/echo", p.addr);
    let admin = p.admin_addr();
    let watcher = std::thread::spawn(move || {
        report_when(admin, |r| r.connections.tunnels == 200)
            .connections
            .tunnels
    });
    let text = run_client(python, &["hold", &url, "200", "2"]);
    assert!(text.contains("held 200\n"), "{text}");
    assert_eq!(watcher.join().unwrap(), 200, "the status page counted them");
}

#[test]
fn an_upgrade_with_expect_gets_100_continue_before_the_101() {
    let m = Member::start(SWITCH);
    let p = Ringlb::start(
        &tunnel_route(&member(m.addr), "upgrade = [\"websocket\"]"),
        1,
    );
    let mut s = connect(p.addr);
    s.write_all(b"POST /up HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"\r\n\r\n");
    assert_eq!(got, b"HTTP/1.1 100 Continue\r\n\r\n");
    // The body goes to the member as the request's; what follows it is the tunnel's.
    s.write_all(b"bodyafter").unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"after");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    let head = &m.seen()[0].head;
    assert!(
        head.contains("\r\nContent-Length: 4\r\n") && !head.contains("Expect"),
        "{head}"
    );
}

#[test]
fn a_client_that_resets_ends_the_tunnel_at_once() {
    let m = Member::start(SWITCH);
    let p = Ringlb::start(
        &with_admin(
            &tunnel_route(&member(m.addr), "upgrade = [\"websocket\"]"),
            "",
        ),
        1,
    );
    let mut s = connect(p.addr);
    s.write_all(HANDSHAKE).unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"\r\n\r\n");
    report_when(p.admin_addr(), |r| r.connections.tunnels == 1);
    // A reset (linger 0), not a close: the quiet member must still learn of it.
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    eventually("the member's side closed", || m.seen()[0].eof);
    let r = report_when(p.admin_addr(), |r| r.connections.tunnels == 0);
    assert_eq!(r.connections.tunnels, 0);
}
