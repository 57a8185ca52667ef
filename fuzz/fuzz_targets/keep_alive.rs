//! A member's `Keep-Alive` header value (`http::keep_alive`): reading it never panics, finds what
//! a plain model finds (the smallest well-formed `timeout` outside quoted strings), a `timeout`
//! appended after it counts unless the value left a quoted string open, the pool's limit stays
//! within half the timeout and the timeout, and a response head carrying the value gives the head
//! the same timeout.
//!
//! Input: the header value's bytes.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{esc, is_field_byte, keep_alive_model, trim_ows};

fuzz_target!(|v: &[u8]| {
    let got = keep_alive_timeout(v);
    let (want, open) = keep_alive_model(v);
    assert_eq!(got, want, "value {}", esc(v));
    if let Some(t) = got {
        let (limit, whole) = (idle_limit(t), Duration::from_secs(t.into()));
        assert!(limit <= whole && limit >= whole / 2, "limit {limit:?} for {t} s");
    }
    let mut more = v.to_vec();
    more.extend_from_slice(b", timeout=7");
    let expected = if open { got } else { Some(got.map_or(7, |t| t.min(7))) };
    assert_eq!(keep_alive_timeout(&more), expected, "value {}", esc(&more));

    // The same value as a member's header: the head carries what the value holds (a value too
    // long for a head is left out).
    if v.len() < MAX_RESPONSE_HEAD / 2 && v.iter().all(|&b| is_field_byte(b)) {
        let mut raw = b"HTTP/1.1 200 OK\r\nKeep-Alive: ".to_vec();
        raw.extend_from_slice(v);
        raw.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let head = parse_response(&raw, MAX_RESPONSE_HEAD).expect("a valid head");
        assert_eq!(head.keep_alive_timeout, keep_alive_timeout(trim_ows(v)), "{}", esc(&raw));
    }
});
