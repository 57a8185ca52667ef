//! The description of a listening socket a binary upgrade sends with it (`handover`): reading any
//! text never panics, and what it reads is written back (`describe`) as a text that reads to the
//! same role, worker and address.
//!
//! Input: the text, as bytes (not UTF-8: read lossily, as ringlb reads a message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((role, worker, addr)) = handover_read(&text) {
        let again = handover_describe(role, worker, addr);
        assert_eq!(handover_read(&again), Ok((role, worker, addr)), "{text:?} -> {again:?}");
    }
});
