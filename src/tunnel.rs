//! A tunnel after a member's `101 Switching Protocols` (a WebSocket): bytes copied both ways
//! between the client and the member connection, on the same core, until both directions have
//! ended, went quiet for `tunnel_timeout`, or the shutdown grace ran out.
//!
//! Owns: the copy loop, its half-closes and its end. Must never: let one direction wait on the
//! other (each waits on its own readiness and every send, receive and shutdown is non-blocking,
//! so a peer that does not read stalls only what goes to it), read more of a direction while its
//! last bytes are unsent (at most one read of each direction is held), hold the client's buffers
//! while both directions stay quiet past `PARK_AFTER` (they are lent to the core like a waiting
//! keep-alive connection's; a TLS member's session keeps its own), or give either connection back to HTTP.
//! Invariant: a direction whose sender closed (FIN or close_notify) is shut down towards its
//! receiver (`shutdown(SHUT_WR)`, close_notify first on TLS) once all its bytes are out, and the
//! other direction goes on; a direction that fails (reset, broken pipe, TLS error, a TLS close
//! without close_notify) is dropped, its receiver shut down without close_notify, and the other
//! still delivers what it can.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use compio::driver::op::{Interest, PollOnce};
use compio::driver::ToSharedFd;

use crate::client::Client;
use crate::core::Core;
use crate::park::PARK_AFTER;
use crate::stream::{self, Received, Stream};

/// Room made for one non-blocking read on a plain connection.
const READ: usize = 64 * 1024;
/// Read and write turns without a wait before the tunnel lets the core's other tasks run.
const BUDGET: usize = 16;
/// Tunnels close this long before the shutdown grace ends, so that each is logged.
const STOP_MARGIN: Duration = Duration::from_millis(200);

/// What a tunnel carried.
#[derive(Debug, Default, Clone, Copy)]
pub struct Carried {
    /// Client to member.
    pub up: u64,
    /// Member to client.
    pub down: u64,
}

/// One direction: its bytes in flight (`c.buf` up, `c.rbuf` down) and where it stands.
#[derive(Default)]
struct Flow {
    /// Bytes of the buffer already sent.
    sent: usize,
    /// The sender closed its side.
    eof: bool,
    /// The receiver was told (its write side shut down).
    shut: bool,
    /// A send, receive or shutdown failed: nothing more moves this way.
    dead: bool,
    /// It was the receive that failed: the sender's connection is broken (so nothing can be
    /// written to it either).
    sender_broke: bool,
    /// The sender's socket may have bytes (`false` after a read found none, until it is ready).
    readable: bool,
    /// The receiver's socket may take bytes.
    writable: bool,
    /// Bytes taken for the receiver.
    bytes: u64,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            readable: true,
            writable: true,
            ..Flow::default()
        }
    }

    /// Nothing more will move this way.
    fn done(&self) -> bool {
        self.shut || self.dead
    }

    /// All bytes read were sent, and none wait in the receiver's TLS session.
    fn drained(&self, buf: &[u8], to: &Stream) -> bool {
        self.sent == buf.len() && stream::unsent(to) == 0
    }

    /// One turn without blocking: send what waits, shut the receiver down after the sender's
    /// end, read more. `true`: something moved (or the direction ended).
    fn step(&mut self, buf: &mut Vec<u8>, from: &mut Stream, to: &mut Stream) -> bool {
        if self.done() {
            return false;
        }
        match self.turn(buf, from, to) {
            Ok(moved) => moved,
            Err((e, sender)) => {
                tracing::debug!(error = %e, sender, "a tunnel direction failed");
                self.dead = true;
                self.sender_broke = sender;
                if sender {
                    // The receiver learns that nothing more comes (best effort), without the
                    // close_notify that would tell a TLS receiver the stream ended as meant.
                    let _ = stream::cut_ready(to);
                }
                buf.clear();
                self.sent = 0;
                true
            }
        }
    }

    /// `Err((e, true))`: receiving failed; `Err((e, false))`: sending or shutting down did.
    fn turn(
        &mut self,
        buf: &mut Vec<u8>,
        from: &mut Stream,
        to: &mut Stream,
    ) -> Result<bool, (std::io::Error, bool)> {
        let to_receiver = |e| (e, false);
        let mut moved = false;
        if self.writable && !self.drained(buf, to) {
            let before = stream::unsent(to);
            let n = stream::send_ready(to, &buf[self.sent..]).map_err(to_receiver)?;
            self.sent += n;
            self.bytes += n as u64;
            let flushed = stream::unsent(to) < before;
            moved |= n > 0 || flushed;
            self.writable = n > 0 || flushed;
            if self.sent == buf.len() {
                buf.clear();
                self.sent = 0;
            }
        }
        if self.eof && self.drained(buf, to) {
            if stream::shutdown_ready(to).map_err(to_receiver)? {
                self.shut = true;
                return Ok(true);
            }
            self.writable = false;
        }
        if buf.is_empty()
            && stream::unsent(to) == 0
            && !self.eof
            && (self.readable || from.has_buffered())
        {
            match stream::recv_ready(from, buf, READ) {
                Ok(Received::Bytes) => moved = true,
                Ok(Received::Partial) => {}
                Ok(Received::Closed) => {
                    self.eof = true;
                    moved = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) => return Err((e, true)),
            }
        }
        Ok(moved)
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their directions.
    Closed,
    /// A direction failed (reset, broken pipe, TLS error).
    Failed,
    /// Nothing moved for `tunnel_timeout`.
    Idle,
    /// The server stopped and the shutdown grace ran out.
    Stopped,
}

/// Runs the tunnel between `c` and `up` (the bytes already in `c.buf` go up first, those in
/// `c.rbuf` down) until it ends. Both connections are finished with when it returns.
pub async fn run(core: &Core, c: &mut Client, up: &mut Stream, idle: Duration) -> (Carried, End) {
    // The tunnel polls the client's socket itself: the kept poll would only wake the task again.
    c.ready.stop();
    let _open = Open::new(core);
    let mut ups = Flow::new();
    let mut downs = Flow::new();
    let mut last = Instant::now();
    let end = loop {
        if pump(c, up, &mut ups, &mut downs) {
            last = Instant::now();
        }
        if ups.done() && downs.done() {
            break if ups.dead || downs.dead {
                End::Failed
            } else {
                End::Closed
            };
        }
        if let Some(end) = wait(core, c, up, &mut ups, &mut downs, last + idle).await {
            break end;
        }
    };
    let carried = Carried {
        up: ups.bytes,
        down: downs.bytes,
    };
    (carried, end)
}

/// Moves bytes both ways without blocking until nothing more moves (or `BUDGET` turns, so the
/// core's other tasks run). `true`: something moved.
fn pump(c: &mut Client, up: &mut Stream, ups: &mut Flow, downs: &mut Flow) -> bool {
    let mut moved = false;
    for _ in 0..BUDGET {
        let a = ups.step(&mut c.buf, &mut c.stream, up);
        let b = downs.step(&mut c.rbuf, up, &mut c.stream);
        // A connection that failed to receive takes nothing more either.
        downs.dead |= ups.sender_broke;
        ups.dead |= downs.sender_broke;
        if !(a || b) {
            break;
        }
        moved = true;
    }
    moved
}

/// Waits until a socket one of the flows waits on is ready (setting its flag), or a shutdown
/// begins (`None` either way); `Some`: the tunnel ends, quiet until `quiet_until` or at the end
/// of the shutdown grace.
async fn wait(
    core: &Core,
    c: &mut Client,
    up: &mut Stream,
    ups: &mut Flow,
    downs: &mut Flow,
    quiet_until: Instant,
) -> Option<End> {
    let now = Instant::now();
    let stop_at = core
        .stop_deadline()
        .map(|d| d.checked_sub(STOP_MARGIN).unwrap_or(d));
    let until = stop_at.map_or(quiet_until, |s| s.min(quiet_until));
    let ended = |now: Instant| {
        if stop_at.is_some_and(|s| s <= now) {
            End::Stopped
        } else {
            End::Idle
        }
    };
    if now >= until {
        return Some(ended(now));
    }
    // `None`: a flow goes on at once.
    let (want, quiet) = wanted_readiness(c, up, ups, downs)?;
    // Quiet both ways: the buffers are kept through a short spell (between two messages), then
    // go back to the core for the rest of the wait, like a waiting keep-alive connection's.
    let first = if quiet {
        until.min(now + PARK_AFTER)
    } else {
        until
    };
    let mut hit = readiness(core, c, up, want, first - now).await;
    let now = Instant::now();
    if quiet && hit.is_none() && now < until {
        // (Not the access log's fields of this request, written when the tunnel closes: lent
        // buffers go back empty.)
        let log_fields = std::mem::take(&mut c.log_fields);
        core.keep_buffers_of(c);
        hit = readiness(core, c, up, want, until - now).await;
        c.take_buffers(core.take_spare());
        c.log_fields = log_fields;
    }
    let hit = match hit {
        Some(hit) => hit,
        None => return Some(ended(Instant::now())),
    };
    ups.readable |= hit[0];
    downs.writable |= hit[1];
    downs.readable |= hit[2];
    ups.writable |= hit[3];
    None
}

/// The readiness the flows wait for (client readable, client writable, member readable, member
/// writable), and whether both directions are quiet (nothing to send, no shutdown owed); `None`
/// when a flow can go on at once, its sender's TLS session already holding plaintext.
fn wanted_readiness(
    c: &Client,
    up: &Stream,
    ups: &Flow,
    downs: &Flow,
) -> Option<([bool; 4], bool)> {
    // A direction with bytes to send waits for its receiver; else for its sender, unless that
    // closed. Plaintext already in a sender's TLS session needs no wait (`Flow::step` takes it).
    // (A direction whose sender closed is pending until its receiver is shut down: if the turn
    // budget ran out first, the receiver's writability brings it back.)
    let up_pending = !ups.done() && (ups.eof || !ups.drained(&c.buf, up));
    let down_pending = !downs.done() && (downs.eof || !downs.drained(&c.rbuf, &c.stream));
    let read_client = !ups.done() && !up_pending && !ups.eof;
    let read_member = !downs.done() && !down_pending && !downs.eof;
    if (read_client && c.stream.has_buffered()) || (read_member && up.has_buffered()) {
        return None;
    }
    let want = [read_client, down_pending, read_member, up_pending];
    Some((want, !up_pending && !down_pending))
}

/// Waits for the readiness asked for in `want` (client readable, client writable, member
/// readable, member writable) and returns which came; `None` after `limit`. A shutdown that
/// begins meanwhile returns at once (nothing ready): the caller waits again with the grace's end.
async fn readiness(
    core: &Core,
    c: &Client,
    up: &Stream,
    want: [bool; 4],
    limit: Duration,
) -> Option<[bool; 4]> {
    let cfd = c.stream.tcp.to_shared_fd();
    let mfd = up.tcp.to_shared_fd();
    let mut client_read =
        std::pin::pin!(want[0]
            .then(|| compio::runtime::submit(PollOnce::new(cfd.clone(), Interest::Readable))));
    let mut client_write =
        std::pin::pin!(want[1]
            .then(|| compio::runtime::submit(PollOnce::new(cfd.clone(), Interest::Writable))));
    let mut member_read =
        std::pin::pin!(want[2]
            .then(|| compio::runtime::submit(PollOnce::new(mfd.clone(), Interest::Readable))));
    let mut member_write =
        std::pin::pin!(want[3]
            .then(|| compio::runtime::submit(PollOnce::new(mfd.clone(), Interest::Writable))));
    let mut timer = std::pin::pin!(crate::deadline::sleep(limit));
    let stopping = core.is_stopping();
    let mut stop = std::pin::pin!(core.shutdown.notified());
    std::future::poll_fn(|cx| {
        let hit = [
            ready(client_read.as_mut(), cx),
            ready(client_write.as_mut(), cx),
            ready(member_read.as_mut(), cx),
            ready(member_write.as_mut(), cx),
        ];
        if hit.iter().any(|&h| h) {
            return Poll::Ready(Some(hit));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some([false; 4]));
        }
        Poll::Pending
    })
    .await
}

/// Polls an optional readiness wait; `true` once it completed (with an error too: the read or
/// write that follows reports it).
fn ready<F: Future>(f: Pin<&mut Option<F>>, cx: &mut Context<'_>) -> bool {
    f.as_pin_mut().is_some_and(|f| f.poll(cx).is_ready())
}

/// Counts the tunnel as open on this core while it lives.
struct Open<'a>(&'a Core);

impl<'a> Open<'a> {
    fn new(core: &'a Core) -> Open<'a> {
        let mut s = core.stats.borrow_mut();
        s.core.tunnels_open += 1;
        s.core.tunnels_total += 1;
        Open(core)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.stats.borrow_mut().core.tunnels_open -= 1;
    }
}
