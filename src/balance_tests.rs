//! Unit tests of `balance`: each picking rule on one core, with a fixed clock.

use super::*;
use crate::config::Config;

fn balancer_cfg(members: &[&str], extra: &str) -> BalancerConfig {
    let members: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{{ url = \"http://127.0.0.1:{}\", {m} }}", 9000 + i))
        .collect();
    let text = format!(
        "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nretry = \"10s\"\n{extra}\nmembers = [{}]\n",
        members.join(", ")
    );
    Config::parse(&text).unwrap().balancers.remove(0)
}

fn balancer(members: &[&str], extra: &str) -> Balancer {
    Balancer::new(&balancer_cfg(members, extra), 0, 1)
}

fn picked(b: &mut Balancer, now: Instant, exclude: u64) -> usize {
    match b.pick(now, exclude) {
        Pick::Member(m) => m,
        other => panic!("expected a member, got {other:?}"),
    }
}

fn sequence(b: &mut Balancer, n: usize, exclude: u64) -> Vec<usize> {
    let now = Instant::now();
    (0..n).map(|_| picked(b, now, exclude)).collect()
}

#[test]
fn smooth_weighted_5_1_1() {
    let mut b = balancer(&["weight = 5", "weight = 1", "weight = 1"], "");
    assert_eq!(sequence(&mut b, 7, 0), vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(sequence(&mut b, 7, 0), vec![0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn cores_are_staggered() {
    let cfg = balancer_cfg(&["weight = 1", "weight = 1"], "");
    assert_eq!(sequence(&mut Balancer::new(&cfg, 0, 2), 4, 0), [0, 1, 0, 1]);
    assert_eq!(sequence(&mut Balancer::new(&cfg, 1, 2), 4, 0), [1, 0, 1, 0]);
}

#[test]
fn failed_excluded_standby_disabled() {
    let mut b = balancer(
        &[
            "status = \"active\"",
            "status = \"active\"",
            "status = \"hot_standby\"",
            "status = \"disabled\"",
        ],
        "",
    );
    let now = Instant::now();
    assert!(b.mark_failed(0, now));
    assert!(!b.mark_failed(0, now), "a second marking is not new");
    assert_eq!(sequence(&mut b, 3, 0), vec![1, 1, 1]);
    assert_eq!(sequence(&mut b, 2, 0b10), vec![2, 2]);
    assert_eq!(b.pick(now, 0b110), Pick::None);
    assert!(b.is_failed(0, now));
    let later = now + Duration::from_secs(11);
    assert!(!b.is_failed(0, later));
    assert_eq!(b.pick(later, 0b110), Pick::Member(0));
}

#[test]
fn lower_lbset_first_higher_only_when_it_is_empty() {
    let mut b = balancer(&["lbset = 1", "lbset = 0", "lbset = 1"], "");
    let now = Instant::now();
    assert_eq!(sequence(&mut b, 3, 0), vec![1, 1, 1]);
    b.mark_failed(1, now);
    let seq = sequence(&mut b, 4, 0);
    assert_eq!(
        (seq.contains(&0), seq.contains(&2), seq.contains(&1)),
        (true, true, false)
    );
}

#[test]
fn hot_spares_stand_in_one_for_one() {
    let mut b = balancer(
        &[
            "status = \"active\"",
            "status = \"active\"",
            "status = \"hot_spare\"",
            "status = \"hot_spare\"",
            "status = \"standby\"",
        ],
        "",
    );
    let now = Instant::now();
    let mut seen = sequence(&mut b, 8, 0);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![0, 1], "spares idle while the actives are usable");
    b.mark_failed(0, now);
    let mut seen = sequence(&mut b, 8, 0);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![1, 2],
        "the first spare stands in for the failed member"
    );
    b.mark_failed(1, now);
    let mut seen = sequence(&mut b, 8, 0);
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec![2, 3], "both spares, no standby");
    b.mark_failed(2, now);
    b.mark_failed(3, now);
    assert_eq!(sequence(&mut b, 2, 0), vec![4, 4], "the standby last");
}

#[test]
fn least_busy_takes_the_fewest_in_flight_and_rotates_ties() {
    let mut b = balancer(
        &["weight = 1", "weight = 1", "weight = 1"],
        "method = \"least_busy\"",
    );
    let now = Instant::now();
    b.begin(0);
    b.begin(0);
    b.begin(1);
    assert_eq!(picked(&mut b, now, 0), 2);
    b.begin(2);
    assert_eq!(picked(&mut b, now, 0), 1, "1 and 2 tie at one; round robin");
    assert_eq!(picked(&mut b, now, 0), 2);
    b.end(0);
    b.end(0);
    assert_eq!(picked(&mut b, now, 0), 0);
}

#[test]
fn p2c_of_two_members_takes_the_less_busy() {
    let mut b = balancer(&["weight = 1", "weight = 1"], "method = \"p2c\"");
    let now = Instant::now();
    b.begin(1);
    for _ in 0..20 {
        assert_eq!(picked(&mut b, now, 0), 0);
    }
    let mut b = balancer(
        &["weight = 1", "weight = 1", "weight = 1"],
        "method = \"p2c\"",
    );
    let mut counts = [0; 3];
    for _ in 0..3000 {
        counts[picked(&mut b, now, 0)] += 1;
    }
    assert!(
        counts.iter().all(|&c| c > 800),
        "random draws spread: {counts:?}"
    );
}

#[test]
fn max_conns_share_fills_then_full() {
    let cfg = balancer_cfg(&["max_conns = 4", "max_conns = 1"], "");
    let mut b = Balancer::new(&cfg, 0, 2);
    let now = Instant::now();
    for _ in 0..3 {
        let m = picked(&mut b, now, 0);
        b.begin(m);
    }
    assert_eq!(b.pick(now, 0), Pick::Full, "2 + 1 of 4 + 1 over two cores");
    assert!(b.end(1));
    assert_eq!(b.pick(now, 0), Pick::Member(1));
    assert_eq!(b.pick(now, 0b10), Pick::Full);
}

#[test]
fn slow_start_ramps_the_weight() {
    let mut b = balancer(&["weight = 1", "weight = 1"], "slow_start = \"10s\"");
    let now = Instant::now();
    b.mark_failed(0, now);
    let back = now + Duration::from_secs(10);
    b.pick(back, 0);
    let count = |b: &mut Balancer, at: Instant| (0..1000).filter(|_| picked(b, at, 0) == 0).count();
    let early = count(&mut b, back + Duration::from_secs(1));
    let late = count(&mut b, back + Duration::from_secs(11));
    assert!(
        (80..=120).contains(&early),
        "10% of its share at 1 s: {early}"
    );
    assert_eq!(late, 500);
}

#[test]
fn all_failed_refuses_or_tries_all() {
    let now = Instant::now();
    let mut b = balancer(&["weight = 1", "weight = 1"], "");
    b.mark_failed(0, now);
    b.set_health(1, true, None, now);
    assert_eq!(b.pick(now, 0), Pick::None);
    let mut b = balancer(
        &["weight = 1", "status = \"disabled\""],
        "all_failed = \"try_all\"",
    );
    b.mark_failed(0, now);
    assert_eq!(b.pick(now, 0), Pick::Member(0));
    assert_eq!(
        b.pick(now, 1),
        Pick::None,
        "excluded and disabled still take nothing"
    );
}

#[test]
fn a_sticky_member_that_failed_is_tried_with_try_all_only_when_no_member_is_usable() {
    let now = Instant::now();
    let mut b = balancer(&["weight = 1", "weight = 1"], "all_failed = \"try_all\"");
    b.mark_failed(0, now);
    assert_eq!(b.can_take(0, now, 0), Pick::None, "member 1 is usable");
    b.set_health(1, true, None, now);
    assert_eq!(b.can_take(0, now, 0), Pick::Member(0), "none is usable");
    let mut b = balancer(&["weight = 1", "weight = 1"], "all_failed = \"try_all\"");
    b.set_health(0, true, None, now);
    assert_eq!(b.can_take(0, now, 0), Pick::None, "member 1 is usable");
    assert_eq!(
        b.can_take(0, now, 2),
        Pick::Member(0),
        "member 1 is excluded"
    );
    let mut b = balancer(&["weight = 1", "weight = 1"], "");
    b.mark_failed(0, now);
    b.mark_failed(1, now);
    assert_eq!(
        b.can_take(0, now, 0),
        Pick::None,
        "refuse: never a failed member"
    );
}

#[test]
fn health_takes_out_and_a_later_pass_clears_a_passive_failure() {
    let now = Instant::now();
    let later = now + Duration::from_millis(500);
    let mut b = balancer(&["weight = 1", "weight = 1"], "");
    b.set_health(0, true, None, now);
    assert_eq!(sequence(&mut b, 3, 0), vec![1, 1, 1]);
    b.set_health(0, false, Some(now), now);
    b.mark_failed(1, later);
    assert_eq!(sequence(&mut b, 2, 0), vec![0, 0]);
    b.set_health(1, false, Some(now), later);
    assert!(
        b.is_failed(1, later),
        "a pass from before the failure does not clear it"
    );
    b.set_health(1, false, Some(later + Duration::from_millis(1)), later);
    assert!(!b.is_failed(1, later));
}

#[test]
fn a_busy_tier_waits_rather_than_spilling_over() {
    let now = Instant::now();
    // Full healthy member, failed other member, try_all: wait, not the failed one.
    let mut b = balancer(&["max_conns = 1", "weight = 1"], "all_failed = \"try_all\"");
    b.mark_failed(1, now);
    b.begin(0);
    assert_eq!(b.pick(now, 0), Pick::Full);
    assert_eq!(
        b.can_take(1, now, 0),
        Pick::None,
        "a sticky session waits too"
    );
    // A full lower lbset does not send the request to a higher one or to the standby.
    let mut b = balancer(&["max_conns = 1", "lbset = 1", "status = \"standby\""], "");
    b.begin(0);
    assert_eq!(b.pick(now, 0), Pick::Full);
    // Once it is excluded (it failed this request), the next set takes it.
    assert_eq!(b.pick(now, 1), Pick::Member(1));
}
