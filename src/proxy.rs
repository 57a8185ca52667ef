//! One request's trip through ringlb once its head is parsed: gather a small body, route (and map
//! the target onto the route's `member_path`: a target that cannot be mapped gets 404), pick a
//! member, take a checked pooled connection or connect, run the member's exchange (HTTP or AJP),
//! act on its `Outcome` (answer, retry as `outcome::retry` says, fail over), write the access-log
//! line.
//!
//! Owns: the attempts of a request (which member next, as `select` chooses; pool checkout and
//! checkin; `maxattempts`; an upgrade goes to `http://`/`https://` members only), the
//! per-member statistics of a request, and handing a switched exchange to `tunnel`. Must never: send a
//! request on a pooled connection that is closed or holds bytes for a reader (`stream::idle_and_open`;
//! TLS records without data are taken and do not count), pool a connection whose exchange did
//! not end cleanly, retry on its own authority (only as
//! `outcome::retry` decides), or copy a body in user space (a tunnel's bytes pass through the
//! client's buffers: `tunnel`; `io` copies a body part of at most `io::JOIN_MAX` bytes behind its
//! head for one send). Invariant: returns whether the client
//! connection may carry another request; when it returns false the caller closes it.

use std::time::{Duration, Instant};

use crate::ajp;
use crate::balance::Pick;
use crate::client::{refuse, refuse_with, send_own_answer, target, Client, End};
use crate::config::{BalancerConfig, ErrorPage, MemberConfig, Protocol, RouteConfig};
use crate::core::Core;
use crate::core_gen::CoreGen;
use crate::http::exchange::{self, Params};
use crate::http::framing::{BodyKind, BodyTracker};
use crate::http::path::route_key;
use crate::http::reply;
use crate::http::reverse::{self, Mapping};
use crate::http::upgrade;
use crate::io::IoFail;
use crate::outcome::{retry, Done, Failed, Outcome, Reached, Request, Retry};
use crate::select::{self, Mark};
use crate::stats::{status_class, Failure, MemberStats, Phase};
use crate::stream::{self, ConnectFail, Stream};
use crate::tunnel;

/// Request bodies up to this size are gathered before anything is sent to the member.
const GATHER_BODY: u64 = 64 * 1024;

/// One member's statistics for the request under way; the member counts it in flight while this
/// lives (through failover, errors and early returns alike).
struct Tracked<'a> {
    core: &'a Core,
    /// The generation the request runs on (it began on it and ends on it).
    gen: &'a CoreGen,
    bal: usize,
    member: usize,
    /// The member's place (`layout`), where its statistics are kept.
    place: usize,
    /// When the request began.
    started: Instant,
    /// When this member was picked (the clock read once for the pick and the pool's checkout).
    picked: Instant,
}

impl<'a> Tracked<'a> {
    fn start(
        core: &'a Core,
        gen: &'a CoreGen,
        bal: usize,
        member: usize,
        started: Instant,
        picked: Instant,
    ) -> Tracked<'a> {
        gen.upstreams.borrow_mut()[bal].balancer.begin(member);
        let place = gen.layout.member(bal, member);
        let t = Tracked {
            core,
            gen,
            bal,
            member,
            place,
            started,
            picked,
        };
        t.with(|m| m.counters.selected += 1);
        t
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemberStats) -> R) -> R {
        f(self.core.stats.borrow_mut().member(self.place))
    }

    fn fail(&self, kind: Failure) {
        self.with(|m| m.counters.failures[kind as usize] += 1);
    }

    /// Counts a response sent to the client for this member, and its total time. Returns when
    /// that was (the clock's reading, for whoever needs the time next).
    fn respond(&self, status: u16) -> Instant {
        let now = Instant::now();
        self.with(|m| {
            m.counters.responses[status_class(status)] += 1;
            m.record(Phase::Total, now.saturating_duration_since(self.started));
        });
        now
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        let was_full = self.gen.upstreams.borrow_mut()[self.bal]
            .balancer
            .end(self.member);
        if was_full {
            self.gen.freed[self.bal].notify_all();
        }
    }
}

/// Forwards the request whose head is parsed in `c.head`. Returns whether to keep the client.
pub async fn forward(core: &Core, gen: &CoreGen, c: &mut Client) -> bool {
    let started = Instant::now();
    c.rec = Default::default();
    if core.access_log.is_some() {
        capture_log_fields(c);
    }
    let keep = send_to_members(core, gen, c, started).await;
    // Whatever the outcome: an upload can go whole by splice and its member fail after it.
    if c.rec.spliced + c.rec.spliced_request > 0 {
        let stats = &mut core.stats.borrow_mut().core;
        stats.spliced_bytes += c.rec.spliced;
        stats.spliced_request_bytes += c.rec.spliced_request;
    }
    if let Some(log) = &core.access_log {
        let mcfg = c
            .rec
            .member
            .map(|(b, m)| &gen.config.balancers[b].members[m]);
        let member = mcfg.map_or("", |m| m.host_port.as_str());
        let route = mcfg
            .filter(|_| c.rec.sticky)
            .and_then(|m| m.route.as_deref())
            .unwrap_or("");
        let [line, referer, agent] = &c.log_fields;
        let total = started.elapsed().as_micros() as u64;
        log.append(
            c.peer.ip(),
            line,
            referer,
            agent,
            &c.rec,
            member,
            route,
            total,
        );
    }
    keep
}

/// Copies the request line, Referer and User-Agent before the head's bytes are drained.
fn capture_log_fields(c: &mut Client) {
    let [line, referer, agent] = &mut c.log_fields;
    line.clear();
    referer.clear();
    agent.clear();
    let first_line_end = c.buf[..c.head.head_len]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(0);
    line.extend_from_slice(&c.buf[..first_line_end]);
    for h in &c.head.headers {
        let name = &c.buf[h.name.clone()];
        if name.eq_ignore_ascii_case(b"referer") {
            referer.extend_from_slice(&c.buf[h.value.clone()]);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            agent.extend_from_slice(&c.buf[h.value.clone()]);
        }
    }
}

/// Reads the body bytes that came with the head, and the rest of a small body (head and body then
/// go to the member in one write, a framing error is refused before anything is forwarded, and the
/// request stays replayable; not when the client waits for 100 Continue): a Content-Length body up
/// to `GATHER_BODY`, a chunked one until it ends or `GATHER_BODY` bytes are buffered. Returns the
/// body bytes in `c.buf`; `Err(Some(status))` when the client broke the framing, `Err(None)` when
/// it left.
async fn gather_body(
    gen: &CoreGen,
    c: &mut Client,
    body: &mut BodyTracker,
) -> Result<usize, Option<u16>> {
    let head_len = c.head.head_len;
    let mut initial = body.advance(&c.buf[head_len..]).map_err(|_| Some(400))?;
    let gather = match c.head.body {
        BodyKind::Length(n) => n <= GATHER_BODY,
        BodyKind::Chunked => true,
        _ => false,
    };
    if !gather || c.head.expect_continue {
        return Ok(initial);
    }
    while !body.is_done() && (initial as u64) < GATHER_BODY {
        let had = c.buf.len();
        let want = match c.head.body {
            BodyKind::Length(n) => n as usize - initial,
            _ => 16384,
        };
        let limit = gen.config.limits.body_timeout;
        if stream::read_more(&mut c.stream, &mut c.buf, want, limit)
            .await
            .is_err()
        {
            return Err(None);
        }
        initial += body.advance(&c.buf[had..]).map_err(|_| Some(400))?;
    }
    Ok(initial)
}

/// Routes the request and runs exchanges until one answers the client. Fills `c.rec`.
async fn send_to_members(core: &Core, gen: &CoreGen, c: &mut Client, started: Instant) -> bool {
    let Some((mut req, mut body)) = prepare(core, gen, c).await else {
        return false;
    };
    // No route, or an exclusion (Apache's `ProxyPass /path !`): nothing is forwarded.
    let Some((route, bal)) = find_route(gen, c).and_then(|r| Some((r, r.balancer?))) else {
        core.stats.borrow_mut().core.not_found += 1;
        return local_reply(core, gen, c, 404, &req, None).await;
    };
    let sticky = select::sticky_member(gen, c, bal);
    if !map_route(c, route) {
        core.stats.borrow_mut().core.not_found += 1;
        return local_reply(core, gen, c, 404, &req, None).await;
    }
    let mut tries = Tries::default();
    let offer = route
        .upgrade
        .as_ref()
        .and_then(|rule| upgrade::offer(&c.buf, &c.head, rule));
    // Empty unless this request is an upgrade (an offer names at least one protocol).
    c.upgrade_offer.clear();
    if let Some(offer) = offer {
        c.upgrade_offer.extend_from_slice(&c.buf[offer]);
        // AJP cannot carry a tunnel: an upgrade goes to the balancer's HTTP members only.
        tries.exclude = ajp_members(&gen.config.balancers[bal]);
    }
    loop {
        let picked = match tries.fresh.take() {
            Some(m) => Some((m, Instant::now(), true)),
            None => next_member(gen, bal, sticky, tries.exclude)
                .await
                .map(|(m, at)| (m, at, false)),
        };
        let Some((member, at, fresh_only)) = picked else {
            return unavailable(core, gen, c, bal, &req).await;
        };
        let tracked = Tracked::start(core, gen, bal, member, started, at);
        c.rec.member = Some((bal, member));
        c.rec.sticky = sticky == Some(member);
        let failed = match attempt(core, c, &tracked, fresh_only, &mut req, &mut body, route).await
        {
            Ok((up, outcome)) => return finish(core, c, &tracked, up, outcome, &req, route).await,
            Err(f) => f,
        };
        match tries.after(&failed, &req, &tracked) {
            Next::Again => {}
            // No member could be reached: the request is whole and unsent, the client stays.
            Next::Unavailable => return unavailable(core, gen, c, bal, &req).await,
            Next::Answer => {
                let bcfg = &gen.config.balancers[bal];
                if failed.failure == Failure::ResponseTimeout && bcfg.failontimeout {
                    select::mark_failed(core, gen, bal, member, Mark::Timeout);
                }
                return fail(c, &tracked, &failed).await;
            }
        }
    }
}

/// The member for the next attempt (`select::choose`); while all candidates are at their
/// `max_conns` share, waits for a slot up to the balancer's `queue_timeout`. `None`: 503. The wait
/// is a boxed future of its own, so that the common case (a member at once) carries no timer in
/// the request's state. With the member, when it was picked.
async fn next_member(
    gen: &CoreGen,
    bal: usize,
    sticky: Option<usize>,
    exclude: u64,
) -> Option<(usize, Instant)> {
    let first = Instant::now();
    let mut now = first;
    loop {
        match select::choose(gen, bal, sticky, exclude, now) {
            Pick::Member(m) => return Some((m, now)),
            Pick::None => return None,
            Pick::Full => {
                let deadline = first + gen.config.balancers[bal].queue_timeout;
                if now >= deadline {
                    return None;
                }
                crate::boxed!(select::wait_for_slot(gen, bal, deadline)).await;
                now = Instant::now();
            }
        }
    }
}

/// Gathers a small body and describes the request. `None`: the client broke the framing (it was
/// refused) or left; its connection closes.
async fn prepare(core: &Core, gen: &CoreGen, c: &mut Client) -> Option<(Request, BodyTracker)> {
    let mut body = BodyTracker::new(c.head.body);
    let initial = match gather_body(gen, c, &mut body).await {
        Ok(n) => n,
        Err(Some(status)) => {
            core.stats.borrow_mut().refused(status);
            c.rec.status = status;
            refuse(c, status).await;
            return None;
        }
        Err(None) => return None,
    };
    let head_len = c.head.head_len;
    let req = Request {
        head_len,
        request_end: head_len + initial,
        is_head: c.head.is_head(&c.buf),
        reused: false,
        replayable: body.is_done(),
        idempotent: c.head.is_idempotent(&c.buf),
    };
    Some((req, body))
}

/// One attempt with the tracked member: a connection (pooled or new), then the exchange.
/// `Ok`: the exchange answered the client (whole or broken); `Err`: it failed before that.
async fn attempt(
    core: &Core,
    c: &mut Client,
    tracked: &Tracked<'_>,
    fresh_only: bool,
    req: &mut Request,
    body: &mut BodyTracker,
    route: &RouteConfig,
) -> Result<(Stream, Outcome), Failed> {
    let gen = tracked.gen;
    let (mut up, reused) = member_connection(core, c, tracked, fresh_only).await?;
    req.reused = reused;
    let bcfg = &gen.config.balancers[tracked.bal];
    let params = Params {
        host_header: &bcfg.members[tracked.member].host_header,
        preserve_host: route.preserve_host,
        response_timeout: bcfg.response_timeout,
        client_timeout: gen.config.limits.body_timeout,
        stopping: core.ends_connection(gen, c.listener),
        hsts: gen
            .listen(c.listener)
            .and_then(|l| l.tls.as_ref())
            .map_or(&[][..], |t| t.hsts_header.as_bytes()),
        reverse: route.reverse.then(|| Mapping {
            public: route.path.as_bytes(),
            member: route.member_prefix().as_bytes(),
            members: &bcfg.members,
            cookie_domains: &route.cookie_domains,
        }),
        upgrade: route
            .upgrade
            .as_ref()
            .filter(|_| !c.upgrade_offer.is_empty()),
    };
    match run_exchange(c, &mut up, req, body, &params, tracked).await {
        Outcome::Failed(f) => Err(f),
        other => Ok((up, other)),
    }
}

/// The balancer's AJP members, as a set of member bits.
fn ajp_members(bcfg: &BalancerConfig) -> u64 {
    bcfg.members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.protocol == Protocol::Ajp)
        .fold(0, |set, (i, _)| set | 1 << i)
}

/// Where a request's attempts stand.
#[derive(Default)]
struct Tries {
    /// Members already tried (and failed), as a bit set.
    exclude: u64,
    /// Times the request moved to another member (at most `maxattempts`).
    moved: usize,
    /// The request was already sent again on a fresh connection (once per request).
    retried: bool,
    /// Send it again to this member on a fresh connection.
    fresh: Option<usize>,
}

/// What follows a failed attempt.
enum Next {
    /// Another attempt (`Tries` says where).
    Again,
    /// No member could be reached within `maxattempts`: 503.
    Unavailable,
    /// The client gets the failure's status.
    Answer,
}

impl Tries {
    /// Applies the retry rule (`outcome::retry`) and `maxattempts` to a failed attempt, and counts
    /// it on the member (a connect failure was counted when it happened).
    fn after(&mut self, failed: &Failed, req: &Request, tracked: &Tracked<'_>) -> Next {
        let maxattempts = tracked.gen.config.balancers[tracked.bal].maxattempts;
        match retry(failed, req, self.retried) {
            // A stale pooled connection: a retry, not a failure of the member.
            Retry::FreshConnection => {
                self.retried = true;
                self.fresh = Some(tracked.member);
                tracked.with(|m| m.counters.retries += 1);
                Next::Again
            }
            Retry::OtherMember if self.moved < maxattempts => {
                self.moved += 1;
                self.exclude |= 1 << tracked.member;
                tracked.with(|m| m.counters.failovers += 1);
                // A connect failure was counted when it happened.
                if failed.reached != Reached::NoConnection {
                    tracked.fail(failed.failure);
                    let url =
                        &tracked.gen.config.balancers[tracked.bal].members[tracked.member].url;
                    tracing::debug!(member = %url, failure = ?failed.failure,
                        "member failed a request that moves to another member");
                }
                Next::Again
            }
            Retry::OtherMember if failed.reached == Reached::NoConnection => Next::Unavailable,
            // `fail` counts the failure that answers the client.
            Retry::OtherMember | Retry::No => Next::Answer,
        }
    }
}

/// Prepares the request for its route: the forwarded target with the route's `member_path` in
/// place of its public prefix, and the client's Host kept for mapping response URLs back
/// (`http::reverse`). `false`: the target does not begin with the prefix as written (a
/// `;parameter` inside it), so it cannot be mapped.
fn map_route(c: &mut Client, route: &RouteConfig) -> bool {
    if route.reverse {
        // The scheme the client used, or the one a trusted proxy in front says it used.
        let forwarded = c.trusted && c.head.forwarded_proto(&c.buf) == Some("https");
        let https = c.stream.tls.is_some() || forwarded;
        let host = c.head.routing_host(&c.buf);
        reverse::public_origin(&mut c.public_origin, host, https);
    }
    let Some(member) = &route.member_path else {
        return true;
    };
    let from = target(&c.buf, &c.head, &c.path);
    if from == b"*" {
        return true;
    }
    let mapped = reverse::map_target(from, route.path.as_bytes(), member.as_bytes(), &mut c.out);
    if mapped {
        std::mem::swap(&mut c.path, &mut c.out);
    }
    mapped
}

/// The route of the parsed request. Routing compares the path as members resolve it: without
/// `;parameters` (`path::route_key`, written into `c.out`, which is free until the exchange
/// writes the member's head; `map_route` uses it next, and swaps it with `c.path`).
fn find_route<'a>(gen: &'a CoreGen, c: &mut Client) -> Option<&'a RouteConfig> {
    let mut path = target(&c.buf, &c.head, &c.path);
    if path.contains(&b';') {
        route_key(path, &mut c.out);
        path = &c.out;
    }
    gen.router.find(c.head.routing_host(&c.buf), path)
}

/// Runs the exchange of the member's protocol.
async fn run_exchange(
    c: &mut Client,
    up: &mut Stream,
    req: &Request,
    body: &mut BodyTracker,
    params: &Params<'_>,
    tracked: &Tracked<'_>,
) -> Outcome {
    let mcfg = &tracked.gen.config.balancers[tracked.bal].members[tracked.member];
    match mcfg.protocol {
        Protocol::Http => exchange::run(c, up, req, body, params).await,
        Protocol::Ajp => {
            let limits = ajp::exchange::Limits {
                response: params.response_timeout,
                client: params.client_timeout,
                stopping: params.stopping,
                hsts: params.hsts,
                reverse: params.reverse,
            };
            ajp::exchange::run(c, up, mcfg, req, body.clone(), &limits).await
        }
    }
}

/// A connection to the tracked member: a pooled one that is still fit (checked without blocking;
/// for AJP, answered a CPING when idle past `ping`), else a new one (`fresh_only`: always a new
/// one). `Err`: the member cannot be reached; it is marked failed.
async fn member_connection(
    core: &Core,
    c: &mut Client,
    tracked: &Tracked<'_>,
    fresh_only: bool,
) -> Result<(Stream, bool), Failed> {
    let gen = tracked.gen;
    let bcfg = &gen.config.balancers[tracked.bal];
    let mcfg = &bcfg.members[tracked.member];
    if !fresh_only {
        if let Some(s) = pooled_connection(c, tracked, bcfg, mcfg).await {
            tracked.with(|m| m.counters.pool_hits += 1);
            return Ok((s, true));
        }
    }
    tracked.with(|m| m.counters.pool_misses += 1);
    let connect_start = Instant::now();
    let tls = gen.member_tls[tracked.bal][tracked.member].as_ref();
    match stream::connect(mcfg.addr, tls, bcfg.connect_timeout).await {
        Ok(s) => {
            let took = connect_start.elapsed();
            c.rec.connect_us = Some(took.as_micros() as u64);
            tracked.with(|m| m.record(Phase::Connect, took));
            Ok((s, false))
        }
        Err(e) => {
            let failure = match e {
                ConnectFail::Tcp(IoFail::Timeout) => Failure::ConnectTimeout,
                ConnectFail::Tcp(_) => Failure::ConnectRefused,
                ConnectFail::Tls(why) => {
                    // Logged each time: a certificate problem needs the operator, not a retry.
                    tracing::warn!(member = %mcfg.url, error = %why, "TLS handshake with the member failed");
                    Failure::Tls
                }
            };
            tracing::debug!(member = %mcfg.url, ?failure, "connect failed");
            tracked.fail(failure);
            select::mark_failed(core, gen, tracked.bal, tracked.member, Mark::Connect);
            Err(Failed::no_connection(failure))
        }
    }
}

/// How many pooled connections one checkout finds closed or readable (dropped) before it gives
/// up on the pool. The newest go first, so older ones are dead too: after a member restarted all
/// of them are, and walking them all would close up to `max_idle_per_member` in one request.
const UNFIT_PER_CHECKOUT: usize = 2;

/// The most recently pooled connection to the member that is neither readable nor closed (late
/// bytes from the member would otherwise reach the next client); others are closed. After
/// `UNFIT_PER_CHECKOUT` unfit ones, or one failed CPING (which waits up to `connect_timeout`),
/// the member's other pooled connections are marked expired (for the sweep) and `None` says
/// connect afresh.
async fn pooled_connection(
    c: &mut Client,
    tracked: &Tracked<'_>,
    bcfg: &BalancerConfig,
    mcfg: &MemberConfig,
) -> Option<Stream> {
    // The pick's time, until a CPING waited: then the clock again (idle times must not shrink).
    let mut now = tracked.picked;
    let mut unfit = 0;
    loop {
        let (mut s, idle) = tracked.gen.upstreams.borrow_mut()[tracked.bal]
            .pool
            .checkout_aged(tracked.member, now)?;
        if !stream::idle_and_open(&mut s) {
            tracing::debug!(member = %mcfg.url, "pooled connection closed or readable; dropped");
            unfit += 1;
            if unfit < UNFIT_PER_CHECKOUT {
                continue;
            }
        } else if mcfg.ping.is_none_or(|ping| idle < ping) {
            return Some(s);
        } else {
            // AJP: a connection idle longer than `ping` must answer a CPING before it is used.
            let answered = ajp::exchange::cping(&mut s, &mut c.rbuf, bcfg.connect_timeout).await;
            now = Instant::now();
            if answered {
                return Some(s);
            }
            tracing::debug!(member = %mcfg.url, "pooled AJP connection failed its CPING");
        }
        // Given up on the pool: the rest of it is as dead, or as unanswering.
        tracing::debug!(member = %mcfg.url, "other pooled connections expired; connecting afresh");
        let mut ups = tracked.gen.upstreams.borrow_mut();
        ups[tracked.bal].pool.expire_member(tracked.member, now);
        return None;
    }
}

/// Acts on an exchange that answered the client (whole or broken). Returns whether to keep it.
async fn finish(
    core: &Core,
    c: &mut Client,
    tracked: &Tracked<'_>,
    mut up: Stream,
    outcome: Outcome,
    req: &Request,
    route: &RouteConfig,
) -> bool {
    let gen = tracked.gen;
    match outcome {
        Outcome::Done(d) => finish_done(core, c, tracked, up, &d),
        Outcome::Broken {
            status,
            body_sent,
            received,
            reset_client,
        } => {
            tracked.with(|m| m.counters.bytes_received += received);
            c.rec.status = status;
            c.rec.body_bytes = body_sent;
            if status != 0 {
                tracked.respond(status);
            }
            c.end = if reset_client { End::Reset } else { End::Cut };
            false
        }
        Outcome::TooLarge => {
            let mcfg = &gen.config.balancers[tracked.bal].members[tracked.member];
            tracing::warn!(member = %mcfg.url, packet_size = mcfg.packet_size,
                "request head too large for one AJP packet: raise packet_size (and the connector's packetSize)");
            // Counted for the member, as its 502s and 504s are: the answer is about it.
            tracked.respond(500);
            // Nothing was sent: the rest of an unread body is drained so the client sees the 500.
            gateway_error(c, 500, req.replayable, None).await
        }
        Outcome::Failed(f) => fail(c, tracked, &f).await,
        Outcome::Switched(d) => {
            record_done(c, tracked, &d, None);
            tunnel(core, c, tracked, &mut up, route).await
        }
    }
}

/// Counts a whole answer, marks its member failed for a `failonstatus` status or else pools its
/// connection when it may be reused. Returns whether to keep the client.
fn finish_done(core: &Core, c: &mut Client, tracked: &Tracked<'_>, up: Stream, d: &Done) -> bool {
    let gen = tracked.gen;
    let ajp = gen.config.balancers[tracked.bal].members[tracked.member].protocol == Protocol::Ajp;
    let now = record_done(c, tracked, d, ajp.then_some(mcfg_url(tracked)));
    if gen.config.balancers[tracked.bal]
        .failonstatus
        .contains(&d.status)
    {
        select::mark_failed(
            core,
            gen,
            tracked.bal,
            tracked.member,
            Mark::Status(d.status),
        );
    } else if d.reusable && core.is_current(gen) {
        // (A request that began before a reload does not pool into its old generation.)
        gen.upstreams.borrow_mut()[tracked.bal]
            .pool
            .checkin(tracked.member, up, now, d.idle_limit);
    }
    if !d.request_read {
        c.end = End::Linger;
    }
    d.keep_client
}

/// Runs the tunnel that follows a relayed 101 and fills the access-log record with what it
/// carried. The member still counts the request in flight until it ends. Returns `false`: both
/// connections close.
async fn tunnel(
    core: &Core,
    c: &mut Client,
    tracked: &Tracked<'_>,
    up: &mut Stream,
    route: &RouteConfig,
) -> bool {
    let (carried, end) = tunnel::run(core, c, up, route.tunnel_timeout).await;
    tracing::debug!(peer = %c.peer, ?end, up = carried.up, down = carried.down, "tunnel closed");
    c.end = match end {
        // Both sides closed: the client's side was shut down already (close_notify first).
        tunnel::End::Closed => End::Done,
        // Not both sides' own end: a TLS client must not take it for one (no close_notify).
        _ => End::Cut,
    };
    tracked.with(|m| {
        m.counters.bytes_sent += carried.up;
        m.counters.bytes_received += carried.down;
    });
    c.rec.body_bytes = carried.down;
    c.rec.tunnel_up = Some(carried.up);
    false
}

fn mcfg_url<'a>(tracked: &Tracked<'a>) -> &'a str {
    &tracked.gen.config.balancers[tracked.bal].members[tracked.member].url
}

/// Counts a whole response and fills the access-log record. `ajp`: the AJP member's url. Returns
/// when it was counted (`Tracked::respond`).
fn record_done(c: &mut Client, tracked: &Tracked<'_>, d: &Done, ajp: Option<&str>) -> Instant {
    let status = d.status;
    tracked.with(|m| {
        m.counters.bytes_sent += d.sent;
        m.counters.bytes_received += d.received;
        m.record(Phase::ResponseHead, d.head_time);
        if let Some(url) = ajp.filter(|_| status == 403 && !m.warned_403) {
            m.warned_403 = true;
            tracing::warn!(member = %url,
                "AJP member answered 403: if every request gets it, the member's secret does not \
                 match the connector's (Tomcat requires one since 9.0.31)"
            );
        }
    });
    c.rec.status = status;
    c.rec.upstream_status = Some(status);
    c.rec.response_head_us = Some(d.head_time.as_micros() as u64);
    c.rec.body_bytes = d.body_sent;
    tracked.respond(status)
}

/// Answers a failed exchange with its 502/504.
async fn fail(c: &mut Client, tracked: &Tracked<'_>, f: &Failed) -> bool {
    let mcfg = &tracked.gen.config.balancers[tracked.bal].members[tracked.member];
    let what = match f.reached {
        Reached::NoConnection | Reached::Nothing => "before the request was sent",
        Reached::Request => "after the request was sent, before a response",
        Reached::Response => "with a response that could not be relayed",
    };
    tracing::warn!(member = %mcfg.url, failure = ?f.failure, "member failed {what}");
    tracked.fail(f.failure);
    tracked.respond(f.status);
    let page = tracked.gen.config.balancers[tracked.bal]
        .error_pages
        .get(f.status);
    gateway_error(c, f.status, f.request_read, page).await
}

/// The 503 of a balancer with no usable member (counted, with its error page).
async fn unavailable(
    core: &Core,
    gen: &CoreGen,
    c: &mut Client,
    bal: usize,
    req: &Request,
) -> bool {
    core.stats.borrow_mut().core.unavailable[gen.layout.balancers[bal]] += 1;
    let page = gen.config.balancers[bal].error_pages.get(503);
    local_reply(core, gen, c, 503, req, page).await
}

/// Answers from ringlb itself (404, 503, with the balancer's `page` for it) and keeps the
/// connection when the request was whole.
async fn local_reply(
    core: &Core,
    gen: &CoreGen,
    c: &mut Client,
    status: u16,
    req: &Request,
    page: Option<&ErrorPage>,
) -> bool {
    c.rec.status = status;
    if !req.replayable {
        refuse_with(c, status, page).await;
        return false;
    }
    // While stopping, the answer says the connection ends, like a member's would; and after a
    // request asking to switch protocols (allowed or not), what the client sent next may be early
    // tunnel bytes, not a request.
    let asked = upgrade::asked(&c.buf, &c.head);
    c.buf.drain(..req.request_end);
    let keep = c.head.keep_alive && !core.ends_connection(gen, c.listener) && !asked;
    c.out.clear();
    reply::error_page(&mut c.out, status, !keep, page, req.is_head);
    send_own_answer(c, Duration::from_secs(10)).await && keep
}

/// A 502, 504 (or 500) with `Connection: close`. `request_read` says whether the client's request
/// was read to its end (if not, the rest is drained briefly so the client sees the status).
async fn gateway_error(
    c: &mut Client,
    status: u16,
    request_read: bool,
    page: Option<&ErrorPage>,
) -> bool {
    c.rec.status = status;
    if request_read {
        c.out.clear();
        // The connection closes after it: a body a HEAD client does not expect is not read.
        reply::error_page(&mut c.out, status, true, page, false);
        send_own_answer(c, Duration::from_secs(10)).await;
    } else {
        refuse_with(c, status, page).await;
    }
    false
}
