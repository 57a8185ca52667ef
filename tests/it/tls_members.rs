//! TLS to `https://` members: certificate verification against a `ca` file (and its failure,
//! counted and logged), `verify = false` (with its warning), `sni`, pooled TLS connections reused
//! and new ones resuming their sessions, health checks over TLS, and a real OpenSSL member
//! (Python's `ssl` module). The TLS member is a second ringlb with a TLS listener in front of a
//! plain mock member: its status page counts the TLS connections and resumptions it saw.

use crate::support::*;

/// A TLS-terminating ringlb ("inner", with an admin listener) for `names`, in front of `a`.
fn inner(pki: &Pki, names: &[&str], a: &Backend) -> Ringlb {
    let pair = pki.issue("inner", names, 90);
    let body = format!(
        "{}{}",
        Pki::listen_tls(&[pair], ""),
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    Ringlb::start(&body, 1)
}

/// The front ringlb (with an admin listener) over one https member at `addr`, with `extra` keys.
fn outer(addr: std::net::SocketAddr, extra: &str, balancer_extra: &str) -> Ringlb {
    let m = format!("{{ url = \"https://{addr}\"{extra} }}");
    Ringlb::start(&with_admin(&simple_config(&[m], balancer_extra), ""), 1)
}

fn ca(pki: &Pki) -> String {
    format!(", ca = \"{}\"", pki.ca_path().display())
}

#[test]
fn an_https_member_that_closes_without_close_notify_cuts_a_body_that_ends_at_the_close() {
    // A body framed by its connection's close is whole only if the close was meant: close_notify
    // from an https member. This one (rustls) ends `/cut` with a bare TCP close; ringlb resets
    // its plain HTTP/1.0 client there, which would otherwise take the body for whole, and ends an
    // HTTP/1.1 client's chunked body without its last chunk.
    use crate::support::pki::close_framed_tls_member;
    use crate::support::raw_member::{
        assert_chunked_whole_then_cut_without_last_chunk, assert_reset_only_when_cut,
    };
    let pki = Pki::new();
    let addr = close_framed_tls_member(&pki.issue("m", &["127.0.0.1"], 90), 100_000);
    let p = Ringlb::start(
        &simple_config(&[format!("{{ url = \"https://{addr}\"{} }}", ca(&pki))], ""),
        1,
    );
    assert_reset_only_when_cut(p.addr, "1.0", &pattern(100_000));
    assert_chunked_whole_then_cut_without_last_chunk(p.addr, &pattern(100_000));
}

#[test]
fn an_https_member_that_resets_cuts_a_body_that_ends_at_the_close_for_a_tls_client() {
    // The https member is a TLS ringlb in front of a raw member that ends the body with a clean
    // close, or with a reset (which that ringlb passes on as a reset, without close_notify); the
    // front ringlb tells its TLS client the same way.
    use crate::support::pki::assert_close_notify_when_whole_reset_when_cut;
    use crate::support::raw_member::close_framed;
    let pki = Pki::new();
    let m = close_framed(100_000);
    let pair = pki.issue("inner", &["127.0.0.1"], 90);
    let inner = Ringlb::start(
        &format!(
            "{}{}",
            Pki::listen_tls(&[pair], ""),
            simple_config(&[member(m.addr)], "")
        ),
        1,
    );
    let front = pki.issue("front", &["site.test"], 90);
    let https = format!("{{ url = \"https://{}\"{} }}", inner.addr, ca(&pki));
    let p = Ringlb::start(
        &format!(
            "{}{}",
            Pki::listen_tls(&[front], ""),
            simple_config(&[https], "")
        ),
        1,
    );
    assert_close_notify_when_whole_reset_when_cut(p.addr, &pki, 100_000);
}

#[test]
fn https_members_are_verified_pooled_and_resume_sessions() {
    let pki = Pki::new();
    let a = Backend::named("A");
    let inner = inner(&pki, &["127.0.0.1", "inner.test"], &a);
    // By IP (the certificate names 127.0.0.1): verified against the CA.
    let p = outer(inner.addr, &ca(&pki), "");
    let mut c = Client::connect(p.addr);
    for i in 0..5 {
        c.send(format!("GET /k{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with('A'));
    }
    // One pooled TLS connection carried all five.
    let seen = report(inner.admin_addr());
    assert_eq!(seen.connections.total, 1);
    let outer_report = report(p.admin_addr());
    let m = &outer_report.balancers[0].members[0];
    assert_eq!((m.pool_hits, m.pool_misses), (4, 1));
    // The inner ringlb was reached over TLS: its member hears https.
    assert!(a
        .requests()
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    drop(c);

    // No pooling: every request a new TLS connection, resuming the session of the last.
    let p = outer(inner.addr, &ca(&pki), "max_idle_per_member = 0");
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/n").status, 200);
    }
    let t = report_when(inner.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.handshakes["full"] + t.handshakes["resumed"] >= 5)
    })
    .tls
    .unwrap();
    assert!(t.handshakes["resumed"] >= 3, "{:?}", t.handshakes);
}

#[test]
fn a_member_certificate_that_does_not_verify_fails_the_connection() {
    let pki = Pki::new();
    let other = Pki::new();
    let a = Backend::named("A");
    let inner = inner(&pki, &["inner.test"], &a);
    // Signed by a CA the front does not trust.
    let p = outer(
        inner.addr,
        &format!(
            ", ca = \"{}\", sni = \"inner.test\"",
            other.ca_path().display()
        ),
        "",
    );
    let r = get(p.addr, "/x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(p.wait_log("TLS handshake with the member failed"));
    let m = report(p.admin_addr()).balancers[0].members[0].clone();
    assert_eq!(m.failures["tls"], 1, "{:?}", m.failures);
    assert_eq!(a.count(), 0);
    // The right CA but a name the certificate does not hold (the IP): refused too.
    let p = outer(inner.addr, &ca(&pki), "");
    assert_eq!(get(p.addr, "/x").status, 503);
    // The right CA and name.
    let p = outer(
        inner.addr,
        &format!("{}, sni = \"inner.test\"", ca(&pki)),
        "",
    );
    assert_eq!(get(p.addr, "/x").status, 200);
    // verify = false: any certificate, and a loud warning at start.
    let p = outer(inner.addr, ", verify = false", "");
    assert!(p
        .logs()
        .iter()
        .any(|l| l.contains("WARN") && l.contains("does NOT check")));
    assert_eq!(get(p.addr, "/x").status, 200);
}

#[test]
fn health_checks_of_https_members_include_the_handshake() {
    let pki = Pki::new();
    let a = Backend::named("A");
    let inner = inner(&pki, &["inner.test"], &a);
    let hc = "hcmethod = \"get\"\nhcuri = \"/health\"\nhcinterval = \"1s\"\nhcfails = 1";
    let good = outer(
        inner.addr,
        &format!("{}, sni = \"inner.test\"", ca(&pki)),
        hc,
    );
    let up = report_when(good.admin_addr(), |r| {
        r.balancers[0].members[0].health.checks >= 1
    });
    assert_eq!(up.balancers[0].members[0].health.state, "up");
    assert_eq!(up.balancers[0].members[0].health.last_result, "200");
    let other = Pki::new();
    let bad = outer(
        inner.addr,
        &format!(
            ", ca = \"{}\", sni = \"inner.test\"",
            other.ca_path().display()
        ),
        hc,
    );
    let down = report_when(bad.admin_addr(), |r| {
        r.balancers[0].members[0].health.state == "down"
    });
    let h = &down.balancers[0].members[0].health;
    assert!(h.last_result.starts_with("tls:"), "{}", h.last_result);
}

#[test]
fn a_bad_ca_file_is_a_config_error_naming_the_member() {
    let dir = crate::support::proxy::TempDir::new();
    let bad = dir.0.join("ca.pem");
    std::fs::write(&bad, "nothing here\n").unwrap();
    let r = Ringlb::try_start(
        &simple_config(
            &[format!(
                "{{ url = \"https://127.0.0.1:9\", ca = \"{}\" }}",
                bad.display()
            )],
            "",
        ),
        1,
    );
    let err = r.err().expect("ringlb refuses to start");
    assert!(err.contains("balancer[0].members[0].ca"), "{err}");
    // ca on a plain member is refused by the config check.
    let r = Ringlb::try_start(
        &simple_config(
            &[format!(
                "{{ url = \"http://127.0.0.1:9\", ca = \"{}\" }}",
                bad.display()
            )],
            "",
        ),
        1,
    );
    assert!(r.err().unwrap().contains("apply to https:// members only"));
}

#[test]
fn a_real_openssl_member() {
    if !tool("python3") {
        return;
    }
    let pki = Pki::new();
    let (cert, key) = pki.issue("py", &["py.test"], 90);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = format!(
        r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("openssl " + self.path + " " + self.headers.get("X-Forwarded-Proto", "-")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{}", "{}")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#,
        cert.display(),
        key.display()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(wait_until(|| std::net::TcpStream::connect(addr).is_ok()));
    let p = outer(addr, &format!("{}, sni = \"py.test\"", ca(&pki)), "");
    let mut c = Client::connect(p.addr);
    for i in 0..3 {
        c.send(format!("GET /o{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("openssl /o{i} http")));
    }
    let _ = child.kill();
    let _ = child.wait();
}
