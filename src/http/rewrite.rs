//! Head rewriting: the request head an HTTP member receives and the response head a client
//! receives.
//!
//! Owns: writing heads: the Host a member sees, X-Forwarded-*, the framing headers ringlb uses, the
//! Connection header a member sees (`upgrade` or `keep-alive`) and the one a client sees (response
//! header values a route maps back are `http::reverse`'s). Which headers are copied is
//! `http::policy`'s decision alone. Must never: allocate (it writes into the caller's reused
//! buffer), copy a framing header as it came, forward a header a Connection header names, or keep a
//! client's X-Forwarded-For or -Proto unless the client is a trusted proxy (`crate::trust`).
//! Invariant: the framing headers written are exactly the framing ringlb uses for the body that
//! follows.

use std::net::IpAddr;

use super::ascii;
use super::framing::BodyKind;
use super::header::{tokens, HeaderKind, HeaderPos};
use super::parse::{RequestHead, ResponseHead};
use super::policy::{Action, Direction, Policy, Wire};
use super::reverse::{self, Reverse};

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

/// Writes `Content-Length: n`.
pub fn push_content_length(out: &mut Vec<u8>, n: u64) {
    push_header(out, b"Content-Length", ascii::decimal(n).as_bytes());
}

/// Copies the headers the policy forwards; a response's through `reverse` where its route maps
/// URLs back.
fn forward_headers(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[HeaderPos],
    dir: Direction,
    reverse: Option<&Reverse>,
) {
    let policy = Policy::new(buf, headers, dir, Wire::Http);
    for h in headers {
        if policy.action(h) == Action::Forward {
            let (name, value) = (&buf[h.name.clone()], &buf[h.value.clone()]);
            reverse::push_response_header(out, name, value, reverse);
        }
    }
}

/// Who sent the request: its address, whether it is a trusted proxy, and whether it came over
/// TLS.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub ip: IpAddr,
    pub trusted: bool,
    pub https: bool,
}

/// Writes the head to send to an HTTP member; `target` is the path and query to send. `upgrade`:
/// the request asks for a protocol switch its route tunnels (`http::upgrade::offer`), and goes
/// with this `Upgrade` value and `Connection: upgrade`; any other goes with
/// `Connection: keep-alive`.
#[allow(clippy::too_many_arguments)]
pub fn request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    target: &[u8],
    host_header: &str,
    preserve_host: bool,
    from: Origin,
    upgrade: Option<&[u8]>,
) {
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    // An absolute-form target may have no path ("http://a?q"): origin form needs one.
    if target.first() != Some(&b'/') && target != b"*" {
        out.push(b'/');
    }
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let client_host = head.routing_host(buf);
    if preserve_host && !client_host.is_empty() {
        out.extend_from_slice(client_host);
    } else {
        out.extend_from_slice(host_header.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    forward_headers(out, buf, &head.headers, Direction::Request, None);
    // The trail a trusted proxy sent is kept and extended; anyone else's is replaced.
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in head.headers.iter().filter(|_| from.trusted) {
        let v = buf[h.value.clone()].trim_ascii();
        if h.kind == HeaderKind::XForwardedFor && !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    // An IPv4 client on an IPv6 listener is written as the IPv4 address it is.
    out.extend_from_slice(ascii::address(from.ip.to_canonical()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !client_host.is_empty() {
        push_header(out, b"X-Forwarded-Host", client_host);
    }
    // The scheme the client used with ringlb, unless a trusted proxy says what it used.
    let own = if from.https { "https" } else { "http" };
    let proto = if from.trusted {
        head.forwarded_proto(buf).unwrap_or(own)
    } else {
        own
    };
    push_header(out, b"X-Forwarded-Proto", proto.as_bytes());
    if let Some(protocols) = upgrade {
        push_header(out, b"Upgrade", protocols);
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else {
        // What HTTP/1.1 assumes anyway, said so that Apache httpd and Tomcat give their idle
        // timeout (`Keep-Alive: timeout=N`, sent only when asked), which bounds how long the pool
        // keeps the connection (`http::keep_alive`).
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    match head.body {
        BodyKind::Length(n) => push_content_length(out, n),
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyKind::Empty if head.content_length.is_some() => push_content_length(out, 0),
        BodyKind::Empty | BodyKind::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBody {
    /// Body bytes pass through unchanged, with the member's framing.
    PassThrough,
    /// The member's chunked body is decoded and the connection closed at its end (HTTP/1.0 client).
    Dechunk,
    /// The member's close-delimited body is framed as chunked (HTTP/1.1 client): the client can
    /// tell a body cut short from a whole one, and its connection can be kept.
    Enchunk,
    /// No body is sent (HEAD, 204, 304).
    None,
}

impl ClientBody {
    /// How a member's body framed as `kind` (`Empty` after HEAD or for a 204 or 304) reaches a
    /// client speaking HTTP/1.`client_minor`: the one place this is decided.
    pub fn choose(kind: BodyKind, client_minor: u8) -> ClientBody {
        match kind {
            BodyKind::Empty => ClientBody::None,
            BodyKind::Chunked if client_minor == 0 => ClientBody::Dechunk,
            BodyKind::UntilClose if client_minor == 1 => ClientBody::Enchunk,
            _ => ClientBody::PassThrough,
        }
    }

    /// The client reads the body to the connection's close: the connection cannot be kept, and a
    /// cut must not end with a clean close (`reset`).
    pub fn ends_at_close(self, kind: BodyKind) -> bool {
        self == ClientBody::Dechunk
            || (self == ClientBody::PassThrough && kind == BodyKind::UntilClose)
    }

    /// Whether the client's connection goes on after this body: it may (`may`: the client asked
    /// to keep it, and nothing else ends it) and the body does not end at the close.
    pub fn keeps_client(self, kind: BodyKind, may: bool) -> bool {
        may && !self.ends_at_close(kind)
    }
}

/// Whether `push_codings` writes `chunked` after the member's codings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThenChunked {
    Never,
    /// ringlb frames the body as chunked (`ClientBody::Enchunk`).
    Always,
    /// Only after a coding of the member's: a bodyless answer (HEAD, 304) carries the codings
    /// the same answer with a body would, and ringlb would frame that one as chunked.
    IfCoded,
}

/// Writes the member's transfer codings as one normalised `Transfer-Encoding` line, if any, with
/// `chunked` last when ringlb frames the body so (`then`; the member's codings never include it
/// then: a response whose last coding is not chunked is read to the close, and one with chunked
/// elsewhere is refused).
fn push_codings(out: &mut Vec<u8>, buf: &[u8], headers: &[HeaderPos], then: ThenChunked) {
    let mut first = true;
    for h in headers
        .iter()
        .filter(|h| h.kind == HeaderKind::TransferEncoding)
    {
        for t in tokens(&buf[h.value.clone()]) {
            out.extend_from_slice(if first { b"Transfer-Encoding: " } else { b", " });
            out.extend_from_slice(t);
            first = false;
        }
    }
    if then == ThenChunked::Always || (then == ThenChunked::IfCoded && !first) {
        out.extend_from_slice(if first {
            b"Transfer-Encoding: chunked"
        } else {
            b", chunked"
        });
        first = false;
    }
    if !first {
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `HTTP/1.1 <status> ` (the reason and line end follow).
pub fn push_status_line_start(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(ascii::decimal(u64::from(status)).as_bytes());
    out.push(b' ');
}

/// Writes the status line of a member's response for the client (as HTTP/1.1, its reason kept).
fn status_line(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    push_status_line_start(out, head.status);
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim (1xx) response for the client: its status line and the headers the policy
/// forwards, no framing (an interim response has no body).
pub fn interim_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    status_line(out, buf, head);
    forward_headers(out, buf, &head.headers, Direction::Response, None);
    out.extend_from_slice(b"\r\n");
}

/// Writes a member's `101 Switching Protocols` for the client: its status line, the headers the
/// policy forwards (mapped back where the route says so), then `Connection: upgrade` and the
/// protocol switched to (`http::upgrade::switched_to`). No framing: the tunnel follows.
pub fn switching_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    protocol: &[u8],
    reverse: Option<&Reverse>,
) {
    status_line(out, buf, head);
    forward_headers(out, buf, &head.headers, Direction::Response, reverse);
    push_header(out, b"Upgrade", protocol);
    out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
}

/// Inserts header lines (`lines`, each ending in CRLF) right after the status line of the head
/// that starts `out`: before the member's headers, so that a client reading only the first of a
/// header (HSTS) reads ringlb's.
pub fn insert_after_status_line(out: &mut Vec<u8>, lines: &[u8]) {
    if lines.is_empty() {
        return;
    }
    if let Some(pos) = out.windows(2).position(|w| w == b"\r\n") {
        out.splice(pos + 2..pos + 2, lines.iter().copied());
    }
}

/// How the client's response head is framed and rewritten.
#[derive(Debug, Clone, Copy)]
pub struct ClientHead<'a> {
    pub body: ClientBody,
    pub client_minor: u8,
    pub keep_alive: bool,
    /// URLs and cookie paths mapped back (`reverse`), on a route that asks for it.
    pub reverse: Option<&'a Reverse<'a>>,
}

/// Writes the head to send to the client.
pub fn response_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead, client: &ClientHead) {
    let ClientHead {
        body,
        client_minor,
        keep_alive,
        reverse,
    } = *client;
    status_line(out, buf, head);
    forward_headers(out, buf, &head.headers, Direction::Response, reverse);
    if body == ClientBody::Dechunk {
        end_response_head(out, keep_alive, client_minor);
        return;
    }
    if let Some(n) = head.content_length {
        push_content_length(out, n);
    }
    // HEAD, 204, 304: the member's framing headers describe a body that is not sent; transfer
    // codings must not come with a 204 and mean nothing to an HTTP/1.0 client there. To an
    // HTTP/1.1 client they are the ones the answer with a body would carry: a member's codings
    // without `chunked` (a body read to the close) get it, as `Enchunk` would add it.
    let bodyless = body == ClientBody::None;
    let then = match body {
        ClientBody::Enchunk => ThenChunked::Always,
        ClientBody::None if head.body == BodyKind::UntilClose => ThenChunked::IfCoded,
        _ => ThenChunked::Never,
    };
    if !(bodyless && (client_minor == 0 || head.status == 204)) {
        push_codings(out, buf, &head.headers, then);
    }
    end_response_head(out, keep_alive, client_minor);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(body: ClientBody, client_minor: u8, keep_alive: bool) -> ClientHead<'static> {
        ClientHead {
            body,
            client_minor,
            keep_alive,
            reverse: None,
        }
    }
    use crate::http::parse::{parse_request, parse_response};

    #[test]
    fn request_rewrite_removes_hop_by_hop_and_sets_forwarded() {
        let raw = b"POST /x HTTP/1.1\r\nHost: front.example\r\nConnection: keep-alive, X-Drop\r\n\
X-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n\
X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nExpect: 100-continue\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        for (trusted, xff, xfp) in [
            (false, "10.0.0.9", "http"),
            (true, "1.2.3.4, 10.0.0.9", "https"),
        ] {
            let mut out = Vec::new();
            let from = Origin {
                ip: "10.0.0.9".parse().unwrap(),
                trusted,
                https: false,
            };
            request_head(
                &mut out,
                raw,
                &h,
                &raw[h.path.clone()],
                "127.0.0.1:9001",
                false,
                from,
                None,
            );
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                text,
                format!(
                    "POST /x HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nAccept: */*\r\n\
X-Forwarded-For: {xff}\r\nX-Forwarded-Host: front.example\r\n\
X-Forwarded-Proto: {xfp}\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n"
                )
            );
        }
    }

    /// An IPv4 client on an IPv6 listener is named by its IPv4 address; an IPv6 one as written.
    #[test]
    fn mapped_and_ipv6_clients_in_x_forwarded_for() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        for (ip, xff) in [
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            let mut out = Vec::new();
            let from = Origin {
                ip: ip.parse().unwrap(),
                trusted: false,
                https: true,
            };
            request_head(&mut out, raw, &h, b"/", "m:1", false, from, None);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains(&format!("\r\nX-Forwarded-For: {xff}\r\n")),
                "{text}"
            );
            assert!(text.contains("\r\nX-Forwarded-Proto: https\r\n"), "{text}");
        }
    }

    fn forwarded(raw: &[u8]) -> String {
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        let mut out = Vec::new();
        let ip = Origin {
            ip: "10.0.0.9".parse().unwrap(),
            trusted: false,
            https: false,
        };
        request_head(
            &mut out,
            raw,
            &h,
            &raw[h.path.clone()],
            "m:1",
            false,
            ip,
            None,
        );
        String::from_utf8(out).unwrap()
    }

    /// Defect 1 of issue 9: framing named by Connection was removed with nothing written instead.
    #[test]
    fn framing_named_by_connection_is_still_written() {
        let te = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(te.contains("\r\nTransfer-Encoding: chunked\r\n"), "{te}");
        let cl = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
        );
        assert!(cl.contains("\r\nContent-Length: 5\r\n"), "{cl}");
        let raw = b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\nContent-Length: 5\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw, 65536, &mut h).unwrap();
        let mut out = Vec::new();
        response_head(&mut out, raw, &h, &client(ClientBody::PassThrough, 1, true));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    }

    #[test]
    fn transfer_coding_is_written_once_in_normal_form() {
        let te = forwarded(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(te.matches("Transfer-Encoding").count(), 1, "{te}");
        assert!(te.contains("\r\nTransfer-Encoding: chunked\r\n"), "{te}");
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw, 65536, &mut h).unwrap();
        let mut out = Vec::new();
        response_head(&mut out, raw, &h, &client(ClientBody::PassThrough, 1, true));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        );
    }

    #[test]
    fn bodyless_answers_carry_no_codings_where_they_mean_nothing() {
        let head = |raw: &[u8]| {
            let mut h = ResponseHead::default();
            parse_response(raw, 65536, &mut h).unwrap();
            h
        };
        let te = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (h304, mut out) = (head(te), Vec::new());
        response_head(&mut out, te, &h304, &client(ClientBody::None, 1, true));
        assert!(String::from_utf8_lossy(&out).contains("Transfer-Encoding: chunked"));
        out.clear();
        response_head(&mut out, te, &h304, &client(ClientBody::None, 0, true));
        assert!(!String::from_utf8_lossy(&out).contains("Transfer-Encoding"));
        let te204 = b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n";
        out.clear();
        response_head(
            &mut out,
            te204,
            &head(te204),
            &client(ClientBody::None, 1, true),
        );
        assert!(!String::from_utf8_lossy(&out).contains("Transfer-Encoding"));
    }

    #[test]
    fn a_bodyless_answer_carries_the_codings_its_body_would_have_had() {
        let head = |raw: &[u8]| {
            let mut h = ResponseHead::default();
            parse_response(raw, 65536, &mut h).unwrap();
            h
        };
        let written = |raw: &[u8], body: ClientBody, minor: u8| {
            let mut out = Vec::new();
            response_head(&mut out, raw, &head(raw), &client(body, minor, true));
            String::from_utf8(out).unwrap()
        };
        // A member's gzip without chunked: a body read to the close, chunked by ringlb for an
        // HTTP/1.1 client; HEAD and 304 say the same.
        for status in ["200 OK", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\nTransfer-Encoding: gzip\r\n\r\n");
            let raw = raw.as_bytes();
            let te = "Transfer-Encoding: gzip, chunked\r\n";
            assert!(written(raw, ClientBody::None, 1).contains(te), "{status}");
            assert!(!written(raw, ClientBody::None, 0).contains("Transfer-Encoding"));
        }
        let get = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(
            written(get, ClientBody::Enchunk, 1).contains("Transfer-Encoding: gzip, chunked\r\n")
        );
        // Codings that end in chunked stay as they are; no codings stay none.
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        let out = written(chunked, ClientBody::None, 1);
        assert!(
            out.contains("Transfer-Encoding: gzip, chunked\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("chunked").count(), 1);
        let plain = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n";
        assert!(!written(plain, ClientBody::None, 1).contains("Transfer-Encoding"));
    }

    #[test]
    fn an_upgrade_goes_with_exactly_its_two_headers_and_a_101_comes_back_with_them() {
        let raw =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n\
X-Hop: 1\r\nSec-WebSocket-Key: k\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        let from = Origin {
            ip: "10.0.0.9".parse().unwrap(),
            trusted: false,
            https: false,
        };
        let mut out = Vec::new();
        request_head(
            &mut out,
            raw,
            &h,
            b"/ws",
            "m:1",
            false,
            from,
            Some(b"websocket"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Key: k\r\n"), "{text}");
        assert!(
            text.ends_with("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("X-Hop") && text.matches("Upgrade:").count() == 1,
            "{text}"
        );
        // Not an upgrade: no Upgrade goes, and the Connection is ringlb's keep-alive.
        let mut out = Vec::new();
        request_head(&mut out, raw, &h, b"/ws", "m:1", false, from, None);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.to_ascii_lowercase().contains("upgrade"), "{text}");
        assert!(
            text.ends_with("\r\nConnection: keep-alive\r\n\r\n"),
            "{text}"
        );
        let raw =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s\r\nContent-Length: 5\r\n\r\n";
        let mut r = ResponseHead::default();
        parse_response(raw, 65536, &mut r).unwrap();
        let mut out = Vec::new();
        switching_head(&mut out, raw, &r, b"websocket", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s\r\n\
Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn preserve_host_keeps_client_host() {
        let raw = b"GET / HTTP/1.1\r\nHost: front.example\r\n\r\n";
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).unwrap();
        let mut out = Vec::new();
        let path = &raw[h.path.clone()];
        request_head(
            &mut out,
            raw,
            &h,
            path,
            "m:1",
            true,
            Origin {
                ip: "127.0.0.1".parse().unwrap(),
                trusted: false,
                https: false,
            },
            None,
        );
        assert!(out.starts_with(b"GET / HTTP/1.1\r\nHost: front.example\r\n"));
    }

    #[test]
    fn response_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nX-B: 2\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw, 65536, &mut h).unwrap();
        let mut out = Vec::new();
        response_head(&mut out, raw, &h, &client(ClientBody::Dechunk, 0, false));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-B: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_close_delimited_body_is_framed_as_chunked_last_after_the_members_codings() {
        for (member, framing) in [
            (
                "HTTP/1.0 200 OK\r\nX-B: 2\r\n\r\n",
                "Transfer-Encoding: chunked",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-B: 2\r\nConnection: close\r\n\r\n",
                "Transfer-Encoding: gzip, chunked",
            ),
        ] {
            let mut h = ResponseHead::default();
            parse_response(member.as_bytes(), 65536, &mut h).unwrap();
            assert_eq!(h.body, BodyKind::UntilClose);
            let mut out = Vec::new();
            let head = client(ClientBody::Enchunk, 1, true);
            response_head(&mut out, member.as_bytes(), &h, &head);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("HTTP/1.1 200 OK\r\nX-B: 2\r\n{framing}\r\n\r\n"),
                "{member:?}"
            );
        }
    }
}
