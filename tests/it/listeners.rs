//! Listeners changed by a reload: an address added is bound and served, one removed stops taking
//! connections while its open connections get their next answer (with `Connection: close`), all
//! without a failed request on the listeners that stay; a TLS listener can be added and
//! `redirect_https` turned on live; an address that cannot be bound fails the reload and changes
//! nothing; a binary upgrade after such a reload takes the new listener's sockets too.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::admin::{admin, report, report_when, with_admin};
use crate::support::backend::Backend;
use crate::support::client::{get, Client};
use crate::support::load::Load;
use crate::support::pki::{served_names, Pki};
use crate::support::proxy::{member, run_cli, simple_config, Ringlb, TempDir};
use crate::support::wait_until;

/// A loopback address nothing listens on now.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `[[listen]]` tables for `addresses` (each with `extra` lines after the address).
fn listen(addresses: &[(&str, &str)]) -> String {
    addresses
        .iter()
        .map(|(a, extra)| format!("[[listen]]\naddress = \"{a}\"\n{extra}\n"))
        .collect()
}

fn reload(p: &Ringlb) {
    let url = format!("http://{}", p.admin_addr());
    let (code, out, err) = run_cli(&["reload", "--admin", &url]);
    assert_eq!(code, 0, "{out} {err}");
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn listeners_come_and_go_with_a_reload_without_a_failed_request() {
    let a = Backend::named("A");
    let body = with_admin(&simple_config(&[member(a.addr)], ""), "");
    let p = Ringlb::start(&body, 2);
    let (first, second) = (p.addr, free_addr());
    let second_text = second.to_string();
    let load = Load::default();
    let clients = load.keep_alive(first, 2);
    // Added: the first (written with port 0) keeps its port, the second is bound.
    p.write_config(&(listen(&[("127.0.0.1:0", ""), (&second_text, "")]) + &body));
    reload(&p);
    assert_eq!(get(second, "/x").header("X-Backend"), Some("A"));
    assert_eq!(get(first, "/x").header("X-Backend"), Some("A"));
    std::thread::sleep(Duration::from_millis(200));
    let (sent, failed) = load.finish(clients);
    assert_eq!(failed, 0, "of {sent} requests on the kept listener");

    // Removed, with a keep-alive connection open on it and load on the other.
    let mut open = Client::connect(first);
    open.send(GET);
    assert_eq!(open.read_response().unwrap().status, 200);
    let load = Load::default();
    let clients = load.keep_alive(second, 2);
    p.write_config(&(listen(&[(&second_text, "")]) + &body));
    reload(&p);
    // Its next request is answered, and it is the last.
    open.send(GET);
    let r = open.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(open.is_closed());
    assert!(
        wait_until(|| std::net::TcpStream::connect(first).is_err()),
        "the removed listener still takes connections"
    );
    std::thread::sleep(Duration::from_millis(200));
    let (sent, failed) = load.finish(clients);
    assert_eq!(failed, 0, "of {sent} requests on the kept listener");
    assert!(sent > 10, "{sent}");

    // An address that cannot be bound: the reload fails, nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_text = taken.local_addr().unwrap().to_string();
    p.write_config(&(listen(&[(&second_text, ""), (&taken_text, "")]) + &body));
    let r = admin(p.admin_addr(), "POST", "/api/reload", "", None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains(&format!("cannot listen on {taken_text}")),
        "{}",
        r.text()
    );
    let r = report(p.admin_addr());
    assert_eq!((r.config.generation, r.config.reload_failures), (3, 1));
    assert_eq!(get(second, "/x").status, 200);
    // Back again: the first address is bound anew.
    p.write_config(&(listen(&[(&second_text, ""), (&first.to_string(), "")]) + &body));
    reload(&p);
    assert_eq!(get(first, "/x").header("X-Backend"), Some("A"));
}

#[test]
fn a_tls_listener_and_redirect_https_can_be_added_live() {
    let a = Backend::named("A");
    let pki = Pki::new();
    let pair = pki.issue("site", &["one.test"], 90);
    let body = with_admin(&simple_config(&[member(a.addr)], ""), "");
    let p = Ringlb::start(&body, 1);
    assert!(report(p.admin_addr()).tls.is_none(), "no TLS listener yet");
    let secure = free_addr();
    let tls = Pki::listen_tls(std::slice::from_ref(&pair), "hsts = \"max-age=600\"");
    let secure_text = secure.to_string();
    p.write_config(&(listen(&[("127.0.0.1:0", ""), (&secure_text, &tls)]) + &body));
    reload(&p);
    let mut c = Client::connect_tls(secure, "one.test", pki.client_config()).unwrap();
    assert_eq!(served_names(&c), ["one.test"]);
    c.send(b"GET /x HTTP/1.1\r\nHost: one.test\r\n\r\n");
    assert_eq!(c.read_response().unwrap().header("X-Backend"), Some("A"));
    let r = report_when(p.admin_addr(), |r| r.tls.is_some());
    let listeners = r.tls.unwrap().listeners;
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].address, secure_text);
    assert_eq!(listeners[0].certificates[0].names, ["one.test"]);
    // The plain listener now redirects, to the TLS listener's port.
    let redirect = "redirect_https = true";
    p.write_config(&(listen(&[("127.0.0.1:0", redirect), (&secure_text, &tls)]) + &body));
    reload(&p);
    let mut plain = Client::connect(p.addr);
    plain.send(GET);
    let r = plain.read_response().unwrap();
    assert_eq!(r.status, 301);
    let port = secure.port();
    assert!(
        r.header("Location")
            .is_some_and(|l| l.ends_with(&format!(":{port}/x"))),
        "{:?}",
        r.header("Location")
    );
    assert_eq!(r.header("Connection"), None, "kept alive");
    // Both removed (the file keeps a new one): their open connections get their last answer as
    // their listener gave it — a redirect, and a proxied answer with the listener's HSTS.
    p.write_config(&(listen(&[(&free_addr().to_string(), "")]) + &body));
    reload(&p);
    plain.send(GET);
    let r = plain.read_response().unwrap();
    assert_eq!((r.status, r.header("Connection")), (301, Some("close")));
    c.send(b"GET /x HTTP/1.1\r\nHost: one.test\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.header("X-Backend"), Some("A"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.header("Strict-Transport-Security"), Some("max-age=600"));
    assert!(plain.is_closed() && c.is_closed());
}

#[test]
fn an_upgrade_after_a_reload_takes_the_added_listener_too() {
    let a = Backend::named("A");
    let dir = TempDir::new();
    let sock = dir.0.join("upgrade.sock");
    let body = format!(
        "[server]\nupgrade_socket = \"{}\"\n{}",
        sock.display(),
        with_admin(&simple_config(&[member(a.addr)], ""), "")
    );
    let mut old = Ringlb::start(&body, 2);
    let added = free_addr();
    let added_text = added.to_string();
    old.write_config(&(listen(&[("127.0.0.1:0", ""), (&added_text, "")]) + &body));
    reload(&old);
    assert!(old.wait_log("a new binary may take over"));
    let mut new = old.upgrade().expect("the new process starts");
    assert!(old.wait_exit(Duration::from_secs(10)).is_some());
    let taken = new
        .logs()
        .iter()
        .any(|l| l.contains("listening sockets taken over") && l.contains(&added_text));
    assert!(taken, "{:?}", new.logs());
    assert_eq!(new.addrs, vec![old.addr, added]);
    assert_eq!(get(added, "/x").header("X-Backend"), Some("A"));
    assert!(new.terminate().is_some_and(|s| s.success()));
}
