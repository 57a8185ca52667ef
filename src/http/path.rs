//! The request path ringlb routes on and forwards: percent-encoded unreserved characters decoded
//! (RFC 3986 §6.2.2.2: `/%61dmin` is `/admin` to every member), RFC 3986 §5.2.4 dot-segment
//! removal with `%2e`/`%2E` read as `.` and a segment's `;parameters` ignored when deciding
//! whether it is a dot segment (Tomcat, Jetty and Spring strip them before resolving `..`:
//! `/a/..;/b` is `/b` to them), and runs of `/` merged (Apache's `MergeSlashes On`, nginx's
//! `merge_slashes on`). A path holding what members read as a separator or an end (`\`, `%2f`,
//! `%5c`, `%00`) or a malformed `%` escape is refused. `route_key` is what routing compares: the normal form without
//! `;parameters` (what those members resolve), while the forwarded path keeps them (Java apps
//! carry `;jsessionid=` in URLs).
//!
//! Owns: the one normalised form of a path. Must never: touch the query, decode anything but
//! unreserved characters, or accept a path that climbs above the root. Invariant: a member
//! resolves the forwarded path to the path ringlb routed on (with a route's `member_path` in
//! place of its prefix, `http::reverse`: both are in this normal form, so the result is too), and
//! a path already in normal form is forwarded byte for byte.

use super::chunked::hex_value;

/// Normalises the path of `target` (origin form: path, then an optional `?query`). Leaves `out`
/// empty when `target` is already normal (the common case: no copy), else writes the normalised
/// path followed by the untouched query into `out`. Errors when a `..` climbs above the root.
pub fn normalize(target: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let (path, query) = target.split_at(path_end);
    if path.first() != Some(&b'/') {
        return Ok(());
    }
    if !check(path)? {
        return Ok(());
    }
    // Unreserved characters decoded first (allocates only for paths with a `%`).
    let decoded;
    let original = path;
    let path = if path.contains(&b'%') {
        decoded = decode_unreserved(path);
        &decoded[..]
    } else {
        path
    };
    out.push(b'/');
    let mut depth = 0usize;
    let segments: usize = path[1..].split(|&b| b == b'/').count();
    for (i, seg) in path[1..].split(|&b| b == b'/').enumerate() {
        let last = i + 1 == segments;
        match dots(seg) {
            Some(2) => {
                if depth == 0 {
                    out.clear();
                    return Err("request path climbs above the root");
                }
                depth -= 1;
                // Drop the last segment and its slash, keeping the leading '/'.
                out.pop();
                while out.len() > 1 && out.last() != Some(&b'/') {
                    out.pop();
                }
            }
            Some(_) => {}
            None if seg.is_empty() => {}
            None => {
                out.extend_from_slice(seg);
                out.push(b'/');
                depth += 1;
                if last {
                    out.pop();
                }
            }
        }
    }
    if out.as_slice() == original {
        out.clear();
        return Ok(());
    }
    out.extend_from_slice(query);
    Ok(())
}

/// Checks `path` in one pass for what cannot be routed safely, because members disagree on it:
/// `\` (a separator to some), `%2f`/`%5c` (decoded to separators by some), `%00` (an end to
/// some), a `%` not followed by two hex digits (left as it is by some, refused by others; and
/// decoding next to it could make a new escape). Returns whether `path` can differ from its normal
/// form: it has `//`, a `%` escape, or a segment that may be a dot segment (starts with `.`).
fn check(path: &[u8]) -> Result<bool, &'static str> {
    let mut may_change = false;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'\\' => return Err("backslash in the request path"),
            b'%' => {
                let digit = |j: usize| path.get(j).and_then(|&d| hex_value(d));
                let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2)) else {
                    return Err("malformed percent escape in the request path");
                };
                if matches!(high * 16 + low, b'/' | b'\\' | 0) {
                    return Err("encoded slash, backslash or NUL in the request path");
                }
                may_change = true;
            }
            b'/' => may_change |= matches!(path.get(i + 1), Some(b'/' | b'.')),
            _ => {}
        }
    }
    Ok(may_change)
}

/// `path` with `%XX` escapes of unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`)
/// decoded; other escapes are kept as they are.
fn decode_unreserved(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex_value(path[i + 1]), hex_value(path[i + 2])) {
                let b = h * 16 + l;
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// The key routing compares for a normalised path and query (`normalize`'s output, or a target
/// already normal): the path with every segment's `;parameters` removed and the segments left
/// empty by that merged, without the query. Written into `out`.
pub fn route_key(target: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let path = &target[..path_end];
    let segments = path.split(|&b| b == b'/').count();
    for (i, seg) in path.split(|&b| b == b'/').enumerate() {
        let seg = &seg[..seg.iter().position(|&b| b == b';').unwrap_or(seg.len())];
        let last = i + 1 == segments;
        if seg.is_empty() && !(last && i > 0) {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() {
        out.push(b'/');
    }
}

/// `Some(1)` for a `.` segment, `Some(2)` for `..` (either dot may be `%2e`, and `;parameters`
/// may follow), else `None`.
fn dots(seg: &[u8]) -> Option<u8> {
    let mut n = 0u8;
    let end = seg.iter().position(|&b| b == b';').unwrap_or(seg.len());
    let mut rest = &seg[..end];
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && (rest[2] | 0x20) == b'e'
        {
            rest = &rest[3..];
        } else {
            return None;
        }
        n += 1;
        if n > 2 {
            return None;
        }
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> Result<String, &'static str> {
        let mut out = Vec::new();
        normalize(t.as_bytes(), &mut out)?;
        Ok(if out.is_empty() {
            t.to_string()
        } else {
            String::from_utf8(out).unwrap()
        })
    }

    #[test]
    fn dot_segments_and_slashes() {
        let cases = [
            ("/", "/"),
            ("/a/b/c", "/a/b/c"),
            ("/a/b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/public/./../admin", "/admin"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/public/x/../y?q=/../z", "/public/y?q=/../z"),
            ("/a/...b/.x/%2ex", "/a/...b/.x/.x"),
            ("/a/.../b", "/a/.../b"),
            ("/a?../..", "/a?../.."),
            ("/public/..;/admin/", "/admin/"),
            ("/public/..;jsessionid=1/admin", "/admin"),
            ("/public/.;x/a", "/public/a"),
            ("/a;b/c", "/a;b/c"),
            ("/a/%20/b", "/a/%20/b"),
            ("/a?x=%2f\\", "/a?x=%2f\\"),
            ("*", "*"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        let cases = [
            ("/%61dmin", "/admin"),
            ("/%41%2D%5f%7E/x", "/A-_~/x"),
            ("/a%20b", "/a%20b"),
            ("/a/%2E%2e/b", "/b"),
            ("/%61?%61", "/a?%61"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn route_keys_drop_path_parameters() {
        let key = |t: &str| {
            let mut out = Vec::new();
            route_key(t.as_bytes(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(key("/;x/admin"), "/admin");
        assert_eq!(key("/admin;x/secret"), "/admin/secret");
        assert_eq!(key("/app/login;jsessionid=1?a=;b"), "/app/login");
        assert_eq!(key("/a/b/"), "/a/b/");
        assert_eq!(key("/"), "/");
        assert_eq!(key("/;x"), "/");
    }

    #[test]
    fn climbing_above_root_is_an_error() {
        for t in [
            "/..",
            "/../admin",
            "/public/../../admin",
            "/%2e%2e/x",
            "//../x",
            "/..;/x",
            "/public/..%2fadmin",
            "/public/..%2Fadmin",
            "/public/..\\admin",
            "/public/%5c../admin",
            "/a%00.jsp",
            "/a%2",
            "/a%zz",
            "/x%%66",
            "/x%6%66",
        ] {
            assert!(norm(t).is_err(), "{t}");
        }
    }

    #[test]
    fn normal_paths_are_not_copied() {
        let mut out = vec![1, 2, 3];
        normalize(b"/app/login?x=../y", &mut out).unwrap();
        assert!(out.is_empty());
    }

    /// Property: normalising is idempotent and its result has no dot segment and no `//`.
    #[test]
    fn normal_form_is_a_fixed_point() {
        let alphabet: &[&[u8]] = &[
            b"/", b".", b"..", b"%2e", b"%2E", b"a", b"b", b"//", b"?", b"%", b"6", b"f", b"%66",
            b"%6", b";x", b"%2f",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut t = b"/".to_vec();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t.extend_from_slice(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let mut once = Vec::new();
            if normalize(&t, &mut once).is_err() {
                continue;
            }
            let once = if once.is_empty() { t.clone() } else { once };
            let mut twice = Vec::new();
            normalize(&once, &mut twice).unwrap();
            assert!(twice.is_empty(), "{:?} -> {:?} not normal", t, once);
            let path = once.split(|&b| b == b'?').next().unwrap();
            assert!(!path.windows(2).any(|w| w == b"//"), "{:?}", once);
            for seg in path.split(|&b| b == b'/') {
                assert_eq!(dots(seg), None, "{:?}", once);
            }
        }
    }
}
