//! The few calls into compio's socket API: read more, write a range, write head + body, connect.
//!
//! Keeping them here means a runtime upgrade or switch touches one file. Must never: read into a
//! buffer without spare capacity (compio reports 0 bytes, which looks like EOF). Invariant: the
//! buffer's ownership goes to the kernel for the operation and comes back in the same `Vec`; after
//! a timeout the operation is cancelled and the buffer is gone (the connection must then close).

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;

use crate::deadline;

/// Why an I/O step failed.
#[derive(Debug)]
pub enum IoFail {
    /// The peer closed its side (read returned 0).
    Closed,
    /// The deadline passed; the operation was cancelled.
    Timeout,
    Error(io::Error),
}

/// Appends at least one byte read from `s` to `buf`, waiting at most `limit`.
pub async fn read_more(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    spare: usize,
    limit: Duration,
) -> Result<usize, IoFail> {
    buf.reserve(spare);
    let owned = std::mem::take(buf);
    match deadline::timeout(limit, s.append(owned)).await {
        Ok(BufResult(res, owned)) => {
            *buf = owned;
            match res {
                Ok(0) => Err(IoFail::Closed),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFail::Error(e)),
            }
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes `buf[range]` to `s`, handing the buffer to the kernel (no copy).
pub async fn write_range(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    if range.is_empty() {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    match deadline::timeout(limit, s.write_all(owned.slice(range))).await {
        Ok(BufResult(res, slice)) => {
            *buf = slice.into_inner();
            res.map_err(IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes bytes that live for the whole program (no buffer to hand over, no copy).
pub async fn write_static(
    s: &mut TcpStream,
    bytes: &'static [u8],
    limit: Duration,
) -> Result<(), IoFail> {
    match deadline::timeout(limit, s.write_all(bytes)).await {
        Ok(BufResult(res, _)) => res.map_err(IoFail::Error),
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Writes all of `head` and then `body[range]` in one vectored write.
pub async fn write_head_and(
    s: &mut TcpStream,
    head: &mut Vec<u8>,
    body: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    if range.is_empty() {
        let len = head.len();
        return write_range(s, head, 0..len, limit).await;
    }
    let h = std::mem::take(head);
    let b = std::mem::take(body);
    match deadline::timeout(limit, s.write_vectored_all((h, (b.slice(range),)))).await {
        Ok(BufResult(res, (h, (b,)))) => {
            *head = h;
            *body = b.into_inner();
            res.map_err(IoFail::Error)
        }
        Err(_) => Err(IoFail::Timeout),
    }
}

/// Shuts down the write side (the peer sees EOF after what was written).
pub async fn shutdown_write(s: &mut TcpStream) {
    let _ = s.shutdown().await;
}

/// Connects to a member with TCP_NODELAY set.
pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, IoFail> {
    match deadline::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(IoFail::Error(e)),
        Err(_) => Err(IoFail::Timeout),
    }
}
