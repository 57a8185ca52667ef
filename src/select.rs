//! Which member takes a request, and what a member's failure does to it on this core: the sticky
//! session's member first (`sticky`), else the balancer's pick (`balance`), waiting up to
//! `queue_timeout` while every candidate is at its `max_conns` share; passive marking
//! (connect failures, `failontimeout`, `failonstatus`).
//!
//! Owns: the choice of member for one attempt, and passive marking with its log line and
//! counter. Must never: hold the upstreams' borrow across an await, or log a marking more than
//! once per failure window on a core. Invariant: `None` means 503: no member can take the request,
//! or its sticky member cannot (unusable with `nofailover`, or still at its share when
//! `queue_timeout` ends: a busy member's sessions never move).

use std::time::Instant;

use futures_util::future::select as either;

use crate::balance::Pick;
use crate::client::{target, Client};
use crate::core::Core;

/// The member the request's sticky session names, if the balancer is sticky and a member has
/// that route.
pub fn sticky_member(core: &Core, c: &Client, bal: usize) -> Option<usize> {
    let bcfg = &core.config.balancers[bal];
    let s = bcfg.sticky.as_ref()?;
    let route = crate::sticky::route(&c.buf, &c.head, target(&c.buf, &c.head, &c.path), s)?;
    bcfg.members
        .iter()
        .position(|m| m.route.as_deref().is_some_and(|r| r.as_bytes() == route))
}

/// Chooses the member for the next attempt, skipping those in `exclude`. Waits (up to the
/// balancer's `queue_timeout`) while members could take it but are all at their share.
pub async fn choose(core: &Core, bal: usize, sticky: Option<usize>, exclude: u64) -> Option<usize> {
    let bcfg = &core.config.balancers[bal];
    let nofailover = bcfg.sticky.as_ref().is_some_and(|s| s.nofailover);
    let deadline = Instant::now() + bcfg.queue_timeout;
    loop {
        let now = Instant::now();
        let pick = {
            let mut ups = core.upstreams.borrow_mut();
            let b = &mut ups[bal].balancer;
            match sticky {
                Some(m) => match b.can_take(m, now, exclude) {
                    Pick::None if !nofailover => b.pick(now, exclude),
                    other => other,
                },
                None => b.pick(now, exclude),
            }
        };
        match pick {
            Pick::Member(m) => return Some(m),
            Pick::None => return None,
            Pick::Full if now >= deadline => return None,
            Pick::Full => {
                // Woken when a slot frees or members change (`core::apply_changes`), when a
                // failure window ends, or at the deadline; then the pick runs again. (During a
                // shutdown it keeps waiting: requests in flight finish, within `shutdown_grace`.)
                let expiry = core.upstreams.borrow()[bal].balancer.next_expiry(now);
                let until = expiry.map_or(deadline, |e| e.min(deadline));
                let freed = std::pin::pin!(core.freed[bal].notified());
                let timer = std::pin::pin!(compio::time::sleep(until - now));
                either(freed, timer).await;
            }
        }
    }
}

/// Why a member is marked failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Connect,
    Timeout,
    Status(u16),
}

/// Marks a member failed on this core for the balancer's `retry` and closes its idle
/// connections; a new marking is logged and counted once.
pub fn mark_failed(core: &Core, bal: usize, member: usize, why: Mark) {
    let bcfg = &core.config.balancers[bal];
    let new = {
        let mut ups = core.upstreams.borrow_mut();
        ups[bal].pool.clear_member(member);
        ups[bal].balancer.mark_failed(member, Instant::now())
    };
    if !new {
        return;
    }
    core.stats
        .borrow_mut()
        .member(bal, member)
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
