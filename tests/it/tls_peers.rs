//! HTTPS on the front end with real clients that are not rustls: curl, `openssl s_client` and
//! Python's `ssl` module (all three over OpenSSL). The certificate chosen by SNI (exact, wildcard,
//! none: the default), TLS 1.2 and 1.3 negotiated, http/1.1 by ALPN, a name no certificate covers
//! failing verification, session resumption by ticket (both versions), TLS 1.1 and, with
//! `min_version = "1.3"`, TLS 1.2 refused. Certificates are made at test time. Without a tool the
//! test that needs it fails (`support::admin::unavailable`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::pki::tls_proxy;
use crate::support::proxy::TempDir;
use crate::support::*;

/// One request, on a connection kept open: the client closes it once it has the answer (see
/// [`run`]), so that the tests do not depend on how the server closes (for that, see
/// `a_connection_close_ends_with_close_notify`).
const REQUEST: &[u8] = b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n";

/// The member's answer to [`REQUEST`], its last bytes.
const ANSWER: &str = "A /peer";

/// What a peer tool did.
struct Ran {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Ran {
    /// Everything, for assertion messages.
    fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.out, self.err
        )
    }

    /// The first line of stdout or stderr that contains every one of `needles`.
    fn line_with(&self, needles: &[&str]) -> Option<String> {
        self.out
            .lines()
            .chain(self.err.lines())
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    }
}

/// Runs `cmd` with `input` on its stdin, closed once stdout contains `close_after` (at once
/// when `None`), waiting at most 30 s: past that the process is killed and the test fails.
fn run(cmd: &mut Command, input: &[u8], close_after: Option<&str>) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let t = std::thread::spawn(move || {
            let mut chunk = [0u8; 16384];
            while let Ok(n @ 1..) = r.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        (seen, t)
    };
    let (out, out_thread) = reader(Box::new(child.stdout.take().unwrap()));
    let (err, err_thread) = reader(Box::new(child.stderr.take().unwrap()));
    let exited = Arc::new(AtomicBool::new(false));
    let mut stdin = child.stdin.take().unwrap();
    let (input, marker, seen, gone) = (
        input.to_vec(),
        close_after.map(|m| m.as_bytes().to_vec()),
        out.clone(),
        exited.clone(),
    );
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        let _ = stdin.flush();
        if let Some(m) = marker {
            while !gone.load(Ordering::SeqCst)
                && !seen.lock().unwrap().windows(m.len()).any(|w| w == m)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Dropping stdin closes it.
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    exited.store(true, Ordering::SeqCst);
    let _ = writer.join();
    let _ = out_thread.join();
    let _ = err_thread.join();
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let ran = Ran {
        code: status.and_then(|s| s.code()),
        out: text(&out),
        err: text(&err),
    };
    assert!(
        status.is_some(),
        "{cmd:?} did not finish within 30 s (killed): {}",
        ran.all()
    );
    ran
}

/// `curl -v https://name:port/peer` with the test CA, `name` resolved to the listener (so that
/// curl sends it as SNI and checks the certificate against it); `-w` appends
/// `<status> <http version> <verify result>` on a line of its own.
fn curl(p: &Ringlb, ca: &Path, name: &str, args: &[&str]) -> Ran {
    let port = p.addr.port();
    run(
        Command::new("curl")
            .args(["-sS", "-v", "--max-time", "20", "--cacert"])
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{name}:{port}:127.0.0.1"))
            .args(["-w", "\n%{http_code} %{http_version} %{ssl_verify_result}"])
            .args(args)
            .arg(format!("https://{name}:{port}/peer")),
        b"",
        None,
    )
}

/// The TLS version curl says it negotiated (`* SSL connection using TLSv1.3 / ...`).
fn curl_version(r: &Ran) -> String {
    let line = r
        .line_with(&["SSL connection using"])
        .unwrap_or_else(|| panic!("no `SSL connection using` line: {}", r.all()));
    line.split("using ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn curl_checks_names_negotiates_both_versions_and_http11_by_alpn() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let wild = pki.issue("wild", &["*.example.org"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site, wild], "", &a);
    let ca = pki.ca_path();
    // The exact name and a name under the wildcard: verified (0) and answered by the member.
    for name in ["site.test", "api.example.org"] {
        let r = curl(&p, &ca, name, &[]);
        assert_eq!(r.code, Some(0), "{name}: {}", r.all());
        assert_eq!(r.out, "A /peer\n200 1.1 0", "{name}: {}", r.all());
        // curl offers h2 and http/1.1; the listener picks http/1.1.
        let alpn = r
            .line_with(&["ALPN", "accepted"])
            .unwrap_or_else(|| panic!("{name}: no ALPN agreed: {}", r.all()));
        assert!(alpn.ends_with("http/1.1"), "{name}: {alpn}");
        assert_eq!(curl_version(&r), "TLSv1.3", "{name}: {}", r.all());
    }
    // Each version on its own.
    let r = curl(&p, &ca, "site.test", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(curl_version(&r), "TLSv1.2", "{}", r.all());
    assert!(r.out.ends_with("\n200 1.1 0"), "{}", r.all());
    let r = curl(&p, &ca, "site.test", &["--tlsv1.3"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(curl_version(&r), "TLSv1.3", "{}", r.all());
    assert!(r.out.ends_with("\n200 1.1 0"), "{}", r.all());
    // A name no certificate covers: the default certificate comes, and curl refuses it (60).
    let r = curl(&p, &ca, "other.test", &[]);
    assert_eq!(r.code, Some(60), "{}", r.all());
    // Only the successful exchanges reached the member.
    assert_eq!(a.count(), 4);
    assert!(a
        .requests()
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
}

#[test]
fn a_tls13_only_listener_refuses_curl_limited_to_tls12() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "min_version = \"1.3\"", &a);
    let ca = pki.ca_path();
    let r = curl(&p, &ca, "site.test", &["--tlsv1.2", "--tls-max", "1.2"]);
    // 35: the handshake failed; the server said why (a protocol_version alert).
    assert_eq!(r.code, Some(35), "{}", r.all());
    assert!(r.err.contains("alert protocol version"), "{}", r.all());
    let r = curl(&p, &ca, "site.test", &["--tlsv1.3"]);
    assert_eq!(
        (r.code, curl_version(&r)),
        (Some(0), "TLSv1.3".into()),
        "{}",
        r.all()
    );
    assert_eq!(a.count(), 1);
    let t = report_when(p.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.failures["incompatible"] == 1)
    })
    .tls
    .unwrap();
    assert_eq!(t.failures["incompatible"], 1, "{:?}", t.failures);
}

/// `openssl s_client` to the listener with the test CA (a failed verification ends the
/// handshake), sending [`REQUEST`] and closing (close_notify) once it has the answer. The TLS 1.3
/// session tickets come before the answer, so they have been read by then.
fn s_client(p: &Ringlb, ca: &Path, args: &[&str]) -> Ran {
    run(
        Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(p.addr.to_string())
            .arg("-CAfile")
            .arg(ca)
            .args(["-verify_return_error", "-nocommands"])
            .args(args),
        REQUEST,
        Some(ANSWER),
    )
}

/// The session line s_client prints after the handshake: (`New` or `Reused`, the version).
fn s_client_session(r: &Ran) -> (String, String) {
    let line = r
        .out
        .lines()
        .find(|l| l.starts_with("New, ") || l.starts_with("Reused, "))
        .unwrap_or_else(|| panic!("no session line: {}", r.all()));
    let mut f = line.split(", ");
    (
        f.next().unwrap().to_string(),
        f.next().unwrap_or_default().to_string(),
    )
}

/// The DNS names of the server certificate s_client printed, as `openssl x509` reads them.
fn s_client_names(r: &Ran) -> Vec<String> {
    let begin = r
        .out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate printed: {}", r.all()));
    let end = r.out[begin..].find("-----END CERTIFICATE-----").unwrap() + begin;
    let pem = format!("{}-----END CERTIFICATE-----\n", &r.out[begin..end]);
    let x = run(
        Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName"]),
        pem.as_bytes(),
        None,
    );
    assert_eq!(x.code, Some(0), "{}", x.all());
    x.out
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix("DNS:"))
        .map(str::to_string)
        .collect()
}

/// Asserts that s_client verified the chain and got the member's answer.
fn assert_served(r: &Ran, what: &str) {
    assert_eq!(r.code, Some(0), "{what}: {}", r.all());
    assert!(
        r.out.contains("Verify return code: 0 (ok)"),
        "{what}: {}",
        r.all()
    );
    assert!(r.out.contains("HTTP/1.1 200 "), "{what}: {}", r.all());
    assert!(
        r.out.contains(&format!("\r\n\r\n{ANSWER}")),
        "{what}: {}",
        r.all()
    );
}

#[test]
fn openssl_s_client_sni_versions_and_refused_tls11() {
    if !tool("openssl") {
        return;
    }
    let pki = Pki::new();
    let default = pki.issue("default", &["default.test"], 90);
    let wild = pki.issue("wild", &["*.example.org"], 90);
    let www = pki.issue("www", &["www.example.org"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[default, wild, www], "", &a);
    let ca = pki.ca_path();
    for (sni, names) in [
        (Some("www.example.org"), ["www.example.org"]),
        (Some("api.example.org"), ["*.example.org"]),
        (Some("default.test"), ["default.test"]),
        (Some("other.test"), ["default.test"]),
        (None, ["default.test"]),
    ] {
        let args = match sni {
            Some(n) => vec!["-servername", n],
            None => vec!["-noservername"],
        };
        let r = s_client(&p, &ca, &args);
        assert_served(&r, &format!("{sni:?}"));
        assert_eq!(s_client_names(&r), names, "{sni:?}");
    }
    // Hostname checking on top: the certificate for the name verifies, the default does not.
    let r = s_client(
        &p,
        &ca,
        &[
            "-servername",
            "www.example.org",
            "-verify_hostname",
            "www.example.org",
        ],
    );
    assert_served(&r, "verify_hostname");
    let r = s_client(
        &p,
        &ca,
        &[
            "-servername",
            "other.test",
            "-verify_hostname",
            "other.test",
        ],
    );
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.out.contains("Verify return code: 62 (hostname mismatch)"),
        "{}",
        r.all()
    );
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let r = s_client(&p, &ca, &["-servername", "default.test", flag]);
        assert_served(&r, flag);
        assert_eq!(s_client_session(&r), ("New".into(), version.into()));
    }
    // TLS 1.1 (allowed on the client's side by security level 0): the server refuses it with a
    // fatal alert (rustls says handshake_failure: a TLS 1.1 hello has no signature_algorithms),
    // counts it as incompatible, and nothing is forwarded.
    let before = a.count();
    let r = s_client(
        &p,
        &ca,
        &[
            "-servername",
            "default.test",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ],
    );
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(r.err.contains("SSL alert number"), "{}", r.all());
    assert!(!r.out.contains("HTTP/1.1"), "{}", r.all());
    assert_eq!(a.count(), before);
    // ALPN: http/1.1 among the offers is chosen; h2 alone is refused (no_application_protocol).
    let r = s_client(
        &p,
        &ca,
        &["-servername", "default.test", "-alpn", "h2,http/1.1"],
    );
    assert_served(&r, "alpn h2,http/1.1");
    assert!(r.out.contains("ALPN protocol: http/1.1"), "{}", r.all());
    let r = s_client(&p, &ca, &["-servername", "default.test", "-alpn", "h2"]);
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(r.err.contains("no application protocol"), "{}", r.all());
    let t = report_when(p.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.failures.values().sum::<u64>() >= 3)
    })
    .tls
    .unwrap();
    // The name check failed in the client (it said bad_certificate); TLS 1.1 and h2 alone were
    // refused by the server.
    assert_eq!(
        (
            t.failures["cert_rejected"],
            t.failures["incompatible"],
            t.failures.values().sum::<u64>()
        ),
        (1, 2, 3),
        "{:?}",
        t.failures
    );
}

#[test]
fn openssl_s_client_resumes_sessions_with_tickets_in_tls12_and_tls13() {
    if !tool("openssl") {
        return;
    }
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "", &a);
    let ca = pki.ca_path();
    let dir = TempDir::new();
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let sess = dir.0.join(format!("{version}.sess"));
        let sess = sess.to_str().unwrap();
        let base = ["-servername", "site.test", flag];
        let r = s_client(&p, &ca, &[&base[..], &["-sess_out", sess]].concat());
        assert_served(&r, &format!("{version} first"));
        assert_eq!(s_client_session(&r), ("New".into(), version.into()));
        assert!(
            Path::new(sess).exists(),
            "{version}: no session (ticket) saved: {}",
            r.all()
        );
        let r = s_client(&p, &ca, &[&base[..], &["-sess_in", sess]].concat());
        assert_served(&r, &format!("{version} resumed"));
        assert_eq!(
            s_client_session(&r),
            ("Reused".into(), version.into()),
            "{}",
            r.all()
        );
    }
    // ringlb counted the same: two full handshakes, two resumed.
    let t = report_when(p.admin_addr(), |r| {
        r.tls
            .as_ref()
            .is_some_and(|t| t.handshakes["full"] + t.handshakes["resumed"] == 4)
    })
    .tls
    .unwrap();
    assert_eq!(
        (t.handshakes["full"], t.handshakes["resumed"]),
        (2, 2),
        "{:?}",
        t.handshakes
    );
}

/// Python's `ssl`: verifies against the CA with `server_hostname` (SNI and name check), sends a
/// request, reads the answer (by its Content-Length), prints what it negotiated and the answer;
/// or `verify-failed`. A fourth argument limits it to TLS 1.2.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
if len(sys.argv) > 4:
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    try:
        s = ctx.wrap_socket(raw, server_hostname=name)
    except ssl.SSLCertVerificationError as e:
        print("verify-failed", e.verify_message)
        sys.exit(0)
    with s:
        s.sendall(b"GET /py HTTP/1.1\r\nHost: " + name.encode() + b"\r\n\r\n")
        def more(sofar):
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("closed early after %r" % sofar)
            return chunk
        data = b""
        while b"\r\n\r\n" not in data:
            data += more(data)
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:")][0]
        while len(body) < length:
            body += more(data + body)
        data = head + b"\r\n\r\n" + body
        print("version", s.version())
        print("cipher", s.cipher()[0], s.cipher()[2])
        print("alpn", s.selected_alpn_protocol())
        print("names", " ".join(v for k, v in s.getpeercert()["subjectAltName"] if k == "DNS"))
        sys.stdout.write(data.decode())
"#;

#[test]
fn python_ssl_gets_tls13_and_the_answer() {
    if !tool("python3") {
        return;
    }
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let wild = pki.issue("wild", &["*.example.org"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site, wild], "", &a);
    let ca = pki.ca_path();
    let python = |name: &str, extra: &[&str]| {
        let r = run(
            Command::new("python3")
                .args(["-c", PYTHON_CLIENT, &p.addr.port().to_string()])
                .arg(&ca)
                .arg(name)
                .args(extra),
            b"",
            None,
        );
        assert_eq!(r.code, Some(0), "{name}: {}", r.all());
        r
    };
    for (name, names) in [
        ("site.test", "site.test"),
        ("www.example.org", "*.example.org"),
    ] {
        let r = python(name, &[]);
        assert!(
            r.out.starts_with("version TLSv1.3\ncipher TLS_"),
            "{name}: {}",
            r.all()
        );
        let bits = r.line_with(&["cipher "]).unwrap();
        assert!(
            bits.ends_with(" 128") || bits.ends_with(" 256"),
            "{name}: {bits}"
        );
        assert!(r.out.contains("\nalpn http/1.1\n"), "{name}: {}", r.all());
        assert!(
            r.out.contains(&format!("\nnames {names}\n")),
            "{name}: {}",
            r.all()
        );
        assert!(r.out.contains("\nHTTP/1.1 200 "), "{name}: {}", r.all());
        assert!(r.out.ends_with("\r\n\r\nA /py"), "{name}: {}", r.all());
    }
    // Limited to TLS 1.2: TLS 1.2 with an ECDHE suite.
    let r = python("site.test", &["tls12"]);
    assert!(
        r.out.starts_with("version TLSv1.2\ncipher ECDHE-"),
        "{}",
        r.all()
    );
    assert!(r.out.ends_with("A /py"), "{}", r.all());
    // A name no certificate covers.
    let r = python("other.test", &[]);
    assert!(r.out.starts_with("verify-failed"), "{}", r.all());
    assert!(r.out.contains("mismatch"), "{}", r.all());
    assert_eq!(a.count(), 3);
}

/// When ringlb ends a TLS connection after an answer (`Connection: close`, HTTP/1.0), it sends
/// close_notify before closing TCP (RFC 8446 §6.1), so that the client can tell the end of the
/// connection from a truncation. OpenSSL 3 clients treat a bare TCP close as an error: s_client
/// exits 1 with "unexpected eof while reading", Python's `ssl` raises `SSLEOFError` unless
/// ragged EOFs are suppressed.
#[test]
fn a_connection_close_ends_with_close_notify() {
    if !tool("openssl") {
        return;
    }
    let pki = Pki::new();
    let site = pki.issue("site", &["site.test"], 90);
    let a = Backend::named("A");
    let p = tls_proxy(&[site], "", &a);
    for request in [
        "GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /peer HTTP/1.0\r\n\r\n",
    ] {
        // -ign_eof: s_client reads until the server closes.
        let r = run(
            Command::new("openssl")
                .args(["s_client", "-connect"])
                .arg(p.addr.to_string())
                .arg("-CAfile")
                .arg(pki.ca_path())
                .args(["-servername", "site.test", "-msg", "-ign_eof"])
                .args(["-verify_return_error", "-nocommands"]),
            request.as_bytes(),
            None,
        );
        // (-msg prints each record it reads, so the body is not right after the head.)
        assert!(
            r.out.contains("HTTP/1.1 200 ") && r.out.contains(ANSWER),
            "{request:?}: {}",
            r.all()
        );
        assert!(
            r.out
                .contains("<<< TLS 1.3, Alert [length 0002], warning close_notify"),
            "{request:?}: no close_notify received: {}",
            r.all()
        );
        assert_eq!(r.code, Some(0), "{request:?}: {}", r.all());
    }
}
