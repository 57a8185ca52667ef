//! The FORWARD_REQUEST a container receives for an HTTP request, and the HTTP response head a
//! client receives for the container's SEND_HEADERS.
//!
//! Must never: forward a header `http::policy` drops (hop-by-hop, named by Connection), lose the
//! request's Content-Length (the container frames the body packets by it) unless it is one some
//! containers would not read as a length (`told_length`), send the query inside
//! `req_uri` (it goes in the `query_string` attribute, as Tomcat expects), or relay a response
//! head an HTTP member could not send (CR, LF or other control bytes, a status outside 200–599,
//! conflicting lengths: `check_response` refuses them). Invariant: the request fits in one packet
//! or `forward_request` fails with `TooLarge` (AJP has no continuation packets).

use std::net::SocketAddr;
use std::ops::Range;

use super::codec::{
    attr, method_code, request_header_code, AjpError, HeaderName, Writer, FORWARD_REQUEST,
    RESPONSE_HEADERS,
};
use crate::http::ascii;
use crate::http::chunked::{is_field_byte, is_tchar};
use crate::http::framing::BodyKind;
use crate::http::header::{classify, HeaderKind};
use crate::http::parse::{parse_content_length, RequestHead};
use crate::http::policy::{action_by_name, lists_names, named, Action, Direction, Policy, Wire};
use crate::http::reverse::{push_response_header, Reverse};
use crate::http::rewrite::{end_response_head, push_content_length, push_status_line_start};

/// The longest body whose length a container is told. Tomcat 7 takes a Content-Length only below
/// 2³¹ − 1 and reads a longer one as no length at all, while later Tomcats read it; the first body
/// packet, which goes unasked after a request with a length (`ajp::exchange`), would then stay
/// unread by an application that ignores the body, and Tomcat 7 would read the client's bytes as
/// its next message. A longer body therefore goes without its length, as a chunked upload does:
/// every container asks for each packet and reads to the empty one.
pub const MAX_BODY_LENGTH: u64 = i32::MAX as u64 - 1;

/// The Content-Length the container is told for a request framed as `body` (`content_length`: the
/// request's header, for a body with none): the one place this is decided. `Some(n)` with `n > 0`
/// is also what makes the first body packet go unasked.
pub fn told_length(body: BodyKind, content_length: Option<u64>) -> Option<u64> {
    match body {
        BodyKind::Length(n) if n <= MAX_BODY_LENGTH => Some(n),
        BodyKind::Length(_) => None,
        _ => content_length.map(|_| 0),
    }
}

/// What the FORWARD_REQUEST says about the connection and the server.
pub struct Forward<'a> {
    pub client: SocketAddr,
    /// The client is a trusted proxy (`[server] trusted_proxies`): its X-Forwarded-* reach the
    /// container, and its `X-Forwarded-Proto: https` sets `is_ssl`.
    pub trusted: bool,
    /// The secret Tomcat's connector requires (`secret` on the member).
    pub secret: Option<&'a str>,
    pub packet_size: usize,
    /// The client's TLS connection with ringlb, if it used one.
    pub tls: Option<SslFacts>,
}

/// What mod_proxy_ajp tells a container of the client's TLS connection.
#[derive(Debug, Clone, Copy)]
pub struct SslFacts {
    /// The cipher suite's IANA name.
    pub cipher: &'static str,
    /// Its key size in bits.
    pub key_bits: u16,
    /// The session id, in hex.
    pub session: [u8; 32],
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
}

/// Writes the request headers `http::policy` forwards to a container, Content-Length once with
/// its parsed value. Counted, then written: no list is built for it.
fn write_headers(
    w: &mut Writer<'_>,
    buf: &[u8],
    head: &RequestHead,
    trusted: bool,
) -> Result<(), AjpError> {
    let policy = Policy::new(buf, &head.headers, Direction::Request, Wire::Ajp);
    let forwarded = || {
        head.headers
            .iter()
            .filter(|h| policy.action(h) == Action::Forward)
    };
    // ringlb's own: the Host it routed on (the absolute-form authority wins over a Host header,
    // as for HTTP members), and one Content-Length with the parsed value (the container frames
    // the body packets by it; a chunked body needs no header, nor one too long: `told_length`).
    let host = head.routing_host(buf);
    let length = told_length(head.body, head.content_length);
    // From a trusted proxy, its trail (for Tomcat's RemoteIpValve, which takes the container's
    // remote address as the proxy): one X-Forwarded-For with its values, and one
    // X-Forwarded-Proto with the scheme `is_ssl` also says. From anyone else, none.
    let trail = || {
        head.headers
            .iter()
            .filter(move |h| trusted && h.kind == HeaderKind::XForwardedFor)
            .map(|h| buf[h.value.clone()].trim_ascii())
            .filter(|v| !v.is_empty())
    };
    let proto = head.forwarded_proto(buf).filter(|_| trusted);
    let own = usize::from(!host.is_empty())
        + usize::from(length.is_some())
        + usize::from(trail().next().is_some())
        + usize::from(proto.is_some());
    w.int((forwarded().count() + own) as u16);
    if !host.is_empty() {
        w.int(request_header_code(b"host").unwrap_or(0xA00B));
        w.string(host);
    }
    if let Some(n) = length {
        w.int(request_header_code(b"content-length").unwrap_or(0xA008));
        w.string(ascii::decimal(n).as_bytes());
    }
    if trail().next().is_some() {
        w.string(b"X-Forwarded-For");
        w.joined(trail(), b", ");
    }
    if let Some(p) = proto {
        w.string(b"X-Forwarded-Proto");
        w.string(p.as_bytes());
    }
    for h in forwarded() {
        let name = &buf[h.name.clone()];
        match request_header_code(name) {
            Some(code) => w.int(code),
            // A name string's length comes first, and the container reads a length 0xA0xx as a
            // header code: such a name would be read as another header.
            None if name.len() >= 0xA000 => return Err(AjpError::TooLarge),
            None => w.string(name),
        }
        w.string(buf[h.value.clone()].trim_ascii());
    }
    Ok(())
}

/// Splits a Host value into (name, port); `default` when absent (443 for https, else 80).
fn host_and_port(host: &[u8], default: u16) -> (&[u8], u16) {
    if host.first() == Some(&b'[') {
        // A bracketed IPv6 address; a port only after `]:`. An unclosed `[` is a name as it is.
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return (host, default);
        };
        let port = host
            .get(end + 1..)
            .and_then(|rest| rest.strip_prefix(b":"))
            .and_then(|p| std::str::from_utf8(p).ok()?.parse().ok());
        return (&host[..=end], port.unwrap_or(default));
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => match std::str::from_utf8(&host[i + 1..])
            .ok()
            .and_then(|p| p.parse().ok())
        {
            Some(port) => (&host[..i], port),
            None => (host, default),
        },
        None => (host, default),
    }
}

/// Encodes the FORWARD_REQUEST packet for the request in `buf`/`head` into `out`.
pub fn forward_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    target: &[u8],
    f: &Forward,
) -> Result<(), AjpError> {
    let mut w = Writer::begin(out);
    w.byte(FORWARD_REQUEST);
    let method = head.method(buf);
    let code = method_code(method);
    w.byte(code.unwrap_or(0xFF));
    w.string(if head.minor_version == 0 {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    });
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    w.string(if path.is_empty() { b"/" } else { path });
    // An IPv4 client on an IPv6 listener is written as the IPv4 address it is.
    let ip = ascii::address(f.client.ip().to_canonical());
    w.string(ip.as_bytes()); // remote_addr
    w.string(ip.as_bytes()); // remote_host

    // is_ssl: the client's connection is TLS, or a trusted proxy in front terminated TLS.
    let https = f.tls.is_some() || (f.trusted && head.forwarded_proto(buf) == Some("https"));
    let default_port = if https { 443 } else { 80 };
    let (server_name, server_port) = host_and_port(head.routing_host(buf), default_port);
    w.string(server_name);
    w.int(server_port);
    w.boolean(https);
    write_headers(&mut w, buf, head, f.trusted)?;
    if let Some(q) = query {
        w.byte(attr::QUERY_STRING);
        w.string(q);
    }
    w.byte(attr::REQ_ATTRIBUTE);
    w.string(b"AJP_REMOTE_PORT");
    w.string(ascii::decimal(u64::from(f.client.port())).as_bytes());
    if let Some(t) = &f.tls {
        w.byte(attr::SSL_CIPHER);
        w.string(t.cipher.as_bytes());
        w.byte(attr::SSL_SESSION);
        w.string(&t.session);
        w.byte(attr::SSL_KEY_SIZE);
        w.int(t.key_bits);
        w.byte(attr::REQ_ATTRIBUTE);
        w.string(b"AJP_SSL_PROTOCOL");
        w.string(t.protocol.as_bytes());
    }
    if code.is_none() {
        w.byte(attr::STORED_METHOD);
        w.string(method);
    }
    if let Some(secret) = f.secret {
        w.byte(attr::SECRET);
        w.string(secret.as_bytes());
    }
    w.byte(attr::TERMINATOR);
    w.finish(f.packet_size)
}

/// The reason phrase a client gets: Tomcat sends the status code itself as the reason.
pub fn reason_for(status: u16, given: &[u8]) -> &[u8] {
    if !given.is_empty() && !given.iter().all(u8::is_ascii_digit) {
        return given;
    }
    match status {
        200 => b"OK",
        201 => b"Created",
        202 => b"Accepted",
        204 => b"No Content",
        206 => b"Partial Content",
        301 => b"Moved Permanently",
        302 => b"Found",
        303 => b"See Other",
        304 => b"Not Modified",
        307 => b"Temporary Redirect",
        308 => b"Permanent Redirect",
        400 => b"Bad Request",
        401 => b"Unauthorized",
        403 => b"Forbidden",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        409 => b"Conflict",
        413 => b"Content Too Large",
        500 => b"Internal Server Error",
        501 => b"Not Implemented",
        502 => b"Bad Gateway",
        503 => b"Service Unavailable",
        _ => b"Status",
    }
}

/// The name of a SEND_HEADERS header.
fn header_name<'a>(pkt: &'a [u8], name: &HeaderName) -> &'a [u8] {
    match name {
        HeaderName::Coded(i) => RESPONSE_HEADERS[*i].as_bytes(),
        HeaderName::Named(r) => &pkt[r.clone()],
    }
}

/// Checks a SEND_HEADERS packet by the rules an HTTP member's response head must meet: a final
/// status (200–599; AJP has no interim responses), a reason and values free of control bytes (HTAB aside), token names, and at most
/// one Content-Length value. Returns the Content-Length, if any.
pub fn check_response(
    pkt: &[u8],
    status: u16,
    reason: &Option<Range<usize>>,
    headers: &[(HeaderName, Range<usize>)],
) -> Result<Option<u64>, &'static str> {
    if !(200..=599).contains(&status) {
        return Err("status outside 200-599");
    }
    let clean = |v: &[u8]| v.iter().all(|&b| is_field_byte(b));
    if !reason.as_ref().is_none_or(|r| clean(&pkt[r.clone()])) {
        return Err("control byte in the reason phrase");
    }
    // As many headers as an HTTP member's response may carry (`http::parse`): the header policy
    // compares each with the Connection values.
    if headers.len() > MAX_RESPONSE_HEADERS {
        return Err("too many headers");
    }
    let mut length: Option<u64> = None;
    let mut options = 0usize;
    for (name, value) in headers {
        let name = header_name(pkt, name);
        let value = &pkt[value.clone()];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("bad header name");
        }
        if classify(name) == HeaderKind::Connection {
            // Each option is checked against every header name: bound the work.
            options += value.split(|&b| b == b',').count();
            if options > 32 {
                return Err("too many Connection options");
            }
        }
        if !clean(value) {
            return Err("control byte in a header value");
        }
        if classify(name) == HeaderKind::ContentLength {
            let n = parse_content_length(value.trim_ascii()).ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("differing Content-Length values");
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Most headers in a SEND_HEADERS (as in an HTTP member's response head).
const MAX_RESPONSE_HEADERS: usize = 128;

/// How the client's response head is framed.
pub struct Framing {
    /// The container's checked Content-Length (also written for HEAD and 304 answers).
    pub length: Option<u64>,
    /// Frame the body with chunked coding (no Content-Length from the container).
    pub chunked: bool,
    pub keep_alive: bool,
    pub client_minor: u8,
}

/// A SEND_HEADERS' status, reason and headers (ranges into its packet).
pub type Head<'a> = (
    u16,
    &'a Option<Range<usize>>,
    &'a [(HeaderName, Range<usize>)],
);

/// Writes the client's response head for a SEND_HEADERS packet held in `pkt` (checked by
/// `check_response`).
pub fn response_head(
    out: &mut Vec<u8>,
    pkt: &[u8],
    (status, reason, headers): Head,
    framing: &Framing,
    reverse: Option<&Reverse>,
) {
    let given = reason.as_ref().map_or(&[][..], |r| &pkt[r.clone()]);
    push_status_line_start(out, status);
    out.extend_from_slice(reason_for(status, given));
    out.extend_from_slice(b"\r\n");
    let connection_values = || {
        headers
            .iter()
            .filter(|(n, _)| classify(header_name(pkt, n)) == HeaderKind::Connection)
            .map(|(_, v)| &pkt[v.clone()])
    };
    let lists = lists_names(connection_values());
    for (name, value) in headers {
        let name = header_name(pkt, name);
        let named = lists && named(connection_values(), name);
        let action = action_by_name(classify(name), name, Direction::Response, Wire::Ajp, named);
        if action == Action::Forward {
            push_response_header(out, name, &pkt[value.clone()], reverse);
        }
    }
    if let Some(n) = framing.length {
        push_content_length(out, n);
    }
    if framing.chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    end_response_head(out, framing.keep_alive, framing.client_minor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::parse_request;

    fn encode(raw: &[u8], secret: Option<&str>) -> Vec<u8> {
        let mut head = RequestHead::default();
        parse_request(raw, 16384, 100, &mut head).unwrap();
        let mut out = Vec::new();
        let f = Forward {
            client: "10.0.0.7:50000".parse().unwrap(),
            trusted: false,
            secret,
            packet_size: 8192,
            tls: None,
        };
        forward_request(&mut out, raw, &head, &raw[head.path.clone()], &f).unwrap();
        out
    }

    #[test]
    fn host_and_port_reads_a_port_only_after_the_address() {
        assert_eq!(host_and_port(b"[::1]:8443", 80), (&b"[::1]"[..], 8443));
        assert_eq!(host_and_port(b"[::1]", 443), (&b"[::1]"[..], 443));
        assert_eq!(host_and_port(b"[::1]x8080", 80), (&b"[::1]"[..], 80));
        assert_eq!(host_and_port(b"[::1", 80), (&b"[::1"[..], 80));
        assert_eq!(host_and_port(b"h:81", 80), (&b"h"[..], 81));
        assert_eq!(host_and_port(b"h", 443), (&b"h"[..], 443));
    }

    #[test]
    fn a_tls_client_sets_is_ssl_and_the_ssl_attributes() {
        let raw = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut head = RequestHead::default();
        parse_request(raw, 16384, 100, &mut head).unwrap();
        let f = Forward {
            client: "10.0.0.7:50000".parse().unwrap(),
            trusted: false,
            secret: None,
            packet_size: 8192,
            tls: Some(SslFacts {
                cipher: "TLS_AES_128_GCM_SHA256",
                key_bits: 128,
                session: *b"00112233445566778899aabbccddeeff",
                protocol: "TLSv1.3",
            }),
        };
        let mut out = Vec::new();
        forward_request(&mut out, raw, &head, b"/x", &f).unwrap();
        let s = |code: Option<u8>, b: &[u8]| {
            let mut v: Vec<u8> = code.into_iter().collect();
            v.extend_from_slice(&(b.len() as u16).to_be_bytes());
            v.extend_from_slice(b);
            v.push(0);
            v
        };
        let find = |needle: &[u8]| out.windows(needle.len()).position(|w| w == needle);
        // server_name "h", port 443 (https, no port in Host), is_ssl 1
        assert!(find(&[b'h', 0, 0x01, 0xBB, 1]).is_some(), "{out:?}");
        let cipher = s(Some(0x08), b"TLS_AES_128_GCM_SHA256");
        let session = s(Some(0x09), b"00112233445566778899aabbccddeeff");
        let mut attrs = [cipher, session, vec![0x0B, 0, 128], vec![0x0A]].concat();
        attrs.extend(s(None, b"AJP_SSL_PROTOCOL"));
        attrs.extend(s(None, b"TLSv1.3"));
        assert!(find(&attrs).is_some(), "{out:?}");
        assert_eq!(out.last(), Some(&0xFF));
    }

    #[test]
    fn forward_request_bytes() {
        let out = encode(
            b"GET /app/x?a=1 HTTP/1.1\r\nHost: h:8080\r\nConnection: keep-alive\r\nX-Y: z\r\n\r\n",
            Some("s3"),
        );
        let mut want: Vec<u8> = vec![0x12, 0x34, 0, 0, 2, 2];
        let s = |v: &mut Vec<u8>, b: &[u8]| {
            v.extend_from_slice(&(b.len() as u16).to_be_bytes());
            v.extend_from_slice(b);
            v.push(0);
        };
        s(&mut want, b"HTTP/1.1");
        s(&mut want, b"/app/x");
        s(&mut want, b"10.0.0.7");
        s(&mut want, b"10.0.0.7");
        s(&mut want, b"h");
        want.extend_from_slice(&[0x1F, 0x90, 0, 0, 2]); // port 8080, is_ssl, 2 headers
        want.extend_from_slice(&[0xA0, 0x0B]);
        s(&mut want, b"h:8080");
        s(&mut want, b"X-Y");
        s(&mut want, b"z");
        want.push(attr::QUERY_STRING);
        s(&mut want, b"a=1");
        want.push(attr::REQ_ATTRIBUTE);
        s(&mut want, b"AJP_REMOTE_PORT");
        s(&mut want, b"50000");
        want.push(attr::SECRET);
        s(&mut want, b"s3");
        want.push(0xFF);
        let len = (want.len() - 4) as u16;
        want[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn unknown_method_is_stored_and_content_length_coded() {
        let out = encode(
            b"PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            None,
        );
        assert_eq!(out[5], 0xFF);
        let text = out.windows(5).any(|w| w == b"PATCH");
        assert!(text, "stored_method carries the name");
        assert!(
            out.windows(4).any(|w| w == [0xA0, 0x08, 0, 1]),
            "content-length coded, value \"3\""
        );
        assert_eq!(out.last(), Some(&0xFF));
    }

    #[test]
    fn too_large_for_one_packet() {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
            "c".repeat(9000)
        );
        let mut head = RequestHead::default();
        parse_request(raw.as_bytes(), 65536, 100, &mut head).unwrap();
        let f = Forward {
            client: "10.0.0.7:1".parse().unwrap(),
            trusted: false,
            secret: None,
            packet_size: 8192,
            tls: None,
        };
        let mut out = Vec::new();
        let path = &raw.as_bytes()[head.path.clone()];
        assert_eq!(
            forward_request(&mut out, raw.as_bytes(), &head, path, &f),
            Err(AjpError::TooLarge)
        );
    }

    #[test]
    fn response_head_from_send_headers() {
        let pkt = b"text/plainJSESSIONID=1.n1";
        let headers = vec![
            (HeaderName::Coded(0), 0..10),
            (HeaderName::Coded(6), 10..25),
        ];
        let mut out = Vec::new();
        let framing = Framing {
            length: None,
            chunked: true,
            keep_alive: true,
            client_minor: 1,
        };
        response_head(&mut out, pkt, (200, &None, &headers), &framing, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: JSESSIONID=1.n1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(reason_for(404, b"404"), b"Not Found");
    }

    #[test]
    fn content_length_named_by_connection_still_reaches_the_container() {
        let out = encode(
            b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, X-A\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc",
            None,
        );
        assert!(
            out.windows(4).any(|w| w == [0xA0, 0x08, 0, 1]),
            "content-length coded, value \"3\""
        );
        assert!(
            !out.windows(3).any(|w| w == b"X-A"),
            "X-A is named by Connection"
        );
    }

    #[test]
    fn response_checks() {
        let pkt = b"OK\r\nbadtext/plain5x6";
        let ok = |status, reason: Option<Range<usize>>, headers: &[(HeaderName, Range<usize>)]| {
            check_response(pkt, status, &reason, headers)
        };
        assert_eq!(
            ok(200, Some(0..2), &[(HeaderName::Coded(0), 7..17)]),
            Ok(None)
        );
        assert!(ok(200, Some(0..4), &[]).is_err(), "CR LF in the reason");
        for status in [0, 99, 100, 101, 199, 600, 999, 1000] {
            assert!(ok(status, None, &[]).is_err(), "{status}");
        }
        assert!(
            ok(200, None, &[(HeaderName::Coded(0), 2..7)]).is_err(),
            "CR LF in a value"
        );
        assert!(
            ok(200, None, &[(HeaderName::Named(1..4), 7..17)]).is_err(),
            "bad name"
        );
        let len = [
            (HeaderName::Coded(2), 17..18),
            (HeaderName::Coded(2), 19..20),
        ];
        assert!(ok(200, None, &len).is_err(), "differing lengths");
        assert_eq!(ok(200, None, &len[..1]), Ok(Some(5)));
        let many: Vec<_> = (0..129).map(|_| (HeaderName::Coded(0), 7..17)).collect();
        assert!(
            ok(200, None, &many).is_err(),
            "more headers than an HTTP response may have"
        );
        assert!(ok(200, None, &many[..128]).is_ok());
        assert_eq!(reason_for(200, b"Fine"), b"Fine");
    }
}
