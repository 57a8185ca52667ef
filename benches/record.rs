//! Defends the cost of recording one request's statistics on the request path: the counters and
//! three histogram records a member's `MemberStats` takes per request (no allocation, no lock).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringlb::stats::{CoreStats, Phase};

fn record_one_request(c: &mut Criterion) {
    let mut stats = CoreStats::new(2, 1);
    let mut i = 0u64;
    c.bench_function("record one request (counters + 3 histograms)", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let m = stats.member((i & 1) as usize);
            m.counters.selected += 1;
            m.counters.in_flight += 1;
            m.counters.pool_hits += 1;
            m.record(
                Phase::Connect,
                Duration::from_micros(black_box(40 + i % 100)),
            );
            m.record(
                Phase::ResponseHead,
                Duration::from_micros(black_box(300 + i % 5000)),
            );
            m.record(
                Phase::Total,
                Duration::from_micros(black_box(500 + i % 50_000)),
            );
            m.counters.responses[1] += 1;
            m.counters.in_flight -= 1;
        })
    });
}

criterion_group!(benches, record_one_request);
criterion_main!(benches);
