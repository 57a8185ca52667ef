//! The reset that ends an answer cut short in a body its client reads to the connection's close
//! (for an HTTP/1.0 client: a body the member framed by its close, a chunked or length-less AJP
//! body; an HTTP/1.1 client gets those chunked): a clean close there would make the cut body
//! look whole, so the client's socket is set to reset at close (SO_LINGER 0) before such an
//! answer's head goes out (`arm`), and set back once the body went out whole (`disarm`). However
//! the connection ends in between — a member's failure, a timeout, the end of a stop's grace, the
//! task dropped — the client sees an error. After a cut the connection closes through `close`
//! (or `drain` alone, for a cut the client can tell by its framing), which first lets what the
//! kernel still queues for the client (the tail of an earlier, whole, pipelined answer) reach it.
//!
//! Owns: SO_LINGER on client sockets, and the wait for the send queue before a cut connection
//! closes. Must never: leave a socket armed after its answer went out whole (its clean close is
//! the body's end), or hold a cut connection longer than `DRAIN_FOR`.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use compio::net::TcpStream;

/// How long a cut connection waits for its send queue to empty before the reset.
pub const DRAIN_FOR: Duration = Duration::from_millis(500);
/// The send queue is looked at again after this, then after twice as long each time, up to
/// `POLL_AT_MOST` (about a dozen looks in `DRAIN_FOR`).
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_AT_MOST: Duration = Duration::from_millis(64);

/// The socket's close becomes a reset: what the kernel still queues for the peer is dropped, and
/// the peer's next read fails (ECONNRESET) once it has read what it already received (on Linux;
/// some other stacks drop received but unread bytes when the reset comes).
pub fn arm(tcp: &TcpStream) {
    set(tcp, Some(Duration::ZERO));
}

/// The socket's close is a plain one again.
pub fn disarm(tcp: &TcpStream) {
    set(tcp, None);
}

fn set(tcp: &TcpStream, linger: Option<Duration>) {
    if let Err(e) = socket2::SockRef::from(tcp).set_linger(linger) {
        // Only a socket already gone fails here; its close is then whatever it was.
        tracing::debug!(error = %e, ?linger, "cannot set SO_LINGER on a client socket");
    }
}

/// Closes a connection whose answer was cut in a body the client reads to the close: `drain`s,
/// then leaves the socket armed; dropping it sends the reset.
pub async fn close(tcp: &TcpStream) {
    drain(tcp).await;
    arm(tcp);
}

/// Waits (at most `DRAIN_FOR`) until the kernel has nothing left to send to the client, so that
/// the bytes written before a cut (the tail of an earlier, whole, pipelined answer) reach it
/// before the close: a reset, or a close with client bytes still unread (which resets too), would
/// drop them.
pub async fn drain(tcp: &TcpStream) {
    let deadline = Instant::now() + DRAIN_FOR;
    let mut wait = POLL_FIRST;
    while unsent(tcp).is_some_and(|n| n > 0) {
        let Some(left) = crate::deadline::left(deadline) else {
            break;
        };
        compio::time::sleep(wait.min(left)).await;
        wait = (wait * 2).min(POLL_AT_MOST);
    }
}

/// Bytes written to the socket that its peer has not yet acknowledged (SIOCOUTQ); `None`: unknown.
#[allow(unsafe_code)]
fn unsent(tcp: &TcpStream) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(tcp.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n.max(0) as u32)
}
