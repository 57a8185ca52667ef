//! AJP13 both ways.
//!
//! Container → proxy (first byte even): arbitrary bytes decoded as a stream of packets. No panic;
//! a packet uses exactly its declared length, within the input and the packet size; every range
//! lies inside its packet; the same packet decodes from exactly its own bytes and one byte less is
//! "incomplete". For SEND_HEADERS whose fields are all valid HTTP, the client's head ringlb writes
//! parses with the same status, headers and the framing the exchange chose.
//!
//! Proxy → container (first byte odd): the rest is an HTTP request; when ringlb accepts it, its
//! FORWARD_REQUEST is either refused as too large (leaving nothing behind) or well formed: magic
//! 0x1234, length = what follows, within the packet size, and the whole layout walks through to the
//! 0xFF terminator at the packet's end, with the method, URI, query, headers, port and secret the
//! request calls for.
//!
//! Input: mode and flags (1 byte), packet size (2 bytes), secret length (1 byte, odd mode), bytes.

#![no_main]

use std::net::SocketAddr;
use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{esc, named_by_connection, special_alias, trim_ows, within, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let packet_size =
        AJP_MIN_PACKET + usize::from(input.u16()) % (AJP_MAX_PACKET - AJP_MIN_PACKET + 1);
    if flags & 1 == 0 {
        from_container(flags, packet_size, input.rest());
    } else {
        let secret_len = usize::from(input.u8() % 40);
        let secret = input.bytes(secret_len);
        to_container(flags, packet_size, secret, input.rest());
    }
});

fn from_container(flags: u8, max_packet: usize, buf: &[u8]) {
    let mut pos = 0;
    while pos < buf.len() {
        let b = &buf[pos..];
        let (pkt, used) = match ajp_decode(b, max_packet) {
            Ok(Some(p)) => p,
            Ok(None) => {
                assert!(
                    b.len() < 4 || b.len() < 4 + usize::from(u16::from_be_bytes([b[2], b[3]])),
                    "incomplete, though the whole packet is there: {}",
                    esc(b)
                );
                return;
            }
            Err(_) => return,
        };
        assert_eq!(b[..2], FROM_CONTAINER);
        let declared = usize::from(u16::from_be_bytes([b[2], b[3]]));
        assert_eq!(used, 4 + declared, "used is not the declared length");
        assert!(used <= b.len() && used <= max_packet && used >= 5);
        assert_eq!(
            ajp_decode(&b[..used], max_packet),
            Ok(Some((pkt.clone(), used))),
            "the packet alone decodes differently"
        );
        assert_eq!(
            ajp_decode(&b[..used - 1], max_packet),
            Ok(None),
            "a packet cut short is not incomplete"
        );
        let payload = 4..used;
        let inside = |r: &Range<usize>| within(r, used) && r.start >= payload.start;
        match &pkt {
            Packet::SendHeaders {
                status,
                reason,
                headers,
            } => {
                assert!(reason.as_ref().is_none_or(inside), "reason {reason:?}");
                for (name, value) in headers {
                    match name {
                        HeaderName::Coded(i) => assert!(*i < RESPONSE_HEADERS.len()),
                        HeaderName::Named(r) => assert!(inside(r), "name {r:?}"),
                    }
                    assert!(inside(value), "value {value:?}");
                }
                client_head(flags, &b[..used], *status, reason, headers);
            }
            Packet::SendBodyChunk(r) => assert!(inside(r) && r.start == 7, "chunk {r:?}"),
            Packet::EndResponse { .. } | Packet::GetBodyChunk(_) | Packet::CPong => {}
        }
        pos += used;
    }
}

/// The client's head for a SEND_HEADERS: when every field is valid HTTP, it parses as written.
fn client_head(
    flags: u8,
    pkt: &[u8],
    status: u16,
    reason: &Option<Range<usize>>,
    headers: &[(HeaderName, Range<usize>)],
) {
    let name_of = |n: &HeaderName| -> Vec<u8> {
        match n {
            HeaderName::Coded(i) => RESPONSE_HEADERS[*i].as_bytes().to_vec(),
            HeaderName::Named(r) => pkt[r.clone()].to_vec(),
        }
    };
    // What ringlb refuses gets a 502: nothing of it reaches the client.
    let Ok(length) = ajp_check_response(pkt, status, reason, headers) else {
        return;
    };
    let (is_head, client_minor, client_keep_alive) =
        (flags & 2 != 0, u8::from(flags & 4 == 0), flags & 8 != 0);
    let (chunked, keep) =
        ajp_client_framing(status, length, is_head, client_minor, client_keep_alive);
    let mut out = Vec::new();
    ajp_response_head(
        &mut out,
        pkt,
        status,
        reason,
        headers,
        length,
        chunked,
        keep,
        client_minor,
    );
    if headers.len() >= RESPONSE_HEADERS_CAP - 2 {
        return;
    }
    let ctx = || {
        format!(
            "\ncontainer packet: {}\nclient got: {}",
            esc(pkt),
            esc(&out)
        )
    };
    let again = match parse_response(&out, MAX_RESPONSE_HEAD) {
        Ok(h) => h,
        Err(e) => panic!("the client's head does not parse ({e:?}){}", ctx()),
    };
    assert_eq!(again.head_len, out.len(), "head ends elsewhere{}", ctx());
    assert_eq!(again.status, status, "status{}", ctx());
    let want_body = if chunked {
        BodyKind::Chunked
    } else {
        match length {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::UntilClose,
        }
    };
    assert_eq!(again.body, want_body, "framing{}", ctx());
    if again.body != BodyKind::UntilClose {
        assert_eq!(again.keep_alive, keep, "keep-alive{}", ctx());
    }
    // Hop-by-hop headers, those a Connection header names, and the framing (written by ringlb
    // from the checked Content-Length) are not copied.
    let connection_values: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| name_of(n).eq_ignore_ascii_case(b"connection"))
        .map(|(_, v)| &pkt[v.clone()])
        .collect();
    let dropped = |name: &[u8]| {
        [
            &b"connection"[..],
            b"keep-alive",
            b"transfer-encoding",
            b"te",
            b"trailer",
            b"upgrade",
            b"proxy-connection",
            b"content-length",
        ]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d))
            || connection_values.iter().any(|v| {
                v.split(|&b| b == b',')
                    .any(|t| trim_ows(t).eq_ignore_ascii_case(name))
            })
    };
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (name_of(n), trim_ows(&pkt[v.clone()]).to_vec()))
        .filter(|(n, _)| !dropped(n))
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    want.sort();
    let mut have: Vec<(Vec<u8>, Vec<u8>)> = again
        .headers
        .iter()
        .filter(|h| {
            !matches!(
                h.kind,
                HeaderKind::Connection | HeaderKind::TransferEncoding | HeaderKind::ContentLength
            )
        })
        .map(|h| {
            (
                out[h.name.clone()].to_ascii_lowercase(),
                trim_ows(&out[h.value.clone()]).to_vec(),
            )
        })
        .collect();
    have.sort();
    assert_eq!(have, want, "headers{}", ctx());
}

fn to_container(flags: u8, packet_size: usize, secret: &[u8], raw: &[u8]) {
    let Ok(head) = parse_request(raw, MAX_REQUEST_HEAD_BYTES, MAX_HEADERS_CAP) else {
        return;
    };
    let client: SocketAddr = if flags & 2 != 0 {
        "[2001:db8::7]:50000".parse().unwrap()
    } else {
        "10.0.0.7:50000".parse().unwrap()
    };
    let secret: String = secret.iter().map(|&b| char::from(b'a' + b % 26)).collect();
    let secret = (flags & 4 != 0).then_some(secret.as_str());
    let trusted = flags & 8 != 0;
    let mut out = vec![0xEE];
    let Some(target) = forward_target(raw, &head) else {
        return;
    };
    match ajp_forward_request(
        &mut out,
        raw,
        &head,
        &target,
        client,
        trusted,
        secret,
        packet_size,
    ) {
        Err(AjpError::TooLarge) => {
            assert_eq!(out, [0xEE], "a refused packet left bytes behind");
            return;
        }
        Err(e) => panic!("forward_request: {e:?}"),
        Ok(()) => assert_eq!(out[0], 0xEE, "bytes before the packet changed"),
    }
    let p = &out[1..];
    let ctx = || {
        format!(
            "\nrequest: {}\npacket: {}",
            esc(&raw[..head.head_len]),
            esc(p)
        )
    };
    assert_eq!(p[..2], TO_CONTAINER, "magic{}", ctx());
    let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
    assert_eq!(len + 4, p.len(), "length prefix{}", ctx());
    assert!(p.len() <= packet_size, "over the packet size{}", ctx());

    let mut r = Reader { p, pos: 4 };
    assert_eq!(need(r.byte(), "prefix", &ctx), FORWARD_REQUEST);
    let method = head.method(raw);
    let code = method_code(method);
    assert_eq!(
        need(r.byte(), "method", &ctx),
        code.unwrap_or(0xFF),
        "method{}",
        ctx()
    );
    let want_proto: &[u8] = if head.minor_version == 0 {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    };
    assert_eq!(
        need(r.string(), "protocol", &ctx),
        want_proto,
        "protocol{}",
        ctx()
    );
    let target = &target[..];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let want_uri: &[u8] = if path.is_empty() { b"/" } else { path };
    assert_eq!(
        need(r.string(), "req_uri", &ctx),
        want_uri,
        "req_uri{}",
        ctx()
    );
    let ip = client.ip().to_string();
    assert_eq!(
        need(r.string(), "remote_addr", &ctx),
        ip.as_bytes(),
        "{}",
        ctx()
    );
    assert_eq!(
        need(r.string(), "remote_host", &ctx),
        ip.as_bytes(),
        "{}",
        ctx()
    );
    need(r.string(), "server_name", &ctx);
    need(r.int(), "server_port", &ctx);
    // A trusted proxy's scheme: the last element of its last X-Forwarded-Proto, http or https;
    // is_ssl only when it is https.
    let proto: Option<&[u8]> = head
        .headers
        .iter()
        .rev()
        .find(|h| trusted && h.kind == HeaderKind::XForwardedProto)
        .and_then(|h| raw[h.value.clone()].split(|&b| b == b',').next_back())
        .map(|v| v.trim_ascii())
        .and_then(|v| {
            if v.eq_ignore_ascii_case(b"https") {
                Some(&b"https"[..])
            } else if v.eq_ignore_ascii_case(b"http") {
                Some(&b"http"[..])
            } else {
                None
            }
        });
    let https = proto == Some(&b"https"[..]);
    assert_eq!(
        need(r.byte(), "is_ssl", &ctx),
        u8::from(https),
        "is_ssl{}",
        ctx()
    );
    // A trusted proxy's X-Forwarded-For values, joined; nothing from anyone else.
    let trail: Vec<u8> = head
        .headers
        .iter()
        .filter(|h| trusted && h.kind == HeaderKind::XForwardedFor)
        .map(|h| raw[h.value.clone()].trim_ascii())
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join(&b", "[..]);
    let trail = &trail[..trail.len().min(0xFFFE)];

    // Headers: first ringlb's own, Host (the host it routed on) and one Content-Length with the
    // parsed value whatever a Connection header names (the container frames the body by it; none
    // for a body too long for some containers to read the length of); then the request's
    // end-to-end ones, in order, coded where AJP has a code.
    let host = head.routing_host(raw);
    let length = match head.body {
        BodyKind::Length(n) if n <= AJP_MAX_BODY_LENGTH => Some(n),
        BodyKind::Length(_) => None,
        _ => head.content_length.map(|_| 0),
    };
    let forwarded: Vec<&HeaderPos> = head
        .headers
        .iter()
        .filter(|h| {
            !matches!(
                h.kind,
                HeaderKind::Connection
                    | HeaderKind::HopByHop
                    | HeaderKind::KeepAlive
                    | HeaderKind::Upgrade
                    | HeaderKind::Expect
                    | HeaderKind::TransferEncoding
                    | HeaderKind::ContentLength
                    | HeaderKind::Host
            ) && !matches!(
                h.kind,
                HeaderKind::XForwardedFor
                    | HeaderKind::XForwardedHost
                    | HeaderKind::XForwardedProto
            ) && !named_by_connection(raw, &head.headers, h)
                && !special_alias(&raw[h.name.clone()])
        })
        .collect();
    let own = usize::from(!host.is_empty())
        + usize::from(length.is_some())
        + usize::from(!trail.is_empty())
        + usize::from(proto.is_some());
    let count = usize::from(need(r.int(), "num_headers", &ctx));
    assert_eq!(count, forwarded.len() + own, "num_headers{}", ctx());
    if !host.is_empty() {
        assert_eq!(
            need(r.int(), "host code", &ctx),
            0xA00B,
            "host code{}",
            ctx()
        );
        assert_eq!(need(r.string(), "host", &ctx), host, "host{}", ctx());
    }
    if let Some(n) = length {
        assert_eq!(
            need(r.int(), "length code", &ctx),
            0xA008,
            "length code{}",
            ctx()
        );
        let value = need(r.string(), "Content-Length", &ctx);
        assert_eq!(value, n.to_string().as_bytes(), "Content-Length{}", ctx());
    }
    if !trail.is_empty() {
        assert_eq!(
            need(r.string(), "xff name", &ctx),
            b"X-Forwarded-For",
            "{}",
            ctx()
        );
        assert_eq!(
            need(r.string(), "xff", &ctx),
            trail,
            "X-Forwarded-For{}",
            ctx()
        );
    }
    if let Some(p) = proto {
        assert_eq!(
            need(r.string(), "xfp name", &ctx),
            b"X-Forwarded-Proto",
            "{}",
            ctx()
        );
        assert_eq!(
            need(r.string(), "xfp", &ctx),
            p,
            "X-Forwarded-Proto{}",
            ctx()
        );
    }
    for h in forwarded {
        let name = &raw[h.name.clone()];
        match request_header_code(name) {
            Some(c) => assert_eq!(
                need(r.int(), "header code", &ctx),
                c,
                "header code{}",
                ctx()
            ),
            None => {
                assert!(
                    r.peek_int().is_some_and(|l| l < 0xA000),
                    "a header name's length reads as a code{}",
                    ctx()
                );
                assert_eq!(need(r.string(), "header name", &ctx), name, "{}", ctx());
            }
        }
        let value = need(r.string(), "header value", &ctx);
        assert_eq!(value, raw[h.value.clone()].trim_ascii(), "value{}", ctx());
    }

    // Attributes, to the terminator, which must be the packet's last byte.
    let (mut q, mut stored, mut sec, mut port) = (None, None, None, None);
    loop {
        match need(r.byte(), "attribute code", &ctx) {
            0xFF => break,
            0x05 => q = Some(need(r.string(), "query_string", &ctx).to_vec()),
            0x0D => stored = Some(need(r.string(), "stored_method", &ctx).to_vec()),
            0x0C => sec = Some(need(r.string(), "secret", &ctx).to_vec()),
            0x0A => {
                let name = need(r.string(), "req_attribute name", &ctx).to_vec();
                let value = need(r.string(), "req_attribute value", &ctx).to_vec();
                assert_eq!(name, b"AJP_REMOTE_PORT", "unexpected attribute{}", ctx());
                port = Some(value);
            }
            0x03 | 0x04 | 0x06..=0x09 => {
                need(r.string(), "attribute", &ctx);
            }
            0x0B => {
                need(r.int(), "ssl_key_size", &ctx);
            }
            other => panic!("unknown attribute code {other:#x}{}", ctx()),
        }
    }
    assert_eq!(r.pos, p.len(), "bytes after the terminator{}", ctx());
    assert_eq!(q.as_deref(), query, "query_string{}", ctx());
    assert_eq!(
        stored.as_deref(),
        code.is_none().then_some(method),
        "stored_method{}",
        ctx()
    );
    assert_eq!(sec.as_deref(), secret.map(str::as_bytes), "secret{}", ctx());
    assert_eq!(
        port.as_deref(),
        Some(&b"50000"[..]),
        "AJP_REMOTE_PORT{}",
        ctx()
    );
}

/// The field read, or a panic naming it.
fn need<T>(field: Option<T>, what: &str, ctx: &dyn Fn() -> String) -> T {
    field.unwrap_or_else(|| panic!("{what} malformed{}", ctx()))
}

/// Reads a proxy → container packet the way Tomcat's AjpMessage does.
struct Reader<'a> {
    p: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.p.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn int(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn peek_int(&self) -> Option<u16> {
        Some(u16::from_be_bytes([
            *self.p.get(self.pos)?,
            *self.p.get(self.pos + 1)?,
        ]))
    }

    /// A non-null string with its NUL.
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.int()?);
        if len == 0xFFFF {
            return None;
        }
        let s = self.p.get(self.pos..self.pos + len)?;
        if self.p.get(self.pos + len) != Some(&0) {
            return None;
        }
        self.pos += len + 1;
        Some(s)
    }
}
