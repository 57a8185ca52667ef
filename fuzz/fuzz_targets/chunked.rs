//! The chunked decoder, fed arbitrary bytes in pieces whose sizes come from the input: what it
//! consumes and the data it reports must not depend on how the bytes were split (compared with one
//! scan of the whole input and with a byte-at-a-time scan); data ranges lie inside each piece, in
//! order, without overlap; nothing is consumed once the body is done; a body it accepts, encoded
//! again as one plain chunk, decodes to the same data. `BodyTracker` must agree with the decoder.
//!
//! Whether a given odd body is accepted is not asserted: the decoder may become stricter.
//!
//! Input: n (1 byte, n % 8 piece sizes follow, 1 byte each; 0 = an empty read then 1 byte), then
//! the body bytes (and whatever follows the body).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{encode_chunked, esc, Input};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ended after `end` bytes.
    Done { end: usize, data: Vec<u8> },
    /// All input consumed, the body not finished.
    Incomplete { data: Vec<u8> },
    /// Malformed.
    Error,
}

/// Feeds `body` to a fresh decoder in pieces of the sizes `sizes` gives (cycled; 0: an empty
/// read, then one byte).
fn run(body: &[u8], sizes: &[usize]) -> Outcome {
    let mut d = Chunked::new();
    let mut data = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < body.len() {
        let size = sizes[i % sizes.len()];
        i += 1;
        if size == 0 {
            let used = d.scan(&[], |r| panic!("data {r:?} from an empty read"));
            if used.is_err() {
                return Outcome::Error;
            }
            assert_eq!(used, Ok(0), "consumed from an empty read");
        }
        let end = (pos + size.max(1)).min(body.len());
        let piece = &body[pos..end];
        let mut last = 0;
        let used = d.scan(piece, |r| {
            assert!(
                r.start >= last && r.start <= r.end && r.end <= piece.len(),
                "data range {r:?} after {last} in a piece of {}",
                piece.len()
            );
            last = r.end;
            data.extend_from_slice(&piece[r]);
        });
        let Ok(used) = used else {
            return Outcome::Error;
        };
        assert!(used <= piece.len(), "consumed {used} of {}", piece.len());
        assert!(last <= used, "data reported past what was consumed");
        pos += used;
        if d.is_done() {
            // Done is final: nothing more is body.
            let rest = &body[pos..];
            let more = d.scan(rest, |r| panic!("data {r:?} after the end"));
            assert_eq!(more, Ok(0), "consumed after the end");
            assert!(d.is_done());
            return Outcome::Done { end: pos, data };
        }
        assert_eq!(
            used,
            piece.len(),
            "stopped inside a piece without finishing or failing"
        );
    }
    Outcome::Incomplete { data }
}

/// The same through `BodyTracker`, in one read.
fn run_tracker(body: &[u8]) -> Outcome {
    let mut t = Tracker::new(BodyKind::Chunked);
    let mut data = Vec::new();
    match t.advance_with(body, |r| data.extend_from_slice(&body[r])) {
        Err(_) => Outcome::Error,
        Ok(end) if t.is_done() => Outcome::Done { end, data },
        Ok(end) => {
            assert_eq!(end, body.len());
            Outcome::Incomplete { data }
        }
    }
}

fn same(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        // Where exactly a malformed body is noticed may differ; that it is, may not.
        (Outcome::Error, Outcome::Error) => true,
        _ => a == b,
    }
}

fuzz_target!(|input: &[u8]| {
    let mut input = Input::new(input);
    let n = usize::from(input.u8() % 8);
    let sizes: Vec<usize> = input.bytes(n).iter().map(|&b| usize::from(b)).collect();
    let body = input.rest();

    let whole = run(body, &[body.len()]);
    let bytewise = run(body, &[1]);
    assert!(
        same(&whole, &bytewise),
        "one scan vs byte by byte: {whole:?} vs {bytewise:?}\nbody: {}",
        esc(body)
    );
    if !sizes.is_empty() {
        let split = run(body, &sizes);
        assert!(
            same(&whole, &split),
            "one scan vs pieces {sizes:?}: {whole:?} vs {split:?}\nbody: {}",
            esc(body)
        );
    }
    let tracked = run_tracker(body);
    assert!(
        same(&whole, &tracked),
        "decoder vs BodyTracker: {whole:?} vs {tracked:?}\nbody: {}",
        esc(body)
    );

    if let Outcome::Done { data, .. } = &whole {
        let plain = encode_chunked(data);
        let again = run(&plain, &[1]);
        assert_eq!(
            again,
            Outcome::Done {
                end: plain.len(),
                data: data.clone()
            },
            "re-encoded body: {}",
            esc(&plain)
        );
    }
});
