//! HTTPS on the front end: the certificate chosen by SNI (exact, wildcard, default), requests over
//! TLS (keep-alive, pipelining, large bodies both ways), what members learn (X-Forwarded-Proto,
//! HSTS), failed handshakes closed and counted by reason, idle TLS connections parking (but not the
//! start of a record, held to the head deadline, nor a client that sent close_notify), certificate
//! reloads (SIGHUP and the admin API: a bad file keeps the old certificates, tickets survive),
//! `redirect_https`, and `ringlb check` on certificate files. Certificates are made at test time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::pki::served_names;
use crate::support::pki::tls_proxy;
use crate::support::proxy::{unsafe_kill, TempDir};
use crate::support::*;

fn get_over(c: &mut Client, path: &str, host: &str) -> Resp {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    c.read_response().expect("a response")
}

#[test]
fn the_certificate_follows_the_server_name() {
    let pki = Pki::new();
    let default = pki.issue("default", &["default.test"], 90);
    let wild = pki.issue("wild", &["*.example.org"], 90);
    let www = pki.issue("www", &["www.example.org"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[default, wild, www], "", &a);
    let cfg = pki.client_config();
    let names = |sni: &str| {
        let c = Client::connect_tls(p.addr, sni, cfg.clone()).expect("handshake");
        served_names(&c)
    };
    assert_eq!(
        names("www.example.org"),
        ["www.example.org"],
        "exact name first"
    );
    assert_eq!(
        names("WWW.Example.Org"),
        ["www.example.org"],
        "names are case-blind"
    );
    assert_eq!(
        names("api.example.org"),
        ["*.example.org"],
        "then the wildcard"
    );
    assert_eq!(names("default.test"), ["default.test"]);
    // No SNI (an IP address) and an unknown name get the default; the client then refuses it.
    let insecure = insecure_config();
    let mut c = Client::connect_tls(p.addr, "127.0.0.1", insecure.clone()).expect("no SNI");
    assert_eq!(served_names(&c), ["default.test"]);
    assert_eq!(get_over(&mut c, "/x", "t").status, 200);
    let c = Client::connect_tls(p.addr, "other.test", insecure).expect("unknown name");
    assert_eq!(served_names(&c), ["default.test"]);
    let e = Client::connect_tls(p.addr, "other.test", cfg)
        .err()
        .expect("verification fails");
    assert!(e.to_string().contains("certificate"), "{e}");
    let r = report_when(p.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.failures["cert_rejected"] == 1)
    });
    let t = r.tls.unwrap();
    assert_eq!(t.handshakes["full"] + t.handshakes["resumed"], 6);
    assert_eq!(t.listeners[0].certificates.len(), 3);
    assert_eq!(t.listeners[0].certificates[1].names, ["*.example.org"]);
    assert!((88..=90).contains(&t.listeners[0].certificates[0].days_left));
}

/// A rustls client config that accepts any certificate (to look at what the server sends).
fn insecure_config() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    )
}

#[test]
fn requests_over_tls_keep_alive_pipeline_and_carry_large_bodies() {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let big = pattern(3 << 20);
    let a = Backend::start(move |r| {
        if r.path == "/big" {
            Reply::Pattern(3 << 20)
        } else if r.path == "/up" {
            Reply::Text(format!("{} {}", r.body.len(), hash(&r.body)))
        } else {
            Reply::Full {
                status: 200,
                headers: vec![("Strict-Transport-Security".into(), "max-age=1".into())],
                body: r.path.clone().into_bytes(),
                chunked: false,
            }
        }
    });
    let p = tls_proxy(&[site], "hsts = \"max-age=31536000\"", &a);
    let mut c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    // Keep-alive: several requests on one connection.
    for i in 0..3 {
        let r = get_over(&mut c, &format!("/k{i}"), "site.test");
        assert_eq!((r.status, r.text()), (200, format!("/k{i}")));
        // ringlb's HSTS comes first (a browser reads only the first); the member's follows.
        let sts: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("strict-transport-security"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(sts, ["max-age=31536000", "max-age=1"]);
    }
    // Pipelining: two requests in one TLS write, answered in order.
    c.send(
        b"GET /p1 HTTP/1.1\r\nHost: site.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: site.test\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().text(), "/p1");
    assert_eq!(c.read_response().unwrap().text(), "/p2");
    // A large response and a large upload, byte for byte.
    let r = get_over(&mut c, "/big", "site.test");
    assert_eq!((r.body.len(), hash(&r.body)), (big.len(), hash(&big)));
    let mut up = format!(
        "POST /up HTTP/1.1\r\nHost: site.test\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    up.extend_from_slice(&big);
    c.send(&up);
    let r = c.read_response().unwrap();
    assert_eq!(r.text(), format!("{} {}", big.len(), hash(&big)));
    // The member learns the client used https.
    let seen = a.requests();
    assert!(seen
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn failed_handshakes_close_and_are_counted_by_reason() {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let body = format!(
        "[limits]\nheader_timeout = \"700ms\"\n{}",
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    let p = Ringlb::start(
        &format!(
            "{}{body}",
            Pki::listen_tls(&[site], "min_version = \"1.3\"")
        ),
        1,
    );
    // Plain HTTP to the TLS port: closed, never forwarded.
    let mut c = Client::connect(p.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.is_closed());
    // Random bytes.
    let mut c = Client::connect(p.addr);
    c.send(&pattern(3000));
    assert!(c.is_closed());
    // Silence: closed at header_timeout.
    let mut c = Client::connect(p.addr);
    let started = std::time::Instant::now();
    assert!(c.is_closed());
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    // A TLS 1.2-only client against min_version 1.3.
    let tls12 = pki.client_config_for(&[&rustls::version::TLS12]);
    assert!(Client::connect_tls(p.addr, "site.test", tls12).is_err());
    // The client that leaves mid-handshake.
    let mut c = Client::connect(p.addr);
    c.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    drop(c);
    let r = report_when(p.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.failures.values().sum::<u64>() == 5)
    });
    let f = &r.tls.unwrap().failures;
    assert_eq!(
        (f["protocol"], f["timeout"], f["incompatible"], f["closed"]),
        (2, 1, 1, 1),
        "{f:?}"
    );
    assert_eq!(a.count(), 0, "nothing reached the member");
    // Still serving.
    let mut c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    assert_eq!(get_over(&mut c, "/ok", "site.test").status, 200);
}

#[test]
fn an_idle_tls_connection_parks_and_serves_again() {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "", &a);
    let mut conns: Vec<Client> = (0..20)
        .map(|_| Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap())
        .collect();
    for c in conns.iter_mut() {
        assert_eq!(get_over(c, "/a", "site.test").status, 200);
    }
    // Idle past the parking delay: all parked (no task, no buffers).
    let r = report_when(p.admin_addr(), |r| r.connections.idle == 20);
    assert_eq!(r.connections.active, 20);
    for c in conns.iter_mut() {
        assert!(get_over(c, "/b", "site.test").text().starts_with("A"));
    }
    // Each again with two pipelined requests arriving in separate TLS records.
    for c in conns.iter_mut() {
        c.send(b"GET /c HTTP/1.1\r\nHost: site.test\r\n\r\n");
        c.send(b"GET /d HTTP/1.1\r\nHost: site.test\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert_eq!(a.count(), 80);
}

#[test]
fn a_tls_connection_answers_after_idle_gaps_around_lending_its_buffers_and_parking() {
    // Gaps before (under 100 ms), around (100-150 ms) and after the moment an idle connection
    // lends its buffers (`conn::LEND_AFTER`), up to where it parks (300-350 ms): the session's
    // buffers go to the core and come back (or another set's do) between its requests.
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "", &a);
    let mut c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    for (i, ms) in (40..=380).step_by(20).enumerate() {
        std::thread::sleep(Duration::from_millis(ms));
        let path = format!("/{i}");
        let r = get_over(&mut c, &path, "site.test");
        assert_eq!(r.text(), format!("A {path}"), "after {ms} ms");
    }
}

/// Replaces a certificate pair's files with a new certificate for `names` (atomically).
fn replace(pki: &Pki, pair: &(std::path::PathBuf, std::path::PathBuf), names: &[&str]) {
    let (c, k) = pki.issue("next", names, 90);
    std::fs::rename(c, &pair.0).unwrap();
    std::fs::rename(k, &pair.1).unwrap();
}

#[test]
fn certificates_reload_on_sighup_and_by_the_admin_api_and_tickets_survive() {
    let pki = Pki::new();
    let pair = pki.issue("site", &["one.test", "two.test"], 90);
    let a = Backend::named("A");
    let mut p = tls_proxy(std::slice::from_ref(&pair), "", &a);
    let admin = p.admin_addr();
    let cfg = pki.client_config();
    // A connection made before the reload, and a session to resume after it.
    let mut before = Client::connect_tls(p.addr, "one.test", cfg.clone()).unwrap();
    assert_eq!(get_over(&mut before, "/x", "one.test").status, 200);
    replace(&pki, &pair, &["two.test", "three.test"]);
    unsafe_kill(p.pid(), "HUP");
    assert!(p.wait_log("TLS certificates reloaded"));
    let r = report_when(admin, |r| r.tls.as_ref().is_some_and(|t| t.reloads == 1));
    assert_eq!(
        r.tls.unwrap().listeners[0].certificates[0].names,
        ["two.test", "three.test"]
    );
    // New handshakes get the new certificate; one.test resumes with its ticket (same keys).
    let c = Client::connect_tls(p.addr, "two.test", cfg.clone()).unwrap();
    assert_eq!(served_names(&c), ["two.test", "three.test"]);
    let resumed = Client::connect_tls(p.addr, "one.test", cfg.clone()).unwrap();
    assert_eq!(
        resumed.tls.as_ref().unwrap().handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    // The connection from before keeps working.
    assert_eq!(get_over(&mut before, "/y", "one.test").status, 200);
    // A bad file: the reload fails loudly and the loaded certificates stay in use.
    std::fs::write(&pair.1, "not a key\n").unwrap();
    unsafe_kill(p.pid(), "HUP");
    assert!(p.wait_log("TLS certificates NOT reloaded"));
    let resp = admin_post(admin, "/api/tls/reload");
    assert_eq!(resp.status, 422, "{}", resp.text());
    assert!(resp.text().contains("site.key"), "{}", resp.text());
    let c = Client::connect_tls(p.addr, "three.test", cfg.clone()).unwrap();
    assert_eq!(served_names(&c), ["two.test", "three.test"]);
    // Fixed: the admin API reloads.
    replace(&pki, &pair, &["four.test"]);
    let resp = admin_post(admin, "/api/tls/reload");
    assert_eq!((resp.status, resp.text().trim()), (200, "{\"reloaded\":1}"));
    let c = Client::connect_tls(p.addr, "four.test", cfg).unwrap();
    assert_eq!(served_names(&c), ["four.test"]);
    let r = report(admin);
    assert_eq!(r.tls.unwrap().reloads, 2);
    assert!(p.terminate().is_some_and(|s| s.success()));
}

fn admin_post(addr: std::net::SocketAddr, path: &str) -> Resp {
    admin(addr, "POST", path, "", None)
}

#[test]
fn reloading_under_load_fails_no_handshake() {
    let pki = Pki::new();
    let pair = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = Arc::new(tls_proxy(std::slice::from_ref(&pair), "", &a));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let cfg = pki.client_config();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (p, stop, failures, done, cfg) = (
                p.clone(),
                stop.clone(),
                failures.clone(),
                done.clone(),
                cfg.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = Client::connect_tls(p.addr, "site.test", cfg.clone())
                        .map(|mut c| get_over(&mut c, "/r", "site.test").status == 200)
                        .unwrap_or(false);
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        replace(&pki, &pair, &["site.test"]);
        unsafe_kill(p.pid(), "HUP");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        done.load(Ordering::Relaxed) > 20,
        "{}",
        done.load(Ordering::Relaxed)
    );
    let r = report_when(p.admin_addr(), |r| {
        r.tls.as_ref().is_some_and(|t| t.reloads == 6)
    });
    assert_eq!(r.tls.unwrap().failures.values().sum::<u64>(), 0);
}

#[test]
fn a_plain_listener_can_redirect_to_https() {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let body = format!(
        "{}[[listen]]\naddress = \"127.0.0.1:0\"\nredirect_https = true\n\n{}",
        Pki::listen_tls(&[site], ""),
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    let p = Ringlb::start(&body, 1);
    let (tls_port, plain) = (p.addrs[0].port(), p.addrs[1]);
    let mut c = Client::connect(plain);
    c.send(b"GET /app/x?q=1 HTTP/1.1\r\nHost: site.test:80\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://site.test:{tls_port}/app/x?q=1")
    );
    // Keep-alive after a redirect; a request with a body is answered and the connection closed.
    c.send(b"POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.header("connection")), (301, Some("close")));
    assert!(c.is_closed());
    // So is a request asking to switch protocols: what follows it is never read as a request.
    let mut c = Client::connect(plain);
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: site.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
GET /next HTTP/1.1\r\nHost: site.test\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.header("connection")), (301, Some("close")));
    assert!(c.is_closed());
    // A Host that is not a plain name is refused, not echoed.
    let mut c = Client::connect(plain);
    c.send(b"GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 400);
    assert_eq!(a.count(), 0, "redirected requests never reach a member");
    let r = report(p.admin_addr());
    assert_eq!(r.redirected, 3);
    let m = admin(p.admin_addr(), "GET", "/metrics", "", None);
    let text = m.text();
    assert!(
        text.contains("ringlb_redirected_requests_total 3"),
        "{text}"
    );
    assert!(
        text.contains("ringlb_tls_certificate_expiry_seconds{"),
        "{text}"
    );
    promtool_accepts(&m.body);
}

#[test]
fn check_validates_certificate_files() {
    let pki = Pki::new();
    let good = pki.issue("good", &["good.test"], 90);
    let soon = pki.issue("soon", &["soon.test"], 10);
    let other = pki.issue("other", &["other.test"], 90);
    let dir = TempDir::new();
    let write = |pairs: &[(std::path::PathBuf, std::path::PathBuf)], routes: &str| {
        let path = dir.0.join("c.toml");
        std::fs::write(
            &path,
            format!(
                "[[listen]]\naddress = \"127.0.0.1:0\"\n{}{}\n{routes}",
                Pki::listen_tls(pairs, ""),
                simple_config(&["{ url = \"http://127.0.0.1:9\" }".to_string()], "")
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let path = write(
        &[good.clone(), soon.clone()],
        "[[route]]\nhost = \"nothere.test\"\npath = \"/\"\nbalancer = \"app\"\n",
    );
    let (code, out, err) = run_cli(&["check", "--config", &path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("covers good.test; expires in 89 days (default)")
            || out.contains("covers good.test; expires in 90 days (default)"),
        "{out}"
    );
    assert!(
        out.contains("warning:") && out.contains("soon.pem expires in"),
        "{out}"
    );
    assert!(
        out.contains("route host nothere.test is not covered"),
        "{out}"
    );
    // A key that does not match its certificate: the key and line are named.
    let path = write(&[good.clone(), (other.0.clone(), good.1.clone())], "");
    let (code, _, err) = run_cli(&["check", "--config", &path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 4, key `listen[0].tls.certs[1]`"),
        "{err}"
    );
    assert!(err.contains("does not fit"), "{err}");
    // And `run` refuses to start with it, saying the same.
    let (code, _, err) = run_cli(&["run", "--config", &path]);
    assert_ne!(code, 0);
    assert!(err.contains("listen[0].tls.certs[1]"), "{err}");
    // A missing file.
    let path = write(&[(dir.0.join("none.pem"), good.1)], "");
    let (code, _, err) = run_cli(&["check", "--config", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("none.pem"), "{err}");
}

#[test]
fn a_tls_connection_ends_with_close_notify() {
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "", &a);
    // HTTP/1.0: the response ends with the connection; the client must see a clean TLS end.
    let mut c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    c.send(b"GET /old HTTP/1.0\r\nHost: site.test\r\n\r\n");
    let all = c
        .read_until_close()
        .expect("close_notify before the TCP close");
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    // A refused request too.
    let mut c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    c.send(b"GET /x HTTP/1.1\r\nHost: site.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    let all = c.read_until_close().expect("close_notify after a refusal");
    assert!(
        all.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn a_body_its_member_cuts_short_ends_a_tls_connection_without_close_notify() {
    // A body that ends at the close is whole only if the close was meant: after the member's
    // clean close the client gets close_notify; after its reset it must not, and gets a reset
    // (`client::End::Reset`).
    use crate::support::pki::assert_close_notify_when_whole_reset_when_cut;
    use crate::support::raw_member::close_framed;
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let m = close_framed(100_000);
    let body = format!(
        "{}{}",
        Pki::listen_tls(&[site], ""),
        simple_config(&[member(m.addr)], "")
    );
    let p = Ringlb::start(&body, 1);
    assert_close_notify_when_whole_reset_when_cut(p.addr, &pki, 100_000);
}

/// A TLS proxy for `site.test` in front of `a`, with a 1 s header timeout and a 6 s keep-alive,
/// and a client connected to it over TLS.
fn short_head_client(pki: &Pki, a: &Backend) -> (Ringlb, Client) {
    let site = pki.issue("site", &["site.test"], 90);
    let body = format!(
        "{}[limits]\nheader_timeout = \"1s\"\nkeepalive_timeout = \"6s\"\n{}",
        Pki::listen_tls(&[site], ""),
        simple_config(&[member(a.addr)], "")
    );
    let p = Ringlb::start(&body, 1);
    let c = Client::connect_tls(p.addr, "site.test", pki.client_config()).unwrap();
    (p, c)
}

#[test]
fn bytes_that_make_no_request_do_not_stretch_the_idle_wait() {
    use std::io::Write;
    let pki = Pki::new();
    let a = Backend::named("A");
    let (_p, mut c) = short_head_client(&pki, &a);
    assert_eq!(get_over(&mut c, "/a", "site.test").status, 200);
    // Idle past the parking delay, then a TLS record header dribbled a byte at a time.
    std::thread::sleep(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let mut closed_after = None;
    for b in [0x17u8, 0x03, 0x03, 0x40, 0x00, 1, 2, 3, 4, 5] {
        if c.s.write_all(&[b]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        c.set_timeout(Duration::from_secs(10));
        assert!(c.is_closed());
        started.elapsed()
    });
    // Closed by the head deadline (1 s from the first byte), not the keep-alive one (6 s).
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(3500),
        "{closed_after:?}"
    );
}

#[test]
fn the_start_of_a_record_behind_a_request_waits_by_the_head_deadline() {
    use std::io::Write;
    let pki = Pki::new();
    let a = Backend::named("A");
    let (_p, mut c) = short_head_client(&pki, &a);
    assert_eq!(get_over(&mut c, "/a", "site.test").status, 200);
    // A request and, in the same write, the first bytes of another record: the server reads
    // both at once (one write is one segment on loopback), and the second waits in its session
    // for the rest. (Apart, the second would come during the idle wait, which the test above
    // covers, and this one would pass without the rule it names.)
    let mut wire = sealed(&mut c, b"GET /b HTTP/1.1\r\nHost: site.test\r\n\r\n", false);
    wire.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3]);
    c.s.write_all(&wire).unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let answered = std::time::Instant::now();
    c.set_timeout(Duration::from_secs(10));
    assert!(c.is_closed());
    // Closed by the head deadline (1 s from the answer), not parked until the keep-alive one
    // (6 s) with the buffer that holds the record's start.
    let closed_after = answered.elapsed();
    assert!(
        closed_after >= Duration::from_millis(800) && closed_after < Duration::from_millis(3500),
        "{closed_after:?}"
    );
    assert_eq!(a.count(), 2);
}

/// `plain` as the records `c`'s TLS session sends for it (then close_notify, when `close`), for a
/// test to write to the socket as it likes.
fn sealed(c: &mut Client, plain: &[u8], close: bool) -> Vec<u8> {
    use std::io::Write;
    let tls = c.tls.as_mut().unwrap();
    tls.writer().write_all(plain).unwrap();
    if close {
        tls.send_close_notify();
    }
    let mut wire = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut wire).unwrap();
    }
    wire
}

#[test]
fn a_close_notify_behind_a_request_ends_the_connection_once_answered() {
    use std::io::Write;
    // A client that says close_notify with its request sends nothing more, and may hold the
    // socket open until it gets ringlb's: the connection ends once answered, not parked until its
    // keep-alive deadline (6 s).
    let pki = Pki::new();
    let a = Backend::named("A");
    let (_p, mut c) = short_head_client(&pki, &a);
    let wire = sealed(&mut c, b"GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n", true);
    c.s.write_all(&wire).unwrap();
    let sent = std::time::Instant::now();
    assert_eq!(c.read_response().unwrap().status, 200);
    c.set_timeout(Duration::from_secs(10));
    assert_eq!(c.read_until_close().expect("close_notify").len(), 0);
    let closed_after = sent.elapsed();
    assert!(
        closed_after < Duration::from_millis(2000),
        "{closed_after:?}"
    );
}

#[test]
fn a_cr_in_a_record_split_behind_a_request_is_dropped_as_between_requests() {
    use std::io::Write;
    // A record whose plaintext is one CR, its first bytes sent behind a request: the connection
    // goes straight to reading a head (see above), where the CR must be dropped as the idle wait
    // drops it, so the request that follows in a later record is served, not refused as `\rGET`.
    let pki = Pki::new();
    let a = Backend::named("A");
    let (_p, mut c) = short_head_client(&pki, &a);
    let mut wire = sealed(&mut c, b"GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n", false);
    let cr = sealed(&mut c, b"\r", false);
    let next = sealed(&mut c, b"GET /b HTTP/1.1\r\nHost: site.test\r\n\r\n", false);
    wire.extend_from_slice(&cr[..3]);
    c.s.write_all(&wire).unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    c.s.write_all(&cr[3..]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.s.write_all(&next).unwrap();
    assert_eq!(c.read_response().unwrap().text(), "A /b");
}
