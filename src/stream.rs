//! A connection as the request path reads and writes it: a TCP socket, with a TLS session on TLS
//! listeners and to `https://` members. Clients and members are read and written through these
//! calls only, so plain and TLS connections run the same code; plain ones go straight to `io`,
//! TLS ones through `tls::session`.
//!
//! Owns: choosing between the two per call, and connecting to a member (TCP, then TLS when it is
//! `https://`). Must never: add a copy or a buffer to a plain connection (the one copy on that
//! path, a body part of at most `io::JOIN_MAX` bytes behind its head, is `io`'s). Invariant: the
//! same contract as `io` (bytes are appended to the caller's buffer; after a timeout the
//! connection is not used again).

use std::ops::Range;
use std::time::Duration;

use compio::net::TcpStream;

use crate::io::{self, IoFail, Unsent};
pub use crate::tls::session::Received;
use crate::tls::session::{self, TlsSession};
use crate::tls::upstream::MemberTlsConfig;

/// A connection's transport.
pub struct Stream {
    pub tcp: TcpStream,
    /// Present on TLS listeners (boxed: a plain connection pays one pointer).
    pub tls: Option<Box<TlsSession>>,
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// Whether plaintext has already arrived that no reader took (TLS only): an idle wait must
    /// not wait for the socket then.
    pub fn has_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.has_buffered())
    }

    /// Whether a TLS session holds ciphertext it is not done with (the start of a record): a
    /// request has begun (TLS only).
    pub fn mid_record(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.mid_record())
    }

    /// Whether the TLS peer sent close_notify (TLS only; a plain peer's close is a read of 0).
    pub fn peer_closed(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.peer_closed())
    }

    /// The TLS buffers, while the connection idles or once it closed (`None`: plain, or they hold
    /// bytes still to be read or sent).
    pub fn lend(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.tls.as_mut().and_then(|s| s.lend())
    }

    /// Whether it holds TLS buffers (with room).
    pub fn holds_buffers(&self) -> bool {
        self.tls.as_ref().is_some_and(|s| s.holds_buffers())
    }

    /// Takes TLS buffers again (a plain connection lets them go).
    pub fn take(&mut self, bufs: (Vec<u8>, Vec<u8>)) {
        if let Some(s) = self.tls.as_mut() {
            s.take(bufs);
        }
    }
}

/// `read_more` for a loop that reads towards one `deadline`: `Timeout` without a read once it
/// has passed (`deadline::left`).
pub async fn read_more_by(
    f: &mut Stream,
    buf: &mut Vec<u8>,
    spare: usize,
    deadline: std::time::Instant,
) -> Result<usize, IoFail> {
    match crate::deadline::left(deadline) {
        Some(left) => read_more(f, buf, spare, left).await,
        None => Err(IoFail::Timeout),
    }
}

/// Appends at least one byte from `f` to `buf`, waiting at most `limit` (the socket's reads count
/// on the thread's `coop` count in `io::read_more`, ciphertext for TLS).
pub async fn read_more(
    f: &mut Stream,
    buf: &mut Vec<u8>,
    spare: usize,
    limit: Duration,
) -> Result<usize, IoFail> {
    match f.tls.as_mut() {
        None => io::read_more(&mut f.tcp, buf, spare, limit).await,
        Some(s) => session::read_more(&mut f.tcp, s, buf, limit).await,
    }
}

/// Reads without blocking what the peer sent (its socket is readable) into `buf`, making room for
/// at least `spare` bytes on a plain connection (the read fills what room there is).
/// `WouldBlock`: nothing was there.
pub fn recv_ready(f: &mut Stream, buf: &mut Vec<u8>, spare: usize) -> std::io::Result<Received> {
    match f.tls.as_mut() {
        None => {
            buf.reserve(spare);
            let spare = rustix::buffer::spare_capacity(buf);
            let (n, _) = rustix::net::recv(&f.tcp, spare, rustix::net::RecvFlags::DONTWAIT)?;
            Ok(if n == 0 {
                Received::Closed
            } else {
                Received::Bytes
            })
        }
        Some(s) => session::recv_ready(&f.tcp, s, buf),
    }
}

/// Sends without blocking (the socket may be writable) from `data`: returns how much of it was
/// taken, 0 when the socket takes nothing now. On TLS, what was taken is encrypted and may still
/// wait in the session (`unsent`); records waiting there go out first, also with `data` empty.
pub fn send_ready(f: &mut Stream, data: &[u8]) -> std::io::Result<usize> {
    match f.tls.as_mut() {
        None => io::send_now(&f.tcp, data),
        Some(s) => session::send_ready(&f.tcp, s, data),
    }
}

/// Encrypted bytes still waiting in the TLS session after `send_ready` (0 on a plain one).
pub fn unsent(f: &Stream) -> usize {
    f.tls.as_ref().map_or(0, |s| s.unsent())
}

/// Shuts down the write side without blocking: on TLS, close_notify first (queued once, sent as
/// far as the socket takes it). `Ok(false)`: it still waits in the session; call again when the
/// socket is writable.
pub fn shutdown_ready(f: &mut Stream) -> std::io::Result<bool> {
    if let Some(s) = f.tls.as_mut() {
        if !session::close_ready(&f.tcp, s)? {
            return Ok(false);
        }
    }
    rustix::net::shutdown(&f.tcp, rustix::net::Shutdown::Write)?;
    Ok(true)
}

/// Shuts the write side down without close_notify, without blocking: the peer learns that nothing
/// more comes, not that the stream ended as its sender meant (a tunnel whose other side broke).
pub fn cut_ready(f: &Stream) -> std::io::Result<()> {
    rustix::net::shutdown(&f.tcp, rustix::net::Shutdown::Write)?;
    Ok(())
}

/// Writes `buf[range]` to the client.
pub async fn write_range(
    f: &mut Stream,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    match f.tls.as_mut() {
        None => io::write_range(&mut f.tcp, buf, range, limit).await,
        Some(s) => session::write(&mut f.tcp, s, &buf[range], limit).await,
    }
}

/// Writes bytes that live for the whole program.
pub async fn write_static(
    f: &mut Stream,
    bytes: &'static [u8],
    limit: Duration,
) -> Result<(), IoFail> {
    match f.tls.as_mut() {
        None => io::write_static(&mut f.tcp, bytes, limit).await,
        Some(s) => session::write(&mut f.tcp, s, bytes, limit).await,
    }
}

/// Writes all of `head` and then `body[range]`.
pub async fn write_head_and(
    f: &mut Stream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    match f.tls.as_mut() {
        None => io::write_head_and(&mut f.tcp, head, body, range, limit).await,
        Some(s) => session::write_two(&mut f.tcp, s, head, &body[range], limit).await,
    }
}

/// Writes a connection's last answer, `head` and then `body[range]`, and ends the write side right
/// behind it on a plain connection (`io::write_last`); on TLS, as `write_head_and` (the
/// close_notify follows at the close, `conn.rs`).
pub async fn write_last(
    f: &mut Stream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    match f.tls.as_mut() {
        None => io::write_last(&mut f.tcp, head, body, range, limit).await,
        Some(s) => session::write_two(&mut f.tcp, s, head, &body[range], limit).await,
    }
}

/// Shuts down the write side: close_notify first on TLS.
pub async fn shutdown_write(f: &mut Stream) {
    if let Some(s) = f.tls.as_mut() {
        session::close(&mut f.tcp, s).await;
    }
    io::shutdown_write(&mut f.tcp).await;
}

/// Writes a request (`head`, then `body[range]`), telling "nothing written" from "maybe
/// written" like `io::send_request`.
pub async fn send_request(
    f: &mut Stream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), Unsent> {
    match f.tls.as_mut() {
        None => io::send_request(&mut f.tcp, head, body, range, limit).await,
        Some(s) => session::send(&mut f.tcp, s, head, &body[range], limit).await,
    }
}

/// Whether an idle pooled connection is still fit for a request (see `io::idle_and_open`; on
/// TLS, records that carry no data, such as session tickets, are taken and do not count).
pub fn idle_and_open(f: &mut Stream) -> bool {
    match f.tls.as_mut() {
        None => io::idle_and_open(&f.tcp),
        Some(s) => session::idle_check(&f.tcp, s),
    }
}

/// Connects to a member; with `tls`, also completes the TLS handshake, all within `limit`.
pub async fn connect(
    addr: std::net::SocketAddr,
    tls: Option<&MemberTlsConfig>,
    limit: Duration,
) -> Result<Stream, ConnectFail> {
    let deadline = std::time::Instant::now() + limit;
    let tcp = io::connect(addr, limit).await.map_err(ConnectFail::Tcp)?;
    let mut f = Stream::plain(tcp);
    if let Some(t) = tls {
        let mut s = TlsSession::client(t.config.clone(), t.name.clone())
            .map_err(|e| ConnectFail::Tls(e.to_string()))?;
        let mut plain = Vec::new();
        session::handshake(&mut f.tcp, &mut s, &mut plain, deadline)
            .await
            .map_err(|e| match e.reason {
                session::HandshakeFail::Timeout => ConnectFail::Tcp(IoFail::Timeout),
                _ => ConnectFail::Tls(e.to_string()),
            })?;
        // A member speaks only after a request: bytes before one mean it is out of step.
        if !plain.is_empty() {
            return Err(ConnectFail::Tls(
                "the member sent data before any request".into(),
            ));
        }
        f.tls = Some(Box::new(s));
    }
    Ok(f)
}

/// Why a member connection could not be made.
#[derive(Debug)]
pub enum ConnectFail {
    Tcp(IoFail),
    /// The TLS handshake failed (the member's certificate, or no common parameters).
    Tls(String),
}
