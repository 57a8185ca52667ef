//! A member's `Keep-Alive` response header (RFC 2068 §19.7.1.1, e.g. `Keep-Alive: timeout=5,
//! max=100`; some servers send it on every kept-alive answer, Apache httpd and Tomcat only when
//! the request said `Connection: keep-alive`, as ringlb's do: `http::rewrite::request_head`): the
//! `timeout` it gives, in seconds, for how long it keeps an idle connection open. ringlb pools
//! that member connection for less than that (`idle_limit`), so that it does not send a request
//! into a connection the member is closing at the same moment (a non-idempotent request lost that
//! way could not be retried).
//!
//! Owns: reading `timeout` out of one header value (`timeout_secs`) and the margin taken off it
//! (`idle_limit`). Must never: fail or change a response (the header is a hint, never forwarded:
//! a value it cannot read is ignored), read an item inside a quoted string as one of the header's
//! own, or lengthen a connection's life (callers take the smaller of this and `idle_ttl`).
//! Items are split at commas outside quoted strings; a quoted string runs from a `"` to the next
//! `"` not escaped by `\` (or to the value's end); a `timeout` value is 1 to 10 digits, bare or
//! quoted; several `timeout` items (or headers) count by the smallest.

use std::time::Duration;

/// The smallest well-formed `timeout` item in one `Keep-Alive` header value, in seconds
/// (saturating at `u32::MAX`); `None` when it has none.
pub fn timeout_secs(value: &[u8]) -> Option<u32> {
    items(value).filter_map(timeout_item).min()
}

/// How long ringlb may keep a connection idle when its member said it keeps one for `secs`:
/// half of it up to 2 s, one second less above (for the next request's way to the member and a
/// member whose count starts a little before it wrote its answer's end; the relay's own time is
/// taken off by the caller). Zero for zero: not pooled.
pub fn idle_limit(secs: u32) -> Duration {
    let t = Duration::from_secs(secs.into());
    t - (t / 2).min(Duration::from_secs(1))
}

/// One `timeout=N` item's N; `None` for any other item or a malformed value.
fn timeout_item(item: &[u8]) -> Option<u32> {
    let eq = item.iter().position(|&b| b == b'=')?;
    if !item[..eq].trim_ascii().eq_ignore_ascii_case(b"timeout") {
        return None;
    }
    let value = item[eq + 1..].trim_ascii();
    let digits = match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The value's comma-separated items (untrimmed, empty ones included), commas inside quoted
/// strings not splitting.
fn items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let end = item_end(v);
        rest = v.get(end + 1..);
        Some(&v[..end])
    })
}

/// Where the first item of `v` ends: its comma outside a quoted string, or `v.len()`.
fn item_end(v: &[u8]) -> usize {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in v.iter().enumerate() {
        match (quoted, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (_, b'"') => quoted = !quoted,
            (false, b',') => return i,
            _ => {}
        }
    }
    v.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn reads_the_timeout_of_the_usual_forms() {
        assert_eq!(timeout_secs(b"timeout=5, max=100"), Some(5));
        assert_eq!(timeout_secs(b"max=100,timeout=15"), Some(15));
        assert_eq!(timeout_secs(b"Timeout = \"20\""), Some(20));
        assert_eq!(timeout_secs(b"timeout=0"), Some(0));
        assert_eq!(
            timeout_secs(b"timeout=9, timeout=3"),
            Some(3),
            "the smallest counts"
        );
        assert_eq!(timeout_secs(b"timeout=99999999999"), None, "over 10 digits");
        assert_eq!(timeout_secs(b"timeout=9999999999"), Some(u32::MAX));
    }

    #[test]
    fn ignores_what_is_not_a_well_formed_timeout() {
        for v in [
            &b""[..],
            b"max=100",
            b"timeout",
            b"timeout=",
            b"timeout=-1",
            b"timeout=1.5",
            b"timeout=5s",
            b"timeout=\"5",
            b"timeouts=5",
            b"x-timeout=5",
            b"foo=\"a, timeout=1\"",
            b"foo=\"a\\\", timeout=1\"",
            b"foo=\"a, timeout=1",
        ] {
            assert_eq!(timeout_secs(v), None, "{}", String::from_utf8_lossy(v));
        }
        // A quoted string's end lets the items after it count.
        assert_eq!(timeout_secs(b"foo=\"a, timeout=1\", timeout=7"), Some(7));
        assert_eq!(timeout_secs(b"foo=\"a\\\\\", timeout=7"), Some(7));
    }

    #[test]
    fn the_limit_keeps_a_margin_below_the_member_s_timeout() {
        let ms = |secs| idle_limit(secs).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(5), ms(20)],
            [0, 500, 1000, 2000, 4000, 19000]
        );
        assert_eq!(
            idle_limit(u32::MAX),
            Duration::from_secs(u64::from(u32::MAX) - 1)
        );
    }

    /// Builds a value from generated items whose answer is known: timeouts (bare or quoted, with
    /// spaces), other parameters, quoted strings that hide a `timeout=` (with escapes and commas),
    /// malformed timeouts and empty items; the parse must find the smallest real one.
    #[test]
    fn generated_values_give_the_smallest_timeout_they_hold() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let (mut value, mut want): (Vec<u8>, Option<u32>) = (Vec::new(), None);
            for k in 0..rng.below(5) {
                if k > 0 {
                    value.extend_from_slice(rng.pick(&[&b","[..], b", ", b" ,", b",,"]));
                }
                let n = rng.next() as u32 % 100_000;
                let (item, open) = match rng.below(7) {
                    0 => (format!("timeout={n}"), false),
                    1 => (format!("{}TimeOut = \"{n}\" ", rng.pick(&[" ", ""])), false),
                    2 => (format!("max={n}"), false),
                    3 => (format!("x=\"a\\\", timeout={n}, \\\\\""), false),
                    4 => {
                        let tail = rng.pick(&["s", ".5", "\"", " 1"]);
                        (format!("timeout={n}{tail}"), tail == "\"")
                    }
                    5 => (format!("timeout=\"{n}"), true),
                    _ => (String::new(), false),
                };
                let real =
                    matches!(item.get(..8), Some("timeout=")) && item[8..].parse::<u32>().is_ok();
                if real || item.trim_start().starts_with("TimeOut") {
                    want = Some(want.map_or(n, |w| w.min(n)));
                }
                value.extend_from_slice(item.as_bytes());
                if open {
                    break; // an unterminated quoted string runs to the end: nothing counts after it
                }
            }
            assert_eq!(
                timeout_secs(&value),
                want,
                "case {case}: {}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}
