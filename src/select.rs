//! Which member takes a request, and what a member's failure does to it on this core: the sticky
//! session's member first (`sticky`), else the balancer's pick (`balance`); waiting for a slot
//! while every candidate is at its `max_conns` share (`wait_for_slot`; `proxy::next_member` bounds
//! it by `queue_timeout`); passive marking (connect failures, `failontimeout`, `failonstatus`).
//!
//! Owns: the choice of member for one attempt, and passive marking with its log line and
//! counter. Must never: hold the upstreams' borrow across an await, or log a marking more than
//! once per failure window on a core. Invariant: `Pick::None` means 503: no member can take the
//! request, or its sticky member cannot (unusable with `nofailover`; and a busy member's sessions
//! never move: they wait like any request at `Pick::Full`).

use std::time::Instant;

use futures_util::future::select as either;

use crate::balance::Pick;
use crate::client::{target, Client};
use crate::core::Core;
use crate::core_gen::CoreGen;

/// The member the request's sticky session names, if the balancer is sticky and a member has
/// that route.
pub fn sticky_member(gen: &CoreGen, c: &Client, bal: usize) -> Option<usize> {
    let bcfg = &gen.config.balancers[bal];
    let s = bcfg.sticky.as_ref()?;
    let route = crate::sticky::route(&c.buf, &c.head, target(&c.buf, &c.head, &c.path), s)?;
    bcfg.members
        .iter()
        .position(|m| m.route.as_deref().is_some_and(|r| r.as_bytes() == route))
}

/// Chooses the member for the next attempt, skipping those in `exclude`: `Pick::Full` when
/// members could take it but are all at their share (then `wait_for_slot`, and choose again).
pub fn choose(
    gen: &CoreGen,
    bal: usize,
    sticky: Option<usize>,
    exclude: u64,
    now: Instant,
) -> Pick {
    let nofailover = gen.config.balancers[bal]
        .sticky
        .as_ref()
        .is_some_and(|s| s.nofailover);
    let mut ups = gen.upstreams.borrow_mut();
    let b = &mut ups[bal].balancer;
    match sticky {
        Some(m) => match b.can_take(m, now, exclude) {
            Pick::None if !nofailover => b.pick(now, exclude),
            other => other,
        },
        None => b.pick(now, exclude),
    }
}

/// Waits for a `max_conns` slot of balancer `bal` to be worth another `choose`: a slot freed or
/// members changed (`core::apply_changes`), a failure window ended, or `deadline` came. (During a
/// shutdown it keeps waiting: requests in flight finish, within `shutdown_grace`.)
pub async fn wait_for_slot(gen: &CoreGen, bal: usize, deadline: Instant) {
    let now = Instant::now();
    let expiry = gen.upstreams.borrow()[bal].balancer.next_expiry(now);
    let until = expiry.map_or(deadline, |e| e.min(deadline));
    let freed = std::pin::pin!(gen.freed[bal].notified());
    let timer = std::pin::pin!(compio::time::sleep(until.saturating_duration_since(now)));
    either(freed, timer).await;
}

/// Why a member is marked failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Connect,
    Timeout,
    Status(u16),
}

/// Marks a member failed on this core for the balancer's `retry`, and its idle connections
/// expired (never reused; the tick's sweep closes them within its budget); a new marking is
/// logged and counted once.
pub fn mark_failed(core: &Core, gen: &CoreGen, bal: usize, member: usize, why: Mark) {
    let bcfg = &gen.config.balancers[bal];
    let now = Instant::now();
    let new = {
        let mut ups = gen.upstreams.borrow_mut();
        ups[bal].pool.expire_member(member, now);
        ups[bal].balancer.mark_failed(member, now)
    };
    if !new {
        return;
    }
    core.stats
        .borrow_mut()
        .member(gen.layout.member(bal, member))
        .counters
        .marked_failed += 1;
    let url = &bcfg.members[member].url;
    let retry = bcfg.retry;
    match why {
        Mark::Connect => tracing::warn!(balancer = %bcfg.name, member = %url, worker = core.id,
            "member failed to connect; marked failed for {retry:?}"),
        Mark::Timeout => tracing::warn!(balancer = %bcfg.name, member = %url, worker = core.id,
            "member timed out (failontimeout); marked failed for {retry:?}"),
        Mark::Status(s) => tracing::warn!(balancer = %bcfg.name, member = %url, worker = core.id,
            "member answered {s} (failonstatus); marked failed for {retry:?}"),
    }
}
