//! `sweep --admin`: ringlb's `/status.json` read at the start, middle and end of a step's measured
//! part, and the difference of the first and last as
//! per-member figures for that step (requests, share, percentiles from the diffed histograms,
//! in-flight, pool hits, errors) and ringlb's CPU per request.
//!
//! Owns: the admin fetch (plain HTTP/1.1, bearer token) and the diffing. Must never: average
//! percentiles (they come from the bucket-by-bucket difference of two readings); send anything
//! but GET.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// One reading of ringlb's status.
pub struct Reading {
    cpu_seconds: f64,
    members: Vec<MemberReading>,
}

struct MemberReading {
    /// (balancer, member index): a member's identity across readings (two members may share a
    /// URL).
    key: (String, u64),
    name: String,
    total: BTreeMap<u64, u64>,
    head: BTreeMap<u64, u64>,
    in_flight: u64,
    pool: [u64; 2],
    errors: u64,
}

/// A member's figures over one step.
#[derive(Serialize, Clone, Debug)]
pub struct MemberStep {
    /// "balancer/url".
    pub name: String,
    pub requests: u64,
    /// Its part of all members' requests in the step.
    pub share: f64,
    /// Request through ringlb (head received → last byte written), µs.
    pub total_p50_us: u64,
    pub total_p99_us: u64,
    /// The member's own time (request sent → response head), µs.
    pub member_p50_us: u64,
    pub member_p99_us: u64,
    /// Requests in flight to it halfway through the step.
    pub in_flight: u64,
    pub pool_hit_rate: f64,
    /// Failures (connect, timeout, reset, invalid) and 5xx answers.
    pub errors: u64,
}

/// What ringlb reported over one step.
#[derive(Serialize, Clone, Debug)]
pub struct ServerStep {
    pub cpu_us_per_request: f64,
    pub members: Vec<MemberStep>,
}

/// GETs `path` from the admin listener at `base` ("http://host:port").
fn get(base: &str, token: Option<&str>, path: &str) -> anyhow::Result<String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--admin {base}: write it like http://127.0.0.1:9900"))?
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--admin {base}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{base}{path}: no complete answer"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        anyhow::bail!("{base}{path} answered \"{status}\" (a token missing or wrong?)");
    }
    Ok(body.to_string())
}

fn buckets(v: &Value) -> BTreeMap<u64, u64> {
    v["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b[0].as_u64()?, b[1].as_u64()?)))
        .collect()
}

fn sum(v: &Value) -> u64 {
    v.as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Reads ringlb's status now.
pub fn read(base: &str, token: Option<&str>) -> anyhow::Result<Reading> {
    let body = get(base, token, "/status.json")
        .map_err(|e| anyhow::anyhow!("--admin: reading {base}/status.json: {e}"))?;
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("--admin: {base}/status.json is not JSON: {e}"))?;
    let mut members = Vec::new();
    for b in v["balancers"].as_array().into_iter().flatten() {
        for m in b["members"].as_array().into_iter().flatten() {
            members.push(MemberReading {
                key: (
                    b["name"].as_str().unwrap_or("?").to_string(),
                    m["index"].as_u64().unwrap_or(u64::MAX),
                ),
                name: format!(
                    "{}/{}",
                    b["name"].as_str().unwrap_or("?"),
                    m["url"].as_str().unwrap_or("?")
                ),
                total: buckets(&m["histograms"]["total"]),
                head: buckets(&m["histograms"]["response_head"]),
                in_flight: m["in_flight"].as_u64().unwrap_or(0),
                pool: [
                    m["pool_hits"].as_u64().unwrap_or(0),
                    m["pool_misses"].as_u64().unwrap_or(0),
                ],
                errors: sum(&m["failures"]) + m["responses"]["5xx"].as_u64().unwrap_or(0),
            });
        }
    }
    if v["process_cpu_seconds"].is_null() {
        anyhow::bail!("{base}/status.json has no process_cpu_seconds: is it ringlb 0.1 or later?");
    }
    Ok(Reading {
        cpu_seconds: v["process_cpu_seconds"].as_f64().unwrap_or(0.0),
        members,
    })
}

/// The histogram of the requests between two readings: bucket by bucket.
pub fn diff(after: &BTreeMap<u64, u64>, before: &BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
    after
        .iter()
        .map(|(v, n)| (*v, n.saturating_sub(*before.get(v).unwrap_or(&0))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The value at quantile `q` of a bucket map (0 when empty).
pub fn quantile(h: &BTreeMap<u64, u64>, q: f64) -> u64 {
    let total: u64 = h.values().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (v, n) in h {
        seen += n;
        if seen >= rank {
            return *v;
        }
    }
    *h.keys().next_back().unwrap_or(&0)
}

/// The step between two readings (`middle`, taken halfway, gives the in-flight counts: by the
/// last reading the load has stopped).
pub fn step(before: &Reading, middle: &Reading, after: &Reading) -> ServerStep {
    let mut members: Vec<MemberStep> = after
        .members
        .iter()
        .map(|a| {
            let b = before.members.iter().find(|b| b.key == a.key);
            let empty = BTreeMap::new();
            let total = diff(&a.total, b.map_or(&empty, |b| &b.total));
            let head = diff(&a.head, b.map_or(&empty, |b| &b.head));
            let hits = a.pool[0].saturating_sub(b.map_or(0, |b| b.pool[0]));
            let misses = a.pool[1].saturating_sub(b.map_or(0, |b| b.pool[1]));
            MemberStep {
                name: a.name.clone(),
                requests: total.values().sum(),
                share: 0.0,
                total_p50_us: quantile(&total, 0.5),
                total_p99_us: quantile(&total, 0.99),
                member_p50_us: quantile(&head, 0.5),
                member_p99_us: quantile(&head, 0.99),
                in_flight: middle
                    .members
                    .iter()
                    .find(|m| m.key == a.key)
                    .map_or(0, |m| m.in_flight),
                pool_hit_rate: hits as f64 / (hits + misses).max(1) as f64,
                errors: a.errors.saturating_sub(b.map_or(0, |b| b.errors)),
            }
        })
        .collect();
    let all: u64 = members.iter().map(|m| m.requests).sum();
    for m in &mut members {
        m.share = m.requests as f64 / all.max(1) as f64;
    }
    ServerStep {
        cpu_us_per_request: (after.cpu_seconds - before.cpu_seconds).max(0.0) * 1e6
            / all.max(1) as f64,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_diffed_histogram() {
        let before: BTreeMap<u64, u64> = [(100, 50), (200, 10)].into();
        let after: BTreeMap<u64, u64> = [(100, 140), (200, 10), (5000, 10)].into();
        let d = diff(&after, &before);
        assert_eq!(d, [(100, 90), (5000, 10)].into());
        assert_eq!(quantile(&d, 0.5), 100);
        assert_eq!(quantile(&d, 0.9), 100);
        assert_eq!(quantile(&d, 0.91), 5000);
        assert_eq!(quantile(&d, 0.99), 5000);
        assert_eq!(quantile(&BTreeMap::new(), 0.99), 0);
    }

    #[test]
    fn diffing_two_readings_gives_the_histogram_of_what_came_between() {
        // Property, over many random cases: readings taken before and after a batch of values
        // differ by exactly that batch, and the diff's quantiles are the batch's own (nearest
        // rank), whatever came before.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..300 {
            let mut reading: BTreeMap<u64, u64> = BTreeMap::new();
            for _ in 0..rand(50) {
                *reading.entry(1 + rand(20)).or_default() += 1;
            }
            let before = reading.clone();
            let mut batch: Vec<u64> = (0..1 + rand(200)).map(|_| 1 + rand(20)).collect();
            for v in &batch {
                *reading.entry(*v).or_default() += 1;
            }
            let d = diff(&reading, &before);
            assert_eq!(d.values().sum::<u64>(), batch.len() as u64);
            batch.sort_unstable();
            for q in [0.5, 0.9, 0.99, 1.0] {
                let rank = ((q * batch.len() as f64).ceil() as usize).clamp(1, batch.len());
                assert_eq!(quantile(&d, q), batch[rank - 1], "q {q} of {batch:?}");
            }
        }
    }
}
