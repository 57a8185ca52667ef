//! AJP13 encoding (proxy → container) and decoding (container → proxy), byte for byte as Tomcat
//! speaks it (docs/ajp.md; the facts are gathered in the project's AJP13 notes).
//!
//! Owns: packet layouts, codes, the string and integer encodings. Must never: panic or read out of
//! bounds on any bytes from the network (every read is checked; a property test feeds it garbage).
//! Invariant: a decoded packet is either complete and valid or reported as `Incomplete`/an error;
//! no partial state survives between calls.

use std::ops::Range;

/// Proxy → container packet magic.
pub const TO_CONTAINER: [u8; 2] = [0x12, 0x34];
/// Container → proxy packet magic ("AB").
pub const FROM_CONTAINER: [u8; 2] = [b'A', b'B'];

pub const FORWARD_REQUEST: u8 = 2;
pub const SEND_BODY_CHUNK: u8 = 3;
pub const SEND_HEADERS: u8 = 4;
pub const END_RESPONSE: u8 = 5;
pub const GET_BODY_CHUNK: u8 = 6;
pub const CPING: u8 = 10;
pub const CPONG: u8 = 9;

/// The whole CPING packet.
pub const CPING_PACKET: [u8; 5] = [0x12, 0x34, 0x00, 0x01, CPING];
/// The empty body packet: end of the request body.
pub const EMPTY_BODY: [u8; 4] = [0x12, 0x34, 0x00, 0x00];

/// Request attribute codes.
pub mod attr {
    pub const REMOTE_USER: u8 = 0x03;
    pub const QUERY_STRING: u8 = 0x05;
    pub const JVM_ROUTE: u8 = 0x06;
    pub const SSL_CIPHER: u8 = 0x08;
    pub const SSL_SESSION: u8 = 0x09;
    pub const SSL_KEY_SIZE: u8 = 0x0B;
    pub const REQ_ATTRIBUTE: u8 = 0x0A;
    pub const SECRET: u8 = 0x0C;
    pub const STORED_METHOD: u8 = 0x0D;
    pub const TERMINATOR: u8 = 0xFF;
}

/// Method codes (index + 1 = code); anything else is sent as `stored_method`.
const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

/// The code of a method, or `None` (then: 0xFF and the `stored_method` attribute).
pub fn method_code(method: &[u8]) -> Option<u8> {
    METHODS
        .iter()
        .position(|m| m.as_bytes() == method)
        .map(|i| i as u8 + 1)
}

/// Request header codes (0xA0 << 8 | index + 1).
const REQUEST_HEADERS: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

/// The code of a request header name (case-insensitive), if it has one.
pub fn request_header_code(name: &[u8]) -> Option<u16> {
    REQUEST_HEADERS
        .iter()
        .position(|h| h.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 0xA000 | (i as u16 + 1))
}

/// Response header names by code (0xA001 ..= 0xA00B).
pub const RESPONSE_HEADERS: [&str; 11] = [
    "Content-Type",
    "Content-Language",
    "Content-Length",
    "Date",
    "Last-Modified",
    "Location",
    "Set-Cookie",
    "Set-Cookie2",
    "Servlet-Engine",
    "Status",
    "WWW-Authenticate",
];

/// Writes AJP packets into a reused buffer.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    /// Starts a proxy → container packet (the length is filled in by `finish`).
    pub fn begin(out: &'a mut Vec<u8>) -> Writer<'a> {
        let start = out.len();
        out.extend_from_slice(&TO_CONTAINER);
        out.extend_from_slice(&[0, 0]);
        Writer { out, start }
    }

    pub fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    pub fn int(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn boolean(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// A string: u16 length, bytes, NUL (not counted). Longer than 0xFFFE bytes is cut there.
    pub fn string(&mut self, s: &[u8]) {
        let s = &s[..s.len().min(0xFFFE)];
        self.int(s.len() as u16);
        self.out.extend_from_slice(s);
        self.out.push(0);
    }

    /// One string made of `parts` with `sep` between them (no list is built); cut at 0xFFFE bytes
    /// like `string`.
    pub fn joined<'s>(&mut self, parts: impl Iterator<Item = &'s [u8]> + Clone, sep: &[u8]) {
        let n = parts.clone().count();
        let total: usize =
            parts.clone().map(<[u8]>::len).sum::<usize>() + sep.len() * n.saturating_sub(1);
        let total = total.min(0xFFFE);
        self.int(total as u16);
        let mut left = total;
        for (i, p) in parts.enumerate() {
            for piece in [if i > 0 { sep } else { &[][..] }, p] {
                let take = piece.len().min(left);
                self.out.extend_from_slice(&piece[..take]);
                left -= take;
            }
        }
        self.out.push(0);
    }

    /// The null string (length 0xFFFF, no bytes).
    pub fn null_string(&mut self) {
        self.int(0xFFFF);
    }

    /// Payload bytes written so far.
    pub fn payload_len(&self) -> usize {
        self.out.len() - self.start - 4
    }

    /// Fills in the length. `Err` when the payload does not fit in `max_packet` bytes.
    pub fn finish(self, max_packet: usize) -> Result<(), AjpError> {
        let len = self.payload_len();
        if len + 4 > max_packet || len > 0xFFFF {
            self.out.truncate(self.start);
            return Err(AjpError::TooLarge);
        }
        self.out[self.start + 2..self.start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(())
    }
}

/// Largest body data in one body packet for a packet size (8192 → 8186).
pub fn max_body_chunk(packet_size: usize) -> usize {
    packet_size - 6
}

/// Writes the header of a body packet carrying `len` data bytes (the data follows it on the wire,
/// written from the client's buffer: without a copy, or copied behind this header when it is at
/// most `io::JOIN_MAX` bytes).
pub fn body_packet_header(out: &mut Vec<u8>, len: usize) {
    let len = len as u16;
    out.extend_from_slice(&TO_CONTAINER);
    out.extend_from_slice(&(len + 2).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

/// Why a packet from the container could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AjpError {
    /// Wrong magic: the peer does not speak AJP13 (or the stream is out of step).
    BadMagic,
    /// Longer than the configured packet size.
    Oversized,
    /// A field runs past the packet's end, or a string lacks its NUL.
    Truncated,
    /// A prefix code this side never expects.
    UnexpectedType(u8),
    /// The request does not fit in one packet (AJP has no continuation).
    TooLarge,
}

/// A decoded container → proxy packet; ranges index the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    SendHeaders {
        status: u16,
        reason: Option<Range<usize>>,
        /// (name, value): a coded name is given as its index into `RESPONSE_HEADERS`.
        headers: Vec<(HeaderName, Range<usize>)>,
    },
    /// Body data (an empty chunk is a flush).
    SendBodyChunk(Range<usize>),
    EndResponse {
        reuse: bool,
    },
    GetBodyChunk(u16),
    CPong,
}

/// A response header name: coded, or a string in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderName {
    Coded(usize),
    Named(Range<usize>),
}

/// A bounds-checked reader over one packet's payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, AjpError> {
        if self.pos >= self.end {
            return Err(AjpError::Truncated);
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    fn int(&mut self) -> Result<u16, AjpError> {
        Ok(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    /// A string's range (without its NUL); `None` for the null string.
    fn string(&mut self) -> Result<Option<Range<usize>>, AjpError> {
        let len = self.int()?;
        if len == 0xFFFF {
            return Ok(None);
        }
        let start = self.pos;
        let end = start + usize::from(len);
        if end + 1 > self.end || self.buf[end] != 0 {
            return Err(AjpError::Truncated);
        }
        self.pos = end + 1;
        Ok(Some(start..end))
    }
}

/// Decodes one container → proxy packet at the start of `buf`. `Ok(None)`: more bytes needed.
/// On success returns the packet and the bytes it used.
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Option<(Packet, usize)>, AjpError> {
    if buf.len() < 4 {
        if buf.len() >= 2 && buf[..2] != FROM_CONTAINER {
            return Err(AjpError::BadMagic);
        }
        return Ok(None);
    }
    if buf[..2] != FROM_CONTAINER {
        return Err(AjpError::BadMagic);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len + 4 > max_packet {
        return Err(AjpError::Oversized);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut r = Reader {
        buf,
        pos: 4,
        end: 4 + len,
    };
    let packet = match r.byte()? {
        SEND_HEADERS => {
            let status = r.int()?;
            let reason = r.string()?;
            let n = r.int()?;
            let mut headers = Vec::with_capacity(usize::from(n).min(64));
            for _ in 0..n {
                let name = if r.pos + 1 < r.end && r.buf[r.pos] == 0xA0 {
                    let code = usize::from(r.int()? & 0xFF);
                    if code == 0 || code > RESPONSE_HEADERS.len() {
                        return Err(AjpError::Truncated);
                    }
                    HeaderName::Coded(code - 1)
                } else {
                    HeaderName::Named(r.string()?.ok_or(AjpError::Truncated)?)
                };
                let value = r.string()?.unwrap_or(r.pos..r.pos);
                headers.push((name, value));
            }
            Packet::SendHeaders {
                status,
                reason,
                headers,
            }
        }
        SEND_BODY_CHUNK => {
            let n = usize::from(r.int()?);
            let start = r.pos;
            // The chunk's data; Tomcat adds one trailing byte, which is not data.
            if start + n > r.end {
                return Err(AjpError::Truncated);
            }
            Packet::SendBodyChunk(start..start + n)
        }
        END_RESPONSE => Packet::EndResponse {
            reuse: r.byte()? == 1,
        },
        GET_BODY_CHUNK => Packet::GetBodyChunk(r.int()?),
        CPONG => Packet::CPong,
        other => return Err(AjpError::UnexpectedType(other)),
    };
    Ok(Some((packet, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cping_and_empty_body_are_as_specified() {
        assert_eq!(CPING_PACKET, [0x12, 0x34, 0x00, 0x01, 0x0A]);
        assert_eq!(EMPTY_BODY, [0x12, 0x34, 0x00, 0x00]);
        assert_eq!(
            decode(&[b'A', b'B', 0, 1, 9], 8192),
            Ok(Some((Packet::CPong, 5)))
        );
    }

    #[test]
    fn codes() {
        assert_eq!(method_code(b"GET"), Some(2));
        assert_eq!(method_code(b"POST"), Some(4));
        assert_eq!(method_code(b"MKACTIVITY"), Some(27));
        assert_eq!(method_code(b"PATCH"), None);
        assert_eq!(request_header_code(b"Content-Length"), Some(0xA008));
        assert_eq!(request_header_code(b"host"), Some(0xA00B));
        assert_eq!(request_header_code(b"user-agent"), Some(0xA00E));
        assert_eq!(request_header_code(b"x-other"), None);
    }

    #[test]
    fn strings_and_lengths() {
        let mut out = Vec::new();
        let mut w = Writer::begin(&mut out);
        w.byte(FORWARD_REQUEST);
        w.string(b"HTTP/1.1");
        w.null_string();
        w.int(8080);
        w.boolean(false);
        w.finish(8192).unwrap();
        assert_eq!(
            out,
            [
                0x12, 0x34, 0, 17, 2, 0, 8, b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', 0,
                0xFF, 0xFF, 0x1F, 0x90, 0
            ]
        );
        let mut big = Vec::new();
        let mut w = Writer::begin(&mut big);
        w.string(&[b'x'; 9000]);
        assert_eq!(w.finish(8192), Err(AjpError::TooLarge));
        assert!(
            big.is_empty(),
            "a packet that does not fit leaves nothing behind"
        );
        let mut h = Vec::new();
        body_packet_header(&mut h, 5);
        assert_eq!(h, [0x12, 0x34, 0, 7, 0, 5]);
        assert_eq!(max_body_chunk(8192), 8186);
    }

    #[test]
    fn send_headers_coded_and_named() {
        // 200 "OK", Content-Type: text/html (coded), X-A: b (named)
        let mut p = vec![
            b'A',
            b'B',
            0,
            0,
            SEND_HEADERS,
            0,
            200,
            0,
            2,
            b'O',
            b'K',
            0,
            0,
            2,
        ];
        p.extend_from_slice(&[0xA0, 0x01, 0, 9]);
        p.extend_from_slice(b"text/html\0");
        p.extend_from_slice(&[0, 3]);
        p.extend_from_slice(b"X-A\0");
        p.extend_from_slice(&[0, 1, b'b', 0]);
        let len = (p.len() - 4) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let (pkt, used) = decode(&p, 8192).unwrap().unwrap();
        assert_eq!(used, p.len());
        let Packet::SendHeaders {
            status,
            reason,
            headers,
        } = pkt
        else {
            panic!()
        };
        assert_eq!(status, 200);
        assert_eq!(&p[reason.unwrap()], b"OK");
        assert_eq!(headers[0].0, HeaderName::Coded(0));
        assert_eq!(&p[headers[0].1.clone()], b"text/html");
        let HeaderName::Named(n) = &headers[1].0 else {
            panic!()
        };
        assert_eq!(&p[n.clone()], b"X-A");
        assert_eq!(&p[headers[1].1.clone()], b"b");
    }

    #[test]
    fn body_chunk_end_and_get() {
        let p = [b'A', b'B', 0, 7, SEND_BODY_CHUNK, 0, 3, b'a', b'b', b'c', 0];
        assert_eq!(
            decode(&p, 8192),
            Ok(Some((Packet::SendBodyChunk(7..10), 11)))
        );
        let flush = [b'A', b'B', 0, 3, SEND_BODY_CHUNK, 0, 0];
        assert_eq!(
            decode(&flush, 8192),
            Ok(Some((Packet::SendBodyChunk(7..7), 7)))
        );
        assert_eq!(
            decode(&[b'A', b'B', 0, 2, END_RESPONSE, 1], 8192),
            Ok(Some((Packet::EndResponse { reuse: true }, 6)))
        );
        assert_eq!(
            decode(&[b'A', b'B', 0, 2, END_RESPONSE, 0], 8192),
            Ok(Some((Packet::EndResponse { reuse: false }, 6)))
        );
        assert_eq!(
            decode(&[b'A', b'B', 0, 3, GET_BODY_CHUNK, 0x1F, 0xFA], 8192),
            Ok(Some((Packet::GetBodyChunk(8186), 7)))
        );
    }

    #[test]
    fn incomplete_and_bad_input() {
        assert_eq!(
            decode(&[b'A', b'B', 0, 7, SEND_BODY_CHUNK, 0], 8192),
            Ok(None)
        );
        assert_eq!(decode(b"A", 8192), Ok(None));
        assert_eq!(
            decode(&[0x12, 0x34, 0, 1, 9], 8192),
            Err(AjpError::BadMagic)
        );
        assert_eq!(
            decode(&[b'A', b'B', 0xFF, 0xFF], 8192),
            Err(AjpError::Oversized)
        );
        assert_eq!(
            decode(&[b'A', b'B', 0, 1, 42], 8192),
            Err(AjpError::UnexpectedType(42))
        );
        // A string that claims more than the packet holds.
        assert_eq!(
            decode(&[b'A', b'B', 0, 5, SEND_HEADERS, 0, 200, 0, 9], 8192),
            Err(AjpError::Truncated)
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        // A deterministic property test: many random and mutated packets, decode must return.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000 {
            let len = (next() % 64) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && p.len() >= 5 {
                p[0] = b'A';
                p[1] = b'B';
                let l = (p.len() - 4) as u16;
                p[2..4].copy_from_slice(&l.to_be_bytes());
                p[4] = [
                    SEND_HEADERS,
                    SEND_BODY_CHUNK,
                    END_RESPONSE,
                    GET_BODY_CHUNK,
                    CPONG,
                ][i % 5];
            }
            if let Ok(Some((pkt, used))) = decode(&p, 8192) {
                assert!(used <= p.len());
                if let Packet::SendHeaders {
                    reason, headers, ..
                } = pkt
                {
                    for r in reason.into_iter().chain(headers.into_iter().map(|h| h.1)) {
                        assert!(r.end <= p.len());
                    }
                }
            }
        }
    }
}
