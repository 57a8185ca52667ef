//! One client connection's life: on a `proxy_protocol` listener the PROXY header first (only from
//! the listener's `trusted_proxies`), on a TLS listener the handshake (`start_tls`), then wait for
//! a request, read its head, normalise its path, hand it to `proxy::forward` (or `redirect`),
//! repeat while the connection is kept alive (dropping the empty lines a client may send before a
//! request, RFC 9112 2.2, which wait idle to the same deadline rather than start a head); refuse
//! malformed heads (with an access-log line); park the connection (`Core::park`) when it idles past
//! `PARK_AFTER`; close a TLS connection with close_notify (not after an answer cut short), close
//! lingering one whose client may still send after its last answer, and reset one whose answer was
//! cut short in a body that ends at the close (`reset`).
//!
//! Owns: the handshake, header and keep-alive timeouts, the idle wait (and when it lends the
//! connection's buffers to the core: `LEND_AFTER`) and the refusal path. Must never: let a
//! malformed request reach a member, hold a socket after its timer fired (parking may wait up to
//! `park::LET_GO` for the driver to let go of the socket), abandon a receive that may have taken
//! bytes (idle waits are readiness polls, on a plain connection one kept armed between its requests
//! (`readiness`), and the receives are non-blocking and kept: the one after readiness, and a new
//! connection's one before its first poll; TLS bytes they took start the next request's head
//! deadline), or let bytes that make no request stretch the keep-alive wait. Invariant: `c.buf`
//! always starts at the first unconsumed byte from the client, so pipelined requests are answered
//! in order; a plain connection's wait trusts the kept poll only after a receive that left the
//! socket empty (or a `stop`: the next poll is new), since the poll tells only of arrivals since
//! its readiness was last taken (`readiness`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use compio::net::TcpStream;
use futures_util::future::{select, Either};

use crate::client::{refuse, Client, End};
use crate::coop;
use crate::core::{ConnGuard, Core};
use crate::core_gen::CoreGen;
use crate::http::parse::{head_begun, parse_request, HeadError, HeadScan};
use crate::http::path;
use crate::io::IoFail;
use crate::park::PARK_AFTER;
use crate::proxy_protocol::{self, Rejected, Source};
use crate::stream::{self, Received, Stream};
use crate::tls::session::{self, TlsSession};
use crate::{proxy, readiness, redirect};

/// The most buffer capacity (bytes, all buffers of a set) a closing connection leaves for a later
/// one: an ordinary request's; a set grown by a large head, a gathered body, a body copied through
/// user space (`http::exchange`'s `BODY_READ` alone is 64 KiB) or a tunnel is freed, so that the
/// spare sets one-shot connections keep filling stay small. (An idle connection lends its set
/// whatever its size.)
const KEEP_AT_CLOSE: usize = 64 * 1024;

/// How long a connection waiting for its next request keeps its buffers before it lends them to the
/// core (`wait_idle`; the wheel makes it 100-150 ms). A busy keep-alive connection's next request
/// comes sooner: lending a set and taking it back cost ~400 instructions a request. One that waits
/// longer holds no buffer, nor does a parked one; a set taken for a receive that found nothing goes
/// back at once, and so does one that brought only empty lines.
const LEND_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// While stopping, how long an idle connection still waits for its next request (the client may
/// have sent it already; closing under it would fail it) before it closes.
const STOP_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

enum Stop {
    /// Close without a word: the client went away, idled out or the server is stopping.
    Quiet,
    /// Answer with this status, then close.
    Refuse(u16),
}

/// Serves one newly accepted client connection of listener `listener` until it closes or parks.
pub async fn serve(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    guard: ConnGuard,
) {
    // TCP_NODELAY is inherited from the listener (`listeners::bind_reuseport`): no syscall here.
    // The TLS handshake and the first request's head must be complete within header_timeout of
    // the accept.
    let gen = core.gen();
    let head_deadline = Instant::now() + gen.config.limits.header_timeout;
    // A listener this generation does not know (removed by a reload before last): its settings
    // are gone, so nothing is served on it.
    let Some(from) = gen.listen(listener).map(|l| l.proxy_protocol.clone()) else {
        return;
    };
    drop(gen);
    let c = client(&core, Stream::plain(stream), peer, listener);
    match from {
        // Boxed: a connection on another listener does not carry its state (nor a second copy
        // of its `Client` held across the header's wait).
        Some(from) => crate::boxed!(serve_proxied(core, c, from, head_deadline, guard)).await,
        None => serve_client(core, c, head_deadline, guard).await,
    }
}

/// A new connection on a `proxy_protocol` listener: its PROXY header, then as on any other.
async fn serve_proxied(
    core: Rc<Core>,
    mut c: Client,
    from: std::sync::Arc<[crate::trust::Net]>,
    head_deadline: Instant,
    guard: ConnGuard,
) {
    if take_proxy_header(&core, &mut c, &from, head_deadline).await {
        serve_client(core, c, head_deadline, guard).await
    }
}

/// A new connection, ready for its TLS handshake or its first request.
async fn serve_client(core: Rc<Core>, c: Client, head_deadline: Instant, guard: ConnGuard) {
    match core.tls_config(c.listener) {
        // Boxed: a plain connection's task does not carry the TLS branch's state (nor a second
        // copy of its `Client` held across the handshake).
        Some(config) => crate::boxed!(serve_tls(core, c, config, head_deadline, guard)).await,
        None => keep_serving(core, c, Some(head_deadline), None, guard).await,
    }
}

/// A connection on a `proxy_protocol` listener: from one of its `trusted_proxies`, with a whole,
/// valid PROXY header by `deadline`. The client's address is then the header's source, and
/// whether the client is a trusted proxy for X-Forwarded-* is decided on that address (a client
/// the header cannot name is not one; `LOCAL` keeps the sender's own). `false`: the connection
/// closes, counted (a sender that connects and closes without a byte, as TCP health checks do,
/// is not).
async fn take_proxy_header(
    core: &Core,
    c: &mut Client,
    from: &[crate::trust::Net],
    deadline: Instant,
) -> bool {
    let rejected = |why: Rejected| {
        tracing::debug!(peer = %c.peer, ?why, "closed a connection on a proxy_protocol listener");
        core.stats.borrow_mut().core.proxy_rejected[why as usize] += 1;
        false
    };
    if !from.iter().any(|n| n.contains(c.peer.ip())) {
        return rejected(Rejected::Untrusted);
    }
    loop {
        match proxy_protocol::parse(&c.buf) {
            Ok(Some(h)) => {
                c.buf.drain(..h.len);
                match h.source {
                    Source::Addr(addr) => {
                        c.peer = addr;
                        let trusted = &core.gen().config.server.trusted_proxies;
                        c.trusted = crate::trust::trusted(trusted, addr.ip());
                    }
                    Source::Unknown => {
                        c.unnamed = true;
                        c.trusted = false;
                    }
                    Source::Local => {}
                }
                return true;
            }
            Ok(None) => {}
            Err(proxy_protocol::Invalid::NotAHeader) => return rejected(Rejected::Missing),
            Err(_) => return rejected(Rejected::Invalid),
        }
        let had = c.buf.len();
        if stream::read_more_by(&mut c.stream, &mut c.buf, 512, deadline)
            .await
            .is_err()
        {
            if had == 0 {
                return false;
            }
            return rejected(Rejected::Incomplete);
        }
    }
}

/// A new connection on a TLS listener: the handshake, then requests as on any other.
async fn serve_tls(
    core: Rc<Core>,
    mut c: Client,
    config: std::sync::Arc<rustls::ServerConfig>,
    head_deadline: Instant,
    guard: ConnGuard,
) {
    if start_tls(&core, &mut c, config, head_deadline).await {
        keep_serving(core, c, Some(head_deadline), None, guard).await
    }
}

/// Serves a parked connection again: its next request (or its close) has arrived.
pub async fn resume(
    core: Rc<Core>,
    p: crate::park::Parked,
    head_deadline: Option<Instant>,
    guard: ConnGuard,
) {
    let tcp = match crate::park::attach(p.fd) {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::debug!(peer = %p.peer, error = %e, "parked connection cannot resume");
            return;
        }
    };
    let stream = Stream { tcp, tls: p.tls };
    let mut c = client(&core, stream, p.peer, p.listener);
    if p.unnamed {
        c.unnamed = true;
        c.trusted = false;
    }
    // A keep-alive connection's wait keeps the deadline it parked with: what woke it may be no
    // request (empty lines), which must not stretch the wait.
    let idle_until = (!p.first_request).then_some(p.deadline);
    keep_serving(core, c, head_deadline, idle_until, guard).await
}

/// The connection's `Client`; whether its peer is a trusted proxy is decided once, here.
fn client(core: &Core, stream: Stream, peer: SocketAddr, listener: usize) -> Client {
    let trusted = crate::trust::trusted(&core.gen().config.server.trusted_proxies, peer.ip());
    Client::new(stream, peer, trusted, listener)
}

/// The TLS handshake of a new connection, by `deadline`, counted by outcome. Application data
/// sent with the client's last handshake flight lands in `c.buf`. `false`: it failed (the
/// connection closes).
async fn start_tls(
    core: &Core,
    c: &mut Client,
    config: std::sync::Arc<rustls::ServerConfig>,
    deadline: Instant,
) -> bool {
    let mut s = match TlsSession::server(config) {
        Ok(s) => Box::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a TLS session");
            return false;
        }
    };
    // Bytes read with a PROXY header are the start of the handshake.
    s.feed(&c.buf);
    c.buf.clear();
    let done = session::handshake(&mut c.stream.tcp, &mut s, &mut c.buf, deadline).await;
    let mut stats = core.stats.borrow_mut();
    match done {
        Ok(()) => {
            stats.core.tls_handshakes[usize::from(s.resumed())] += 1;
            c.stream.tls = Some(s);
            true
        }
        Err(e) => {
            stats.core.tls_failed[e.reason as usize] += 1;
            tracing::debug!(peer = %c.peer, error = %e, "TLS handshake failed");
            false
        }
    }
}

/// Answers requests on `c` while it is kept alive; parks it when it idles past `PARK_AFTER`.
/// `head_deadline`: a new connection's, for its first request; `idle_until`: a resumed keep-alive
/// connection's deadline for its next request.
async fn keep_serving(
    core: Rc<Core>,
    mut c: Client,
    mut head_deadline: Option<Instant>,
    mut idle_until: Option<Instant>,
    mut guard: ConnGuard,
) {
    // The connection ends after an answer (not an idle wait, nor a request that never came).
    let mut answered = false;
    // `idle_until` is set by the first wait for a request and kept by the waits that only empty
    // lines end (they are no request, so they do not stretch it).
    loop {
        drop_empty_lines(&mut c.buf);
        // The start of a TLS record that came behind a request is the start of the next one: it
        // waits for the rest by the head's deadline, as plain bytes do, instead of idling (a
        // parked session would keep the buffer that holds it until the keep-alive deadline).
        if c.buf.is_empty() && !c.stream.mid_record() {
            let now = Instant::now();
            // Read for each wait, never held across one: an idle connection does not keep an
            // old configuration generation alive, and takes a reload's timeout at its next wait
            // for a request (a wait that empty lines ended goes on to the deadline it had).
            let keepalive = core.gen().config.limits.keepalive_timeout;
            let mut deadline = *idle_until.get_or_insert(head_deadline.unwrap_or(now + keepalive));
            // A new plain connection's request has usually arrived with it (the listener defers
            // the accept until its first bytes do, `listeners::defer_accept`), and a resumed one
            // was readable: read before any poll. (After a TLS handshake or a PROXY header, the
            // bytes the accept waited for were taken; the request usually follows at once.)
            let first = head_deadline.is_some();
            let waited = wait_idle(&core, &mut c, now, &mut deadline, first).await;
            // A stop brought the deadline forward to `STOP_LINGER` from when the wait saw it: it
            // is kept, so a wait that empty lines ended does not start that linger again.
            idle_until = Some(deadline);
            match waited {
                // Empty lines alone are no request: the wait goes on, to the same deadline. They
                // are dropped with the buffer set, which goes back to the core, so that a client
                // sending a CRLF now and then does not keep one; unless a TLS record began behind
                // them, whose head needs one at once (then the loop's top drops them). TLS bytes
                // without plaintext yet (nothing in `c.buf`) start a head (`wait_idle`). A wait
                // that receives first, as after a full read, looks at no timer: the deadline is
                // checked here, and the task gives way, so a flood of empty lines can neither
                // outlast it nor hold the core.
                Wait::Data if !c.buf.is_empty() && !head_begun(&c.buf) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    coop::count(c.buf.len()).await;
                    if !c.stream.mid_record() {
                        core.keep_buffers_of(&mut c);
                    }
                    continue;
                }
                Wait::Data => {}
                Wait::Close => break,
                // Boxed: parking's state (the client moved in) is not part of every task. The
                // poll is cancelled first: the driver must let go of the socket.
                Wait::Park => {
                    c.ready.stop();
                    match crate::boxed!(park(&core, c, deadline, first, guard)).await {
                        Some((back, kept)) => {
                            (c, guard) = (back, kept);
                            continue;
                        }
                        None => return,
                    }
                }
            }
        }
        let deadline = head_deadline
            .unwrap_or_else(|| Instant::now() + core.gen().config.limits.header_timeout);
        (head_deadline, idle_until) = (None, None);
        // Everything from here to the end of the response is a large state machine that lives
        // only while a request is under way: boxed, it is not part of what an idle connection
        // holds. One allocation per request, from mimalloc's per-thread free list.
        match crate::boxed!(handle(&core, &mut c, deadline)).await {
            // A request ringlb answers itself may never suspend under epoll (see `coop`).
            After::Next if c.end == End::Usual => coop::count(0).await,
            // Whatever sets `c.end` also ends the connection; should a path not say so, the
            // connection ends here rather than read what may be the rest of a body as a request.
            After::Next => {
                debug_assert!(
                    false,
                    "a request set c.end ({:?}) but kept the client",
                    c.end
                );
                break;
            }
            After::Answered => {
                answered = true;
                break;
            }
            After::Close => break,
        }
    }
    // The kept poll goes before the socket closes (the close's own reads wait for themselves).
    c.ready.stop();
    // Boxed, like the flush in `wait_idle`: a connection's task does not carry them.
    match closing(&c, answered, core.is_stopping()) {
        Closing::Linger => crate::boxed!(crate::client::linger_close(&mut c)).await,
        Closing::CloseNotify => crate::boxed!(stream::shutdown_write(&mut c.stream)).await,
        Closing::Now => {}
        Closing::Drained => crate::boxed!(crate::reset::drain(&c.stream.tcp)).await,
        Closing::Reset => crate::boxed!(crate::reset::close(&c.stream.tcp)).await,
    }
    // Its buffers, grown to what a request needs, serve a later connection (one takes a set for
    // its first read, unless its first bytes came with a TLS handshake or a PROXY header) instead
    // of being freed and allocated again, a dozen of them. Not a set grown past `KEEP_AT_CLOSE`.
    if let Some(spare) = c.lend_buffers().filter(|s| s.capacity() <= KEEP_AT_CLOSE) {
        core.keep_spare(spare);
    }
}

/// Drops the empty lines (CRLF or LF, and a CR that ends `buf`) at the start of `buf`: before a
/// request line they are no request (RFC 9112 2.2), and left there they would make the idle wait
/// a wait for a head (the header timeout, then a 408) for a client that sent a CRLF after its
/// last request.
fn drop_empty_lines(buf: &mut Vec<u8>) {
    let n = crate::http::parse::leading_empty_lines(buf);
    if n > 0 {
        buf.drain(..n);
    }
}

/// How a connection whose requests are over closes.
enum Closing {
    /// `client::linger_close`.
    Linger,
    /// close_notify first (TLS).
    CloseNotify,
    /// At once.
    Now,
    /// Once what the kernel still queues for the client went out (`reset::drain`), then at once.
    Drained,
    /// With a reset, once what the kernel still queues for the client went out (`reset::close`).
    Reset,
}

/// How `c` closes, as `c.end` says. `answered`: its last request got an answer (or a refusal),
/// rather than never coming. `stopping`: the server stops, and its grace is for the exchanges
/// still running, not for waiting on send queues (tunnels end just before it runs out).
fn closing(c: &Client, answered: bool, stopping: bool) -> Closing {
    match c.end {
        End::Linger => Closing::Linger,
        End::Usual if answered && may_send_more(c) => Closing::Linger,
        // A TLS client learns the end was meant (close_notify): a body that ends at the close is
        // then known to be whole.
        End::Usual if c.stream.tls.is_some() => Closing::CloseNotify,
        End::Usual | End::Done => Closing::Now,
        // After a cut, without close_notify or lingering, but not before what is queued for the
        // client went out: a client that sent more gets a reset at the close, which would drop
        // the tail of an earlier, whole, pipelined answer.
        End::Cut if stopping => Closing::Now,
        End::Cut => Closing::Drained,
        End::Reset => Closing::Reset,
    }
}

/// Whether a connection that ends after an answer may hold, or still receive, bytes the client sent
/// after its request: it asked to keep the connection (ringlb ends it anyway: for an HTTP/1.0
/// client, the member's body ran to its close or was decoded; a stop, a 502 or 504), or bytes are
/// still buffered (a pipelined request; the request itself, after a 502 or 504). Closing a socket
/// with unread input resets the connection, and the reset can overtake the answer's tail still
/// queued for the client, so such a connection closes lingering (`client::linger_close`). Not for a
/// client that said `Connection: close` and sent nothing more, which ends the common one-request
/// connection at once. (An unread body says so itself, `End::Linger`; a tunnel's end is never
/// `End::Usual`.)
fn may_send_more(c: &Client) -> bool {
    c.head.keep_alive || !c.buf.is_empty()
}

/// Parks `c` until `deadline` (`first`: its first request has not come yet), its socket out of
/// compio's handle (`park::detach`). `Some`: a stop began while the driver let go, so it is not
/// parked (a parked one would be closed unread) and goes on waiting for a last request, as any
/// idle connection does while the server stops. `None`: parked, or closed.
async fn park(
    core: &Rc<Core>,
    mut c: Client,
    deadline: Instant,
    first: bool,
    guard: ConnGuard,
) -> Option<(Client, ConnGuard)> {
    debug_assert!(!c.stream.mid_record(), "parking a TLS session mid-record");
    let Some(fd) = crate::park::detach(c.stream.tcp).await else {
        tracing::warn!(peer = %c.peer, "the driver kept an idle connection's socket; closing it");
        return None;
    };
    if core.is_stopping() {
        c.stream.tcp = crate::park::attach(fd).ok()?;
        return Some((c, guard));
    }
    let parked = crate::park::Parked {
        fd,
        tls: c.stream.tls,
        peer: c.peer,
        listener: c.listener,
        deadline,
        first_request: first,
        unnamed: c.unnamed,
    };
    core.park(parked, guard);
    None
}

/// What waiting for the next request came to.
enum Wait {
    /// Bytes came: `c.buf` holds them (the first of the next request, or empty lines only), or
    /// it is still empty (TLS: the session holds the start of a record, or a record without
    /// data came).
    Data,
    /// Close the connection (idle timeout, peer gone, shutdown).
    Close,
    /// Idle past `PARK_AFTER`: park the connection.
    Park,
}

/// Waits (from `now`) for the first bytes of the next request until `deadline`, and puts them in
/// `c.buf`. Once the wait has lasted `LEND_AFTER` it lends the connection's buffers to the core and
/// waits on holding none (a wait that ends on its timer, to park or close, lends them first, and a
/// set taken for a receive that found nothing goes back at once). The wait is a readiness poll, not
/// a receive: abandoning it (to park, or at the deadline) can never lose bytes the client sent.
/// While the server stops, the connection's next request (often already on its way) is still
/// answered, with `Connection: close`, instead of the connection closing under it; one that sends
/// none within `STOP_LINGER` (or its deadline) closes: `deadline` is brought forward to it, once.
/// `read_first`: try a receive before the first poll (a connection's first request, usually there
/// already; that saves the poll). A plain connection also receives first whenever its kept poll may
/// not be trusted (`Readiness::may_wait`: a new connection, or the last receive filled its room),
/// and once more before a wait on the kept poll that ended on its timer parks or closes it.
async fn wait_idle(
    core: &Core,
    c: &mut Client,
    mut now: Instant,
    deadline: &mut Instant,
    mut read_first: bool,
) -> Wait {
    let mut park_at = (*deadline).min(now + PARK_AFTER);
    // Set once stopping: the connection closes at `deadline` if no request came.
    let mut closing = false;
    // Whether `c` holds a buffer set: lent once the wait has lasted `LEND_AFTER`, taken for a
    // receive (and lent again at once if it found nothing). One that served a request, or read a
    // PROXY header, holds one (perhaps a lone read buffer), and so does a TLS one after its
    // handshake (the session's); a new plain or a resumed one does not.
    let mut holds = c.holds_buffers();
    let lend_due = now + LEND_AFTER;
    loop {
        if !closing && core.is_stopping() {
            *deadline = (*deadline).min(now + STOP_LINGER);
            closing = true;
            park_at = *deadline;
        }
        if c.stream.has_buffered() {
            // Plaintext a TLS session already holds: no wait for the socket.
            let _ = stream::recv_ready(&mut c.stream, &mut c.buf, 4096);
            return Wait::Data;
        }
        // A TLS client that sent close_notify (with its last request) sends nothing more, and
        // may keep the socket open until it gets ours: no wait, no parking.
        if c.stream.peer_closed() {
            return Wait::Close;
        }
        // Records rustls queued for the client while reading (an alert) go out first. Boxed:
        // unboxed, the flush's state made every connection's task 1.1 KB larger, plain ones too
        // (scenario (d) measured it as ~3 % more CPU per connection).
        if let Some(s) = c.stream.tls.as_mut() {
            let left = deadline.saturating_duration_since(now);
            if crate::boxed!(session::flush(&mut c.stream.tcp, s, left))
                .await
                .is_err()
            {
                return Wait::Close;
            }
            // The flush may have waited: the timers below count from now.
            now = Instant::now();
        }
        // A plain connection's kept poll tells only of bytes that came after the socket was last
        // left empty (`readiness`): until then, receive first.
        read_first |= c.stream.tls.is_none() && !c.ready.may_wait();
        // How the wait ended, when the poll asks for one more receive before it ends.
        let mut ended = None;
        if !read_first {
            let lend_at = holds.then_some(lend_due).filter(|&t| t < park_at);
            match wait_readable(core, c, now, lend_at, park_at, *deadline, closing).await {
                Woke::Readable => {}
                Woke::Lend => {
                    core.keep_buffers_of(c);
                    holds = false;
                    now = Instant::now();
                    continue;
                }
                Woke::End(end) if !c.ready.receive_before_ending() => {
                    core.keep_buffers_of(c);
                    return end;
                }
                Woke::End(end) => ended = Some(end),
            }
        }
        read_first = false;
        let took = !holds;
        if took {
            c.take_buffers(core.take_spare());
            holds = true;
        }
        match stream::recv_ready(&mut c.stream, &mut c.buf, 4096) {
            // TLS bytes without plaintext yet are the start of the next request too: its head
            // deadline runs from now (a client cannot stretch the idle wait a byte at a time).
            Ok(Received::Bytes | Received::Partial) => {
                // A read that filled the room it had may have left bytes behind.
                c.ready.received(c.buf.len() < c.buf.capacity());
                return Wait::Data;
            }
            Ok(Received::Closed) => return Wait::Close,
            // Readiness without data (rare): wait again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                c.ready.found_nothing();
                // The set goes back: it was taken for this receive, or the wait ends here.
                if took || ended.is_some() {
                    core.keep_buffers_of(c);
                    holds = false;
                }
                if let Some(end) = ended {
                    return end;
                }
                now = Instant::now();
            }
            Err(e) => {
                tracing::debug!(peer = %c.peer, error = %e, "idle connection closes");
                return Wait::Close;
            }
        }
    }
}

/// How one wait for readability ended.
enum Woke {
    /// The socket may have bytes, or a stop began (the caller's next turn sees it).
    Readable,
    /// `lend_at` came first: time to lend the buffers and wait on.
    Lend,
    /// How the wait for a request ends: `Park` at `park_at` when the deadline is later, else
    /// `Close` (at once when `closing`, or on an error).
    End(Wait),
}

/// One wait for the client's socket to become readable, until `lend_at` if set (it is before
/// `park_at`), else until `park_at`.
async fn wait_readable(
    core: &Core,
    c: &mut Client,
    now: Instant,
    lend_at: Option<Instant>,
    park_at: Instant,
    deadline: Instant,
    closing: bool,
) -> Woke {
    let (kept, stream, peer) = (&mut c.ready, &c.stream, c.peer);
    let ready = std::pin::pin!(async {
        match stream.tls {
            None => kept.ready(&stream.tcp).await,
            // A TLS session reads ahead of the socket (`has_buffered`): a poll per wait.
            Some(_) => readiness::poll_once(&stream.tcp).await,
        }
    });
    let timer = std::pin::pin!(crate::deadline::sleep(
        lend_at.unwrap_or(park_at).saturating_duration_since(now)
    ));
    let stop = std::pin::pin!(core.shutdown.notified());
    match select(ready, select(timer, stop)).await {
        Either::Left((Ok(()), _)) => Woke::Readable,
        Either::Left((Err(e), _)) => {
            tracing::debug!(%peer, error = %e, "idle connection closes");
            Woke::End(Wait::Close)
        }
        Either::Right((Either::Left(_), _)) if lend_at.is_some() => Woke::Lend,
        Either::Right((Either::Left(_), _)) if closing => Woke::End(Wait::Close),
        Either::Right((Either::Left(_), _)) if !core.is_stopping() => {
            Woke::End(if park_at < deadline {
                Wait::Park
            } else {
                Wait::Close
            })
        }
        // The stop began: the next turn sets `closing` (and brings `deadline` forward).
        Either::Right(_) => Woke::Readable,
    }
}

/// What a connection does after `handle`.
enum After {
    /// Waits for the next request.
    Next,
    /// Closes after an answer, a refusal, or a failed attempt at one (`Client::end` says which
    /// needs what).
    Answered,
    /// Closes without a word: the client left, or sent nothing of a request.
    Close,
}

/// One request: the rest of its head, then the exchange. Returns what the connection does next.
async fn handle(core: &Core, c: &mut Client, deadline: Instant) -> After {
    // Only an access-logged refusal needs the time (no clock read per request otherwise).
    let started = core.access_log.as_ref().map(|_| Instant::now());
    // The request runs on the generation in effect now, whatever a reload publishes meanwhile.
    let gen = core.gen();
    // While stopping, a connection whose answer went out before the stop (without `Connection:
    // close`) goes on: its next request is answered with it (`wait_idle`). A request begun after
    // the stop, or on a listener a reload removed, is the connection's last, whatever its answer
    // said.
    let last = core.ends_connection(&gen, c.listener);
    let redirect = gen.listen(c.listener).is_some_and(|l| l.redirect_https);
    let keep = match read_head(&gen, c, deadline).await {
        Ok(()) if redirect => redirect::to_https(core, &gen, c).await,
        Ok(()) => proxy::forward(core, &gen, c).await,
        Err(Stop::Quiet) => return After::Close,
        Err(Stop::Refuse(status)) => {
            core.stats.borrow_mut().refused(status);
            log_refusal(core, c, status, started);
            refuse(c, status).await;
            false
        }
    };
    if keep && !last {
        After::Next
    } else {
        After::Answered
    }
}

/// Writes the access-log line of a request refused before it had a member.
fn log_refusal(core: &Core, c: &mut Client, status: u16, started: Option<Instant>) {
    if let (Some(log), Some(started)) = (&core.access_log, started) {
        crate::client::log_own_answer(log, c, status, started);
    }
}

/// Normalises the parsed target's path for routing and forwarding (`http::path`); a target that
/// climbs above the root is refused.
fn normalize_target(c: &mut Client) -> Result<(), Stop> {
    let target = &c.buf[c.head.path.clone()];
    match path::normalize(target, &mut c.path) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(peer = %c.peer, error = e, "refused request");
            Err(Stop::Refuse(400))
        }
    }
}

/// Reads until `c.buf` (not empty) starts with a complete, valid request head, parsed into
/// `c.head`, by `deadline`.
async fn read_head(gen: &CoreGen, c: &mut Client, deadline: Instant) -> Result<(), Stop> {
    let limits = &gen.config.limits;
    let max = limits.max_request_header_bytes;
    let mut scan = HeadScan::default();
    loop {
        // Empty lines alone (TLS records can bring them here: the start of a record behind the
        // last request sends a connection straight to its head) are dropped, as `keep_serving`
        // drops them, so a request after them parses the same whichever way it came.
        let had = head_begun(&c.buf);
        if !had && !c.buf.is_empty() {
            c.buf.clear();
            scan = HeadScan::default();
        }
        if scan.worth_parsing(&c.buf, max) {
            match parse_request(&c.buf, max, limits.max_headers, &mut c.head) {
                Ok(()) => return normalize_target(c),
                Err(HeadError::Partial) => {}
                Err(e) => {
                    tracing::debug!(peer = %c.peer, error = ?e, "refused request");
                    return Err(Stop::Refuse(e.status()));
                }
            }
        }
        // A plain read that times out leaves the buffer empty (a TLS one may have added
        // plaintext first): a request had begun if there were bytes before or after, other than
        // empty lines.
        match stream::read_more_by(&mut c.stream, &mut c.buf, 4096, deadline).await {
            Ok(_) => continue,
            Err(IoFail::Timeout) if had || head_begun(&c.buf) => return Err(Stop::Refuse(408)),
            // Nothing of a request came (TLS records without data): close without a word.
            Err(IoFail::Timeout) => return Err(Stop::Quiet),
            Err(e) => {
                tracing::debug!(peer = %c.peer, error = ?e, buffered = c.buf.len(), "client left mid-head");
                return Err(Stop::Quiet);
            }
        }
    }
}
