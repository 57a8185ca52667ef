//! Body framing: how a message body is delimited, and a tracker that says, for each buffer read,
//! how many bytes still belong to the body.
//!
//! Owns: the end-of-body decision for Content-Length, chunked and close-delimited bodies. Must
//! never: copy body bytes. Invariant: neither `advance` nor `advance_moved` counts bytes past the
//! body's end.

use super::chunked::{ChunkError, ChunkedDecoder};

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No body.
    #[default]
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Whether a response has no body whatever its headers say (RFC 9112 §6.3): the answer to a
/// HEAD, a 204 or a 304.
pub fn no_body(request_is_head: bool, status: u16) -> bool {
    request_is_head || status == 204 || status == 304
}

/// Tracks a body's progress across reads.
#[derive(Debug, Clone)]
pub struct BodyTracker {
    kind: BodyKind,
    remaining: u64,
    chunked: ChunkedDecoder,
    done: bool,
}

impl BodyTracker {
    pub fn new(kind: BodyKind) -> Self {
        BodyTracker {
            kind,
            remaining: if let BodyKind::Length(n) = kind { n } else { 0 },
            chunked: ChunkedDecoder::new(),
            done: kind == BodyKind::Empty,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Of `buf` (bytes read after what was already counted), how many leading bytes are body.
    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        self.advance_with(buf, |_| {})
    }

    /// As `advance`, and reports the ranges of `buf` that are body data (chunk framing removed).
    pub fn advance_with(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        if self.done {
            return Ok(0);
        }
        match self.kind {
            BodyKind::Empty => Ok(0),
            BodyKind::Length(_) => {
                let take = self.remaining.min(buf.len() as u64);
                self.remaining -= take;
                self.done = self.remaining == 0;
                on_data(0..take as usize);
                Ok(take as usize)
            }
            BodyKind::Chunked => {
                let used = self.chunked.scan(buf, on_data)?;
                self.done = self.chunked.is_done();
                Ok(used)
            }
            BodyKind::UntilClose => {
                on_data(0..buf.len());
                Ok(buf.len())
            }
        }
    }

    /// The bytes a `Content-Length` body still has to come (`None` for other framings, and once
    /// done): what may be moved without passing through a buffer (`splice`).
    pub fn length_left(&self) -> Option<u64> {
        match self.kind {
            BodyKind::Length(_) if !self.done => Some(self.remaining),
            _ => None,
        }
    }

    /// Counts `n` bytes of a `Content-Length` body that were moved without passing through a
    /// buffer; never past the end. Returns how many of them were body.
    pub fn advance_moved(&mut self, n: u64) -> u64 {
        if !matches!(self.kind, BodyKind::Length(_)) || self.done {
            return 0;
        }
        let take = self.remaining.min(n);
        self.remaining -= take;
        self.done = self.remaining == 0;
        take
    }

    /// Marks a close-delimited body as finished (the sender closed).
    pub fn finish_at_close(&mut self) -> bool {
        if self.kind == BodyKind::UntilClose {
            self.done = true;
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_stops_at_end() {
        let mut t = BodyTracker::new(BodyKind::Length(5));
        assert_eq!(t.advance(b"abc").unwrap(), 3);
        assert!(!t.is_done());
        assert_eq!(t.advance(b"deGET").unwrap(), 2);
        assert!(t.is_done());
    }

    #[test]
    fn moved_bytes_count_only_for_a_length_and_never_past_its_end() {
        let mut t = BodyTracker::new(BodyKind::Length(10));
        assert_eq!(t.advance(b"abc").unwrap(), 3);
        assert_eq!(t.length_left(), Some(7));
        assert_eq!(t.advance_moved(5), 5);
        assert_eq!(t.advance_moved(9), 2);
        assert!(t.is_done());
        assert_eq!(t.length_left(), None);
        assert_eq!(t.advance_moved(1), 0);
        for kind in [BodyKind::Chunked, BodyKind::UntilClose, BodyKind::Empty] {
            let mut t = BodyTracker::new(kind);
            assert_eq!(t.length_left(), None);
            assert_eq!(t.advance_moved(4), 0);
        }
    }

    #[test]
    fn until_close_finishes_at_close() {
        let mut t = BodyTracker::new(BodyKind::UntilClose);
        assert_eq!(t.advance(b"abc").unwrap(), 3);
        assert!(t.finish_at_close());
        let mut l = BodyTracker::new(BodyKind::Length(2));
        assert!(!l.finish_at_close());
    }
}
