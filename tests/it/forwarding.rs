//! What members learn about the client (`[server] trusted_proxies`): from an untrusted client,
//! X-Forwarded-For / X-Forwarded-Proto are replaced by ringlb's own (and AJP containers see none
//! of the client's); from a trusted proxy, its trail is extended and its scheme kept, and an AJP
//! container gets `is_ssl` when that scheme is https.

use crate::support::ajp_container::{
    body_chunk, end_response, send_headers, AjpContainer, RespName,
};
use crate::support::backend::Req;
use crate::support::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const TRAIL: &[u8] = b"GET /f HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.7\r\n\
X-Forwarded-Proto: https\r\nX-Forwarded-Host: front.example\r\n\r\n";

fn trusting(ranges: &str, body: &str) -> String {
    format!("[server]\ntrusted_proxies = [{ranges}]\n{body}")
}

fn ajp_ok() -> Vec<u8> {
    [
        send_headers(200, b"OK", &[(RespName::Coded(0xA003), b"2")]),
        body_chunk(b"ok"),
        end_response(true),
    ]
    .concat()
}

/// Sends `TRAIL` and returns what the HTTP member saw.
fn http_member_sees(config_of: impl Fn(&str) -> String) -> Req {
    let a = Backend::named("A");
    let p = Ringlb::start(&config_of(&simple_config(&[member(a.addr)], "")), 1);
    let mut c = Client::connect(p.addr);
    c.send(TRAIL);
    assert_eq!(c.read_response().unwrap().status, 200);
    a.requests().pop().unwrap()
}

#[test]
fn an_untrusted_clients_forwarding_headers_are_replaced() {
    let r = http_member_sees(|b| b.to_string());
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
    assert_eq!(r.count("x-forwarded-for"), 1);
    // A range that does not hold the client changes nothing.
    let r = http_member_sees(|b| trusting("\"10.0.0.0/8\"", b));
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
}

#[test]
fn a_trusted_proxys_trail_is_extended_and_its_scheme_kept() {
    let r = http_member_sees(|b| trusting("\"127.0.0.0/8\", \"::1\"", b));
    assert_eq!(r.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto"), Some("https"));
    assert_eq!(r.count("x-forwarded-proto"), 1);
    // The Host it forwarded is still the Host ringlb routed on.
    assert_eq!(r.header("x-forwarded-host"), Some("t"));
}

#[test]
fn ajp_containers_see_a_trail_and_is_ssl_only_from_a_trusted_proxy() {
    let m = AjpContainer::start(|_| ajp_ok());
    for (trusted, config) in [
        (false, simple_config(&[m.member()], "")),
        (
            true,
            trusting("\"127.0.0.1\"", &simple_config(&[m.member()], "")),
        ),
    ] {
        let p = Ringlb::start(&config, 1);
        let mut c = Client::connect(p.addr);
        c.send(TRAIL);
        assert_eq!(c.read_response().unwrap().status, 200);
        let f = m.forwards().pop().unwrap();
        assert_eq!(f.is_ssl, trusted, "is_ssl");
        let proto = f.named("x-forwarded-proto");
        let xff = f.named("x-forwarded-for");
        if trusted {
            assert_eq!(
                (proto, xff),
                (vec![&b"https"[..]], vec![&b"203.0.113.7"[..]])
            );
        } else {
            assert!(proto.is_empty() && xff.is_empty(), "{:?}", f.headers);
        }
        // The Host the container sees is the one ringlb routed on; no client's X-Forwarded-Host.
        assert!(f.named("x-forwarded-host").is_empty());
    }
}

#[test]
fn an_ajp_container_reads_the_same_scheme_as_is_ssl() {
    // A trusted proxy that appends its scheme after a client's own: one X-Forwarded-Proto, the
    // proxy's, and is_ssl agrees with it; empty X-Forwarded-For values leave no empty entry.
    let m = AjpContainer::start(|_| ajp_ok());
    let p = Ringlb::start(
        &trusting("\"127.0.0.1\"", &simple_config(&[m.member()], "")),
        1,
    );
    let mut c = Client::connect(p.addr);
    c.send(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\
X-Forwarded-For: \r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    let f = m.forwards().pop().unwrap();
    assert!(!f.is_ssl);
    assert_eq!(f.named("x-forwarded-proto"), vec![&b"http"[..]]);
    assert_eq!(
        f.named("x-forwarded-for"),
        vec![&b"198.51.100.1, 203.0.113.7"[..]]
    );
}

#[test]
fn a_bad_range_names_the_key_and_line() {
    let Err(err) = Ringlb::try_start(
        &trusting(
            "\"10.0.0.0/33\"",
            &simple_config(&[member(closed_port())], ""),
        ),
        1,
    ) else {
        panic!("accepted");
    };
    assert!(err.contains("server.trusted_proxies"), "{err}");
    assert!(err.contains("line "), "{err}");
}

#[test]
fn a_member_on_a_zoned_ipv6_address_gets_a_host_header_without_the_zone() {
    // The zone goes with the address ringlb connects to (Linux heeds it for link-local addresses
    // only, so `::1` here is reached either way); RFC 6874 keeps it out of Host (Tomcat's Host
    // parser refuses a `%`), for proxied requests and health checks alike. Needs IPv6 on loopback.
    let a = Backend::on(TcpListener::bind("[::1]:0").unwrap(), |r| Reply::Full {
        status: 200,
        headers: vec![],
        body: r.path.clone().into_bytes(),
        chunked: false,
    });
    let lo = std::fs::read_to_string("/sys/class/net/lo/ifindex").unwrap();
    let port = a.addr.port();
    let url = format!("http://[::1%{}]:{port}", lo.trim());
    let p = Ringlb::start(
        &simple_config(
            &[format!("{{ url = \"{url}\" }}")],
            "hcmethod = \"get\"\nhcuri = \"/health\"\nhcinterval = \"1s\"",
        ),
        1,
    );
    let mut c = Client::connect(p.addr);
    c.send(b"GET /z HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text()), (200, "/z".to_string()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.requests().iter().any(|r| r.path == "/health") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let want = format!("[::1]:{port}");
    let seen: Vec<_> = a
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.header("host").map(str::to_string)))
        .collect();
    assert!(
        seen.iter().any(|(p, _)| p == "/health"),
        "no health check: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, h)| h.as_deref() == Some(want.as_str())),
        "{seen:?}"
    );
}
