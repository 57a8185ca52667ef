//! Sticky sessions (Apache `stickysession`): the member route a request's session id names.
//!
//! Owns: finding the session id, in the URL path parameter (`;jsessionid=ID.route`, looked up
//! first, as Apache does) and then in the `Cookie` header (`JSESSIONID=ID.route`), and the route
//! after the first separator. Must never: allocate, or read anything but the request's target (as
//! routed: normalised when it was not normal) and its `Cookie` headers. Invariant:
//! the route returned is a slice of the request's own bytes; a session id without a separator
//! names no route.

use crate::config::Sticky;
use crate::http::parse::RequestHead;

/// The route the request's session names, if any. `target` is the request's path and query.
pub fn route<'a>(
    buf: &'a [u8],
    head: &RequestHead,
    target: &'a [u8],
    s: &Sticky,
) -> Option<&'a [u8]> {
    let id = path_param(target, s.path_param.as_bytes()).or_else(|| {
        head.headers
            .iter()
            .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .find_map(|h| cookie(&buf[h.value.clone()], s.cookie.as_bytes()))
    })?;
    let at = id.iter().position(|&b| b == s.separator)?;
    let route = &id[at + 1..];
    (!route.is_empty()).then_some(route)
}

/// The value of the last `;name=value` parameter in the path (before any `?`); the value ends at
/// the next `;`, `/` or the end of the path.
fn path_param<'a>(target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let path = &target[..path_end];
    let mut found = None;
    let mut i = 0;
    while let Some(p) = path[i..].iter().position(|&b| b == b';') {
        let start = i + p + 1;
        let rest = &path[start..];
        let end = rest
            .iter()
            .position(|&b| b == b';' || b == b'/')
            .unwrap_or(rest.len());
        let param = &rest[..end];
        if let Some(v) = param.strip_prefix(name).and_then(|v| v.strip_prefix(b"=")) {
            found = Some(v);
        }
        i = start;
    }
    found
}

/// The value of the first cookie `name` in one `Cookie` header value (`a=1; name=value; b=2`).
/// Cookies are separated by `;` or `,` and may have spaces around the `=`, as Apache reads them.
fn cookie<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    value.split(|&b| b == b';' || b == b',').find_map(|pair| {
        let pair = pair.trim_ascii();
        let v = pair
            .strip_prefix(name)?
            .trim_ascii_start()
            .strip_prefix(b"=")?
            .trim_ascii_start();
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        Some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::header::{classify, HeaderPos};
    use crate::http::parse::parse_request;

    #[test]
    fn path_parameter_last_one_wins_and_ends_at_delimiters() {
        let p = |t: &'static str| path_param(t.as_bytes(), b"jsessionid");
        assert_eq!(p("/app;jsessionid=A.n1"), Some(&b"A.n1"[..]));
        assert_eq!(p("/app;jsessionid=A.n1?x=1"), Some(&b"A.n1"[..]));
        assert_eq!(p("/a;jsessionid=A.n1/b;x=2"), Some(&b"A.n1"[..]));
        assert_eq!(p("/a;jsessionid=A.n1;jsessionid=B.n2"), Some(&b"B.n2"[..]));
        assert_eq!(p("/a?;jsessionid=A.n1"), None, "the query is not the path");
        assert_eq!(p("/a;jsessionidx=A.n1"), None);
        assert_eq!(p("/a;xjsessionid=A.n1"), None);
        assert_eq!(p("/a"), None);
    }

    #[test]
    fn cookies_by_exact_name() {
        let c = |v: &'static str| cookie(v.as_bytes(), b"JSESSIONID");
        assert_eq!(c("JSESSIONID=A.n1"), Some(&b"A.n1"[..]));
        assert_eq!(c("a=1;  JSESSIONID=A.n1 ; b=2"), Some(&b"A.n1"[..]));
        assert_eq!(c("XJSESSIONID=A.n1"), None);
        assert_eq!(c("JSESSIONID=\"A.n1\""), Some(&b"A.n1"[..]));
        assert_eq!(
            c("jsessionid=A.n1"),
            None,
            "cookie names are case-sensitive"
        );
    }

    #[test]
    fn cookie_separators_and_spaces_as_apache_reads_them() {
        let c = |v: &'static str| cookie(v.as_bytes(), b"JSESSIONID");
        assert_eq!(c("a=1, JSESSIONID=A.n1, b=2"), Some(&b"A.n1"[..]));
        assert_eq!(c("JSESSIONID = A.n1"), Some(&b"A.n1"[..]));
        assert_eq!(c("JSESSIONID=A.n1; JSESSIONID=B.n2"), Some(&b"A.n1"[..]));
        assert_eq!(c("JSESSIONID"), None);
    }

    // ---------------------------------------------------------------- randomized (property) tests

    /// Cases per property; the seed is fixed so that a failure repeats (its case number is in the
    /// message).
    const CASES: u64 = 3000;
    const SEED: u64 = 0x5EED_5717_C4E5;

    /// xorshift64*.
    struct Rng(u64);

    impl Rng {
        fn new(case: u64) -> Rng {
            Rng((SEED ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
        /// `lo..=hi` bytes from `alphabet`.
        fn string(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> Vec<u8> {
            let n = lo + self.below(hi - lo + 1);
            (0..n).map(|_| self.pick(alphabet)).collect()
        }
    }

    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    /// Tomcat's jvmRoute as the config allows it.
    const ROUTE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    /// A cookie value's bytes (RFC 6265 cookie-octet).
    const COOKIE_OCTET: &[u8] =
        b"!#$%&'()*+-./0123456789:<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    /// Session id bytes: valid in a cookie value and in a path parameter.
    const SESSION_ID: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!$&'()*+.:=@~%";
    /// Path bytes other than the delimiters `;`, `/` and `?`.
    const PCHAR: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,=:@";
    /// Bytes that matter to the lookup, for the arbitrary-bytes property.
    const SPICY: &[u8] = b";=,./?\" \t\r\nJjSsEeIiDdNnOo\x00\xff";

    /// A sticky configuration drawn from a few shapes (one name or two, several separators).
    fn config(rng: &mut Rng) -> Sticky {
        let (cookie, path_param) = rng.pick(&[
            ("JSESSIONID", "jsessionid"),
            ("JSESSIONID", "JSESSIONID"),
            ("ROUTEID", "routeid"),
            ("sid", "s"),
        ]);
        Sticky {
            cookie: cookie.into(),
            path_param: path_param.into(),
            // `-` and `_` may be in a route too: the route follows the first separator.
            separator: rng.pick(b".:~!-_"),
            nofailover: false,
        }
    }

    /// A session id (no separator in it) and a route.
    fn session(rng: &mut Rng, s: &Sticky) -> (Vec<u8>, Vec<u8>) {
        let id: Vec<u8> = rng
            .string(SESSION_ID, 1, 40)
            .into_iter()
            .filter(|&b| b != s.separator)
            .collect();
        let id = if id.is_empty() { b"A".to_vec() } else { id };
        (id, rng.string(ROUTE, 1, 12))
    }

    /// A name (cookie or parameter) that is not `not`.
    fn other_name(rng: &mut Rng, not: &str) -> Vec<u8> {
        loop {
            let n = match rng.below(4) {
                // Near misses: a prefix, an extension, another case.
                0 => not.as_bytes()[..1 + rng.below(not.len())].to_vec(),
                1 => [not.as_bytes(), &rng.string(ALNUM, 1, 3)].concat(),
                2 => not.to_ascii_lowercase().into_bytes(),
                _ => rng.string(ALNUM, 1, 12),
            };
            if n != not.as_bytes() {
                return n;
            }
        }
    }

    /// A random `Cookie` value with `wanted` (a whole `name=value` pair) at a random place, the
    /// pairs joined by `;` or `,` with random spaces.
    fn cookie_value(rng: &mut Rng, not: &str, wanted: Option<&[u8]>) -> Vec<u8> {
        let mut pairs: Vec<Vec<u8>> = (0..rng.below(5))
            .map(|_| {
                let mut p = other_name(rng, not);
                p.push(b'=');
                p.extend(rng.string(COOKIE_OCTET, 0, 20));
                p
            })
            .collect();
        if let Some(w) = wanted {
            let at = rng.below(pairs.len() + 1);
            pairs.insert(at, w.to_vec());
        }
        let mut v = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            if i > 0 {
                v.push(rng.pick(b";;;,"));
                v.extend(rng.string(b" ", 0, 2));
            }
            v.extend(p);
        }
        v
    }

    /// Mostly none, sometimes one.
    fn spaces(rng: &mut Rng) -> Vec<u8> {
        let n = usize::from(rng.chance(10));
        vec![b' '; n]
    }

    /// `name=value`, maybe with spaces around the `=` and the value quoted.
    fn pair(rng: &mut Rng, name: &str, value: &[u8]) -> Vec<u8> {
        let mut p = name.as_bytes().to_vec();
        p.extend(spaces(rng));
        p.push(b'=');
        p.extend(spaces(rng));
        if rng.chance(20) {
            p.push(b'"');
            p.extend(value);
            p.push(b'"');
        } else {
            p.extend(value);
        }
        p
    }

    /// A path of random segments, each with random `;k=v` parameters whose names are not `not`;
    /// `wanted` (a whole `;name=value` parameter) goes into a random segment, after its other
    /// parameters. A query (which may hold anything, such as a decoy session id with `sep`)
    /// follows sometimes.
    fn path(rng: &mut Rng, not: &str, sep: u8, wanted: Option<&[u8]>) -> Vec<u8> {
        let segments = 1 + rng.below(5);
        let with = rng.below(segments);
        let mut p = Vec::new();
        for i in 0..segments {
            p.push(b'/');
            p.extend(rng.string(PCHAR, 0, 10));
            for _ in 0..rng.below(3) {
                // A parameter, or (sometimes) an empty one.
                let mut param = vec![b';'];
                if rng.chance(80) {
                    param.extend(other_name(rng, not));
                    param.push(b'=');
                    param.extend(rng.string(PCHAR, 0, 10));
                }
                p.extend(param);
            }
            if i == with {
                if let Some(w) = wanted {
                    p.extend(w);
                }
            }
        }
        if rng.chance(40) {
            p.push(b'?');
            p.extend(rng.string(PCHAR, 0, 10));
            if rng.chance(50) {
                p.extend(format!(";{not}=Q{}decoy", sep as char).as_bytes());
            }
        }
        p
    }

    /// Parses `GET target` with these headers (and a Host) and returns the route.
    fn route_of(target: &[u8], headers: &[(Vec<u8>, Vec<u8>)], s: &Sticky) -> Option<Vec<u8>> {
        let mut raw = b"GET ".to_vec();
        raw.extend(target);
        raw.extend(b" HTTP/1.1\r\nHost: t\r\n");
        for (n, v) in headers {
            raw.extend(n);
            raw.extend(b": ");
            raw.extend(v);
            raw.extend(b"\r\n");
        }
        raw.extend(b"\r\n");
        let mut head = RequestHead::default();
        parse_request(&raw, 1 << 20, 256, &mut head)
            .unwrap_or_else(|e| panic!("{e:?}: {}", raw.escape_ascii()));
        let r = route(&raw, &head, &raw[head.path.clone()], s);
        if let Some(r) = r {
            assert!(within(r, &raw), "not a slice of the request");
        }
        r.map(<[u8]>::to_vec)
    }

    /// Random headers other than `Cookie`, some of them decoys that hold the cookie.
    fn other_headers(rng: &mut Rng, s: &Sticky) -> Vec<(Vec<u8>, Vec<u8>)> {
        let decoy = format!("{}=D{}decoy", s.cookie, s.separator as char).into_bytes();
        (0..rng.below(4))
            .map(|_| {
                let name = rng.pick(&[&b"X-Cookie"[..], b"Cookie2", b"Set-Cookie", b"Accept"]);
                let value = if rng.chance(50) {
                    decoy.clone()
                } else {
                    rng.string(COOKIE_OCTET, 0, 20)
                };
                (name.to_vec(), value)
            })
            .collect()
    }

    /// Headers as text, for failure messages.
    fn show(headers: &[(Vec<u8>, Vec<u8>)]) -> String {
        headers
            .iter()
            .map(|(n, v)| format!("[{}: {}]", n.escape_ascii(), v.escape_ascii()))
            .collect()
    }

    /// Whether `part` lies inside `whole`'s memory.
    fn within(part: &[u8], whole: &[u8]) -> bool {
        let (p, w) = (part.as_ptr_range(), whole.as_ptr_range());
        w.start <= p.start && p.end <= w.end
    }

    fn id_route(id: &[u8], sep: u8, route: &[u8]) -> Vec<u8> {
        [id, &[sep], route].concat()
    }

    #[test]
    fn property_the_cookie_names_its_route() {
        for case in 0..CASES {
            let rng = &mut Rng::new(case);
            let s = config(rng);
            let (id, want) = session(rng, &s);
            let value = id_route(&id, s.separator, &want);
            let wanted = pair(rng, &s.cookie, &value);
            let mut headers = other_headers(rng, &s);
            // The session cookie in one of one to three Cookie headers (the first that has it).
            let cookies = 1 + rng.below(3);
            let with = rng.below(cookies);
            for i in 0..cookies {
                let v = cookie_value(rng, &s.cookie, (i == with).then_some(&wanted[..]));
                let at = rng.below(headers.len() + 1);
                let name = rng.pick(&[&b"Cookie"[..], b"cookie", b"COOKIE"]);
                headers.insert(at, (name.to_vec(), v));
            }
            let target = path(rng, &s.path_param, s.separator, None);
            let got = route_of(&target, &headers, &s);
            assert_eq!(
                got.as_deref(),
                Some(&want[..]),
                "case {case}: {} {}",
                target.escape_ascii(),
                show(&headers)
            );
        }
    }

    #[test]
    fn property_the_path_parameter_names_its_route_before_any_cookie() {
        for case in 0..CASES {
            let rng = &mut Rng::new(case);
            let s = config(rng);
            let (id, want) = session(rng, &s);
            let mut param = vec![b';'];
            param.extend(s.path_param.as_bytes());
            param.push(b'=');
            param.extend(id_route(&id, s.separator, &want));
            // An earlier parameter of the same name loses to the last one.
            if rng.chance(20) {
                let mut earlier =
                    format!(";{}=E{}early", s.path_param, s.separator as char).into_bytes();
                earlier.extend(param);
                param = earlier;
            }
            let target = path(rng, &s.path_param, s.separator, Some(&param));
            let mut headers = other_headers(rng, &s);
            if rng.chance(70) {
                let (other_id, other) = session(rng, &s);
                let c = pair(rng, &s.cookie, &id_route(&other_id, s.separator, &other));
                headers.push((b"Cookie".to_vec(), cookie_value(rng, &s.cookie, Some(&c))));
            }
            let got = route_of(&target, &headers, &s);
            assert_eq!(
                got.as_deref(),
                Some(&want[..]),
                "case {case}: {} {}",
                target.escape_ascii(),
                show(&headers)
            );
        }
    }

    #[test]
    fn property_a_session_id_without_separator_or_route_names_none() {
        for case in 0..CASES {
            let rng = &mut Rng::new(case);
            let s = config(rng);
            let (id, _) = session(rng, &s);
            // No separator, or a separator with nothing after it.
            let value = if rng.chance(50) {
                id
            } else {
                [&id[..], &[s.separator]].concat()
            };
            let mut headers = other_headers(rng, &s);
            let target = if rng.chance(50) {
                let c = pair(rng, &s.cookie, &value);
                headers.push((b"Cookie".to_vec(), cookie_value(rng, &s.cookie, Some(&c))));
                path(rng, &s.path_param, s.separator, None)
            } else {
                // In the path, it hides a routed cookie (Apache reads no further either).
                let (other_id, other) = session(rng, &s);
                let c = pair(rng, &s.cookie, &id_route(&other_id, s.separator, &other));
                headers.push((b"Cookie".to_vec(), cookie_value(rng, &s.cookie, Some(&c))));
                let mut param = format!(";{}=", s.path_param).into_bytes();
                param.extend(&value);
                path(rng, &s.path_param, s.separator, Some(&param))
            };
            let got = route_of(&target, &headers, &s);
            assert_eq!(
                got,
                None,
                "case {case}: {} {}",
                target.escape_ascii(),
                show(&headers)
            );
        }
    }

    #[test]
    fn property_no_session_names_none() {
        for case in 0..CASES {
            let rng = &mut Rng::new(case);
            let s = config(rng);
            let mut headers = other_headers(rng, &s);
            if rng.chance(50) {
                headers.push((b"Cookie".to_vec(), cookie_value(rng, &s.cookie, None)));
            }
            let target = path(rng, &s.path_param, s.separator, None);
            assert_eq!(route_of(&target, &headers, &s), None, "case {case}");
        }
    }

    /// What `route` should return, written the plain (allocating) way.
    fn model(buf: &[u8], headers: &[HeaderPos], target: &[u8], s: &Sticky) -> Option<Vec<u8>> {
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        let mut id: Option<Vec<u8>> = None;
        for piece in path.split(|&b| b == b';').skip(1) {
            let param = piece.split(|&b| b == b'/').next().unwrap_or_default();
            let prefix = [s.path_param.as_bytes(), b"="].concat();
            if param.starts_with(&prefix) {
                id = Some(param[prefix.len()..].to_vec());
            }
        }
        if id.is_none() {
            let cookies = headers
                .iter()
                .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"cookie"));
            'headers: for h in cookies {
                for pair in buf[h.value.clone()].split(|&b| b == b';' || b == b',') {
                    let Some(rest) = pair.trim_ascii().strip_prefix(s.cookie.as_bytes()) else {
                        continue;
                    };
                    let Some(v) = rest.trim_ascii_start().strip_prefix(b"=") else {
                        continue;
                    };
                    id = Some(match v.trim_ascii_start() {
                        [b'"', inner @ .., b'"'] => inner.to_vec(),
                        v => v.to_vec(),
                    });
                    break 'headers;
                }
            }
        }
        let id = id?;
        let at = id.iter().position(|&b| b == s.separator)?;
        Some(id[at + 1..].to_vec()).filter(|r| !r.is_empty())
    }

    #[test]
    fn property_arbitrary_bytes_never_panic_and_give_a_slice_of_the_request() {
        for case in 0..CASES * 4 {
            let rng = &mut Rng::new(case);
            let s = config(rng);
            let sep = [s.separator];
            let pieces: [&[u8]; 6] = [
                SPICY,
                s.cookie.as_bytes(),
                s.path_param.as_bytes(),
                &sep,
                b"Cookie",
                b"cOOKIE",
            ];
            // Random bytes, mostly from words that matter to the lookup.
            let gen = |rng: &mut Rng, max: usize| -> Vec<u8> {
                let mut v = Vec::new();
                while v.len() < max && !rng.chance(8) {
                    match rng.below(4) {
                        0 => v.push(rng.next() as u8),
                        1 => v.push(rng.pick(SPICY)),
                        _ => v.extend(rng.pick(&pieces)),
                    }
                }
                v
            };
            let buf = gen(rng, 200);
            let target = gen(rng, 100);
            let headers: Vec<HeaderPos> = (0..rng.below(5))
                .map(|_| {
                    let range = |rng: &mut Rng| {
                        let a = rng.below(buf.len() + 1);
                        a..a + rng.below(buf.len() - a + 1)
                    };
                    let (name, value) = (range(rng), range(rng));
                    HeaderPos {
                        kind: classify(&buf[name.clone()]),
                        name,
                        value,
                    }
                })
                .collect();
            let head = RequestHead {
                headers: headers.clone(),
                ..Default::default()
            };
            let got = route(&buf, &head, &target, &s);
            if let Some(r) = got {
                assert!(!r.is_empty(), "case {case}: an empty route");
                assert!(
                    within(r, &buf) || within(r, &target),
                    "case {case}: not a slice of the request"
                );
            }
            assert_eq!(
                got.map(<[u8]>::to_vec),
                model(&buf, &headers, &target, &s),
                "case {case}: buf {} target {} headers {headers:?}",
                buf.escape_ascii(),
                target.escape_ascii()
            );
        }
    }
}
