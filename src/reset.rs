//! The reset that ends an answer cut short in a body its client reads to the connection's close
//! (for an HTTP/1.0 client: a body the member framed by its close, a chunked or length-less AJP
//! body; an HTTP/1.1 client gets those chunked): a clean close there would make the cut body
//! look whole, so the client's socket is set to reset at close (SO_LINGER 0) before such an
//! answer's head goes out (`arm`), and set back once the body went out whole (`disarm`). However
//! the connection ends in between — a member's failure, a timeout, the end of a stop's grace, the
//! task dropped — the client sees an error. After a cut the connection closes through `close`
//! (or `drain` alone, for any other cut: a body framed by length or chunks, a tunnel's end), which
//! first lets what the kernel still queues for a client still connected (the tail of an earlier,
//! whole, pipelined answer) reach it.
//!
//! Owns: SO_LINGER on client sockets, and the wait for the send queue before a cut connection
//! closes. Must never: leave a socket armed after its answer went out whole (its clean close is
//! the body's end), or hold a cut connection longer than `DRAIN_FOR`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
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
    while unsent(tcp.as_fd()).is_some_and(|n| n > 0) && connected(tcp.as_fd()) {
        let Some(left) = crate::deadline::left(deadline) else {
            break;
        };
        compio::time::sleep(wait.min(left)).await;
        wait = (wait * 2).min(POLL_AT_MOST);
    }
}

/// The connection can still deliver: established, or closed by the client's side only. After the
/// client's reset the send queue still counts its bytes (nothing will take them): no wait then.
/// Unknown counts as connected (the wait is bounded anyway).
#[allow(unsafe_code)]
fn connected(fd: BorrowedFd<'_>) -> bool {
    const ESTABLISHED: u8 = 1;
    const CLOSE_WAIT: u8 = 8;
    // SAFETY: all-zero is a valid `tcp_info` (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `len` bytes into `info`, which outlives the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    r != 0 || matches!(info.tcpi_state, ESTABLISHED | CLOSE_WAIT)
}

/// Bytes written to the socket that its peer has not yet acknowledged (SIOCOUTQ); `None`: unknown.
#[allow(unsafe_code)]
fn unsent(fd: BorrowedFd<'_>) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n.max(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (ours, l.accept().unwrap().0)
    }

    /// Polls `f` for up to a second.
    fn soon(mut f: impl FnMut() -> bool) -> bool {
        (0..200).any(|_| f() || (std::thread::sleep(Duration::from_millis(5)), false).1)
    }

    #[test]
    fn a_connection_delivers_until_its_peer_resets_it_even_with_bytes_still_counted_unsent() {
        let (mut ours, peer) = pair();
        assert!(connected(ours.as_fd()));
        // The peer stops reading: what we write waits in our send queue.
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(1)
            .unwrap();
        ours.set_nonblocking(true).unwrap();
        while ours.write(&[7u8; 65536]).is_ok_and(|n| n > 0) {}
        assert!(unsent(ours.as_fd()).is_some_and(|n| n > 0));
        assert!(connected(ours.as_fd()), "a full queue still delivers");
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        assert!(
            soon(|| !connected(ours.as_fd())),
            "after the peer's reset: no wait"
        );
    }

    #[test]
    fn a_peer_that_only_closed_its_side_still_reads() {
        let (ours, peer) = pair();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            connected(ours.as_fd()),
            "CLOSE_WAIT: the peer may still read"
        );
    }
}
