//! A streaming, strict validator and decoder of the chunked transfer coding (RFC 9112 §7.1), and
//! the one encoder of the chunk framing ringlb writes itself (`ChunkEncoder`).
//!
//! Owns: finding where a chunked body ends and where its data bytes are, across reads of any size;
//! checking the size lines (`chunk-size [ chunk-ext ] CRLF`, extensions by their grammar:
//! `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`) and the trailer section
//! (each line a field line: `token ":" OWS value OWS`, no obs-fold, no control bytes, and no field
//! that frames, routes or is hop-by-hop — Content-Length, Transfer-Encoding, Host, Connection,
//! X-Forwarded-*…: some servers merge trailers into the header section). Chunk sizes are capped
//! at 2^31 − 1, so that a reader holding a size in 32 bits reads the same one.
//! The framing ringlb writes around a body that has no length of its own (an AJP body without
//! Content-Length, a member's close-delimited body, for an HTTP/1.1 client): each part of data as
//! one chunk, then the last chunk. Must never: buffer or copy body bytes (it reports ranges, and
//! the encoder writes only framing), accept anything the grammar does not allow (a body it accepts
//! is read the same way by every conforming reader, so it can be forwarded byte for byte), or
//! write a chunk of size 0 before the body ends (that is the last chunk: a reader would take what
//! follows for its next message). Invariant: `scan` never consumes a byte past the end of the body, so
//! what follows (a pipelined request) stays in the caller's buffer.

use std::ops::Range;

use super::header::{classify, HeaderKind};

/// A framing error inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// Longest chunk extension accepted on one size line.
const MAX_EXT: u32 = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: u32 = 16384;
/// Largest chunk accepted.
const MAX_CHUNK: u64 = (1 << 31) - 1;
/// Trailer names are kept (lowercase) up to this length to check them; longer ones cannot be a
/// special header.
const NAME_KEPT: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: at least one hex digit is needed.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// After the digits or an extension: BWS, then `;` or the line's CR.
    ExtNext,
    /// After `;`: BWS, then an extension name.
    ExtName,
    /// Inside an extension name.
    ExtNameMore,
    /// After an extension name and BWS: `=`, `;` (no CR: BWS only comes before `=` or `;`).
    ExtAfterName,
    /// After `=`: BWS, then a token or a quoted string.
    ExtValue,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtEscape,
    /// After a value: BWS then `;`, or CR straight after it.
    ExtAfterValue,
    /// CR seen at the end of a size line.
    SizeLf,
    /// Chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// CR seen at the end of a trailer line.
    TrailerLf,
    /// CR seen on the final empty line.
    FinalLf,
    Done,
}

/// Streaming chunked-body scanner.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    /// Bytes of extensions on the current size line, or of the trailer section.
    extra: u32,
    /// The current trailer line's name so far (its first `NAME_KEPT` bytes) and its length.
    name: [u8; NAME_KEPT],
    name_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes the chunk framing around parts of a body: the size line before each part, the CRLF
/// that ends the chunk in front of the next size line (so each part goes out as one write of the
/// framing and its data), and the last chunk with an empty trailer section.
#[derive(Debug, Default)]
pub struct ChunkEncoder {
    /// A chunk's data went out; its CRLF has not.
    open: bool,
}

impl ChunkEncoder {
    /// Writes into `out` what goes before a part of `len` data bytes: the open chunk's CRLF and
    /// this chunk's size line. Nothing for an empty part (a chunk of size 0 would end the body).
    pub fn start(&mut self, out: &mut Vec<u8>, len: usize) {
        if len == 0 {
            return;
        }
        if self.open {
            out.extend_from_slice(b"\r\n");
        }
        super::ascii::push_hex(out, len as u64);
        out.extend_from_slice(b"\r\n");
        self.open = true;
    }

    /// Writes into `out` the end of the body: the open chunk's CRLF, the last chunk and an empty
    /// trailer section.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.open {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        self.open = false;
    }
}

/// `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A byte allowed in a field value (VCHAR, obs-text, SP, HTAB).
pub fn is_field_byte(b: u8) -> bool {
    is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            extra: 0,
            name: [0; NAME_KEPT],
            name_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `buf`; returns how many bytes belong to the body (all of `buf` unless the body ends
    /// inside it). `on_data` receives the ranges of `buf` that are chunk data.
    pub fn scan(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data(left) => {
                    let take = left.min((buf.len() - i) as u64) as usize;
                    on_data(i..i + take);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::FinalLf => {
                    if buf[i] != b'\n' {
                        return Err(ChunkError("bad final line ending"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                _ => self.step(buf[i])?,
            }
            i += 1;
        }
        Ok(i)
    }

    /// One byte of framing (anything but chunk data and the body's last LF).
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State as S;
        self.state = match self.state {
            S::SizeStart | S::Size => return self.size_digit(b),
            S::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError("bad chunk size line ending"));
                }
                let size = std::mem::take(&mut self.size);
                self.digits = 0;
                self.extra = 0;
                if size == 0 {
                    S::TrailerStart
                } else {
                    S::Data(size)
                }
            }
            S::DataCr if b == b'\r' => S::DataLf,
            S::DataLf if b == b'\n' => S::SizeStart,
            S::DataCr | S::DataLf => return Err(ChunkError("chunk data not followed by CRLF")),
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf => {
                return self.trailer(b)
            }
            _ => return self.extension(b),
        };
        Ok(())
    }

    fn size_digit(&mut self, b: u8) -> Result<(), ChunkError> {
        match hex_value(b) {
            Some(v) => {
                self.digits += 1;
                if self.digits > 15 {
                    return Err(ChunkError("chunk size too large"));
                }
                self.size = self.size * 16 + u64::from(v);
                if self.size > MAX_CHUNK {
                    return Err(ChunkError("chunk size too large"));
                }
                self.state = State::Size;
                Ok(())
            }
            None if self.state == State::SizeStart => Err(ChunkError("chunk size missing")),
            None => {
                self.state = State::ExtNext;
                self.extension(b)
            }
        }
    }

    /// One byte of a size line after its digits.
    fn extension(&mut self, b: u8) -> Result<(), ChunkError> {
        use State as S;
        self.extra += 1;
        if self.extra > MAX_EXT {
            return Err(ChunkError("chunk extension too long"));
        }
        self.state = match (self.state, b) {
            (S::ExtNext | S::ExtAfterValue, b';') => S::ExtName,
            (S::ExtNext | S::ExtAfterValue, b) if is_ws(b) => S::ExtAfterValue,
            (S::ExtNext, b'\r') => S::SizeLf,
            (S::ExtName, b) if is_ws(b) => S::ExtName,
            (S::ExtName, b) if is_tchar(b) => S::ExtNameMore,
            (S::ExtNameMore, b) if is_tchar(b) => S::ExtNameMore,
            (S::ExtNameMore | S::ExtToken, b'\r') => S::SizeLf,
            (S::ExtNameMore | S::ExtToken, b';') => S::ExtName,
            (S::ExtNameMore | S::ExtAfterName, b'=') => S::ExtValue,
            (S::ExtNameMore | S::ExtAfterName, b) if is_ws(b) => S::ExtAfterName,
            (S::ExtAfterName, b';') => S::ExtName,
            (S::ExtValue, b) if is_ws(b) => S::ExtValue,
            (S::ExtValue, b'"') => S::ExtQuoted,
            (S::ExtValue | S::ExtToken, b) if is_tchar(b) => S::ExtToken,
            (S::ExtToken, b) if is_ws(b) => S::ExtAfterValue,
            (S::ExtQuoted, b'"') => S::ExtNext,
            (S::ExtQuoted, b'\\') => S::ExtEscape,
            (S::ExtQuoted, b) if b != b'"' && b != b'\\' && is_field_byte(b) => S::ExtQuoted,
            (S::ExtEscape, b) if is_field_byte(b) => S::ExtQuoted,
            _ => return Err(ChunkError("malformed chunk size line or extension")),
        };
        Ok(())
    }

    /// One byte of the trailer section (before its final empty line).
    fn trailer(&mut self, b: u8) -> Result<(), ChunkError> {
        use State as S;
        self.extra += 1;
        if self.extra > MAX_TRAILERS {
            return Err(ChunkError("trailer section too long"));
        }
        self.state = match (self.state, b) {
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart | S::TrailerName, b) if is_tchar(b) => {
                if self.state == S::TrailerStart {
                    self.name_len = 0;
                }
                if self.name_len < NAME_KEPT {
                    // `_` is kept as `-`: `Content_Length` is the same header to CGI-style readers.
                    self.name[self.name_len] = if b == b'_' {
                        b'-'
                    } else {
                        b.to_ascii_lowercase()
                    };
                }
                self.name_len += 1;
                S::TrailerName
            }
            (S::TrailerName, b':') => {
                let kept = &self.name[..self.name_len.min(NAME_KEPT)];
                if self.name_len <= NAME_KEPT && classify(kept) != HeaderKind::Other {
                    return Err(ChunkError(
                        "trailer field that frames, routes or is hop-by-hop",
                    ));
                }
                S::TrailerValue
            }
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, b) if is_field_byte(b) => S::TrailerValue,
            (S::TrailerLf, b'\n') => S::TrailerStart,
            _ => return Err(ChunkError("malformed trailer line")),
        };
        Ok(())
    }
}

/// The value of a hex digit.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            let piece = &input[pos..end];
            let used = d.scan(piece, |r| out.extend_from_slice(&piece[r]))?;
            pos += used;
            if used < piece.len() {
                break;
            }
        }
        Ok((out, pos))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (data, used) = decode_all(body, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            assert_eq!(&body[used..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"zz\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"1000000000000000\r\n",
            b"7fffffff0\r\n",
            b"0\r\n\n",
            b"1g\r\na\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 6\r\nhello\r\n0\r\n\r\n",
            b"0 anything\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\x7f\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"0\r\nPOST / HTTP/1.1\r\n\r\n",
            b"0\r\nGET /x HTTP/1.1\r\n\r\n",
            b"0\r\nX-T: 1\r\n folded\r\n\r\n",
            b"0\r\n\tX-T: 1\r\n\r\n",
            b"0\r\nX-T: a\x01b\r\n\r\n",
            b"0\r\nX-T : 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\nContent-Length: 5\r\n\r\n",
            b"0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"0\r\nHost: evil\r\n\r\n",
            b"0\r\nContent_Length: 5\r\n\r\n",
            b"0\r\nX-T: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            b"80000000\r\n",
            b"100000000\r\n",
        ];
        for b in bad {
            assert!(
                decode_all(b, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn accepts_what_the_grammar_allows() {
        let good: &[&[u8]] = &[
            b"5;a=b\r\nhello\r\n0\r\n\r\n",
            b"5 ; a = b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"q \\\" ;x\"\r\nhello\r\n0\r\n\r\n",
            b"5;a;b=c;d\r\nhello\r\n0\r\n\r\n",
            b"5;a=b ;c\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\nY:\r\nZ: a b\t\r\n\r\n",
            b"00005\r\nhello\r\n000\r\n\r\n",
            b"5\r\nhello\r\n0\r\nContent-Length-X: 1\r\nX-Host: a\r\n\r\n",
        ];
        for g in good {
            for step in 1..g.len() {
                let (data, used) = decode_all(g, step)
                    .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(g)));
                assert_eq!(data, b"hello");
                assert_eq!(used, g.len());
            }
        }
    }

    /// Property: for random inputs, every split gives the same verdict, data and end as one scan.
    #[test]
    fn split_points_never_change_the_reading() {
        let pieces: &[&[u8]] = &[
            b"5", b"0", b"a", b"\r\n", b"\r", b"\n", b";", b"=", b" ", b"\"", b"x", b"hello",
            b"X-T: 1", b":", b"\x01", b"\\",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 12) {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let whole = decode_all(&input, input.len().max(1));
            let step = 1 + (next() % 4) as usize;
            let split = decode_all(&input, step);
            assert_eq!(
                whole,
                split,
                "{:?} step {step}",
                String::from_utf8_lossy(&input)
            );
            if let Ok((_, used)) = whole {
                assert!(used <= input.len());
            }
        }
    }

    /// Property: parts of any sizes (empty ones too), framed by the encoder, read back with the
    /// decoder as the same data, ending exactly where the encoder's framing ends.
    #[test]
    fn what_the_encoder_frames_the_decoder_reads_back_whole() {
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next();
        for round in 0..3_000 {
            let mut enc = ChunkEncoder::default();
            let (mut wire, mut data) = (Vec::new(), Vec::new());
            for _ in 0..(next() % 8) {
                let len = match next() % 4 {
                    0 => 0,
                    1 => 1 + (next() % 16) as usize,
                    _ => (next() % 70_000) as usize,
                };
                let part: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                enc.start(&mut wire, part.len());
                wire.extend_from_slice(&part);
                data.extend_from_slice(&part);
            }
            enc.finish(&mut wire);
            let framed = wire.len();
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let step = 1 + (next() % 9000) as usize;
            let (got, used) = decode_all(&wire, step).unwrap();
            assert_eq!(got, data, "round {round}");
            assert_eq!(
                used, framed,
                "round {round}: the body ends where its framing does"
            );
        }
    }

    #[test]
    fn the_encoder_writes_no_empty_chunk_and_ends_with_one() {
        let mut enc = ChunkEncoder::default();
        let mut out = Vec::new();
        enc.start(&mut out, 0);
        assert_eq!(out, b"");
        enc.start(&mut out, 26);
        out.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
        enc.start(&mut out, 0);
        enc.start(&mut out, 1);
        out.push(b'!');
        enc.finish(&mut out);
        assert_eq!(
            out,
            b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n1\r\n!\r\n0\r\n\r\n"
        );
        let mut empty = Vec::new();
        ChunkEncoder::default().finish(&mut empty);
        assert_eq!(empty, b"0\r\n\r\n");
    }

    #[test]
    fn incomplete_body_is_not_done() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.scan(b"5\r\nhel", |_| {}).unwrap(), 6);
        assert!(!d.is_done());
    }
}
