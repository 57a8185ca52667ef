//! Defends the balancer pick (smooth weighted round robin over 4 members with a failure window)
//! and the pool's checkout/checkin pair, both per request and per core.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringlb::balance::Balancer;
use ringlb::config::Config;
use ringlb::pool::Pool;

fn balance_and_pool(c: &mut Criterion) {
    let cfg = Config::parse(
        "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [\
{ url = \"http://127.0.0.1:9001\", weight = 3 }, { url = \"http://127.0.0.1:9002\" },\
{ url = \"http://127.0.0.1:9003\" }, { url = \"http://127.0.0.1:9004\", status = \"standby\" }]\n",
    )
    .unwrap();
    let mut b = Balancer::new(&cfg.balancers[0], 0, 1);
    let now = Instant::now();
    b.mark_failed(2, now);
    c.bench_function("balancer pick (4 members, one failed)", |bench| {
        bench.iter(|| b.pick(black_box(now), 0))
    });
    let mut pool: Pool<u64> = Pool::new(4, 64, Duration::from_secs(4));
    for i in 0..32 {
        pool.checkin(1, i, now, None);
    }
    c.bench_function("pool checkout + checkin", |bench| {
        bench.iter(|| {
            let conn = pool.checkout(black_box(1), now).unwrap();
            pool.checkin(1, conn, now, None);
        })
    });
}

criterion_group!(benches, balance_and_pool);
criterion_main!(benches);
