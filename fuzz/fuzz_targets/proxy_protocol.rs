//! The PROXY protocol header parser (`proxy_protocol::parse`): any bytes parse without a panic;
//! a header read whole is at most the input, reads the same from exactly its own bytes, and every
//! shorter prefix of it is "more needed"; "more needed" is never said past the length bounds
//! (`V1_MAX`, 16 + `V2_MAX_BODY`).
//!
//! Input: the first bytes of a connection.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb::proxy_protocol::{parse, V1_MAX, V2_MAX_BODY};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some(h)) => {
            assert!(h.len <= data.len() && h.len >= 15, "{h:?}");
            assert_eq!(parse(&data[..h.len]), Ok(Some(h)));
            for cut in [0, 1, h.len / 2, h.len - 1] {
                assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut}");
            }
        }
        Ok(None) => {
            let bound = if data.first() == Some(&b'P') { V1_MAX } else { 16 + V2_MAX_BODY };
            assert!(data.len() < bound, "waits for more after {} bytes", data.len());
        }
        Err(_) => {}
    }
});
