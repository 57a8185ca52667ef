//! A streaming, strict validator and decoder of the chunked transfer coding (RFC 9112 §7.1).
//!
//! Owns: finding where a chunked body ends and where its data bytes are, across reads of any size.
//! Must never: buffer or copy body bytes (it reports ranges), or accept a malformed size line or a
//! missing CRLF. Invariant: `scan` never consumes a byte past the end of the body, so what follows
//! (a pipelined request) stays in the caller's buffer.

use std::ops::Range;

/// A framing error inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: at least one hex digit is needed.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// After the digits: optional whitespace then `;` and extensions, until CR.
    SizeExt,
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
    /// Inside a trailer field line.
    TrailerLine,
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
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            digits: 0,
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
            let b = buf[i];
            match self.state {
                State::Done => return Ok(i),
                State::SizeStart | State::Size => match hex_value(b) {
                    Some(v) => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = self.size * 16 + u64::from(v);
                        self.state = State::Size;
                    }
                    None if self.state == State::SizeStart => {
                        return Err(ChunkError("chunk size missing"))
                    }
                    None => {
                        self.state = State::SizeExt;
                        continue;
                    }
                },
                State::SizeExt => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkError("bare LF in chunk size line")),
                    0 => return Err(ChunkError("NUL in chunk extension")),
                    _ => {}
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("bad chunk size line ending"));
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(self.size)
                    };
                    self.size = 0;
                    self.digits = 0;
                }
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
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::SizeStart;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::FinalLf,
                    b'\n' => return Err(ChunkError("bare LF in trailer")),
                    _ => self.state = State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' | 0 => return Err(ChunkError("bad trailer line")),
                    _ => {}
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError("bad trailer line ending"));
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError("bad final line ending"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

fn hex_value(b: u8) -> Option<u8> {
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
            b"0\r\n\n",
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
    fn incomplete_body_is_not_done() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.scan(b"5\r\nhel", |_| {}).unwrap(), 6);
        assert!(!d.is_done());
    }
}
