//! Head rewriting: the request head a member receives and the response head a client receives.
//!
//! Owns: hop-by-hop removal, X-Forwarded-*, the Host a member sees, the Connection header a client
//! sees. Must never: allocate (it writes into the caller's reused buffer) or forward a header that a
//! Connection header names. Invariant: the framing headers written match the framing ringlb will
//! actually use for the body.

use std::io::Write;
use std::net::IpAddr;

use super::framing::BodyKind;
use super::header::{connection_lists, HeaderKind, HeaderPos};
use super::parse::{RequestHead, ResponseHead};

/// True when a `Connection` header among `headers` names `name`.
fn named_by_connection(buf: &[u8], headers: &[HeaderPos], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.kind == HeaderKind::Connection)
        .any(|h| connection_lists(&buf[h.value.clone()], name))
}

/// Writes one header line.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Ends a response head for a client: the Connection header its framing calls for, then the
/// blank line.
pub fn end_response_head(out: &mut Vec<u8>, keep_alive: bool, client_minor: u8) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the head to send to a member.
pub fn request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    member_host_port: &str,
    preserve_host: bool,
    client_ip: IpAddr,
) {
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    let path = &buf[head.path.clone()];
    out.extend_from_slice(if path.is_empty() { b"/" } else { path });
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let client_host = head.routing_host(buf);
    if preserve_host && !client_host.is_empty() {
        out.extend_from_slice(client_host);
    } else {
        out.extend_from_slice(member_host_port.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let mut had_content_length = false;
    for h in &head.headers {
        match h.kind {
            HeaderKind::Host
            | HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::Expect
            | HeaderKind::XForwardedHost
            | HeaderKind::XForwardedProto => continue,
            HeaderKind::ContentLength => {
                had_content_length = true;
                continue;
            }
            HeaderKind::XForwardedFor => continue,
            HeaderKind::TransferEncoding | HeaderKind::Other => {}
        }
        let name = &buf[h.name.clone()];
        if named_by_connection(buf, &head.headers, name) {
            continue;
        }
        push_header(out, name, &buf[h.value.clone()]);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in head
        .headers
        .iter()
        .filter(|h| h.kind == HeaderKind::XForwardedFor)
    {
        out.extend_from_slice(buf[h.value.clone()].trim_ascii());
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{client_ip}\r\n");
    if !client_host.is_empty() {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        out.extend_from_slice(client_host);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    match head.body {
        BodyKind::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyKind::Empty if had_content_length => out.extend_from_slice(b"Content-Length: 0\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBody {
    /// Bytes pass through unchanged (framing headers forwarded as they are).
    PassThrough,
    /// The member's chunked body is decoded and the connection closed at its end (HTTP/1.0 client).
    Dechunk,
    /// No body is sent (HEAD, 204, 304).
    None,
}

/// Writes the head to send to the client.
pub fn response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    body: ClientBody,
    client_minor: u8,
    keep_alive: bool,
) {
    let _ = write!(out, "HTTP/1.1 {} ", head.status);
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        match h.kind {
            HeaderKind::Connection | HeaderKind::HopByHop => continue,
            HeaderKind::TransferEncoding if body == ClientBody::Dechunk => continue,
            _ => {}
        }
        let name = &buf[h.name.clone()];
        if named_by_connection(buf, &head.headers, name) {
            continue;
        }
        push_header(out, name, &buf[h.value.clone()]);
    }
    end_response_head(out, keep_alive, client_minor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{parse_request, parse_response};

    #[test]
    fn request_rewrite_removes_hop_by_hop_and_sets_forwarded() {
        let raw = b"POST /x HTTP/1.1\r\nHost: front.example\r\nConnection: keep-alive, X-Drop\r\n\
X-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n\
X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nExpect: 100-continue\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        let mut out = Vec::new();
        request_head(
            &mut out,
            raw,
            &h,
            "127.0.0.1:9001",
            false,
            "10.0.0.9".parse().unwrap(),
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nAccept: */*\r\n\
X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\nX-Forwarded-Host: front.example\r\n\
X-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn preserve_host_keeps_client_host() {
        let raw = b"GET / HTTP/1.1\r\nHost: front.example\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        let mut out = Vec::new();
        request_head(&mut out, raw, &h, "m:1", true, "127.0.0.1".parse().unwrap());
        assert!(out.starts_with(b"GET / HTTP/1.1\r\nHost: front.example\r\n"));
    }

    #[test]
    fn response_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw, 65536, &mut h).unwrap();
        let mut out = Vec::new();
        response_head(&mut out, raw, &h, ClientBody::Dechunk, 0, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-B: 2\r\nConnection: close\r\n\r\n"
        );
    }
}
