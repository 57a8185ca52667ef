//! The balancer-manager in a browser: HTTP Basic beside the bearer token (the token as password,
//! or a user with a bcrypt hash from Apache's own `htpasswd`), the `Host` check against DNS
//! rebinding, the form token and the cross-site check, and headless Chromium (driven through
//! chromedriver's WebDriver API) logging in and draining a member.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::proxy::TempDir;
use crate::support::*;

const TOKEN: &str = "s3cret-admin-token";

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// One request to the admin listener with the given extra header lines and body.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response().expect("an admin response")
}

fn host(addr: SocketAddr) -> String {
    format!("Host: {addr}\r\n")
}

/// `htpasswd -nbB user password`'s hash (Apache's tool, from apache2-utils).
fn htpasswd(user: &str, password: &str) -> Option<String> {
    if !tool("htpasswd") {
        return None;
    }
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "5", user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd failed");
    let line = String::from_utf8(out.stdout).unwrap();
    Some(line.trim().split_once(':').unwrap().1.to_string())
}

fn status_of(admin: SocketAddr, i: usize) -> String {
    let r = raw(
        admin,
        "GET",
        &format!("/api/balancers/app/members/{i}"),
        &format!("{}Authorization: Bearer {TOKEN}\r\n", host(admin)),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["status"].as_str().unwrap().to_string()
}

/// The form token in a status page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=csrf value=\"")
        .expect("a form token in the page")
        + 17;
    page[at..at + 32].to_string()
}

#[test]
fn the_admin_listener_answers_only_to_its_own_host_names() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr)], ""),
            "hosts = [\"lb1.example.org\"]",
        ),
        1,
    );
    let admin = p.admin_addr();
    for (h, want) in [
        (format!("{admin}"), 200),
        (format!("localhost:{}", admin.port()), 200),
        (format!("LB1.example.org:{}", admin.port()), 200),
        (format!("rebound.attacker.example:{}", admin.port()), 403),
        ("127.0.0.1.attacker.example".into(), 403),
    ] {
        let r = raw(admin, "GET", "/status.json", &format!("Host: {h}\r\n"), "");
        assert_eq!(r.status, want, "Host: {h}: {}", r.text());
        if want == 403 {
            assert!(r.text().contains("[admin] hosts"), "{}", r.text());
        }
    }
    // /healthz says only whether the process serves: probes may name the box however they like.
    let r = raw(
        admin,
        "GET",
        "/healthz",
        "Host: rebound.attacker.example\r\n",
        "",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn browsers_log_in_with_http_basic() {
    let a = Backend::named("A");
    let Some(hash) = htpasswd("operator", "correct horse") else {
        return;
    };
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr)], ""),
            &format!("token = \"{TOKEN}\"\nuser = \"operator\"\npassword_hash = \"{hash}\""),
        ),
        1,
    );
    let admin = p.admin_addr();
    let h = host(admin);
    // No credentials: a challenge a browser answers with its login box.
    let r = raw(admin, "GET", "/status", &h, "");
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer ")),
        "{challenges:?}"
    );
    for (creds, want) in [
        (basic("operator", "correct horse"), 200),
        (basic("operator", "correct horse"), 200), // remembered
        (basic("operator", TOKEN), 200),           // the token as password
        (basic("operator", "wrong horse"), 401),
        (basic("intruder", "correct horse"), 401),
        (basic("intruder", TOKEN), 401), // with [admin] user, only that user
        ("Authorization: Basic !!!\r\n".into(), 401),
        (format!("Authorization: Bearer {TOKEN}\r\n"), 200),
        (format!("Authorization: Bearer {TOKEN}x\r\n"), 401),
    ] {
        let r = raw(admin, "GET", "/status", &format!("{h}{creds}"), "");
        assert_eq!(r.status, want, "{creds}: {}", r.text());
    }
}

#[test]
fn forms_need_the_page_token_and_changes_need_the_same_origin() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr), member(b.addr)], ""),
            &format!("token = \"{TOKEN}\""),
        ),
        1,
    );
    let admin = p.admin_addr();
    let login = format!("{}{}", host(admin), basic("anyone", TOKEN));
    let page = raw(admin, "GET", "/status", &login, "");
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(
        page.contains("<form method=post action=\"/status\""),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let form = |token: &str, status: &str| {
        format!(
            "csrf={token}&balancer=app&member=1&address={}&status={status}&weight=1",
            b.addr
        )
    };
    let form_headers = format!("{login}Content-Type: application/x-www-form-urlencoded\r\n");
    // Without the page's token, or from another site's page: refused, nothing changes.
    let r = raw(
        admin,
        "POST",
        "/status",
        &form_headers,
        &form("0123456789abcdef0123456789abcdef", "disabled"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = raw(
        admin,
        "POST",
        "/status",
        &format!("{form_headers}Origin: http://attacker.example\r\n"),
        &form(&csrf, "disabled"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = raw(
        admin,
        "POST",
        "/status",
        &format!("{form_headers}Sec-Fetch-Site: cross-site\r\n"),
        &form(&csrf, "disabled"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // The JSON API with a browser's Basic credentials from another site: refused too.
    let r = raw(
        admin,
        "POST",
        "/api/balancers/app/members/1",
        &format!("{login}Origin: http://attacker.example\r\nContent-Type: text/plain\r\n"),
        r#"{"status":"disabled"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(status_of(admin, 1), "active");
    // A bad value: 400, nothing changes.
    let r = raw(
        admin,
        "POST",
        "/status",
        &format!("{form_headers}Origin: http://{admin}\r\n"),
        &form(&csrf, "gone"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(status_of(admin, 1), "active");
    // The page's own form: applied, and back to the page.
    let r = raw(
        admin,
        "POST",
        "/status",
        &format!("{form_headers}Origin: http://{admin}\r\nSec-Fetch-Site: same-origin\r\n"),
        &form(&csrf, "disabled"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/status"));
    assert_eq!(status_of(admin, 1), "disabled");
    // A script with the bearer token is no browser: no form token, any Origin.
    let r = raw(
        admin,
        "POST",
        "/api/balancers/app/members/1",
        &format!(
            "{}Authorization: Bearer {TOKEN}\r\nOrigin: http://elsewhere\r\n",
            host(admin)
        ),
        r#"{"status":"active"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status_of(admin, 1), "active");
    // A page from before a reload that moved members: its form names another address, 409.
    let stale = format!("csrf={csrf}&balancer=app&member=1&address=10.9.9.9%3A1&status=disabled");
    let r = raw(admin, "POST", "/status", &form_headers, &stale);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(status_of(admin, 1), "active");
    // Not to be framed by another site; no absolute-form target past the Host check.
    assert_eq!(
        raw(admin, "GET", "/status", &login, "").header("x-frame-options"),
        Some("DENY")
    );
    let r = raw(admin, "GET", "http://attacker.example/status", &login, "");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn ringlb_reload_takes_the_admin_token_from_the_file() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr)], ""),
            &format!("token = \"{TOKEN}\""),
        ),
        1,
    );
    let dir = TempDir::new();
    let file = dir.0.join("ringlb.toml");
    // The admin listener at a wildcard address is reached on loopback.
    let wildcard = format!("0.0.0.0:{}", p.admin_addr().port());
    std::fs::write(
        &file,
        format!("[admin]\naddress = \"{wildcard}\"\ntoken = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["reload", "--config", &file.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 2"), "{out}");
    // Without it, no token: refused, and said why.
    let url = format!("http://{}", p.admin_addr());
    let (code, _, err) = run_cli(&["reload", "--admin", &url]);
    assert_eq!(code, 1);
    assert!(err.contains("token"), "{err}");
}

/// chromedriver on a free port, stopped (by pid) when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

impl Driver {
    fn start() -> Option<Driver> {
        if !tool("chromedriver") || !tool("chromium") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let profile = TempDir::new();
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", d._profile.0.display())],
            }
        }}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Some(d)
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut c = Client::connect(self.addr);
        c.set_timeout(Duration::from_secs(60));
        c.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                self.addr,
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response().expect("a WebDriver answer");
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("WebDriver answered {}: {}", r.status, r.text()));
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn session(&self, method: &str, tail: &str, body: serde_json::Value) -> serde_json::Value {
        let path = format!("/session/{}{tail}", self.session);
        let body = (method == "POST").then_some(body);
        self.call(method, &path, body)
    }

    fn click(&self, css: &str) {
        let e = self.session(
            "POST",
            "/element",
            serde_json::json!({ "using": "css selector", "value": css }),
        );
        let id = e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {e}"))
            .to_string();
        self.session(
            "POST",
            &format!("/element/{id}/click"),
            serde_json::json!({}),
        );
    }

    fn source(&self) -> String {
        self.session("GET", "/source", serde_json::Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = std::panic::catch_unwind(|| self.call("DELETE", &path, None));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_operator_drains_a_member_from_headless_chromium() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let Some(hash) = htpasswd("operator", "correct horse") else {
        return;
    };
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr), member(b.addr)], ""),
            &format!("token = \"{TOKEN}\"\nuser = \"operator\"\npassword_hash = \"{hash}\""),
        ),
        1,
    );
    let Some(browser) = Driver::start() else {
        return;
    };
    let admin = p.admin_addr();
    // Log in: the credentials of the address, as a bookmark would carry them; the browser then
    // sends them with the form too.
    browser.session(
        "POST",
        "/url",
        serde_json::json!({ "url": format!("http://operator:correct%20horse@{admin}/status") }),
    );
    let page = browser.source();
    assert!(page.contains("ringlb status"), "not logged in: {page}");
    // Member 1: choose "draining" (the fifth state) and apply.
    browser.click("form[data-member=\"app/1\"] select option:nth-child(5)");
    browser.click("form[data-member=\"app/1\"] button");
    // The click returns once the browser has sent the form, not once ringlb answered it.
    assert!(
        wait_until(|| status_of(admin, 1) == "draining"),
        "not drained: {}",
        browser.source()
    );
    // The page the browser was sent back to shows it; once its requests are done, drained.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = browser.source();
        if page.contains("draining (drained)") {
            break;
        }
        assert!(Instant::now() < deadline, "never shown drained: {page}");
        std::thread::sleep(Duration::from_millis(300));
        browser.session(
            "POST",
            "/url",
            serde_json::json!({ "url": format!("http://{admin}/status") }),
        );
    }
    // And it is: new requests go to member 0 only.
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("A"));
    }
}
