//! Binary upgrade (`ringlb run --upgrade`): a new process takes the running one's listening
//! sockets over `[server] upgrade_socket`; under load, no connection is refused or reset and no
//! request fails; the old process finishes and exits, the new one serves and can be upgraded in
//! turn; without a running process, `--upgrade` fails clearly. `stop_delay`: after SIGTERM,
//! `/healthz` says draining while ringlb still serves.

use std::time::Duration;

use crate::support::admin::with_admin;
use crate::support::backend::Backend;
use crate::support::client::get;
use crate::support::load::Load;
use crate::support::proxy::{member, run_cli, simple_config, unsafe_kill, Ringlb, TempDir};

fn config(dir: &TempDir, members: &str) -> String {
    let sock = dir.0.join("upgrade.sock");
    format!(
        "[server]\nupgrade_socket = \"{}\"\n{}",
        sock.display(),
        with_admin(&simple_config(&[members.to_string()], ""), "")
    )
}

/// One `GET /x` on a new connection; whether member A's answer came whole (else says what came).
fn one_request(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let attempt = || -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")?;
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(b"A /x") {
            match s.read(&mut chunk)? {
                0 => break,
                n => got.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(got)
    };
    match attempt() {
        Ok(got) if got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"A /x") => true,
        other => {
            eprintln!("failed during the upgrade: {other:?}");
            false
        }
    }
}

#[test]
fn a_new_binary_takes_over_under_load_without_a_failed_request() {
    let a = Backend::named("A");
    let dir = TempDir::new();
    let mut old = Ringlb::start(&config(&dir, &member(a.addr)), 2);
    let addr = old.addr;
    let load = Load::default();
    let mut clients = load.new_connections(3, move || one_request(addr));
    clients.extend(load.keep_alive(addr, 3));
    std::thread::sleep(Duration::from_millis(300));
    assert!(old.wait_log("a new binary may take over"));
    let mut new = old
        .upgrade()
        .expect("the new process starts on the old one's sockets");
    assert_eq!(new.addr, addr, "the same listening address");
    assert!(new
        .logs()
        .iter()
        .any(|l| l.contains("listening sockets taken over")));
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("the old process stops");
    assert!(status.success(), "{status:?}");
    assert!(old
        .logs()
        .iter()
        .any(|l| l.contains("a new process took the listening sockets")));
    // Again, from the new one, once it offers its sockets in turn.
    assert!(new.wait_log("a new binary may take over"));
    let newer = new.upgrade().expect("a second upgrade");
    assert!(new
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    std::thread::sleep(Duration::from_millis(300));
    let (sent, failed) = load.finish(clients);
    assert_eq!(
        failed, 0,
        "of {sent} requests, new connections and keep-alive"
    );
    assert!(sent > 100, "{sent}");
    assert_eq!(get(newer.addr, "/x").header("X-Backend"), Some("A"));
    drop(old);
}

#[test]
fn upgrade_without_a_running_process_fails_clearly() {
    let a = Backend::named("A");
    let dir = TempDir::new();
    let path = dir.0.join("ringlb.toml");
    std::fs::write(
        &path,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n{}",
            config(&dir, &member(a.addr))
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["run", "--config", path.to_str().unwrap(), "--upgrade"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the running ringlb"), "{err}");
}

#[test]
fn stop_delay_keeps_serving_while_healthz_says_draining() {
    let a = Backend::named("A");
    let body = format!(
        "[server]\nstop_delay = \"5s\"\n{}",
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    let mut p = Ringlb::start(&body, 1);
    let admin = p.admin_addr();
    assert_eq!(
        crate::support::admin::admin(admin, "GET", "/healthz", "", None).status,
        200
    );
    unsafe_kill(p.pid(), "TERM");
    assert!(p.wait_log("draining: /healthz answers 503"));
    let r = crate::support::admin::admin(admin, "GET", "/healthz", "", None);
    assert_eq!((r.status, r.text().as_str()), (503, "draining\n"));
    // Still serving new connections meanwhile.
    assert_eq!(get(p.addr, "/x").header("X-Backend"), Some("A"));
    // A second SIGTERM ends the delay: it stops now, not after 5 s.
    let second = std::time::Instant::now();
    unsafe_kill(p.pid(), "TERM");
    let status = p
        .wait_exit(Duration::from_secs(4))
        .expect("stopped on the second SIGTERM");
    assert!(status.success());
    assert!(second.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_stopping_ringlb_ends_a_busy_keep_alive_connection_after_its_next_answer() {
    // Answers ringlb makes itself (404 here) say `Connection: close` once it stops, and a request
    // begun after the stop is the connection's last: a client that keeps asking cannot hold the
    // stop up to `shutdown_grace`.
    let a = Backend::named("A");
    let body = format!(
        "[server]\nshutdown_grace = \"20s\"\n[[balancer]]\nname = \"app\"\nmembers = [{}]\n\
         [[route]]\npath = \"/app\"\nbalancer = \"app\"\n",
        member(a.addr)
    );
    let mut p = Ringlb::start(&body, 1);
    let mut c = crate::support::client::Client::connect(p.addr);
    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 404);
    unsafe_kill(p.pid(), "TERM");
    assert!(p.wait_log("stopping"));
    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c
        .read_response()
        .expect("the request sent after the stop is answered");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.is_closed());
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("stops without waiting out the grace");
    assert!(status.success());
}
