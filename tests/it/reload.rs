//! Live reload of the whole configuration (SIGHUP, `POST /api/reload`, `ringlb reload`): members
//! added, removed and re-weighted under load with no failed request; statistics and pooled
//! connections of unchanged members carried over; a bad file keeps the running configuration,
//! says why and is counted; settings that need a restart are reported and kept; admin changes
//! kept across a restart by the state file.

use std::time::Duration;

use crate::support::admin::{admin, report, report_when, set_member_status, with_admin};
use crate::support::backend::Backend;
use crate::support::client::{get, Client};
use crate::support::load::Load;
use crate::support::proxy::{member, run_cli, simple_config, unsafe_kill, Ringlb, TempDir};
use crate::support::wait_until;

fn weighted(b: &Backend, weight: u32) -> String {
    format!("{{ url = \"http://{}\", weight = {weight} }}", b.addr)
}

fn body(members: &[String]) -> String {
    with_admin(&simple_config(members, ""), "")
}

fn reload_cli(p: &Ringlb) -> (i32, String, String) {
    let url = format!("http://{}", p.admin_addr());
    run_cli(&["reload", "--admin", &url])
}

#[test]
fn members_change_under_load_without_a_failed_request() {
    let (a, b, c) = (
        Backend::named("A"),
        Backend::named("B"),
        Backend::named("C"),
    );
    let p = Ringlb::start(&body(&[member(a.addr), member(b.addr)]), 2);
    let load = Load::default();
    let clients = load.keep_alive(p.addr, 4);
    let sets = [
        vec![weighted(&b, 1), weighted(&c, 3)],
        vec![weighted(&a, 2), weighted(&c, 1)],
        vec![member(a.addr), member(b.addr), member(c.addr)],
        vec![member(b.addr)],
        vec![member(a.addr), member(b.addr)],
    ];
    let mut generation = 1;
    for round in 0..2 {
        for set in &sets {
            std::thread::sleep(Duration::from_millis(150));
            p.rewrite_config(&body(set));
            let (code, out, err) = if round == 0 {
                reload_cli(&p)
            } else {
                let r = admin(p.admin_addr(), "POST", "/api/reload", "", None);
                (i32::from(r.status != 200), r.text(), String::new())
            };
            assert_eq!(code, 0, "{out} {err}");
            generation += 1;
            assert!(out.contains(&generation.to_string()), "{out}");
        }
    }
    // Only B from here on: A and C get nothing once every core runs it.
    p.rewrite_config(&body(&[member(b.addr)]));
    assert_eq!(reload_cli(&p).0, 0);
    std::thread::sleep(Duration::from_millis(300));
    let (a_then, c_then) = (a.count(), c.count());
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed) = load.finish(clients);
    assert_eq!(failed, 0, "of {sent} requests");
    assert!(sent > 100, "{sent}");
    assert!(c_then > 0, "C took requests while it was a member");
    assert_eq!(
        (a.count(), c.count()),
        (a_then, c_then),
        "removed members get nothing"
    );
    let r = report_when(p.admin_addr(), |r| r.config.adopted);
    assert_eq!(r.config.generation, generation + 1);
    assert_eq!(r.config.reload_failures, 0);
    assert_eq!(r.balancers[0].members.len(), 1);
}

#[test]
fn an_unchanged_member_keeps_its_statistics_and_pooled_connections() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(&body(&[member(a.addr)]), 1);
    let mut c = Client::connect(p.addr);
    for _ in 0..20 {
        c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let before = report_when(p.admin_addr(), |r| r.balancers[0].members[0].selected >= 20);
    assert_eq!(a.connections(), 1, "one pooled connection served them all");
    // B added before A: A's index changes, its identity (balancer + URL) does not.
    p.rewrite_config(&body(&[member(b.addr), member(a.addr)]));
    assert_eq!(reload_cli(&p).0, 0);
    for _ in 0..40 {
        c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert!(b.count() > 0);
    assert_eq!(
        a.connections(),
        1,
        "A's idle pooled connection was carried over"
    );
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0]
            .members
            .iter()
            .map(|m| m.selected)
            .sum::<u64>()
            >= 60
    });
    let a_now = r.balancers[0]
        .members
        .iter()
        .find(|m| m.url.contains(&a.addr.to_string()))
        .unwrap();
    assert!(
        a_now.selected > before.balancers[0].members[0].selected,
        "A's counters continued ({} then, {} now)",
        before.balancers[0].members[0].selected,
        a_now.selected
    );
}

#[test]
fn a_removed_members_pooled_connections_close_a_few_at_a_time() {
    // Closing a removed member's idle connections is a system call and a FIN each on the
    // worker's CPU: the tick's sweep closes them, at most 16 per 100 ms, not all at adoption.
    use crate::support::raw_member::RawMember;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    const HELD: usize = 48;
    let arrived = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(Mutex::new(Vec::new()));
    let (a2, c2) = (arrived.clone(), closes.clone());
    // Each of HELD connections answers once all HELD have arrived (so ringlb pools HELD), then
    // notes when ringlb closes it.
    let m = RawMember::start(move |c| {
        let Some(_) = c.read_request() else { return };
        a2.fetch_add(1, Ordering::SeqCst);
        assert!(wait_until(|| a2.load(Ordering::SeqCst) >= HELD));
        c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        if c.wait_peer_close(Duration::from_secs(20)) {
            c2.lock().unwrap().push(Instant::now());
        }
    });
    let b = Backend::named("B");
    let with_ttl =
        |members: &[String]| with_admin(&simple_config(members, "idle_ttl = \"60s\""), "");
    let p = Ringlb::start(&with_ttl(&[member(m.addr)]), 1);
    let held: Vec<_> = (0..HELD)
        .map(|_| std::thread::spawn(move || get(p.addr, "/").status))
        .collect();
    for h in held {
        assert_eq!(h.join().unwrap(), 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(closes.lock().unwrap().is_empty(), "all {HELD} pooled");
    p.rewrite_config(&with_ttl(&[member(b.addr)]));
    assert_eq!(reload_cli(&p).0, 0);
    assert!(
        wait_until(|| closes.lock().unwrap().len() == HELD),
        "every one closes ({} did)",
        closes.lock().unwrap().len()
    );
    let at = closes.lock().unwrap().clone();
    let (first, last) = (at.iter().min().unwrap(), at.iter().max().unwrap());
    // 48 at 16 a sweep: three sweeps, 200 ms apart from the first to the last.
    assert!(
        *last - *first >= Duration::from_millis(150),
        "closed over {:?}, not a few at a time",
        *last - *first
    );
    assert_eq!(get(p.addr, "/").status, 200, "B answers");
}

#[test]
fn a_bad_file_keeps_the_running_configuration_and_says_why() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let good = body(&[member(a.addr)]);
    let p = Ringlb::start(&good, 2);
    // A misspelt key: the error names it and its line.
    p.rewrite_config(&format!("{good}\n[limits]\nheader_timeout_typo = \"5s\"\n"));
    let r = admin(p.admin_addr(), "POST", "/api/reload", "", None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text()
            .contains("line 18, key `limits.header_timeout_typo`"),
        "{}",
        r.text()
    );
    let (code, _, err) = reload_cli(&p);
    assert_eq!(code, 1);
    assert!(err.contains("running configuration stays"), "{err}");
    // A member with an unusable address, through SIGHUP: logged, counted.
    p.rewrite_config(&body(&[
        "{ url = \"http://no-such-host.invalid:80\" }".into()
    ]));
    unsafe_kill(p.pid(), "HUP");
    assert!(p.wait_log("reload failed, the running configuration stays"));
    let r = report_when(p.admin_addr(), |r| r.config.reload_failures == 3);
    assert_eq!((r.config.generation, r.config.reload_failures), (1, 3));
    let m = admin(p.admin_addr(), "GET", "/metrics", "", None).text();
    assert!(m.contains("ringlb_config_reload_failures_total 3"), "{m}");
    assert!(m.contains("ringlb_config_generation 1"), "{m}");
    assert_eq!(get(p.addr, "/x").header("X-Backend"), Some("A"));
    // Settings that need a restart: reported and kept; the rest is applied. (The workers come
    // from --workers here, which a reload applies again, as at start.)
    let never_opened = std::env::temp_dir().join(format!("ringlb-reload-{}.log", p.pid()));
    p.rewrite_config(&format!(
        "[server]\nworkers = 3\n[log]\naccess = \"{}\"\n{}",
        never_opened.display(),
        body(&[member(b.addr)])
    ));
    assert_eq!(reload_cli(&p).0, 0);
    assert!(p.wait_log("log.access changed in the file: restart needed"));
    assert!(!never_opened.exists());
    assert_eq!(report(p.admin_addr()).workers, 2);
    assert!(wait_until(
        || get(p.addr, "/x").header("X-Backend") == Some("B")
    ));
}

#[test]
fn admin_changes_survive_a_restart_through_the_state_file() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let dir = TempDir::new();
    let state = dir.0.join("state.json");
    let config = with_admin(
        &simple_config(&[member(a.addr), member(b.addr)], ""),
        &format!("state_file = \"{}\"", state.display()),
    );
    let mut p = Ringlb::start(&config, 2);
    set_member_status(p.admin_addr(), 0, "disabled");
    let r = admin(
        p.admin_addr(),
        "POST",
        "/api/balancers/app/members/1",
        r#"{"weight":7}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(|| std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"weight\": 7"))),
        "the main thread wrote the state file"
    );
    assert!(p.terminate().is_some_and(|s| s.success()));
    // A new process with the same files: the changes are back before the first request.
    let p = Ringlb::start(&config, 2);
    for _ in 0..6 {
        assert_eq!(get(p.addr, "/x").header("X-Backend"), Some("B"));
    }
    let r = report(p.admin_addr());
    let m = &r.balancers[0].members;
    assert_eq!(
        (m[0].status.as_str(), m[0].overridden.clone()),
        ("disabled", vec!["status".to_string()])
    );
    assert_eq!(
        (m[1].weight, m[1].overridden.clone()),
        (7, vec!["weight".to_string()])
    );
    let url = format!("http://{}", p.admin_addr());
    let (code, out, _) = run_cli(&["status", "--admin", &url]);
    assert_eq!(code, 0);
    assert!(out.contains("disabled*") && out.contains("7*"), "{out}");
    assert!(out.contains("set through the admin API"), "{out}");
    // The file changes member 0's status itself: the file wins, and the state file follows.
    p.rewrite_config(&with_admin(
        &simple_config(
            &[
                format!("{{ url = \"http://{}\", status = \"standby\" }}", a.addr),
                member(b.addr),
            ],
            "",
        ),
        &format!("state_file = \"{}\"", state.display()),
    ));
    assert_eq!(reload_cli(&p).0, 0);
    let m = report(p.admin_addr()).balancers[0].members.clone();
    assert_eq!(
        (m[0].status.as_str(), m[0].overridden.len()),
        ("standby", 0)
    );
    assert_eq!(m[1].weight, 7, "an unchanged member keeps its admin change");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(!saved.contains("disabled"), "{saved}");
}
