//! Protocol switches (RFC 9110 §7.8): whether a request asks for one that its route tunnels, and
//! whether a member's `101 Switching Protocols` answers it acceptably.
//!
//! Owns: both decisions, and whether a request asks for a switch at all (`asked`), made on the
//! parsed heads only (no I/O). Must never: call a request an
//! upgrade unless it is HTTP/1.1 with exactly one `Upgrade` header, whose every protocol the route
//! allows (never one that carries HTTP: `config::upgrade::carries_http`), and a `Connection` header
//! listing `upgrade`; or accept a 101 naming anything but protocols the request offered and the
//! route allows. (A 101 to a request that was not forwarded as an upgrade is refused by
//! `http::exchange` before it gets here.) Invariant: a request that is not an upgrade by this rule
//! goes to the member without `Upgrade` (`http::policy` leaves it to ringlb, which writes none),
//! exactly as before upgrades existed.

use std::ops::Range;

use super::header::{connection_lists, tokens, HeaderKind, HeaderPos};
use super::parse::RequestHead;
use crate::config::Upgrades;

/// What the request in `buf` offers to switch to (where its `Upgrade` value is in `buf`), when it
/// asks for protocols the route allows: then it is forwarded with that `Upgrade` and `Connection:
/// upgrade`, and a 101 opens a tunnel. `None`: a plain request.
pub fn offer(buf: &[u8], head: &RequestHead, rule: &Upgrades) -> Option<Range<usize>> {
    // RFC 9110 §7.8: an Upgrade in an HTTP/1.0 request is ignored.
    if head.minor_version != 1 || !connection_upgrade(buf, &head.headers) {
        return None;
    }
    let value = only_upgrade(buf, &head.headers)?;
    protocols_allowed(&buf[value.clone()], rule, None).then_some(value)
}

/// Whether the request asks for a protocol switch at all (HTTP/1.1, an `Upgrade` header and
/// `Connection: upgrade`), whatever its route allows: ringlb's own answer to one ends the
/// connection, as what the client sent after it may be early tunnel bytes.
pub fn asked(buf: &[u8], head: &RequestHead) -> bool {
    head.minor_version == 1
        && head.headers.iter().any(|h| h.kind == HeaderKind::Upgrade)
        && connection_upgrade(buf, &head.headers)
}

/// Whether a `Connection` header lists `upgrade`.
fn connection_upgrade(buf: &[u8], headers: &[HeaderPos]) -> bool {
    headers
        .iter()
        .filter(|h| h.kind == HeaderKind::Connection)
        .any(|h| connection_lists(&buf[h.value.clone()], b"upgrade"))
}

/// Where in `buf` the protocol a 101 switches to is named, when the member's answer is
/// acceptable: exactly one `Upgrade` header, naming only protocols the route allows that the
/// client offered (`offered`: the request's `Upgrade` value). `None`: the 101 is a member's error.
pub fn switched_to(
    buf: &[u8],
    headers: &[HeaderPos],
    rule: &Upgrades,
    offered: &[u8],
) -> Option<Range<usize>> {
    let value = only_upgrade(buf, headers)?;
    protocols_allowed(&buf[value.clone()], rule, Some(offered)).then_some(value)
}

/// Where the value of the one `Upgrade` header is, trimmed (`None`: none, or more than one).
fn only_upgrade(buf: &[u8], headers: &[HeaderPos]) -> Option<Range<usize>> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.kind == HeaderKind::Upgrade) {
        if found.is_some() {
            return None;
        }
        let v = &buf[h.value.clone()];
        let start = h.value.start + (v.len() - v.trim_ascii_start().len());
        let end = h.value.end - (v.len() - v.trim_ascii_end().len());
        found = Some(start..end.max(start));
    }
    found
}

/// Whether a non-empty `Upgrade` list names only protocols (`name` or `name/version`, tokens) the
/// route allows and, with `offered`, that appear in that list too.
fn protocols_allowed(value: &[u8], rule: &Upgrades, offered: Option<&[u8]>) -> bool {
    let mut any = false;
    for p in tokens(value) {
        let mut parts = p.splitn(2, |&b| b == b'/');
        let name = parts.next().unwrap_or_default();
        let version = parts.next();
        if !is_token(name) || version.is_some_and(|v| !is_token(v)) || !rule.allows(name) {
            return false;
        }
        if offered.is_some_and(|o| !tokens(o).any(|t| t.eq_ignore_ascii_case(p))) {
            return false;
        }
        any = true;
    }
    any
}

/// A token as RFC 9110 writes one (protocol names and versions).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{parse_request, parse_response, ResponseHead};

    fn websocket() -> Upgrades {
        Upgrades {
            any: false,
            protocols: vec!["websocket".into()],
        }
    }

    fn any() -> Upgrades {
        Upgrades {
            any: true,
            protocols: Vec::new(),
        }
    }

    fn asks(raw: &str, rule: &Upgrades) -> bool {
        let mut h = RequestHead::default();
        parse_request(raw.as_bytes(), 16384, 100, &mut h).unwrap();
        let offered = offer(raw.as_bytes(), &h, rule);
        if let Some(r) = &offered {
            let v = &raw.as_bytes()[r.clone()];
            assert!(!v.is_empty() && v.trim_ascii() == v, "{v:?}");
        }
        offered.is_some()
    }

    #[test]
    fn a_websocket_handshake_is_an_upgrade() {
        let ws = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert!(asks(ws, &websocket()));
        assert!(asks(ws, &any()));
        let cased =
            "GET / HTTP/1.1\r\nHost: a\r\nupgrade: WebSocket\r\nconnection: UPGRADE\r\n\r\n";
        assert!(asks(cased, &websocket()));
    }

    #[test]
    fn asking_is_told_apart_from_being_allowed() {
        let asked_by = |raw: &str| {
            let mut h = RequestHead::default();
            parse_request(raw.as_bytes(), 16384, 100, &mut h).unwrap();
            asked(raw.as_bytes(), &h)
        };
        assert!(asked_by(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(!asked_by(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\n\r\n"
        ));
        assert!(!asked_by(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"
        ));
        assert!(!asked_by(
            "GET / HTTP/1.0\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n"
        ));
    }

    #[test]
    fn anything_short_of_the_rule_is_a_plain_request() {
        let rule = websocket();
        for raw in [
            // HTTP/1.0: ignored.
            "GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            // Connection does not name it.
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
            // Two Upgrade headers, an empty one, one the route does not tunnel.
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: \r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
            // Every protocol listed must be allowed: h2c never is.
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket/1 2\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket/\r\nConnection: upgrade\r\n\r\n",
        ] {
            assert!(!asks(raw, &rule), "{raw}");
        }
        let h2c = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
        assert!(!asks(h2c, &any()), "h2c is never tunnelled");
        assert!(asks(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo/2, bar\r\nConnection: upgrade\r\n\r\n",
            &any()
        ));
    }

    #[test]
    fn a_101_must_name_an_allowed_protocol_the_client_offered() {
        let check_offered = |raw: &str, offered: &[u8], rule: &Upgrades| {
            let mut h = ResponseHead::default();
            parse_response(raw.as_bytes(), 65536, &mut h).unwrap();
            switched_to(raw.as_bytes(), &h.headers, rule, offered)
                .map(|r| raw.as_bytes()[r].to_vec())
        };
        let check = |raw: &str| check_offered(raw, b"websocket", &websocket());
        assert_eq!(
            check_offered(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: bar\r\n\r\n",
                b"foo",
                &any()
            ),
            None,
            "not what the client offered"
        );
        assert_eq!(
            check_offered(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0\r\n\r\n",
                b"TLS/1.0",
                &any()
            ),
            None,
            "HTTP inside TLS (RFC 2817) is never tunnelled"
        );
        assert_eq!(
            check_offered(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade:  Foo/2 \r\n\r\n",
                b"bar, foo/2",
                &any()
            ),
            Some(b"Foo/2".to_vec())
        );
        assert_eq!(
            check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            Some(b"websocket".to_vec())
        );
        assert_eq!(check("HTTP/1.1 101 Switching Protocols\r\n\r\n"), None);
        assert_eq!(
            check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
            None
        );
        assert_eq!(
            check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n\r\n"),
            None
        );
    }
}
