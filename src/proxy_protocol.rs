//! The PROXY protocol header (HAProxy's, version 1 text and version 2 binary) that an L4 balancer
//! or a proxy in front of ringlb sends first on each connection, saying whose connection it is:
//! parsed by hand over the connection's read buffer.
//!
//! Owns: the header's grammar, what ringlb takes from it (`Source`: the client's address, or
//! `LOCAL`, or a client the sender cannot name), and the reasons a connection is refused for
//! (`Rejected`; the refusing is `conn`'s). Must never: panic or read outside the buffer on any input, wait
//! for more than `V1_MAX` bytes of a text header or `16 + V2_MAX_BODY` of a binary one, take part of a header
//! for a whole one, or accept a connection that does not begin with a header. Invariant: `len` of
//! a parsed header is exactly the header's length: what follows it in the buffer is the client's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The most a version 2 header may carry after its 16 fixed bytes (addresses and TLVs).
pub const V2_MAX_BODY: usize = 2048;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A header read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes.
    pub len: usize,
    pub source: Source,
}

/// Whose connection the header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client at this address.
    Addr(SocketAddr),
    /// The sender's own (v2 `LOCAL`: a health check): the connection's address stands.
    Local,
    /// A client the sender could not name (v1 `UNKNOWN`, v2 `PROXY` with `UNSPEC`).
    Unknown,
}

impl Source {
    /// The client's address, when the header names one.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Source::Addr(a) => Some(a),
            _ => None,
        }
    }
}

/// Why a connection's first bytes are not an acceptable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// It does not begin with either signature.
    NotAHeader,
    /// It begins like one but breaks the grammar.
    Malformed,
    /// Longer than `V1_MAX` or `V2_MAX_BODY`.
    TooLong,
    /// A version 2 header for a family ringlb does not take (UDP, UNIX sockets).
    Unsupported,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::NotAHeader => "no PROXY header",
            Invalid::Malformed => "malformed PROXY header",
            Invalid::TooLong => "PROXY header too long",
            Invalid::Unsupported => "PROXY header for an unsupported address family",
        }
    }
}

/// Why a `proxy_protocol` listener closed a connection (`CoreCounters::proxy_rejected`, by
/// index; `Rejected::NAMES` names them).
#[derive(Debug, Clone, Copy)]
pub enum Rejected {
    /// From outside the listener's `trusted_proxies`.
    Untrusted,
    /// Its first bytes are no PROXY header (a balancer not set up to send one).
    Missing,
    /// A malformed, oversized or unsupported header.
    Invalid,
    /// Part of a header, then nothing within `header_timeout` (or a close).
    Incomplete,
}

impl Rejected {
    /// The names, in index order, as `/status.json` and `/metrics` report them.
    pub const NAMES: [&'static str; 4] = ["untrusted", "missing", "invalid", "incomplete"];
}

/// Parses the header at the start of `buf`. `Ok(None)`: what is there is a valid beginning, and
/// more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    match buf.first() {
        None => Ok(None),
        Some(b'\r') => v2(buf),
        Some(b'P') => v1(buf),
        Some(_) => Err(Invalid::NotAHeader),
    }
}

/// Whether `buf` begins like `prefix` (as far as it goes): `Ok(true)` when it holds all of it.
fn begins(buf: &[u8], prefix: &[u8]) -> Result<bool, Invalid> {
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(Invalid::NotAHeader);
    }
    Ok(n == prefix.len())
}

/// `PROXY TCP4 src dst sport dport\r\n`, `PROXY TCP6 …`, `PROXY UNKNOWN …\r\n`.
fn v1(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    if !begins(buf, V1_PREFIX)? {
        return Ok(None);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    // Printable ASCII and spaces up to the CR of the final CRLF.
    let Some(cr) = window
        .iter()
        .position(|&b| !(b == b' ' || b.is_ascii_graphic()))
    else {
        return match buf.len() >= V1_MAX {
            true => Err(Invalid::TooLong),
            false => Ok(None),
        };
    };
    if window[cr] != b'\r' {
        return Err(Invalid::Malformed);
    }
    match window.get(cr + 1) {
        None if buf.len() < V1_MAX => return Ok(None),
        Some(b'\n') => {}
        _ => return Err(Invalid::Malformed),
    }
    let line = &window[V1_PREFIX.len()..cr];
    let source = v1_source(line).ok_or(Invalid::Malformed)?;
    Ok(Some(Header {
        len: cr + 2,
        source,
    }))
}

/// The source of a version 1 line (after `PROXY `).
fn v1_source(line: &[u8]) -> Option<Source> {
    let text = std::str::from_utf8(line).ok()?;
    if text == "UNKNOWN" || text.starts_with("UNKNOWN ") {
        return Some(Source::Unknown);
    }
    let mut parts = text.split(' ');
    let family = parts.next()?;
    let (src, dst, sport, dport) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (src, _dst): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            src.parse::<Ipv4Addr>().ok()?.into(),
            dst.parse::<Ipv4Addr>().ok()?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().ok()?.into(),
            dst.parse::<Ipv6Addr>().ok()?.into(),
        ),
        _ => return None,
    };
    let sport = port(sport)?;
    port(dport)?;
    Some(Source::Addr(SocketAddr::new(src, sport)))
}

/// A decimal port, 0 to 65535, without leading zeros.
fn port(s: &str) -> Option<u16> {
    let digits = s.bytes().all(|b| b.is_ascii_digit());
    if !digits || s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// The binary header: signature, version and command, family and protocol, length, addresses,
/// TLVs.
fn v2(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    if !begins(buf, V2_SIGNATURE)? || buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(Invalid::Malformed);
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if body_len > V2_MAX_BODY {
        return Err(Invalid::TooLong);
    }
    let len = 16 + body_len;
    let Some(body) = buf.get(16..len) else {
        return Ok(None);
    };
    // LOCAL (the sender's own connection, a health check): the addresses are not read.
    if command == 0 {
        return Ok(Some(Header {
            len,
            source: Source::Local,
        }));
    }
    // UDP and UNIX sockets are refused (the specification allows using the connection's address
    // instead; a balancer speaking for clients ringlb cannot name is closed, not trusted).
    let (source, addresses) = match buf[13] {
        0x00 => (Source::Unknown, 0),
        0x11 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            (Source::Addr(SocketAddr::new(ip.into(), port)), 12)
        }
        0x21 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            (
                Source::Addr(SocketAddr::new(Ipv6Addr::from(octets).into(), port)),
                36,
            )
        }
        0x11 | 0x21 => return Err(Invalid::Malformed),
        0x12 | 0x22 | 0x31 | 0x32 => return Err(Invalid::Unsupported),
        _ => return Err(Invalid::Malformed),
    };
    if !tlvs_whole(&body[addresses..]) {
        return Err(Invalid::Malformed);
    }
    Ok(Some(Header { len, source }))
}

/// Whether `rest` is a sequence of whole TLVs (type, 16-bit length, value); their contents are
/// not used.
fn tlvs_whole(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let Some(&[_, hi, lo]) = rest.get(..3) else {
            return false;
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(next) = rest.get(end..) else {
            return false;
        };
        rest = next;
    }
    true
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
