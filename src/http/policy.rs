//! The one header policy: for each header of a message ringlb relays, whether it is forwarded as
//! it came, dropped, or left to ringlb to write itself — by direction (request to a member,
//! response to a client) and by the member's protocol (HTTP or AJP13).
//!
//! Owns: every forward/drop decision about headers, for the HTTP and AJP paths alike. Must never:
//! let a `Connection` option remove a header ringlb needs to frame or route the message
//! (Content-Length, Transfer-Encoding, Host): those are `Own` whatever `Connection` says, and
//! ringlb writes the framing it actually uses. Invariant: the four writers (`http::rewrite`'s
//! request and response heads, `ajp::request`'s FORWARD_REQUEST and response head) consult only
//! this function, so they cannot disagree.

use super::header::{classify, connection_lists, tokens, HeaderKind, HeaderPos};

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to member.
    Request,
    /// Member to client.
    Response,
}

/// The protocol spoken with the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http,
    Ajp,
}

/// What happens to one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Copied as it came.
    Forward,
    /// Not sent.
    Drop,
    /// Not copied: ringlb writes its own (framing, Host, X-Forwarded-*), from what it parsed.
    Own,
}

/// The policy. `named_by_connection`: a `Connection` header of the same message lists this
/// header's name (RFC 9110 §7.6.1: such a header is hop-by-hop).
pub fn action(kind: HeaderKind, dir: Direction, wire: Wire, named_by_connection: bool) -> Action {
    use HeaderKind as K;
    match (kind, dir, wire) {
        // Framing is always ringlb's own: it writes what it uses, whatever Connection names.
        (K::ContentLength | K::TransferEncoding, _, _) => Action::Own,
        // (The Connection a member or a client sees is one ringlb writes: `http::rewrite`.)
        (K::Connection | K::HopByHop | K::KeepAlive, _, _) => Action::Drop,
        // A protocol switch is ringlb's to allow (`http::upgrade`): it writes its own Upgrade.
        (K::Upgrade, _, _) => Action::Own,
        // ringlb answered the expectation itself.
        (K::Expect, Direction::Request, _) => Action::Drop,
        // The Host a member sees is ringlb's: the one it routed on (or the member's own, for HTTP
        // members without `preserve_host`).
        (K::Host, Direction::Request, _) => Action::Own,
        // The forwarding trail is ringlb's own, for both wires: from a trusted proxy it carries
        // what that proxy said (`[server] trusted_proxies`), never what a client made up.
        (K::XForwardedFor | K::XForwardedHost | K::XForwardedProto, Direction::Request, _) => {
            Action::Own
        }
        _ if named_by_connection => Action::Drop,
        _ => Action::Forward,
    }
}

/// The policy for one header by name: `action`, after two checks on the name. A request header
/// whose name becomes one of ringlb's special headers when `_` is read as `-` (`X_Forwarded_For`,
/// `Content_Length`) is dropped: members that map headers to variables (CGI, PHP, WSGI) would
/// read it as the header ringlb owns.
pub fn action_by_name(
    kind: HeaderKind,
    name: &[u8],
    dir: Direction,
    wire: Wire,
    named_by_connection: bool,
) -> Action {
    if dir == Direction::Request && kind == HeaderKind::Other && aliases_special(name) {
        return Action::Drop;
    }
    action(kind, dir, wire, named_by_connection)
}

fn aliases_special(name: &[u8]) -> bool {
    if !name.contains(&b'_') || name.len() > 24 {
        return false;
    }
    let mut dashed = [0u8; 24];
    for (d, &b) in dashed.iter_mut().zip(name) {
        *d = if b == b'_' { b'-' } else { b };
    }
    classify(&dashed[..name.len()]) != HeaderKind::Other
}

/// Whether any of a message's Connection values lists `name`.
pub fn named<'v>(mut values: impl Iterator<Item = &'v [u8]>, name: &[u8]) -> bool {
    values.any(|v| connection_lists(v, name))
}

/// Whether Connection values list anything but `close` and `keep-alive` (the common case is
/// no: then no header needs the per-header check, and the policy stays linear in the headers).
pub fn lists_names<'v>(mut values: impl Iterator<Item = &'v [u8]>) -> bool {
    values.any(|v| {
        tokens(v)
            .any(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
    })
}

/// The policy applied to the headers of one parsed message held in `buf`.
pub struct Policy<'a> {
    buf: &'a [u8],
    headers: &'a [HeaderPos],
    dir: Direction,
    wire: Wire,
    /// A Connection header lists a header name.
    lists: bool,
}

impl<'a> Policy<'a> {
    pub fn new(buf: &'a [u8], headers: &'a [HeaderPos], dir: Direction, wire: Wire) -> Self {
        let lists = lists_names(connection_values(buf, headers));
        Policy {
            buf,
            headers,
            dir,
            wire,
            lists,
        }
    }

    /// What happens to header `h` (one of this message's).
    pub fn action(&self, h: &HeaderPos) -> Action {
        let name = &self.buf[h.name.clone()];
        let named = self.lists && named(connection_values(self.buf, self.headers), name);
        action_by_name(h.kind, name, self.dir, self.wire, named)
    }
}

fn connection_values<'a>(
    buf: &'a [u8],
    headers: &'a [HeaderPos],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(|c| c.kind == HeaderKind::Connection)
        .map(move |c| &buf[c.value.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use HeaderKind as K;

    #[test]
    fn framing_is_never_named_away() {
        for dir in [Direction::Request, Direction::Response] {
            for wire in [Wire::Http, Wire::Ajp] {
                for kind in [K::ContentLength, K::TransferEncoding] {
                    assert_eq!(action(kind, dir, wire, true), Action::Own);
                    assert_eq!(action(kind, dir, wire, false), Action::Own);
                }
            }
        }
        assert_eq!(
            action(K::Host, Direction::Request, Wire::Http, true),
            Action::Own
        );
        assert_eq!(
            action(K::Host, Direction::Request, Wire::Ajp, false),
            Action::Own
        );
    }

    #[test]
    fn hop_by_hop_and_named_headers_are_dropped() {
        for dir in [Direction::Request, Direction::Response] {
            for wire in [Wire::Http, Wire::Ajp] {
                assert_eq!(action(K::Connection, dir, wire, false), Action::Drop);
                assert_eq!(action(K::HopByHop, dir, wire, false), Action::Drop);
                assert_eq!(action(K::KeepAlive, dir, wire, false), Action::Drop);
                assert_eq!(action(K::Other, dir, wire, true), Action::Drop);
                assert_eq!(action(K::Other, dir, wire, false), Action::Forward);
            }
        }
        assert_eq!(
            action(K::Expect, Direction::Request, Wire::Ajp, false),
            Action::Drop
        );
    }

    #[test]
    fn underscore_aliases_of_special_headers_are_dropped_from_requests() {
        let req = |name: &[u8]| {
            action_by_name(
                HeaderKind::Other,
                name,
                Direction::Request,
                Wire::Http,
                false,
            )
        };
        assert_eq!(req(b"X_Forwarded_For"), Action::Drop);
        assert_eq!(req(b"content_length"), Action::Drop);
        assert_eq!(req(b"Transfer_Encoding"), Action::Drop);
        assert_eq!(req(b"X_Custom_Key"), Action::Forward);
        assert_eq!(req(b"X-Custom"), Action::Forward);
    }

    #[test]
    fn policy_over_a_message() {
        let raw =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        let mut head = crate::http::parse::RequestHead::default();
        crate::http::parse::parse_request(raw, 4096, 16, &mut head).unwrap();
        let policy = Policy::new(raw, &head.headers, Direction::Request, Wire::Http);
        let kept: Vec<&[u8]> = head
            .headers
            .iter()
            .filter(|h| policy.action(h) == Action::Forward)
            .map(|h| &raw[h.name.clone()])
            .collect();
        assert_eq!(kept, [&b"X-B"[..]]);
        assert!(!lists_names([&b"close"[..], b" Keep-Alive "].into_iter()));
        assert!(lists_names([&b"close, x"[..]].into_iter()));
    }

    #[test]
    fn forwarding_trail() {
        let own = action(K::XForwardedFor, Direction::Request, Wire::Http, false);
        assert_eq!(own, Action::Own);
        for kind in [K::XForwardedFor, K::XForwardedHost, K::XForwardedProto] {
            assert_eq!(
                action(kind, Direction::Request, Wire::Ajp, false),
                Action::Own
            );
        }
        let resp = action(K::XForwardedFor, Direction::Response, Wire::Http, false);
        assert_eq!(resp, Action::Forward);
    }
}
