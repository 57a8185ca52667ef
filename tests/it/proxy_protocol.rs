//! PROXY protocol on a listener (issue 14): with `proxy_protocol = true`, a connection from one of
//! the listener's `trusted_proxies` begins with a v1 or v2 header, and its source address is the
//! client's for `X-Forwarded-For`, the access log and AJP; `LOCAL`/`UNKNOWN` keep the connection's
//! own; anything else (another sender, no header, a malformed or unsupported one, one that does
//! not come whole within `header_timeout`) is closed without an answer and counted. The real
//! peer: HAProxy from Debian with `send-proxy` and `send-proxy-v2`, in front of a plain and a TLS
//! listener.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::admin::{report, report_when, tool, with_admin};
use crate::support::ajp_container::{end_response, send_headers, AjpContainer};
use crate::support::backend::Backend;
use crate::support::pki::Pki;
use crate::support::proxy::{member, simple_config, Ringlb, TempDir};

/// A connection to `to` from the loopback address `from` (127.0.0.0/8 is all local).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn listener(trusted: &str) -> String {
    format!(
        "[[listen]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\ntrusted_proxies = [\"{trusted}\"]\n"
    )
}

/// Sends `bytes` and reads until the connection closes.
fn exchange(s: &mut TcpStream, bytes: &[u8]) -> String {
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// The `X-Forwarded-For` of each request the member got, in order.
fn forwarded_for(a: &Backend) -> Vec<String> {
    a.requests()
        .iter()
        .map(|r| r.header("x-forwarded-for").unwrap_or_default().to_string())
        .collect()
}

/// A version 1 header for client 198.51.100.7:40000.
const V1_TCP4: &[u8] = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 8080\r\n";

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn v2_tcp4(src: [u8; 4], port: u16, command: u8, tlvs: &[u8]) -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.push(0x20 | command);
    b.push(0x11);
    b.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
    b.extend_from_slice(&src);
    b.extend_from_slice(&[127, 0, 0, 1]);
    b.extend_from_slice(&port.to_be_bytes());
    b.extend_from_slice(&8080u16.to_be_bytes());
    b.extend_from_slice(tlvs);
    b
}

#[test]
fn the_headers_source_is_the_client_for_the_member_and_the_log() {
    let a = Backend::named("A");
    let dir = TempDir::new();
    let log = dir.0.join("access.log");
    let whole = format!(
        "{}[log]\naccess = \"{}\"\n{}",
        listener("127.0.0.0/8"),
        log.display(),
        simple_config(&[member(a.addr)], "")
    );
    let p = Ringlb::start_whole(&whole, 1);
    // v1, with the request in the same segment.
    let mut s = connect_from("127.0.0.1", p.addr);
    let text = exchange(&mut s, &[V1_TCP4, GET].concat());
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("A /x"),
        "{text}"
    );
    // v2 with TLVs, the header in a segment of its own.
    let mut s = connect_from("127.0.0.1", p.addr);
    s.write_all(&v2_tcp4(
        [203, 0, 113, 9],
        40001,
        1,
        &[0x04, 0x00, 0x02, b'h', b'i'],
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let text = exchange(&mut s, GET);
    assert!(text.ends_with("A /x"), "{text}");
    // v1 over IPv6, then LOCAL and UNKNOWN: the connection's own address.
    let mut s = connect_from("127.0.0.1", p.addr);
    let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40002 8080\r\n";
    assert!(exchange(&mut s, &[&v6[..], GET].concat()).ends_with("A /x"));
    let mut s = connect_from("127.0.0.1", p.addr);
    assert!(exchange(
        &mut s,
        &[v2_tcp4([10, 9, 9, 9], 1, 0, &[]), GET.to_vec()].concat()
    )
    .ends_with("A /x"));
    let mut s = connect_from("127.0.0.1", p.addr);
    assert!(exchange(&mut s, &[&b"PROXY UNKNOWN\r\n"[..], GET].concat()).ends_with("A /x"));
    let xff = forwarded_for(&a);
    assert_eq!(
        xff,
        [
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::7",
            "127.0.0.1",
            "127.0.0.1"
        ]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 5 {
            assert!(
                text.lines()
                    .next()
                    .unwrap()
                    .starts_with("198.51.100.7 - - "),
                "{text}"
            );
            assert!(text.contains("\n2001:db8::7 - - "), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn anything_but_a_whole_header_from_a_trusted_sender_is_closed_and_counted() {
    let a = Backend::named("A");
    let whole = format!(
        "{}[limits]\nheader_timeout = \"500ms\"\n{}",
        listener("127.0.0.2"),
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    let p = Ringlb::start_whole(&whole, 1);
    let header = V1_TCP4;
    // Not a trusted sender, even with a header.
    let mut s = connect_from("127.0.0.1", p.addr);
    assert_eq!(exchange(&mut s, &[header, GET].concat()), "");
    // No header; a malformed one; an unsupported family (v2 UDP).
    let mut udp = v2_tcp4([1, 2, 3, 4], 1, 1, &[]);
    udp[13] = 0x12;
    for bad in [
        GET.to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n".to_vec(),
        [udp, GET.to_vec()].concat(),
    ] {
        let mut s = connect_from("127.0.0.2", p.addr);
        assert_eq!(exchange(&mut s, &bad), "", "{bad:?}");
    }
    // Half a header, then nothing: closed when header_timeout ends.
    let mut s = connect_from("127.0.0.2", p.addr);
    let started = Instant::now();
    assert_eq!(exchange(&mut s, &header[..20]), "");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // A sender's TCP check (connect, close) is not a rejection.
    drop(connect_from("127.0.0.2", p.addr));
    // A second header after the first is request bytes like any others: a bad request.
    let mut s = connect_from("127.0.0.2", p.addr);
    let text = exchange(&mut s, &[header, header, GET].concat());
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(a.count(), 0, "nothing reached the member");
    report_when(p.admin_addr(), |r| {
        r.proxy_rejected.values().sum::<u64>() >= 5
    });
    // One more publication, so that a miscount would show.
    std::thread::sleep(Duration::from_millis(1200));
    let r = report(p.admin_addr());
    let count = |k: &str| r.proxy_rejected.get(k).copied().unwrap_or(0);
    assert_eq!(
        [
            count("untrusted"),
            count("missing"),
            count("invalid"),
            count("incomplete")
        ],
        [1, 1, 2, 1]
    );
    // And a trusted sender with a header gets its answer.
    let mut s = connect_from("127.0.0.2", p.addr);
    assert!(exchange(&mut s, &[header, GET].concat()).ends_with("A /x"));
}

#[test]
fn a_client_the_header_cannot_name_is_not_a_trusted_proxy() {
    let a = Backend::named("A");
    let whole = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{}{}",
        listener("127.0.0.1"),
        simple_config(&[member(a.addr)], "")
    );
    let p = Ringlb::start_whole(&whole, 1);
    let spoof =
        &b"GET /x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"[..];
    // UNKNOWN from the balancer (itself a trusted proxy): the client's own X-Forwarded-For is
    // not believed. LOCAL (the balancer's own request) keeps the balancer's trust.
    let mut s = connect_from("127.0.0.1", p.addr);
    assert!(exchange(&mut s, &[&b"PROXY UNKNOWN\r\n"[..], spoof].concat()).ends_with("A /x"));
    let mut s = connect_from("127.0.0.1", p.addr);
    let local = v2_tcp4([0, 0, 0, 0], 0, 0, &[]);
    assert!(exchange(&mut s, &[&local[..], spoof].concat()).ends_with("A /x"));
    // UNKNOWN on a kept connection that parks (idle past 250 ms) and wakes: still not trusted.
    let mut c = crate::support::client::Client::connect(p.addr);
    c.send(&[&b"PROXY UNKNOWN\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n"[..]].concat());
    assert_eq!(c.read_response().expect("the first answer").status, 200);
    std::thread::sleep(Duration::from_millis(600));
    c.send(spoof);
    assert_eq!(
        c.read_response().expect("the answer after parking").status,
        200
    );
    let xff = forwarded_for(&a);
    assert_eq!(
        xff,
        ["127.0.0.1", "6.6.6.6, 127.0.0.1", "127.0.0.1", "127.0.0.1"]
    );
}

#[test]
fn an_ajp_member_is_told_the_headers_source() {
    let ajp =
        AjpContainer::start(|_| [send_headers(200, b"OK", &[]), end_response(false)].concat());
    let whole = format!(
        "{}{}",
        listener("127.0.0.1"),
        simple_config(&[ajp.member()], "")
    );
    let p = Ringlb::start_whole(&whole, 1);
    let mut s = connect_from("127.0.0.1", p.addr);
    let text = exchange(&mut s, &[V1_TCP4, GET].concat());
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let f = &ajp.forwards()[0];
    assert_eq!(f.remote_addr, b"198.51.100.7", "{f:?}");
}

/// A port for HAProxy to listen on (`port_below_ephemeral`: HAProxy binds it a moment later).
fn haproxy_port() -> u16 {
    crate::support::backend::port_below_ephemeral(30000)
}

/// HAProxy in TCP mode in front of `to`, from source address 127.0.0.3: one frontend with
/// `send-proxy`, one with `send-proxy-v2`. Stopped (by pid) on drop.
struct Haproxy {
    child: std::process::Child,
    v1: u16,
    v2: u16,
    _dir: TempDir,
}

impl Haproxy {
    fn start(to: SocketAddr) -> Haproxy {
        let dir = TempDir::new();
        let (v1, v2) = (haproxy_port(), haproxy_port());
        let cfg = dir.0.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                 frontend v1\n  bind 127.0.0.1:{v1}\n  default_backend v1\n\
                 frontend v2\n  bind 127.0.0.1:{v2}\n  default_backend v2\n\
                 backend v1\n  server r {to} send-proxy source 127.0.0.3\n\
                 backend v2\n  server r {to} send-proxy-v2 source 127.0.0.3\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", v2)).is_err() {
            assert!(Instant::now() < deadline, "HAProxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            v1,
            v2,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn haproxy_send_proxy_v1_and_v2_give_the_member_the_real_client() {
    if !tool("haproxy") || !tool("curl") {
        return;
    }
    let a = Backend::named("A");
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let body = simple_config(&[member(a.addr)], "");
    let plain = Ringlb::start_whole(&format!("{}{body}", listener("127.0.0.3")), 1);
    let tls = Ringlb::start_whole(
        &format!(
            "{}{}{body}",
            listener("127.0.0.3"),
            Pki::listen_tls(&[site], "")
        ),
        1,
    );
    for (ringlb, scheme) in [(&plain, "http"), (&tls, "https")] {
        let h = Haproxy::start(ringlb.addr);
        for port in [h.v1, h.v2] {
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "--interface",
                    "127.0.0.5",
                    "--cacert",
                ])
                .arg(pki.ca_path())
                .args(["--resolve", &format!("site.test:{port}:127.0.0.1")])
                .arg(format!("{scheme}://site.test:{port}/via-haproxy"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text,
                "A /via-haproxy",
                "{scheme} via {port}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // HAProxy's own address is not a client: a direct connection from it is refused.
        let mut s = connect_from("127.0.0.1", ringlb.addr);
        assert_eq!(exchange(&mut s, GET), "");
    }
    let xff = forwarded_for(&a);
    assert_eq!(xff, ["127.0.0.5"; 4]);
}
