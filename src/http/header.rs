//! Header classification: which headers ringlb must treat specially (framing, hop-by-hop,
//! forwarding). Classified once at parse time so the rewrite never compares names twice.

use std::ops::Range;

/// What a header means to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// TE, Trailer, Proxy-Connection: never forwarded.
    HopByHop,
    /// Keep-Alive: hop-by-hop too; on a member's answer, its idle timeout (`http::keep_alive`).
    KeepAlive,
    /// Upgrade: hop-by-hop too; ringlb writes its own on a route that tunnels the protocol
    /// (`http::upgrade`).
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
}

/// One header as offsets into the read buffer.
#[derive(Debug, Clone)]
pub struct HeaderPos {
    pub name: Range<usize>,
    pub value: Range<usize>,
    pub kind: HeaderKind,
}

/// Classifies a header name (case-insensitive).
pub fn classify(name: &[u8]) -> HeaderKind {
    let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        4 if eq("host") => HeaderKind::Host,
        14 if eq("content-length") => HeaderKind::ContentLength,
        17 if eq("transfer-encoding") => HeaderKind::TransferEncoding,
        10 if eq("connection") => HeaderKind::Connection,
        10 if eq("keep-alive") => HeaderKind::KeepAlive,
        2 if eq("te") => HeaderKind::HopByHop,
        7 if eq("trailer") => HeaderKind::HopByHop,
        7 if eq("upgrade") => HeaderKind::Upgrade,
        16 if eq("proxy-connection") => HeaderKind::HopByHop,
        6 if eq("expect") => HeaderKind::Expect,
        15 if eq("x-forwarded-for") => HeaderKind::XForwardedFor,
        16 if eq("x-forwarded-host") => HeaderKind::XForwardedHost,
        17 if eq("x-forwarded-proto") => HeaderKind::XForwardedProto,
        _ => HeaderKind::Other,
    }
}

/// Iterates the comma-separated tokens of a header value, trimmed of whitespace.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// True when a Connection header value lists `name` (case-insensitive).
pub fn connection_lists(conn_value: &[u8], name: &[u8]) -> bool {
    tokens(conn_value).any(|t| t.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_case_insensitively() {
        assert_eq!(classify(b"HOST"), HeaderKind::Host);
        assert_eq!(classify(b"Content-Length"), HeaderKind::ContentLength);
        assert_eq!(classify(b"te"), HeaderKind::HopByHop);
        assert_eq!(classify(b"X-Forwarded-For"), HeaderKind::XForwardedFor);
        assert_eq!(classify(b"Hosts"), HeaderKind::Other);
    }

    #[test]
    fn connection_tokens() {
        assert!(connection_lists(b"keep-alive, X-Secret ", b"x-secret"));
        assert!(!connection_lists(b"close", b"x-secret"));
    }
}
