//! ringlb-load against its own origin on loopback: closed loop counts, open-loop schedule, and the
//! coordinated-omission correction.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An origin and, while it lives, this file's lock: the tests run one at a time, so the
/// latency comparison is not measuring the other tests' load.
struct Origin(Child, u16, #[allow(dead_code)] MutexGuard<'static, ()>);

static QUIET: Mutex<()> = Mutex::new(());

impl Origin {
    fn start(extra: &[&str]) -> Origin {
        let quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_ringlb-load"))
            .args(["origin", "--port", &port.to_string()])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "origin did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Origin(child, port, quiet)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn load(args: &[&str]) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!(
        "ringlb-load-test-{}-{}",
        std::process::id(),
        args.join("_").len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb-load"))
        .args(args)
        .args([
            "-q",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("req/s") && table.contains("p99.9"),
        "{table}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    v
}

#[test]
fn closed_loop_counts_every_response() {
    let o = Origin::start(&["--body-bytes", "100"]);
    let url = format!("http://127.0.0.1:{}/", o.1);
    let v = load(&["-c", "8", "-d", "1s", "-t", "1", "--pipeline", "2", &url]);
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 100, "{v}");
    assert_eq!(v["status"]["2xx"].as_u64().unwrap(), requests);
    assert_eq!(
        v["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|e| e.as_u64().unwrap())
            .sum::<u64>(),
        0
    );
    let hist_total: u64 = v["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(
        hist_total, requests,
        "the JSON histogram holds every request"
    );
}

#[test]
fn connect_per_request_and_post_bodies() {
    let o = Origin::start(&[]);
    let url = format!("http://127.0.0.1:{}/", o.1);
    let v = load(&[
        "-c",
        "4",
        "-d",
        "1s",
        "-t",
        "1",
        "--connect-per-request",
        "-m",
        "POST",
        "-H",
        "X-Test: 1",
        &url,
    ]);
    assert!(v["requests"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(v["errors"]["connect"].as_u64().unwrap(), 0, "{v}");
}

#[test]
fn open_loop_keeps_its_schedule() {
    let o = Origin::start(&[]);
    let url = format!("http://127.0.0.1:{}/", o.1);
    let v = load(&["-c", "4", "-d", "2s", "-t", "1", "--rate", "200", &url]);
    let requests = v["requests"].as_u64().unwrap();
    assert!((380..=410).contains(&requests), "200/s for 2 s: {requests}");
}

#[test]
fn open_loop_counts_from_the_intended_send_time() {
    // One connection asked for a request every 50 ms from a server that takes 100 ms: the backlog
    // grows, and so must the latency measured from each request's intended time.
    let o = Origin::start(&["--delay", "100ms"]);
    let url = format!("http://127.0.0.1:{}/", o.1);
    let v = load(&["-c", "1", "-d", "2s", "-t", "1", "--rate", "20", &url]);
    let p99 = v["latency_us"]["p99"].as_u64().unwrap();
    let p50 = v["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 >= 100_000, "{v}");
    assert!(
        p99 >= 500_000,
        "a stalled server cannot hide behind its own slowness: p99 {p99} µs"
    );
    // Nearly every request found its connection still waiting for the one before.
    let behind = v["schedule"]["behind"].as_u64().unwrap();
    assert!(behind >= 30, "requests sent behind a busy connection: {v}");
}

/// Runs the stdlib-only reference client (`ref_client.py`) against `port`: (p50, p99) in µs.
fn reference(port: u16, rate: u32, secs: u32) -> (u64, u64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ref_client.py");
    let out = Command::new("/usr/bin/python3")
        .args([script, "127.0.0.1", &port.to_string(), "/"])
        .args([rate.to_string(), secs.to_string()])
        .output()
        .expect("/usr/bin/python3 runs the reference client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["requests"].as_u64().unwrap() >= u64::from(rate * secs) * 9 / 10,
        "{v}"
    );
    (v["p50_us"].as_u64().unwrap(), v["p99_us"].as_u64().unwrap())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn open_loop_agrees_with_an_independent_reference_client() {
    // The same fast origin, the same schedule (1000/s on one connection), measured in turn by
    // ringlb-load and by a reference client written for this test: p50 and p99 (medians of three
    // interleaved runs each) agree within 0.5 ms. A generator that sends late counts its own
    // lateness as the server's and fails this by milliseconds.
    let o = Origin::start(&[]);
    let url = format!("http://127.0.0.1:{}/", o.1);
    let (mut ours, mut theirs) = ((vec![], vec![]), (vec![], vec![]));
    for _ in 0..3 {
        let v = load(&["-c", "1", "-d", "2s", "-t", "1", "--rate", "1000", &url]);
        ours.0.push(v["latency_us"]["p50"].as_u64().unwrap());
        ours.1.push(v["latency_us"]["p99"].as_u64().unwrap());
        let lag = &v["schedule"]["wakeup_lag_us"];
        assert!(
            lag["p50"].as_u64().unwrap() <= lag["p99"].as_u64().unwrap(),
            "{v}"
        );
        let (p50, p99) = reference(o.1, 1000, 2);
        theirs.0.push(p50);
        theirs.1.push(p99);
    }
    let (p50, ref_p50) = (median(ours.0), median(theirs.0));
    let (p99, ref_p99) = (median(ours.1), median(theirs.1));
    eprintln!("ringlb-load p50 {p50} p99 {p99} µs; reference p50 {ref_p50} p99 {ref_p99} µs");
    assert!(
        p50.abs_diff(ref_p50) <= 500,
        "p50: {p50} µs against {ref_p50} µs"
    );
    assert!(
        p99.abs_diff(ref_p99) <= 500,
        "p99: {p99} µs against {ref_p99} µs"
    );
}
