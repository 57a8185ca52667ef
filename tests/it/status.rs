//! The status and admin endpoint: counts, percentiles, merging across workers, draining, admin
//! changes on every core, tokens, Prometheus format (promtool), the HTML page and its SVG charts
//! (headless Chromium) and `ringlb status`.

use std::time::Duration;

use crate::support::proxy::unsafe_kill;
use crate::support::*;

fn member_named<'a>(
    r: &'a ringlb::admin::report::StatusReport,
    url_part: &str,
) -> &'a ringlb::admin::report::MemberReport {
    r.balancers[0]
        .members
        .iter()
        .find(|m| m.url.contains(url_part))
        .unwrap()
}

#[test]
fn counts_per_member_status_class_and_refusals() {
    let a = Backend::named("A");
    let b = Backend::start(|_| Reply::Full {
        status: 404,
        headers: vec![],
        body: b"nope".to_vec(),
        chunked: false,
    });
    let p = Ringlb::start(
        &with_admin(&simple_config(&[member(a.addr), member(b.addr)], ""), ""),
        1,
    );
    let mut c = Client::connect(p.addr);
    for _ in 0..100 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        c.read_response().unwrap();
    }
    for _ in 0..3 {
        let mut bad = Client::connect(p.addr);
        bad.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n");
        assert_eq!(bad.read_response().unwrap().status, 400);
    }
    let r = report_when(p.admin_addr(), |r| {
        r.refused["400"] == 3 && r.balancers[0].members[1].selected == 50
    });
    let ma = member_named(&r, &a.addr.to_string());
    let mb = member_named(&r, &b.addr.to_string());
    assert_eq!(
        (ma.selected, ma.responses["2xx"], ma.responses["4xx"]),
        (50, 50, 0)
    );
    assert_eq!(
        (mb.selected, mb.responses["2xx"], mb.responses["4xx"]),
        (50, 0, 50)
    );
    assert_eq!(ma.total.lifetime.count, 50);
    assert_eq!(ma.pool_misses, 1, "one connection, reused");
    assert_eq!(ma.pool_hits, 49);
    assert!(ma.bytes_sent > 0 && ma.bytes_received > 0);
    assert_eq!(r.refused["400"], 3);
    assert_eq!(r.connections.total, 4);
}

#[test]
fn percentiles_land_in_the_right_range() {
    let slow = Backend::start(|_| {
        Reply::Delay(
            Duration::from_millis(50),
            Box::new(Reply::Text("ok".into())),
        )
    });
    let p = Ringlb::start(&with_admin(&simple_config(&[member(slow.addr)], ""), ""), 1);
    let mut c = Client::connect(p.addr);
    for _ in 0..20 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        c.read_response().unwrap();
    }
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members[0].total.window.count == 20
    });
    let m = &r.balancers[0].members[0];
    for pct in [
        &m.total.window,
        &m.total.lifetime,
        &m.response_head.lifetime,
    ] {
        assert_eq!(pct.count, 20);
        assert!(pct.p50_us >= 49_000 && pct.p50_us < 1_000_000, "{pct:?}");
        assert!(
            pct.p99_us >= pct.p50_us && pct.max_us >= pct.p99_us,
            "{pct:?}"
        );
    }
    assert_eq!(m.connect.lifetime.count, 1);
    assert!(
        m.connect.lifetime.p50_us < 49_000,
        "connecting on loopback is fast: {:?}",
        m.connect.lifetime
    );
    // The monotonic histograms: every request in a bucket, the 50 ms ones at 50 ms or more.
    for h in [&m.histograms.total, &m.histograms.response_head] {
        assert_eq!(h.count, 20);
        assert_eq!(h.buckets.iter().map(|b| b[1]).sum::<u64>(), 20, "{h:?}");
        assert!(h.buckets.iter().all(|b| b[0] >= 49_000), "{h:?}");
        assert!(h.sum_us >= 20 * 49_000, "{h:?}");
    }
    assert!(r.process_cpu_seconds > 0.0);
    // Once the requests' second is whole, the series holds them.
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members[0]
            .series
            .iter()
            .map(|s| s.requests)
            .sum::<u64>()
            == 20
    });
    let series = &r.balancers[0].members[0].series;
    assert_eq!(
        series.iter().map(|s| s.requests).sum::<u64>(),
        20,
        "{series:?}"
    );
    assert!(!series.is_empty() && series.len() <= 60, "{series:?}");
    assert!(series.windows(2).all(|w| w[1].second == w[0].second + 1));
    assert!(series
        .iter()
        .filter(|s| s.requests > 0)
        .all(|s| s.p50_us >= 49_000));
    let later = report(p.admin_addr());
    assert!(later.process_cpu_seconds >= r.process_cpu_seconds);
}

#[test]
fn merging_across_two_workers_gives_the_sum() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 2);
    // New connections until both workers have taken some (the kernel hashes them over the two
    // listeners); every connection sends 5 requests.
    let mut sent = 0;
    for round in 0..200 {
        let mut c = Client::connect(p.addr);
        for _ in 0..5 {
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            c.read_response().unwrap();
            sent += 1;
        }
        if round >= 20 && round % 10 == 0 {
            let r = report(p.admin_addr());
            if r.connections.per_worker.iter().all(|&n| n > 0) {
                break;
            }
        }
    }
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members[0].total.lifetime.count == sent
    });
    assert!(
        r.connections.per_worker.iter().all(|&n| n > 0),
        "{:?}",
        r.connections.per_worker
    );
    let m = &r.balancers[0].members[0];
    assert_eq!(m.selected, sent);
    assert_eq!(m.responses["2xx"], sent);
    assert_eq!(
        m.total.lifetime.count, sent,
        "the merged histogram holds every core's requests"
    );
    assert_eq!(
        r.connections.per_worker.iter().sum::<u64>(),
        r.connections.total
    );
}

#[test]
fn draining_member_takes_no_new_requests_and_reports_drained() {
    let a = Backend::start(|r| {
        let d = if r.path == "/slow" { 4000 } else { 0 };
        Reply::Delay(Duration::from_millis(d), Box::new(Reply::Text("A".into())))
    });
    let b = Backend::start(|_| Reply::Text("B".into()));
    let p = Ringlb::start(
        &with_admin(&simple_config(&[member(a.addr), member(b.addr)], ""), ""),
        2,
    );
    let admin_addr = p.admin_addr();
    // A request in flight on A (the first pick of worker 0 is A; retry until it lands there).
    let proxy = p.addr;
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(proxy);
        loop {
            c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
            if c.read_response().unwrap().text() == "A" {
                return;
            }
        }
    });
    assert!(wait_until(|| a
        .requests()
        .iter()
        .any(|r| r.path == "/slow")));
    let r = admin(
        admin_addr,
        "POST",
        &format!("/api/balancers/app/members/{}", a.addr),
        r#"{"status":"draining"}"#,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let state = |admin_addr| -> serde_json::Value {
        serde_json::from_slice(
            &admin(admin_addr, "GET", "/api/balancers/app/members/0", "", None).body,
        )
        .unwrap()
    };
    assert!(wait_until(|| state(admin_addr)["applied"] == true));
    let s = state(admin_addr);
    assert_eq!(s["status"], "draining");
    let before = a.count();
    for _ in 0..10 {
        assert_eq!(get(p.addr, "/").text(), "B");
    }
    assert_eq!(a.count(), before, "a draining member got a new request");
    // While the slow request runs, the member is not drained; once it is done, it is.
    let s = state(admin_addr);
    // The slow request (4 s) is still under way: in flight, so not drained.
    assert_eq!(s["in_flight"], 1, "{s}");
    assert_eq!(s["drained"], false, "{s}");
    slow.join().unwrap();
    assert!(wait_until(|| state(admin_addr)["drained"] == true));
    assert_eq!(state(admin_addr)["in_flight"], 0);
}

#[test]
fn admin_changes_reach_every_core() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    let p = Ringlb::start(
        &with_admin(&simple_config(&[member(a.addr), member(b.addr)], ""), ""),
        2,
    );
    let admin_addr = p.admin_addr();
    let r = admin(
        admin_addr,
        "POST",
        "/api/balancers/app/members/0",
        r#"{"status":"disabled"}"#,
        None,
    );
    assert_eq!(r.status, 200);
    assert!(wait_until(|| report(admin_addr).balancers[0].members[0]
        .status
        == "disabled"));
    let applied = || -> bool {
        let v: serde_json::Value = serde_json::from_slice(
            &admin(admin_addr, "GET", "/api/balancers/app/members/0", "", None).body,
        )
        .unwrap();
        v["applied"] == true
    };
    assert!(wait_until(applied));
    for _ in 0..40 {
        assert_eq!(get(p.addr, "/").header("x-backend"), Some("B"));
    }
    let r = report_when(admin_addr, |r| r.connections.total == 40);
    assert!(
        r.connections.per_worker.iter().all(|&n| n > 0),
        "both cores served: {:?}",
        r.connections.per_worker
    );
    // Back to active with weight 3: A takes traffic again on every core.
    let r = admin(
        admin_addr,
        "POST",
        "/api/balancers/app/members/0",
        r#"{"status":"active","weight":3}"#,
        None,
    );
    assert_eq!(r.status, 200);
    assert!(wait_until(applied));
    let a_before = a.count();
    for _ in 0..40 {
        get(p.addr, "/");
    }
    assert!(
        a.count() - a_before >= 20,
        "weight 3:1 gives A most requests: {}",
        a.count() - a_before
    );
}

#[test]
fn a_token_guards_every_admin_request() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr)], ""),
            "token = \"correct-horse\"",
        ),
        1,
    );
    let admin_addr = p.admin_addr();
    for path in [
        "/status",
        "/status.json",
        "/metrics",
        "/api/balancers/app/members/0",
    ] {
        assert_eq!(
            admin(admin_addr, "GET", path, "", None).status,
            401,
            "{path}"
        );
        assert_eq!(
            admin(admin_addr, "GET", path, "", Some("wrong-horse")).status,
            401,
            "{path}"
        );
        assert_eq!(
            admin(admin_addr, "GET", path, "", Some("correct-horse")).status,
            200,
            "{path}"
        );
    }
    let r = admin(
        admin_addr,
        "POST",
        "/api/balancers/app/members/0",
        r#"{"status":"disabled"}"#,
        Some("wrong"),
    );
    assert_eq!(r.status, 401);
    let r = admin(
        admin_addr,
        "GET",
        "/api/balancers/app/members/0",
        "",
        Some("correct-horse"),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "active", "a refused change changed nothing");
    assert_eq!(get(p.addr, "/").status, 200);
    // The liveness probe needs no token and tells nothing but "ok".
    let r = admin(admin_addr, "GET", "/healthz", "", None);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    let r = admin(admin_addr, "GET", "/healthz?probe=7", "", None);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"ok\n"[..]),
        "a query is ignored"
    );
    // A target that is not UTF-8 never reaches the admin paths (`respond` relies on it).
    let mut c = Client::connect(admin_addr);
    let mut raw = b"GET /healthz?\xff HTTP/1.1\r\n".to_vec();
    raw.extend_from_slice(format!("Host: {admin_addr}\r\n\r\n").as_bytes());
    c.send(&raw);
    let r = c.read_response().expect("an answer");
    assert_eq!(r.status, 400, "a target that is not UTF-8: {}", r.text());
    assert_eq!(admin(admin_addr, "POST", "/healthz", "", None).status, 405);
    for other in [
        "/healthz/x",
        "/healthz/?x",
        "/healthz#x",
        "/%68ealthz",
        "/healthzx?y",
    ] {
        let status = admin(admin_addr, "GET", other, "", None).status;
        assert_eq!(status, 401, "{other} is not the probe: it needs the token");
    }
}

#[test]
fn admin_without_token_refuses_a_public_address() {
    let dir = crate::support::proxy::TempDir::new();
    let path = dir.0.join("c.toml");
    std::fs::write(
        &path,
        "[[listen]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 4") && err.contains("admin.address") && err.contains("token"),
        "{err}"
    );
}

#[test]
fn metrics_pass_promtool() {
    let a = Backend::named("A");
    let p = Ringlb::start(
        &with_admin(
            &simple_config(&[member(a.addr), member(closed_port())], ""),
            "",
        ),
        1,
    );
    for _ in 0..10 {
        get(p.addr, "/");
    }
    report_when(p.admin_addr(), |r| r.balancers[0].members[0].selected > 0);
    let r = admin(p.admin_addr(), "GET", "/metrics", "", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    let label = format!("balancer=\"app\",member=\"{}\"", a.addr);
    assert!(
        text.contains(&format!("ringlb_member_selected_total{{{label}}} 10")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "ringlb_request_duration_seconds_count{{{label}}} 10"
    )));
    assert!(text.contains(&format!(
        "ringlb_request_duration_seconds_bucket{{{label},le=\"+Inf\"}} 10"
    )));
    assert!(
        text.contains("kind=\"connect_refused\"} 1"),
        "the dead member's failure is counted"
    );
    promtool_accepts(&r.body);
}

/// Per worker, from `/metrics`: how many ticks ran more than 100 ms late, and the lag's sum (s).
fn lag_past_100ms(admin_addr: std::net::SocketAddr, workers: usize) -> Vec<(u64, f64)> {
    let text = admin(admin_addr, "GET", "/metrics", "", None).text();
    let value = |series: String| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    };
    let name = "ringlb_worker_loop_lag_seconds";
    (0..workers)
        .map(|w| {
            let count = value(format!("{name}_count{{worker=\"{w}\"}}"));
            let within = value(format!("{name}_bucket{{worker=\"{w}\",le=\"0.1\"}}"));
            let sum = value(format!("{name}_sum{{worker=\"{w}\"}}"));
            assert!(
                within <= count,
                "worker {w}: {within} within 100 ms of {count}"
            );
            ((count - within) as u64, sum)
        })
        .collect()
}

#[test]
fn a_stopped_process_shows_in_every_worker_s_loop_lag() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 2);
    // Each worker's ticks are counted (they publish at least once a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let before = loop {
        let text = admin(p.admin_addr(), "GET", "/metrics", "", None).text();
        let counted = (0..2).all(|w| {
            let series = format!("ringlb_worker_loop_lag_seconds_count{{worker=\"{w}\"}} ");
            text.lines()
                .any(|l| l.strip_prefix(series.as_str()).is_some_and(|n| n != "0"))
        });
        if counted {
            break lag_past_100ms(p.admin_addr(), 2);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ticks counted:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every thread of the process stops for 400 ms: each worker's next tick runs late by
    // most of that.
    unsafe_kill(p.pid(), "STOP");
    std::thread::sleep(Duration::from_millis(400));
    unsafe_kill(p.pid(), "CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = lag_past_100ms(p.admin_addr(), 2);
        let shown = before.iter().zip(&after).all(|(b, a)| {
            // One tick past 100 ms late, and at least 250 ms more lag in all.
            a.0 > b.0 && a.1 - b.1 >= 0.25
        });
        if shown {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stop did not show: before {before:?}, after {after:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // `/status.json` says the same, per worker.
    let r = report(p.admin_addr());
    assert_eq!(r.loop_lag.len(), 2);
    for (w, (lag, (past, _))) in r.loop_lag.iter().zip(&before).enumerate() {
        assert_eq!(lag.over[3][0], 100_000, "the fourth bound is 100 ms");
        assert!(lag.over[3][1] > *past, "worker {w}: {lag:?}");
        assert!(
            lag.sum_us >= 250_000 && lag.ticks > 0,
            "worker {w}: {lag:?}"
        );
    }
    // And the page: each worker's mean, the stop's 250 ms and more over its ticks (some tens).
    let page = admin(p.admin_addr(), "GET", "/status", "", None).text();
    for w in 0..2 {
        let fact = format!("worker {w}: mean ");
        let at = page
            .find(&fact)
            .unwrap_or_else(|| panic!("no {fact:?} in:\n{page}"));
        let mean: u64 = page[at + fact.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no mean after {fact:?}"));
        assert!(mean >= 1_000, "worker {w}: a mean of {mean} µs");
    }
}

/// The scheduling policy (field 41 of `/proc/PID/task/TID/stat`) of each of the process's threads
/// named `name`.
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // The fields after the command's closing parenthesis start at field 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        found.push(after.split(' ').nth(41 - 3).unwrap().parse().unwrap());
    }
    found
}

#[test]
fn pages_are_built_on_a_thread_that_gives_way_to_the_workers() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    assert!(
        thread_policies(p.pid(), "ringlb-pages").is_empty(),
        "the page thread starts at the first page"
    );
    let r = admin(p.admin_addr(), "GET", "/metrics", "", None);
    assert_eq!(r.status, 200);
    assert_eq!(thread_policies(p.pid(), "ringlb-pages"), [SCHED_IDLE]);
    assert_eq!(
        thread_policies(p.pid(), "ringlb-w0"),
        [SCHED_OTHER],
        "the worker keeps the normal class"
    );
    assert_eq!(get(p.addr, "/").status, 200);
}

#[test]
fn status_page_renders_in_headless_chromium() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    get(p.addr, "/");
    report_when(p.admin_addr(), |r| r.balancers[0].members[0].selected == 1);
    let r = admin(p.admin_addr(), "GET", "/status?refresh=5", "", None);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<meta http-equiv=refresh content=\"5\">"));
    if !tool("chromium") {
        return;
    }
    let dir = crate::support::proxy::TempDir::new();
    let out = headless_chromium(&dir.0, &format!("http://{}/status", p.admin_addr()), &[]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table class=\"members\">"),
        "no member table in the rendered page: {dom}"
    );
    assert!(dom.contains(&format!("http://{}", a.addr)), "{dom}");
    assert!(dom.contains("<td class=\"state\">active</td>"), "{dom}");
    assert!(dom.contains("<th>p99.9</th>"), "{dom}");
}

/// The `<figure>` of the member at `addr` on the status page (its charts).
fn member_figure(page: &str, addr: std::net::SocketAddr) -> &str {
    let caption = format!("<code>http://{addr}</code>");
    let at = page
        .find(&caption)
        .unwrap_or_else(|| panic!("no chart figure captioned {caption}: {page}"));
    let start = page[..at]
        .rfind("<figure")
        .expect("a <figure> around the caption");
    &page[start..at + page[at..].find("</figure>").expect("</figure>")]
}

/// The (x, y) pairs of the `points` attribute of the first `<polyline class="{class}"`.
fn polyline_points(svg: &str, class: &str) -> Vec<(f64, f64)> {
    let marker = format!("<polyline class=\"{class}\" points=\"");
    let Some(at) = svg.find(&marker) else {
        panic!("no {marker} in {svg}")
    };
    let rest = &svg[at + marker.len()..];
    rest[..rest.find('"').unwrap()]
        .split_whitespace()
        .map(|xy| {
            let (x, y) = xy.split_once(',').expect("x,y");
            (x.parse().expect("x"), y.parse().expect("y"))
        })
        .collect()
}

#[test]
fn status_page_draws_charts_per_member() {
    let a = Backend::named("A");
    let b = Backend::start(|_| {
        Reply::Delay(Duration::from_millis(2), Box::new(Reply::Text("B".into())))
    });
    let p = Ringlb::start(
        &with_admin(&simple_config(&[member(a.addr), member(b.addr)], ""), ""),
        2,
    );
    // Traffic for about 3 s: whole seconds with requests for both members.
    let load = crate::support::load::Load::default();
    let clients = load.keep_alive(p.addr, 4);
    std::thread::sleep(Duration::from_secs(3));
    let (sent, failed) = load.finish(clients);
    assert!(sent > 100 && failed == 0, "sent {sent}, failed {failed}");
    let busy_seconds = |m: &ringlb::admin::report::MemberReport| {
        m.series.iter().filter(|s| s.requests > 0).count()
    };
    let r = report_when(p.admin_addr(), |r| {
        r.balancers[0].members.iter().all(|m| busy_seconds(m) >= 2)
    });
    for m in &r.balancers[0].members {
        assert!(busy_seconds(m) >= 2, "{:?}", m.series);
        assert_eq!(m.histograms.total.count, m.total.lifetime.count);
    }
    let page = admin(p.admin_addr(), "GET", "/status", "", None).text();
    assert!(!page.contains("<script"), "no JavaScript on the page");
    for addr in [a.addr, b.addr] {
        let fig = member_figure(&page, addr);
        for class in ["chart requests", "chart latency", "chart spectrum"] {
            assert!(
                fig.contains(&format!(
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{class}\""
                )),
                "{class} for {addr}: {fig}"
            );
        }
        let line = polyline_points(fig, "requests");
        assert!(line.len() >= 2, "{line:?}");
        let bottom = line.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        assert!(
            line.iter().any(|p| p.1 < bottom),
            "the requests line rises above 0: {line:?}"
        );
        for class in ["p50", "p99"] {
            assert!(
                fig.contains(&format!("<path class=\"{class}\" d=\"M")),
                "{class} line for {addr}: {fig}"
            );
        }
        let spectrum = polyline_points(fig, "spectrum");
        assert!(spectrum.len() >= 2, "{spectrum:?}");
        assert!(
            !fig.contains("no requests yet") && !fig.contains("NaN"),
            "{fig}"
        );
    }

    // As a browser draws it: the SVGs are in the rendered DOM, and a screenshot is made.
    assert!(
        tool("chromium"),
        "this test needs chromium (headless) to render /status: install it (scripts/test.sh does)"
    );
    let dir = crate::support::proxy::TempDir::new();
    let shot = dir.0.join("status.png");
    let out = headless_chromium(
        &dir.0.join("profile"),
        &format!("http://{}/status", p.admin_addr()),
        &[
            "--window-size=1400,1800",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for class in ["chart requests", "chart latency", "chart spectrum"] {
        assert_eq!(
            dom.matches(&format!("class=\"{class}\"")).count(),
            2,
            "one {class} per member in the rendered DOM: {dom}"
        );
    }
    assert_eq!(
        dom.matches("<polyline class=\"requests\" points=\"")
            .count(),
        2,
        "{dom}"
    );
    assert_eq!(
        dom.matches("<polyline class=\"spectrum\" points=\"")
            .count(),
        2,
        "{dom}"
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        1400,
        "the screenshot is the window's width"
    );
}

#[test]
fn ringlb_status_prints_the_tables() {
    let a = Backend::named("A");
    let p = Ringlb::start(&with_admin(&simple_config(&[member(a.addr)], ""), ""), 1);
    get(p.addr, "/");
    report_when(p.admin_addr(), |r| r.balancers[0].members[0].selected == 1);
    let (code, out, err) = run_cli(&["status", "--admin", &format!("http://{}", p.admin_addr())]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balancer app"), "{out}");
    assert!(
        out.contains("loop lag, mean since start: w0 ") && out.contains(" over 25 ms)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("http://{}", a.addr)) && out.contains("active"),
        "{out}"
    );
}

#[test]
fn access_log_lines_and_reopen_on_sigusr1() {
    let a = Backend::named("A");
    let dir = crate::support::proxy::TempDir::new();
    let path = dir.0.join("access.log");
    let body = format!(
        "[log]\naccess = \"{}\"\n{}",
        path.display(),
        simple_config(&[member(a.addr)], "")
    );
    let mut p = Ringlb::start(&body, 1);
    let mut c = Client::connect(p.addr);
    c.send(
        b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\nReferer: http://ref/\r\nUser-Agent: test-agent\r\n\r\n",
    );
    assert_eq!(c.read_response().unwrap().status, 200);
    c.send(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.read_response().unwrap().status, 200);
    let lines = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert!(wait_until(|| lines(&path).len() == 2), "{:?}", lines(&path));
    let l = lines(&path);
    let m = a.addr.to_string();
    assert!(l[0].starts_with("127.0.0.1 - - ["), "{}", l[0]);
    assert!(
        l[0].contains(&format!(
            "+0000] \"GET /a?x=1 HTTP/1.1\" 200 8 \"http://ref/\" \"test-agent\" member={m} upstream_status=200 route=- request_us="
        )),
        "{}",
        l[0]
    );
    assert!(
        l[0].contains(" connect_us=") && l[0].contains(" response_head_us="),
        "{}",
        l[0]
    );
    assert!(
        l[1].contains("\"POST /b HTTP/1.1\" 200 4 \"-\" \"-\""),
        "{}",
        l[1]
    );
    // logrotate: move the file away, SIGUSR1, and the next lines go to a new file.
    let rotated = dir.0.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    crate::support::proxy::unsafe_kill(p.pid(), "USR1");
    assert!(p.wait_log("reopening the access log"));
    c.send(b"GET /c HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    assert!(wait_until(|| lines(&path).len() == 1), "{:?}", lines(&path));
    assert!(lines(&path)[0].contains("\"GET /c HTTP/1.1\" 200"));
    assert_eq!(lines(&rotated).len(), 2);
    // Lines still buffered at shutdown are written before the process exits.
    c.send(b"GET /d HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    drop(c);
    assert!(p.terminate().unwrap().success());
    assert!(
        lines(&path).iter().any(|l| l.contains("GET /d")),
        "{:?}",
        lines(&path)
    );
}

/// Headless Chromium's rendering of `url` (`--dump-dom`, and `extra`), with its profile in
/// `profile`, bounded to a minute.
fn headless_chromium(profile: &std::path::Path, url: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap()
}
