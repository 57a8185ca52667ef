//! Every call the fuzz targets make into ringlb, and every ringlb type they name, in one place.
//!
//! When a signature in ringlb changes (say `rewrite::request_head` gains or loses a parameter, or
//! `ChunkError` changes shape), this file is the one to update; the targets only see the wrappers
//! below. Where a target needs a decision that ringlb makes inline (which client framing
//! `proxy::relay_response` picks, which the AJP exchange picks), it is modelled here, with a
//! pointer to the code it mirrors.

use std::net::SocketAddr;
use std::ops::Range;

pub use ringlb::ajp::codec::{
    attr, method_code, request_header_code, AjpError, HeaderName, Packet, FORWARD_REQUEST,
    FROM_CONTAINER, RESPONSE_HEADERS, TO_CONTAINER,
};
pub use ringlb::ajp::request::MAX_BODY_LENGTH as AJP_MAX_BODY_LENGTH;
pub use ringlb::config::MAX_HEADERS_CAP;
pub use ringlb::http::chunked::ChunkEncoder;
pub use ringlb::http::framing::BodyKind;
pub use ringlb::http::header::{classify, connection_lists, tokens, HeaderKind, HeaderPos};
pub use ringlb::http::keep_alive::{idle_limit, timeout_secs as keep_alive_timeout};
pub use ringlb::http::parse::{leading_empty_lines, HeadError, HeadScan, RequestHead, ResponseHead};
pub use ringlb::http::rewrite::ClientBody;

use ringlb::ajp::{codec, request as ajp_request};
use ringlb::http::chunked::ChunkedDecoder;
use ringlb::http::framing::BodyTracker;
use ringlb::http::{parse, rewrite};

/// `limits.max_request_header_bytes` bounds (config.rs `validate`).
pub const MIN_REQUEST_HEAD_BYTES: usize = 256;
pub const MAX_REQUEST_HEAD_BYTES: usize = 1 << 20;
/// The response head limit (proxy.rs `MAX_RESPONSE_HEAD`).
pub const MAX_RESPONSE_HEAD: usize = 65536;
/// The header array `parse_response` parses into.
pub const RESPONSE_HEADERS_CAP: usize = 128;
/// AJP `packet_size` bounds (config.rs) and default.
pub const AJP_MIN_PACKET: usize = 8192;
pub const AJP_MAX_PACKET: usize = 65536;

// ---------------------------------------------------------------- HTTP heads

/// `parse::parse_request` into a fresh head.
pub fn parse_request(
    buf: &[u8],
    max_bytes: usize,
    max_headers: usize,
) -> Result<RequestHead, HeadError> {
    let mut head = RequestHead::default();
    parse::parse_request(buf, max_bytes, max_headers, &mut head).map(|()| head)
}

/// `parse::parse_response` into a fresh head.
pub fn parse_response(buf: &[u8], max_bytes: usize) -> Result<ResponseHead, HeadError> {
    let mut head = ResponseHead::default();
    parse::parse_response(buf, max_bytes, &mut head).map(|()| head)
}

/// `parse::parse_content_length`: a Content-Length value (digits, or a list of equal ones).
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    parse::parse_content_length(v)
}

/// Every range a request head holds (method, path, authority, host, header names and values).
pub fn request_ranges(head: &RequestHead) -> Vec<Range<usize>> {
    let mut v = vec![head.method.clone(), head.path.clone()];
    v.extend(head.authority.clone());
    v.extend(head.host.clone());
    for h in &head.headers {
        v.push(h.name.clone());
        v.push(h.value.clone());
    }
    v
}

/// Every range a response head holds (reason, header names and values).
pub fn response_ranges(head: &ResponseHead) -> Vec<Range<usize>> {
    let mut v = vec![head.reason.clone()];
    for h in &head.headers {
        v.push(h.name.clone());
        v.push(h.value.clone());
    }
    v
}

/// What the member the request goes to looks like.
pub struct Member {
    pub host_port: &'static str,
    pub preserve_host: bool,
    pub client: SocketAddr,
    /// The client is a trusted proxy (`[server] trusted_proxies`).
    pub trusted: bool,
    /// The client's connection with ringlb is TLS.
    pub https: bool,
}

/// The target ringlb routes on and forwards (`http::path::normalize`); `None` when it refuses
/// the request (a path above the root).
pub fn forward_target(buf: &[u8], head: &RequestHead) -> Option<Vec<u8>> {
    let raw = &buf[head.path.clone()];
    let mut out = Vec::new();
    ringlb::http::path::normalize(raw, &mut out).ok()?;
    Some(if out.is_empty() { raw.to_vec() } else { out })
}

/// `rewrite::request_head`: appends the head ringlb sends to a member for `target`, with the
/// request's `Upgrade` offer when it makes one (`http::upgrade::offer`, on a route tunnelling
/// any protocol).
pub fn rewrite_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    target: &[u8],
    m: &Member,
) {
    let any = ringlb::config::Upgrades {
        any: true,
        protocols: Vec::new(),
    };
    let offer = ringlb::http::upgrade::offer(buf, head, &any).map(|r| &buf[r]);
    rewrite::request_head(
        out,
        buf,
        head,
        target,
        m.host_port,
        m.preserve_host,
        rewrite::Origin {
            ip: m.client.ip(),
            trusted: m.trusted,
            https: m.https,
        },
        offer,
    );
}

/// `rewrite::response_head`: appends the head ringlb sends to a client.
pub fn rewrite_response(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    mode: ClientBody,
    client_minor: u8,
    keep_alive: bool,
) {
    let client = rewrite::ClientHead {
        body: mode,
        client_minor,
        keep_alive,
        reverse: None,
    };
    rewrite::response_head(out, buf, head, &client);
}

/// How ringlb relays a response body to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFraming {
    /// The framing ringlb tracks the member's body with.
    pub kind: BodyKind,
    pub mode: ClientBody,
    /// The `keep_alive` passed to the rewrite.
    pub keep_client: bool,
}

/// The choice `http::exchange::start_response` makes (through `ClientBody::choose`), for a server
/// that is not stopping and a request that is not an upgrade.
pub fn client_framing(
    resp: &ResponseHead,
    request_is_head: bool,
    client_minor: u8,
    client_keep_alive: bool,
) -> ClientFraming {
    let kind = if request_is_head || resp.status == 204 || resp.status == 304 {
        BodyKind::Empty
    } else {
        resp.body
    };
    let mode = ClientBody::choose(kind, client_minor);
    let keep_client = mode.keeps_client(kind, client_keep_alive);
    ClientFraming {
        kind,
        mode,
        keep_client,
    }
}

// ---------------------------------------------------------------- bodies

/// The streaming chunked decoder (`http::chunked::ChunkedDecoder`).
#[derive(Default)]
pub struct Chunked(ChunkedDecoder);

impl Chunked {
    pub fn new() -> Self {
        Chunked(ChunkedDecoder::new())
    }

    /// Bytes of `buf` that belong to the body; `on_data` gets the data ranges. `Err`: malformed.
    pub fn scan(
        &mut self,
        buf: &[u8],
        on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, &'static str> {
        self.0.scan(buf, on_data).map_err(|e| e.0)
    }

    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
}

/// `framing::BodyTracker`: how a body of `kind` ends, across reads.
pub struct Tracker(BodyTracker);

impl Tracker {
    pub fn new(kind: BodyKind) -> Self {
        Tracker(BodyTracker::new(kind))
    }

    pub fn advance_with(
        &mut self,
        buf: &[u8],
        on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, &'static str> {
        self.0.advance_with(buf, on_data).map_err(|e| e.0)
    }

    /// The sender closed: a close-delimited body ends there (`BodyTracker::finish_at_close`).
    pub fn finish_at_close(&mut self) -> bool {
        self.0.finish_at_close()
    }

    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
}

// ---------------------------------------------------------------- AJP13

/// `codec::decode`: one container → proxy packet at the start of `buf`.
pub fn ajp_decode(buf: &[u8], max_packet: usize) -> Result<Option<(Packet, usize)>, AjpError> {
    codec::decode(buf, max_packet)
}

/// `request::forward_request`: appends the FORWARD_REQUEST packet for a parsed request
/// (`trusted`: the client is a trusted proxy).
#[allow(clippy::too_many_arguments)]
pub fn ajp_forward_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    target: &[u8],
    client: SocketAddr,
    trusted: bool,
    secret: Option<&str>,
    packet_size: usize,
) -> Result<(), AjpError> {
    let f = ajp_request::Forward {
        client,
        trusted,
        secret,
        packet_size,
        tls: None,
    };
    ajp_request::forward_request(out, buf, head, target, &f)
}

/// `request::check_response`: whether ringlb relays a SEND_HEADERS (else the client gets a 502),
/// and the container's Content-Length.
pub fn ajp_check_response(
    pkt: &[u8],
    status: u16,
    reason: &Option<Range<usize>>,
    headers: &[(HeaderName, Range<usize>)],
) -> Result<Option<u64>, &'static str> {
    ajp_request::check_response(pkt, status, reason, headers)
}

/// The client framing the AJP exchange picks for a checked SEND_HEADERS (mirrors
/// `ajp::exchange::send_headers`): (chunked, keep_alive). `length`: the container's Content-Length.
pub fn ajp_client_framing(
    status: u16,
    length: Option<u64>,
    request_is_head: bool,
    client_minor: u8,
    client_keep_alive: bool,
) -> (bool, bool) {
    let no_body = request_is_head || status == 204 || status == 304;
    let to_chunk = !no_body && length.is_none() && client_minor == 1;
    let until_close = !no_body && length.is_none() && client_minor == 0;
    (to_chunk, client_keep_alive && !until_close)
}

/// `request::response_head`: appends the client's head for a SEND_HEADERS held in `pkt`.
#[allow(clippy::too_many_arguments)]
pub fn ajp_response_head(
    out: &mut Vec<u8>,
    pkt: &[u8],
    status: u16,
    reason: &Option<Range<usize>>,
    headers: &[(HeaderName, Range<usize>)],
    length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    client_minor: u8,
) {
    let framing = ajp_request::Framing {
        length,
        chunked,
        keep_alive,
        client_minor,
    };
    ajp_request::response_head(out, pkt, (status, reason, headers), &framing, None);
}

/// The HTTP reason a client gets for an AJP status and reason (`request::reason_for`).
pub fn ajp_reason_for(status: u16, given: &[u8]) -> &[u8] {
    ajp_request::reason_for(status, given)
}

// ---------------------------------------------------------------- sticky sessions

pub use ringlb::config::Sticky;

/// `sticky::route`: the member route a request's session id names (`target`: the path and query
/// ringlb routes on, `client::target`).
pub fn sticky_route<'a>(
    buf: &'a [u8],
    head: &RequestHead,
    target: &'a [u8],
    s: &Sticky,
) -> Option<&'a [u8]> {
    ringlb::sticky::route(buf, head, target, s)
}

/// A head that holds only these headers (for `sticky_route` over arbitrary ranges).
pub fn head_with_headers(headers: Vec<HeaderPos>) -> RequestHead {
    RequestHead {
        headers,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- TLS names and redirects

/// `CertStore::covering` over certificates that hold these DNS names (in order): the index of
/// the certificate that covers `sni`, exactly or by a one-label wildcard.
pub fn cert_covering(names: &[Vec<String>], sni: &str) -> Option<usize> {
    ringlb::tls::store::CertStore::from_names(names.iter().map(Vec::as_slice)).covering(sni)
}

/// `redirect::host_name`: the host a redirect to https may name, from a Host value.
pub fn redirect_host(host: &[u8]) -> Option<&[u8]> {
    ringlb::redirect::host_name(host)
}

// ---------------------------------------------------------------- binary upgrade

pub use ringlb::handover::{describe as handover_describe, read_description as handover_read};
pub use ringlb::worker::Role;

// ---------------------------------------------------------------- route mapping

pub use ringlb::http::reverse::{map_target, public_origin, Mapping, Reverse};

/// `reverse::push_response_header` for one header, into a fresh buffer.
pub fn reverse_header(name: &[u8], value: &[u8], r: &Reverse) -> Vec<u8> {
    let mut out = Vec::new();
    ringlb::http::reverse::push_response_header(&mut out, name, value, Some(r));
    out
}

// ---------------------------------------------------------------- Apache configuration

pub use ringlb::import::apache_conf::{read_text as apache_read, split_words, Directive};
pub use ringlb::import::apache_map::translate as apache_translate;

// ---------------------------------------------------------------- admin listener

pub use ringlb::admin::auth::{host_allowed, same_origin};
pub use ringlb::config::{AdminConfig, CookieDomain};

/// An admin listener's configuration with `hosts` as its extra names.
pub fn admin_config(hosts: &[&str]) -> AdminConfig {
    AdminConfig {
        address: "127.0.0.1:9900".parse().expect("an address"),
        token: Some("s3cret-token".into()),
        user: None,
        password_hash: None,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        state_file: None,
    }
}
