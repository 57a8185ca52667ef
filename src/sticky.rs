//! Sticky sessions (Apache `stickysession`): the member route a request's session id names.
//!
//! Owns: finding the session id, in the URL path parameter (`;jsessionid=ID.route`, looked up
//! first, as Apache does) and then in the `Cookie` header (`JSESSIONID=ID.route`), and the route
//! after the first separator. Must never: allocate, or read outside the request head. Invariant:
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
}
