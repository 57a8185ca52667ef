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

use super::header::{connection_lists, HeaderKind, HeaderPos};

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
        (K::Connection | K::HopByHop, _, _) => Action::Drop,
        // ringlb answered the expectation itself.
        (K::Expect, Direction::Request, _) => Action::Drop,
        // The member's Host and the forwarding trail are written by ringlb for HTTP members; an
        // AJP container gets the client's Host and reads the client from the packet itself.
        (K::Host, Direction::Request, Wire::Http) => Action::Own,
        (
            K::XForwardedFor | K::XForwardedHost | K::XForwardedProto,
            Direction::Request,
            Wire::Http,
        ) => Action::Own,
        (K::Host, Direction::Request, Wire::Ajp) => Action::Forward,
        _ if named_by_connection => Action::Drop,
        _ => Action::Forward,
    }
}

/// The policy for header `h` of a message whose headers are `headers`, held in `buf`.
pub fn action_for(
    buf: &[u8],
    headers: &[HeaderPos],
    h: &HeaderPos,
    dir: Direction,
    wire: Wire,
) -> Action {
    let named = headers
        .iter()
        .filter(|c| c.kind == HeaderKind::Connection)
        .any(|c| connection_lists(&buf[c.value.clone()], &buf[h.name.clone()]));
    action(h.kind, dir, wire, named)
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
            action(K::Host, Direction::Request, Wire::Ajp, true),
            Action::Forward
        );
    }

    #[test]
    fn hop_by_hop_and_named_headers_are_dropped() {
        for dir in [Direction::Request, Direction::Response] {
            for wire in [Wire::Http, Wire::Ajp] {
                assert_eq!(action(K::Connection, dir, wire, false), Action::Drop);
                assert_eq!(action(K::HopByHop, dir, wire, false), Action::Drop);
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
    fn forwarding_trail() {
        let own = action(K::XForwardedFor, Direction::Request, Wire::Http, false);
        assert_eq!(own, Action::Own);
        let ajp = action(K::XForwardedFor, Direction::Request, Wire::Ajp, false);
        assert_eq!(ajp, Action::Forward);
        let resp = action(K::XForwardedFor, Direction::Response, Wire::Http, false);
        assert_eq!(resp, Action::Forward);
    }
}
