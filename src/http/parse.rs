//! Request and response head parsing (httparse) with the strict framing rules of RFC 9112 that a
//! proxy must apply.
//!
//! Owns: turning bytes into a `RequestHead`/`ResponseHead` of offsets. Must never: allocate per
//! request (the header vector is reused) or accept a head whose framing is ambiguous. Invariant: a
//! head that parses has exactly one body framing, and everything refused maps to one status code.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::framing::BodyKind;
use super::header::{classify, tokens, HeaderKind, HeaderPos};
use super::keep_alive;
use crate::config::MAX_HEADERS_CAP;

/// Why a head could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// 400 (or 502 for a response), with a reason for the log.
    Invalid(&'static str),
    /// 431: head or header count over the limit.
    TooLarge,
    /// 414: the request line alone is over the limit.
    UriTooLong,
    /// 405: a method ringlb does not proxy (CONNECT).
    MethodNotAllowed,
    /// 501: a transfer coding ringlb does not implement (anything but `chunked` alone).
    NotImplemented,
}

impl HeadError {
    /// The status a client gets for this error in its request.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Partial | HeadError::Invalid(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            HeadError::MethodNotAllowed => 405,
            HeadError::NotImplemented => 501,
        }
    }
}

/// A parsed request head, as offsets into the buffer it was parsed from.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub head_len: usize,
    pub method: Range<usize>,
    /// The path and query to send to a member (origin form).
    pub path: Range<usize>,
    /// The authority of an absolute-form target.
    pub authority: Option<Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<HeaderPos>,
    pub host: Option<Range<usize>>,
    /// The Content-Length value, when the request had one.
    pub content_length: Option<u64>,
    pub body: BodyKind,
    /// The client wants the connection kept open after this request.
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.method.clone()]
    }

    /// The host used for routing: the absolute-form authority, else the Host header.
    pub fn routing_host<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        match (&self.authority, &self.host) {
            (Some(a), _) => &buf[a.clone()],
            (None, Some(h)) => &buf[h.clone()],
            _ => b"",
        }
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2), so that a retry is safe.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        matches!(
            self.method(buf),
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        )
    }

    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }

    /// The scheme an `X-Forwarded-Proto` says the client used: the last element of the last one
    /// (what the nearest proxy wrote), when it is `http` or `https`. Believed only from a trusted
    /// proxy (`crate::trust`).
    pub fn forwarded_proto(&self, buf: &[u8]) -> Option<&'static str> {
        let h = self
            .headers
            .iter()
            .rev()
            .find(|h| h.kind == HeaderKind::XForwardedProto)?;
        let last = buf[h.value.clone()]
            .rsplit(|&b| b == b',')
            .next()?
            .trim_ascii();
        if last.eq_ignore_ascii_case(b"https") {
            Some("https")
        } else if last.eq_ignore_ascii_case(b"http") {
            Some("http")
        } else {
            None
        }
    }
}

/// Where `part`, a slice httparse returned from `base`, lies in `base`. A slice that does not
/// point into `base` (httparse returns a static "" for some absent fields) maps to an empty range.
fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if start > base.len() || part.len() > base.len() - start {
        return 0..0;
    }
    start..start + part.len()
}

/// The reason phrase of a status line httparse accepted: what follows `HTTP/1.x NNN ` up to the
/// line's end, read from the bytes themselves (httparse gives an empty reason, not pointing into
/// the buffer, when the reason is absent or not UTF-8).
fn reason_range(buf: &[u8]) -> Range<usize> {
    // httparse skips empty lines before the status line.
    let line = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line_end = line
        + buf[line..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(buf.len() - line);
    let line_end = if line_end > 0 && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    // "HTTP/1.1 200" is 12 bytes; the reason starts after the space that may follow.
    let start = (line + 13).min(line_end);
    start..line_end
}

fn map_httparse(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        httparse::Error::HeaderName => HeadError::Invalid("bad header name"),
        httparse::Error::HeaderValue => HeadError::Invalid("bad header value"),
        httparse::Error::NewLine => HeadError::Invalid("bad line ending"),
        httparse::Error::Status => HeadError::Invalid("bad status line"),
        httparse::Error::Token => HeadError::Invalid("bad token in request line"),
        httparse::Error::Version => HeadError::Invalid("bad HTTP version"),
    }
}

/// How many bytes at the start of `buf` are empty lines (CRLF, or a bare LF): what RFC 9112 2.2
/// lets a server ignore before a request line (some clients send a CRLF after a request's body),
/// and what `parse_request` (httparse) skips the same way. A CR that ends `buf` counts too: it is
/// the first half of a CRLF whose LF has not arrived (httparse waits for it, and dropping it
/// changes nothing it decides on `buf`; should another byte follow it in a later read, the
/// request starts there, as nginx, which skips any CR before a request line, takes it). A CR
/// followed by anything but LF in `buf` ends the count: httparse refuses it.
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match buf.get(n..) {
            Some([b'\n', ..]) => n += 1,
            Some([b'\r', b'\n', ..]) => n += 2,
            Some([b'\r']) => return n + 1,
            _ => return n,
        }
    }
}

/// Whether `buf` holds bytes of a head: anything but the empty lines `leading_empty_lines` counts.
/// The one test of "a head has begun", for the idle wait, the head deadline and `HeadScan`.
pub fn head_begun(buf: &[u8]) -> bool {
    leading_empty_lines(buf) < buf.len()
}

/// Parses a request head from `buf`. `max_bytes` bounds the head, `max_headers` the header count.
pub fn parse_request(
    buf: &[u8],
    max_bytes: usize,
    max_headers: usize,
    head: &mut RequestHead,
) -> Result<(), HeadError> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS_CAP] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut []);
    let window = &buf[..buf.len().min(max_bytes)];
    let head_len = match req.parse_with_uninit_headers(window, &mut raw[..max_headers]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() < max_bytes {
                return Err(HeadError::Partial);
            }
            return Err(if memchr_newline(window) {
                HeadError::TooLarge
            } else {
                HeadError::UriTooLong
            });
        }
        Err(e) => return Err(map_httparse(e)),
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    head.head_len = head_len;
    head.method = offset(buf, method.as_bytes());
    head.minor_version = req.version.unwrap_or(1);
    if method == "CONNECT" {
        return Err(HeadError::MethodNotAllowed);
    }
    let target_range = offset(buf, target.as_bytes());
    split_target(buf, target_range, head)?;
    let facts = request_headers(buf, req.headers, head)?;
    if head.minor_version == 1 && facts.hosts != 1 {
        return Err(HeadError::Invalid("HTTP/1.1 needs exactly one Host"));
    }
    if facts.hosts > 1 {
        return Err(HeadError::Invalid("repeated Host"));
    }
    head.content_length = facts.content_length;
    head.body = request_body(&facts, head.minor_version)?;
    head.keep_alive = keeps_alive(head.minor_version, facts.close, facts.keep_alive);
    Ok(())
}

/// What a request's headers say about its framing and connection.
#[derive(Default)]
struct Facts {
    hosts: u32,
    content_length: Option<u64>,
    has_te: bool,
    chunked: u32,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    /// Options listed by Connection headers.
    options: u32,
}

/// Records the request's headers as offsets in `head` and gathers their framing facts.
fn request_headers(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    head: &mut RequestHead,
) -> Result<Facts, HeadError> {
    head.headers.clear();
    head.host = None;
    head.expect_continue = false;
    let mut f = Facts::default();
    for h in headers {
        let kind = classify(h.name.as_bytes());
        let v = h.value.trim_ascii();
        match kind {
            HeaderKind::Host => {
                f.hosts += 1;
                head.host = Some(offset(buf, v));
            }
            HeaderKind::ContentLength => {
                let n = parse_content_length(v).ok_or(HeadError::Invalid("bad Content-Length"))?;
                if f.content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::Invalid("differing Content-Length values"));
                }
                f.content_length = Some(n);
            }
            HeaderKind::TransferEncoding => {
                f.has_te = true;
                request_codings(v, &mut f.chunked, &mut f.other_coding)?;
            }
            HeaderKind::Connection => {
                connection_tokens(v, &mut f.close, &mut f.keep_alive, &mut f.options)?
            }
            HeaderKind::Expect => head.expect_continue = v.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
        let name = offset(buf, h.name.as_bytes());
        let value = offset(buf, h.value);
        head.headers.push(HeaderPos { name, value, kind });
    }
    Ok(f)
}

/// The one body framing of a request (RFC 9112 §6.3), or why there is none.
fn request_body(f: &Facts, minor_version: u8) -> Result<BodyKind, HeadError> {
    Ok(match (f.has_te, f.content_length) {
        (true, Some(_)) => {
            return Err(HeadError::Invalid(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (true, None) if minor_version == 0 => {
            return Err(HeadError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (true, None) if f.other_coding => return Err(HeadError::NotImplemented),
        (true, None) if f.chunked != 1 => {
            return Err(HeadError::Invalid("chunked must be applied exactly once"))
        }
        (true, None) => BodyKind::Chunked,
        (false, Some(0)) | (false, None) => BodyKind::Empty,
        (false, Some(n)) => BodyKind::Length(n),
    })
}

/// Most options a message's Connection headers may list (each is checked against every header
/// name, so the count bounds that work).
const MAX_CONNECTION_OPTIONS: u32 = 32;

/// Reads the `close` and `keep-alive` options of a Connection value; counts the options.
fn connection_tokens(
    v: &[u8],
    close: &mut bool,
    keep_alive: &mut bool,
    options: &mut u32,
) -> Result<(), HeadError> {
    for t in tokens(v) {
        *close |= t.eq_ignore_ascii_case(b"close");
        *keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
        *options += 1;
    }
    if *options > MAX_CONNECTION_OPTIONS {
        return Err(HeadError::Invalid("too many Connection options"));
    }
    Ok(())
}

/// Whether the connection persists after a message (RFC 9112 §9.3).
fn keeps_alive(minor_version: u8, close: bool, keep_alive_token: bool) -> bool {
    if minor_version == 1 {
        !close
    } else {
        keep_alive_token && !close
    }
}

/// Reads one Transfer-Encoding value of a request: a list whose only allowed element is
/// `chunked` (any case). An empty element is an error (400); another coding is counted as such
/// (501 once the whole head is read, unless a 400 applies first).
fn request_codings(v: &[u8], chunked: &mut u32, other: &mut bool) -> Result<(), HeadError> {
    for t in v.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.is_empty() {
            return Err(HeadError::Invalid("empty element in Transfer-Encoding"));
        }
        if t.eq_ignore_ascii_case(b"chunked") {
            *chunked += 1;
        } else {
            *other = true;
        }
    }
    Ok(())
}

fn memchr_newline(buf: &[u8]) -> bool {
    buf.contains(&b'\n')
}

/// When a head being read into a buffer is worth parsing again. Parsing the whole buffer after
/// every read would make a head trickled in one byte per segment cost a parse per byte, quadratic
/// in its size; this way it costs one at first (a pipelined head may be whole already), then one
/// per line that ended after something other than empty lines (which httparse skips before a
/// start line, any number of them: they make no parse of their own), one at `max` (where the
/// parse says what is wrong), and one in the read that brings a control byte no head may hold, so
/// that `G\0` is refused at once rather than when a line ends or the head times out. A head has
/// at most `max_headers` + 2 such lines.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes of the buffer looked at so far.
    seen: usize,
    /// Parsed once already.
    parsed: bool,
    /// Something other than empty lines has arrived: `head_begun(buf)`, found without looking at
    /// an empty line twice.
    begun: bool,
    /// Bytes at the start of the buffer known to be whole empty lines (not a CR that ends it).
    empty: usize,
    /// A control byte made a parse of its own already (one such parse at most: should a reader
    /// ever take one, later ones must not cost a parse each).
    stray: bool,
}

impl HeadScan {
    /// Whether `buf`, grown since the last call, is worth parsing (and notes that it will be).
    pub fn worth_parsing(&mut self, buf: &[u8], max: usize) -> bool {
        let new = buf.get(self.seen..).unwrap_or_default();
        self.seen = buf.len();
        if !self.begun {
            self.note_empty_lines(buf);
        }
        let stray = self.parsed && !self.stray && new.iter().any(|&b| is_stray_control(b));
        self.stray |= stray;
        let worth =
            !self.parsed || buf.len() >= max || stray || (self.begun && memchr_newline(new));
        self.parsed |= worth;
        worth
    }

    /// Sets `begun` once `buf` holds more than empty lines, counting on from the empty lines
    /// already seen. A CR that ends `buf` is counted again next time, as the first half of a CRLF
    /// or of `\r\r`, which is no empty line.
    fn note_empty_lines(&mut self, buf: &[u8]) {
        let rest = buf.get(self.empty..).unwrap_or_default();
        let n = leading_empty_lines(rest);
        if n < rest.len() {
            self.begun = true;
        } else {
            self.empty += n - usize::from(rest.last() == Some(&b'\r'));
        }
    }
}

/// A byte that no part of a head may hold: a control byte other than HT, CR and LF, or DEL
/// (RFC 9110 5.5: a field value's bytes are VCHAR, obs-text, SP and HT; tokens and the target
/// hold fewer still).
fn is_stray_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f
}

/// Splits the request target into the path to forward and, for absolute form, the authority.
fn split_target(buf: &[u8], target: Range<usize>, head: &mut RequestHead) -> Result<(), HeadError> {
    let t = &buf[target.clone()];
    head.authority = None;
    if t.first() == Some(&b'/') || t == b"*" {
        head.path = target;
        return Ok(());
    }
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(HeadError::Invalid(
            "request target is neither origin nor absolute form",
        ));
    };
    let rest = &t[scheme_len..];
    let auth_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    if auth_len == 0 {
        return Err(HeadError::Invalid("absolute-form target without authority"));
    }
    let auth_start = target.start + scheme_len;
    head.authority = Some(auth_start..auth_start + auth_len);
    head.path = auth_start + auth_len..target.end;
    Ok(())
}

/// The longest Content-Length ringlb reads or writes. Many readers hold a length in a signed 64-bit
/// integer (Java's `long` in Tomcat, nginx's `off_t`): a longer one is a number to some and an
/// error to others, so it is refused (a request's with 400, a member's response with 502).
pub const MAX_CONTENT_LENGTH: u64 = i64::MAX as u64;

/// Parses a Content-Length value: digits, or a comma list of identical digit strings, at most
/// `MAX_CONTENT_LENGTH`.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for t in v.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.is_empty() {
            return None;
        }
        // Digits only (no sign): what `u64::from_str` takes of them, without its UTF-8 check and
        // set-up (~100 instructions of a small request's path).
        let mut n: u64 = 0;
        for &b in t {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        if n > MAX_CONTENT_LENGTH || result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// A parsed response head.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub minor_version: u8,
    /// Offsets of the reason phrase.
    pub reason: Range<usize>,
    pub headers: Vec<HeaderPos>,
    /// The Content-Length value, when the response had one.
    pub content_length: Option<u64>,
    /// Framing of the body, as declared (the caller applies HEAD/204/304).
    pub body: BodyKind,
    /// The member will keep the connection open after this response.
    pub keep_alive: bool,
    /// The smallest `timeout` its `Keep-Alive` headers give, in seconds (`keep_alive`).
    pub keep_alive_timeout: Option<u32>,
}

/// The most headers a member's response may have: one more is `HeadError::TooLarge`.
const RESPONSE_HEADERS: usize = 128;

/// Parses a response head. Framing errors are `Invalid` (the client then gets a 502).
pub fn parse_response(
    buf: &[u8],
    max_bytes: usize,
    head: &mut ResponseHead,
) -> Result<(), HeadError> {
    // Uninitialised, as in `parse_request`: filling 128 empty headers (4 KiB) first was ~350
    // instructions per response, a fifth of this function's (callgrind, scenario (a)).
    let mut raw: [MaybeUninit<httparse::Header<'_>>; RESPONSE_HEADERS] =
        [const { MaybeUninit::uninit() }; RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let window = &buf[..buf.len().min(max_bytes)];
    // The configuration `Response::parse` uses (httparse has no `Response::parse_with_uninit_
    // headers`): every leniency off, the parse as strict as before.
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut resp, window, &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max_bytes => return Err(HeadError::Partial),
        Ok(httparse::Status::Partial) => return Err(HeadError::TooLarge),
        Err(e) => return Err(map_httparse(e)),
    };
    head.head_len = head_len;
    head.status = resp.code.unwrap_or(0);
    head.minor_version = resp.version.unwrap_or(1);
    if !(100..=599).contains(&head.status) {
        return Err(HeadError::Invalid("response status outside 100-599"));
    }
    head.reason = reason_range(buf);
    let f = response_headers(buf, resp.headers, head)?;
    head.content_length = f.content_length;
    head.body = match (f.has_te, f.content_length) {
        (true, Some(_)) => {
            return Err(HeadError::Invalid(
                "response has both Content-Length and Transfer-Encoding",
            ))
        }
        (true, None) if f.chunked == 1 => BodyKind::Chunked,
        (true, None) => BodyKind::UntilClose,
        (false, Some(0)) => BodyKind::Empty,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::UntilClose,
    };
    // An HTTP/1.0 message with Transfer-Encoding has faulty framing: the connection closes after
    // it (RFC 9112 §6.1), whatever its Connection header says.
    head.keep_alive = keeps_alive(head.minor_version, f.close, f.keep_alive)
        && head.body != BodyKind::UntilClose
        && !(head.minor_version == 0 && f.has_te);
    Ok(())
}

/// Records a response's headers as offsets in `head` and gathers their framing facts
/// (`chunked` is 1 when chunked is the last transfer coding).
fn response_headers(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    head: &mut ResponseHead,
) -> Result<Facts, HeadError> {
    head.headers.clear();
    head.keep_alive_timeout = None;
    let mut f = Facts::default();
    for h in headers {
        let kind = classify(h.name.as_bytes());
        let v = h.value.trim_ascii();
        match kind {
            // A hint for the pool, never forwarded (hop-by-hop): one it cannot read is ignored.
            HeaderKind::KeepAlive => {
                if let Some(secs) = keep_alive::timeout_secs(v) {
                    let least = head.keep_alive_timeout.map_or(secs, |t| t.min(secs));
                    head.keep_alive_timeout = Some(least);
                }
            }
            HeaderKind::ContentLength => {
                let n = parse_content_length(v)
                    .ok_or(HeadError::Invalid("bad Content-Length in response"))?;
                if f.content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::Invalid(
                        "differing Content-Length values in response",
                    ));
                }
                f.content_length = Some(n);
            }
            HeaderKind::TransferEncoding => {
                f.has_te = true;
                for t in tokens(v) {
                    if f.chunked == 1 {
                        return Err(HeadError::Invalid(
                            "response: chunked is not the last coding",
                        ));
                    }
                    let name = t.split(|&b| b == b';').next().unwrap_or_default();
                    let chunked = name.trim_ascii().eq_ignore_ascii_case(b"chunked");
                    if chunked && name.len() != t.len() {
                        // Some readers take it for chunked, others not: no one reading. (Refused
                        // with a bodyless answer too, HEAD or 204 or 304: a member that sends it
                        // is broken either way.)
                        return Err(HeadError::Invalid("response: chunked with parameters"));
                    }
                    f.chunked = u32::from(chunked);
                }
            }
            HeaderKind::Connection => {
                connection_tokens(v, &mut f.close, &mut f.keep_alive, &mut f.options)?
            }
            _ => {}
        }
        let name = offset(buf, h.name.as_bytes());
        let value = offset(buf, h.value);
        head.headers.push(HeaderPos { name, value, kind });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_before_a_request_are_counted_as_httparse_skips_or_waits_for_them() {
        assert_eq!(leading_empty_lines(b""), 0);
        assert_eq!(leading_empty_lines(b"\r\n"), 2);
        assert_eq!(leading_empty_lines(b"\n\r\n\nGET"), 4);
        assert_eq!(
            leading_empty_lines(b"\r"),
            1,
            "a CR whose LF has not come yet"
        );
        assert_eq!(leading_empty_lines(b"\r\n\r"), 3);
        assert_eq!(
            leading_empty_lines(b"\r\n\rG"),
            2,
            "a CR before a byte not LF"
        );
        assert_eq!(
            leading_empty_lines(b"\r\rGET"),
            0,
            "a CR and no LF: httparse refuses"
        );
        assert_eq!(leading_empty_lines(b" \r\n"), 0);
        // Every string of CR and LF up to 8 bytes before a request (and before a lone CR, or
        // nothing): skipping what `leading_empty_lines` counts changes nothing httparse decides,
        // and what is left does not start with an empty line.
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for len in 0..=8u32 {
            for bits in 0..(1u32 << len) {
                let lead: Vec<u8> = (0..len)
                    .map(|i| if bits >> i & 1 == 1 { b'\r' } else { b'\n' })
                    .collect();
                for tail in [&request[..], b"\r", b""] {
                    let whole = [&lead[..], tail].concat();
                    let k = leading_empty_lines(&whole);
                    assert!(leading_empty_lines(&whole[k..]) == 0 && k <= whole.len());
                    let (mut a, mut b) = (RequestHead::default(), RequestHead::default());
                    let all = parse_request(&whole, 16384, 100, &mut a);
                    let rest = parse_request(&whole[k..], 16384, 100, &mut b);
                    assert_eq!(all, rest, "{:?}", String::from_utf8_lossy(&whole));
                    if all.is_ok() {
                        assert_eq!(a.head_len, b.head_len + k);
                    }
                }
            }
        }
    }

    #[test]
    fn the_nearest_proxys_scheme_counts() {
        let proto = |raw: &[u8]| {
            let mut head = RequestHead::default();
            parse_request(raw, 16384, 100, &mut head).unwrap();
            head.forwarded_proto(raw)
        };
        let p = |v: &str| {
            proto(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: {v}\r\n\r\n").as_bytes())
        };
        assert_eq!(p("https"), Some("https"));
        assert_eq!(p("HTTPS"), Some("https"));
        assert_eq!(p("http, https"), Some("https"));
        assert_eq!(p("https, http"), Some("http"));
        assert_eq!(p("gopher"), None);
        assert_eq!(proto(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
    }

    #[test]
    fn content_length_is_what_from_str_makes_of_the_digits_in_each_list_item() {
        // The reference: each comma-separated item trimmed, digits only, `u64::from_str`, at most
        // MAX_CONTENT_LENGTH, all items equal.
        let reference = |v: &[u8]| -> Option<u64> {
            let mut all = v.split(|&b| b == b',').map(|t| {
                let t = std::str::from_utf8(t.trim_ascii()).ok()?;
                let n: u64 = t
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| t.parse().ok())??;
                (n <= MAX_CONTENT_LENGTH).then_some(n)
            });
            let first = all.next()??;
            all.all(|n| n == Some(first)).then_some(first)
        };
        let mut rng = crate::test_rng::Rng(0x2545_f491_4f6c_dd1d);
        let pieces: [&[u8]; 12] = [
            b"0",
            b"7",
            b"9",
            b"00",
            b"9223372036854775807",
            b"9223372036854775808",
            b"18446744073709551615",
            b"18446744073709551616",
            b",",
            b" ",
            b"+",
            b"\t",
        ];
        for _ in 0..200_000 {
            let v: Vec<u8> = (0..rng.below(6))
                .flat_map(|_| rng.pick(&pieces).to_vec())
                .collect();
            assert_eq!(
                parse_content_length(&v),
                reference(&v),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
        assert_eq!(
            parse_content_length(b"9223372036854775807"),
            Some(MAX_CONTENT_LENGTH)
        );
        assert_eq!(parse_content_length(b"9223372036854775808"), None);
        assert_eq!(
            parse_content_length(b"99999999999999999999"),
            None,
            "past u64"
        );
        assert_eq!(parse_content_length(b" 5 , 05"), Some(5));
        assert_eq!(parse_content_length(b"+5"), None);
    }

    #[test]
    fn a_head_scan_begins_where_head_begun_says_however_the_bytes_were_cut() {
        // Every string of up to 8 bytes of CR, LF and `G`, fed in every way of cutting it into
        // reads: after each read, `HeadScan` holds that a head has begun exactly when `head_begun`
        // says so of the whole buffer (its count of empty lines goes on from the last read's).
        let sym = [b'\r', b'\n', b'G'];
        for len in 0..=8u32 {
            for code in 0..3u32.pow(len) {
                let s: Vec<u8> = (0..len)
                    .map(|i| sym[(code / 3u32.pow(i) % 3) as usize])
                    .collect();
                for cuts in 0..(1u32 << len.saturating_sub(1)) {
                    let mut scan = HeadScan::default();
                    for end in (1..=len).filter(|&e| e == len || cuts >> (e - 1) & 1 == 1) {
                        let buf = &s[..end as usize];
                        scan.worth_parsing(buf, 64);
                        assert_eq!(scan.begun, head_begun(buf), "{buf:?} cut by {cuts:b}");
                    }
                }
            }
        }
        assert!(!head_begun(b"\r\n\n\r") && head_begun(b"\r\r") && head_begun(b"\nG"));
    }

    #[test]
    fn parsing_only_when_a_line_ended_decides_as_parsing_every_read() {
        // Heads (whole, broken, over the limit, after empty lines) cut into random reads: parsing
        // only when `HeadScan` says so finds a whole head where parsing every read does, with the
        // same length, decides no differently, and parses at most once per line that ended after
        // something other than empty lines (plus the first parse and the one at the limit).
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let lines: [&[u8]; 10] = [
            b"Host: a\r\n",
            b"Z: a\x00b\r\n",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            b"Bad Name: x\r\n",
            b"Content-Length: 5\r\n",
            b"X: \x01\r\n",
            b"X-Del: a\x7fb\r\n",
            b"\r\n",
            b"X-Bare: lf\n",
            b"Y: y\r\n",
        ];
        const MAX: usize = 200;
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            // Empty lines first, now and then (up to the limit: then the limit decides).
            for _ in 0..[0, 0, 1, 3, 120][rng.below(5)] {
                raw.extend_from_slice(rng.pick(&[&b"\r\n"[..], b"\n"]));
            }
            match rng.below(10) {
                0 => {}
                1 => raw.extend_from_slice(
                    rng.pick(&[&b"G\x00ET /x HTTP/1.1\r\n"[..], b"G\x7fET /x HTTP/1.1\r\n"]),
                ),
                _ => raw.extend_from_slice(b"GET /x HTTP/1.1\r\n"),
            }
            for _ in 0..rng.below(8) {
                raw.extend_from_slice(rng.pick(&lines));
            }
            if rng.below(4) > 0 {
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(&b"abcdef"[..rng.below(7)]);
            let outcome = |buf: &[u8]| -> Option<Result<usize, u16>> {
                let mut h = RequestHead::default();
                match parse_request(buf, MAX, 100, &mut h) {
                    Ok(()) => Some(Ok(h.head_len)),
                    Err(HeadError::Partial) => None,
                    Err(e) => Some(Err(e.status())),
                }
            };
            let (mut at, mut parses, mut scan) = (0, 0, HeadScan::default());
            let (mut every, mut gated) = (None, None);
            let mut stray_unanswered = false; // a control byte came in a read with no outcome
            while at < raw.len() && gated.is_none() {
                at = (at + 1 + rng.below(12)).min(raw.len());
                let buf = &raw[..at];
                every = every.or_else(|| outcome(buf));
                if scan.worth_parsing(buf, MAX) {
                    parses += 1;
                    gated = outcome(buf);
                }
                // (Spelled out here, not `is_stray_control`: the test says which bytes.)
                let stray = |&b: &u8| (b < 0x20 && !b"\t\r\n".contains(&b)) || b == 0x7f;
                stray_unanswered |= gated.is_none() && buf.iter().any(stray);
            }
            let ctx = String::from_utf8_lossy(&raw);
            assert!(!stray_unanswered, "a control byte waited for more: {ctx:?}");
            if let Some(Ok(n)) = every {
                assert_eq!(gated, Some(Ok(n)), "{ctx:?}");
            }
            if let Some(g) = gated {
                assert_eq!(every, Some(g), "{ctx:?}");
            }
            let seen = &raw[..at];
            let content = seen.iter().position(|b| !b"\r\n".contains(b));
            let lines = content.map_or(0, |c| seen[c..].iter().filter(|&&b| b == b'\n').count());
            // The first, the read in which the start line began, one per line, the limit, and one
            // for a control byte.
            assert!(parses <= lines + 4, "{parses} parses: {ctx:?}");
        }
    }

    fn req(raw: &[u8]) -> Result<RequestHead, HeadError> {
        let mut h = RequestHead::default();
        parse_request(raw, 16384, 100, &mut h).map(|_| h)
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x.org\r\n\r\n";
        let h = req(raw).unwrap();
        assert_eq!(h.head_len, raw.len());
        assert_eq!(&raw[h.path.clone()], b"/a?b=1");
        assert_eq!(h.routing_host(raw), b"x.org");
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: x").unwrap_err(),
            HeadError::Partial
        );
    }

    #[test]
    fn absolute_form_is_split() {
        let raw = b"GET http://App.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = req(raw).unwrap();
        assert_eq!(h.routing_host(raw), b"App.example:81");
        assert_eq!(&raw[h.path.clone()], b"/p?q");
        let raw = b"GET http://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n";
        let h = req(raw).unwrap();
        assert_eq!(&raw[h.path.clone()], b"");
    }

    #[test]
    fn framing_rules() {
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            // Over i64::MAX, within u64: a number to some readers, an error to others.
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n",
        ];
        for raw in bad {
            match req(raw) {
                Err(HeadError::Invalid(_)) => {}
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(raw)),
            }
        }
        let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        let h = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
        assert_eq!(h.unwrap().body, BodyKind::Length(i64::MAX as u64));
        let mut r = ResponseHead::default();
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n";
        assert!(matches!(
            parse_response(big, 65536, &mut r),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn connection_options_are_bounded() {
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: {}\r\n\r\n",
            vec!["x"; 33].join(",")
        );
        assert!(matches!(req(many.as_bytes()), Err(HeadError::Invalid(_))));
        let some = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: {}\r\n\r\n",
            vec!["x"; 32].join(",")
        );
        assert!(req(some.as_bytes()).is_ok());
    }

    #[test]
    fn transfer_encoding_is_chunked_alone() {
        let te = |v: &str| {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n");
            let mut h = RequestHead::default();
            parse_request(raw.as_bytes(), 16384, 100, &mut h).map(|_| h.body)
        };
        assert_eq!(te("Transfer-Encoding: chunked"), Ok(BodyKind::Chunked));
        assert_eq!(te("Transfer-Encoding: Chunked "), Ok(BodyKind::Chunked));
        for v in [
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: identity, chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked;q=1",
        ] {
            assert_eq!(te(v), Err(HeadError::NotImplemented), "{v}");
        }
        for v in [
            "Transfer-Encoding: ,chunked",
            "Transfer-Encoding: chunked,",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding:",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: ",
        ] {
            assert!(
                matches!(te(v), Err(HeadError::Invalid(_))),
                "{v}: {:?}",
                te(v)
            );
        }
    }

    #[test]
    fn limits_give_431_and_414() {
        let mut h = RequestHead::default();
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(400));
        assert_eq!(
            parse_request(long_line.as_bytes(), 256, 100, &mut h),
            Err(HeadError::UriTooLong)
        );
        let big_head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(400)
        );
        assert_eq!(
            parse_request(big_head.as_bytes(), 256, 100, &mut h),
            Err(HeadError::TooLarge)
        );
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(5));
        assert_eq!(
            parse_request(many.as_bytes(), 16384, 3, &mut h),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn http10_keepalive() {
        let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn response_framing() {
        let mut h = ResponseHead::default();
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        parse_response(raw, 65536, &mut h).unwrap();
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (200, BodyKind::Length(5), true)
        );
        parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 65536, &mut h).unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::UntilClose, false));
        // HTTP/1.0 kept alive only when it says so, and never with Transfer-Encoding (RFC 9112
        // §6.1: faulty framing, the connection closes after it).
        for (raw, kept) in [
            (&b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..], false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
        ] {
            parse_response(raw, 65536, &mut h).unwrap();
            assert_eq!(h.keep_alive, kept, "{}", String::from_utf8_lossy(raw));
        }
        // Codings without chunked last: read to the close (and chunked for an HTTP/1.1 client
        // behind them); chunked with parameters is no framing every reader agrees on.
        for te in ["gzip", "gzip;q=1", "x-chunked", "chunkedx"] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            parse_response(raw.as_bytes(), 65536, &mut h).unwrap();
            assert_eq!(h.body, BodyKind::UntilClose, "{te}");
        }
        for te in ["chunked;x=1", "gzip, CHUNKED ; a", "chunked;"] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                parse_response(raw.as_bytes(), 65536, &mut h),
                Err(HeadError::Invalid("response: chunked with parameters")),
                "{te}"
            );
        }
        for (raw, reason) in [
            (
                &b"HTTP/1.1 200 \x80OK\r\nContent-Length: 0\r\n\r\n"[..],
                &b"\x80OK"[..],
            ),
            (b"HTTP/1.1 200\r\n\r\n", b""),
            (b"HTTP/1.1 200 \r\n\r\n", b""),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", b"Not Found"),
            (b"HTTP/1.1 200 OK\n\n", b"OK"),
            (b"\r\nHTTP/1.1 201 Made\r\n\r\n", b"Made"),
        ] {
            parse_response(raw, 65536, &mut h).unwrap();
            assert_eq!(
                &raw[h.reason.clone()],
                reason,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let bad: &[&[u8]] = &[
            b"HTTP/1.1 042 OK\r\n\r\n",
            b"HTTP/1.1 600 OK\r\n\r\n",
            b"HTTP/1.1 999 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                matches!(
                    parse_response(raw, 65536, &mut h),
                    Err(HeadError::Invalid(_))
                ),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
