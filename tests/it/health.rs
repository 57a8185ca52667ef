//! Active health checks against the real binary: a failing check takes a member out and
//! `hcpasses` passes bring it back, `tcp`, `hcbody_excludes`, `hcexpect`, `cping`, a passing
//! check ending a passive failure, a hung member taken out by `hctimeout`, one checker per box,
//! what the status endpoints show, and a check in progress not holding up shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringlb::admin::report::{HealthReport, StatusReport};

use crate::support::ajp_container::AjpContainer;
use crate::support::*;

/// Checks every second with GET `/health`, plus `extra` balancer keys.
fn checked(members: &[String], extra: &str) -> String {
    with_admin(
        &simple_config(
            members,
            &format!("hcmethod = \"get\"\nhcuri = \"/health\"\nhcinterval = \"1s\"\n{extra}"),
        ),
        "",
    )
}

fn health(r: &StatusReport, i: usize) -> &HealthReport {
    &r.balancers[0].members[i].health
}

/// Member `i` is in `state` and every core applied it.
fn settled(r: &StatusReport, i: usize, state: &str) -> bool {
    health(r, i).state == state && health(r, i).applied
}

/// A member whose `/health` answers 200 while `ok` is set, else 503 (or `sick`); other paths
/// answer 200 with `X-Backend: name`. Counts the checks it got.
fn member_with_health(
    name: &'static str,
    ok: Arc<AtomicBool>,
    sick: fn() -> Reply,
    checks: Arc<AtomicUsize>,
) -> Backend {
    Backend::start(move |r| {
        if r.path != "/health" {
            return Reply::Full {
                status: 200,
                headers: vec![("X-Backend".into(), name.into())],
                body: name.as_bytes().to_vec(),
                chunked: false,
            };
        }
        checks.fetch_add(1, Ordering::SeqCst);
        if ok.load(Ordering::SeqCst) {
            Reply::Text("ok".into())
        } else {
            sick()
        }
    })
}

fn unavailable() -> Reply {
    Reply::Full {
        status: 503,
        headers: vec![],
        body: b"busy".to_vec(),
        chunked: false,
    }
}

fn backends(p: &Ringlb, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = get(p.addr, &format!("/r{i}"));
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-backend").unwrap_or("?").to_string()
        })
        .collect()
}

#[test]
fn a_failing_check_takes_a_member_out_until_hcpasses_pass() {
    let ok = Arc::new(AtomicBool::new(false));
    let a = member_with_health("A", ok.clone(), unavailable, Default::default());
    let b = Backend::named("B");
    let p = Ringlb::start(
        &checked(&[member(a.addr), member(b.addr)], "hcpasses = 2"),
        2,
    );
    let admin = p.admin_addr();
    let r = report_when(admin, |r| settled(r, 0, "down"));
    assert!(settled(&r, 0, "down"), "{r:?}");
    assert_eq!(health(&r, 0).last_result, "status 503 not in 200-399");
    assert!(settled(&r, 1, "up"), "{r:?}");
    let served_before = a.requests().iter().filter(|q| q.path != "/health").count();
    assert!(backends(&p, 20).iter().all(|b| b == "B"));
    let served = a.requests().iter().filter(|q| q.path != "/health").count();
    assert_eq!(
        served, served_before,
        "no client request reached the member"
    );
    assert!(p.wait_log("member down"), "the change is logged");

    ok.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_one_pass_down = false;
    loop {
        let r = report(admin);
        let h = health(&r, 0);
        if h.consecutive_passes >= 1 {
            // Up exactly when two checks in a row passed.
            assert_eq!(h.state == "down", h.consecutive_passes < 2, "{h:?}");
            saw_one_pass_down |= h.consecutive_passes == 1;
        }
        if settled(&r, 0, "up") {
            break;
        }
        assert!(Instant::now() < deadline, "never came back: {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(saw_one_pass_down, "one pass was not enough");
    assert!(p.wait_log("member up again"));
    assert!(
        backends(&p, 10).iter().any(|b| b == "A"),
        "back in rotation"
    );
}

#[test]
fn tcp_check_takes_out_a_closed_port() {
    let dead = closed_port();
    let b = Backend::named("B");
    let members = [
        format!("{{ url = \"http://{dead}\", hcmethod = \"tcp\", hcinterval = \"1s\" }}"),
        member(b.addr),
    ];
    let p = Ringlb::start(&with_admin(&simple_config(&members, ""), ""), 2);
    let r = report_when(p.admin_addr(), |r| settled(r, 0, "down"));
    assert!(settled(&r, 0, "down"), "{r:?}");
    assert_eq!(health(&r, 0).method, "tcp");
    assert_eq!(health(&r, 0).last_result, "connect refused");
    assert_eq!(health(&r, 1).method, "none", "only that member is checked");
    let selected = r.balancers[0].members[0].selected;
    assert!(backends(&p, 10).iter().all(|b| b == "B"));
    let r = report_when(p.admin_addr(), |r| r.balancers[0].members[1].selected >= 10);
    assert_eq!(
        r.balancers[0].members[0].selected, selected,
        "a member down by its check is not even tried"
    );
}

#[test]
fn body_excludes_takes_out_a_member_under_maintenance() {
    let ok = Arc::new(AtomicBool::new(false));
    let maintenance = || Reply::Full {
        status: 200,
        headers: vec![],
        body: b"<html><h1>Under maintenance</h1></html>".to_vec(),
        chunked: true,
    };
    let a = member_with_health("A", ok.clone(), maintenance, Default::default());
    let b = Backend::named("B");
    let p = Ringlb::start(
        &checked(
            &[member(a.addr), member(b.addr)],
            "hcbody_excludes = \"Under maintenance\"",
        ),
        1,
    );
    let r = report_when(p.admin_addr(), |r| settled(r, 0, "down"));
    assert!(settled(&r, 0, "down"), "{r:?}");
    assert_eq!(
        health(&r, 0).last_result,
        "body contains \"Under maintenance\""
    );
    assert!(backends(&p, 6).iter().all(|b| b == "B"));
    ok.store(true, Ordering::SeqCst);
    let r = report_when(p.admin_addr(), |r| settled(r, 0, "up"));
    assert!(settled(&r, 0, "up"), "{r:?}");
    assert_eq!(health(&r, 0).last_result, "200");
}

#[test]
fn hcexpect_decides_which_statuses_pass() {
    let teapot = Backend::start(|_| Reply::Full {
        status: 418,
        headers: vec![("X-Backend".into(), "T".into())],
        body: vec![],
        chunked: false,
    });
    let plain = Backend::named("P");
    let p = Ringlb::start(
        &checked(
            &[member(teapot.addr), member(plain.addr)],
            "hcexpect = \"204,418\"",
        ),
        1,
    );
    let r = report_when(p.admin_addr(), |r| {
        settled(r, 1, "down") && health(r, 0).checks >= 2
    });
    assert_eq!(health(&r, 0).state, "up");
    assert_eq!(health(&r, 0).last_result, "418");
    assert!(settled(&r, 1, "down"), "{r:?}");
    assert_eq!(health(&r, 1).last_result, "status 200 not in 204,418");
}

#[test]
fn cping_checks_ajp_members() {
    let container = AjpContainer::start(|_| Vec::new());
    // Speaks HTTP: it closes on a CPING.
    let not_ajp = Backend::named("H");
    let members = [
        container.member(),
        format!("{{ url = \"ajp://{}\" }}", not_ajp.addr),
    ];
    // A balancer-wide GET check means CPING for AJP members.
    let p = Ringlb::start(&checked(&members, ""), 1);
    let r = report_when(p.admin_addr(), |r| {
        settled(r, 1, "down") && health(r, 0).checks >= 2
    });
    let (good, bad) = (health(&r, 0), health(&r, 1));
    assert_eq!((good.method.as_str(), good.state.as_str()), ("cping", "up"));
    assert_eq!(good.last_result, "cpong");
    assert_eq!((bad.method.as_str(), bad.state.as_str()), ("cping", "down"));
    assert_eq!(bad.last_result, "no cpong");
}

#[test]
fn a_passing_check_ends_a_passive_failure_before_retry() {
    let a = Backend::start(|r| {
        if r.path == "/fail" {
            unavailable()
        } else {
            Reply::Full {
                status: 200,
                headers: vec![("X-Backend".into(), "A".into())],
                body: b"A".to_vec(),
                chunked: false,
            }
        }
    });
    let p = Ringlb::start(
        &checked(&[member(a.addr)], "failonstatus = [503]\nretry = \"60s\""),
        1,
    );
    let r = get(p.addr, "/fail");
    assert_eq!(r.status, 503);
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members[0].marked_failed >= 1
    });
    assert_eq!(r.balancers[0].members[0].marked_failed, 1, "{r:?}");
    // Without the check the member would stay out for 60 s; a passing check brings it back.
    let started = Instant::now();
    assert!(wait_until(|| {
        std::thread::sleep(Duration::from_millis(40));
        get(p.addr, "/").header("x-backend") == Some("A")
    }));
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = report(p.admin_addr());
    assert!(!r.balancers[0].members[0].failed, "{r:?}");
    assert_eq!(health(&r, 0).state, "up", "the member was never down");
}

#[test]
fn checks_run_once_per_box_not_once_per_core() {
    let checks = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicBool::new(true));
    let a = member_with_health("A", ok, unavailable, checks.clone());
    let started = Instant::now();
    let p = Ringlb::start(&checked(&[member(a.addr)], ""), 2);
    assert!(wait_until(|| checks.load(Ordering::SeqCst) >= 4));
    // One prober checks at 0, 1, 2 and 3 s; one per core would have made 4 checks within 1 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2500), "4 checks in {took:?}");
    let r = report(p.admin_addr());
    let seen = checks.load(Ordering::SeqCst) as u64;
    let counted = health(&r, 0).checks;
    assert!(
        counted + 1 >= seen && counted <= seen,
        "{counted} vs {seen}"
    );
    assert_eq!(health(&r, 0).passes, counted);
}

#[test]
fn status_json_html_and_metrics_show_the_checks() {
    let a = member_with_health(
        "A",
        Arc::new(AtomicBool::new(true)),
        unavailable,
        Default::default(),
    );
    let dead = closed_port();
    let p = Ringlb::start(&checked(&[member(a.addr), member(dead)], ""), 1);
    let admin_addr = p.admin_addr();
    let r = report_when(admin_addr, |r| {
        settled(r, 1, "down") && health(r, 0).checks >= 1
    });
    let up = health(&r, 0);
    assert_eq!((up.method.as_str(), up.state.as_str()), ("get", "up"));
    assert_eq!(up.last_result, "200");
    assert!(up.last_latency_us > 0);
    assert!(up.seconds_since_check.is_some_and(|s| s <= 2), "{up:?}");
    assert!(up.consecutive_passes >= 1 && up.consecutive_fails == 0);
    let down = health(&r, 1);
    assert_eq!(down.last_result, "connect refused");
    assert!(down.consecutive_fails >= 1 && down.consecutive_passes == 0);
    assert_eq!(r.balancers[0].members[1].marked_failed, 0);

    let html = admin(admin_addr, "GET", "/status", "", None).text();
    assert!(html.contains("get: up · 200 in"), "{html}");
    assert!(html.contains("get: down · connect refused in"), "{html}");
    assert!(html.contains("Marked failed"));

    let metrics = admin(admin_addr, "GET", "/metrics", "", None);
    let text = metrics.text();
    let label = |m: std::net::SocketAddr| format!("balancer=\"app\",member=\"{m}\"");
    for line in [
        format!(
            "ringlb_member_health_up{{{},method=\"get\"}} 1",
            label(a.addr)
        ),
        format!(
            "ringlb_member_health_up{{{},method=\"get\"}} 0",
            label(dead)
        ),
        format!("ringlb_member_marked_failed_total{{{}}} 0", label(a.addr)),
        format!("ringlb_member_up{{{},status=\"active\"}} 0", label(dead)),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains("ringlb_member_health_check_age_seconds{"));
    assert!(text.contains("result=\"fail\"}"));
    promtool_accepts(&metrics.body);
}

#[test]
fn a_check_in_progress_does_not_hold_up_shutdown() {
    let slow = Backend::start(|_| {
        Reply::Delay(
            Duration::from_secs(30),
            Box::new(Reply::Text("late".into())),
        )
    });
    let members = [format!(
        "{{ url = \"http://{}\", hcmethod = \"get\", hcinterval = \"60s\", hctimeout = \"60s\" }}",
        slow.addr
    )];
    let mut p = Ringlb::start(&simple_config(&members, ""), 2);
    assert!(wait_until(|| slow.count() >= 1), "a check is in progress");
    let asked = Instant::now();
    let status = p.terminate().expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(p.wait_log("stopped"));
}

#[test]
fn a_hung_member_is_taken_out_by_hctimeout_and_returns() {
    // Like a JVM in a long GC pause (or `kill -STOP`): connections are accepted, nothing answers.
    let hung = Arc::new(AtomicBool::new(false));
    let flag = hung.clone();
    let a = Backend::start(move |_| {
        let reply = Reply::Full {
            status: 200,
            headers: vec![("X-Backend".into(), "A".into())],
            body: b"A".to_vec(),
            chunked: false,
        };
        if flag.load(Ordering::SeqCst) {
            Reply::Delay(Duration::from_secs(30), Box::new(reply))
        } else {
            reply
        }
    });
    let b = Backend::named("B");
    let p = Ringlb::start(
        &checked(
            &[member(a.addr), member(b.addr)],
            "hcfails = 2\nhctimeout = \"300ms\"\nresponse_timeout = \"5s\"",
        ),
        2,
    );
    let admin = p.admin_addr();
    assert!(settled(
        &report_when(admin, |r| settled(r, 0, "up")),
        0,
        "up"
    ));
    hung.store(true, Ordering::SeqCst);
    let r = report_when(admin, |r| settled(r, 0, "down"));
    assert!(settled(&r, 0, "down"), "{r:?}");
    assert_eq!(health(&r, 0).last_result, "timeout");
    // Every request is answered 200 by B: none went to the hung member (it would get a 504).
    assert!(backends(&p, 10).iter().all(|b| b == "B"));
    hung.store(false, Ordering::SeqCst);
    let r = report_when(admin, |r| settled(r, 0, "up"));
    assert!(settled(&r, 0, "up"), "{r:?}");
    assert!(
        backends(&p, 10).iter().any(|b| b == "A"),
        "back in rotation"
    );
}
