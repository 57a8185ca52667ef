//! How one exchange with a member ended — the same type for HTTP (`http::exchange`) and AJP13
//! (`ajp::exchange`) — and the one decision made from it: may the request be sent again.
//!
//! Owns: the retry rule. Must never: allow a replay of a request whose bytes may have reached a
//! member unless it is idempotent, whole in the buffer and got no response byte; or any replay
//! once a response byte went to the client. Invariant: `retry` is the only place that answers
//! "send it again?"; the exchanges only report what they know.

use std::time::Duration;

use crate::stats::Failure;

/// What the exchanges need to know about the request beyond the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub head_len: usize,
    /// End of the request bytes already in `c.buf` (head and the body read so far).
    pub request_end: usize,
    pub is_head: bool,
    /// The member connection came from the pool.
    pub reused: bool,
    /// The whole body is in the buffer: the request can be sent again.
    pub replayable: bool,
    pub idempotent: bool,
}

/// How far a failed exchange got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// No connection could be made.
    NoConnection,
    /// The first write failed: provably no byte of the request reached the member.
    Nothing,
    /// Request bytes may have reached the member; no response byte came back.
    Request,
    /// Response bytes came back, but no usable response (a head invalid or cut short, or a body
    /// whose first bytes broke its framing); none of it reached the client.
    Response,
}

/// How an exchange ended.
#[derive(Debug)]
pub enum Outcome {
    /// The response went to the client whole.
    Done(Done),
    /// No byte of a final response went to the client (relayed 1xx interim responses aside): it
    /// may get `status` (502/504), or the request may be sent again (`retry`; never after a 1xx,
    /// which reports `Reached::Response`). Unless it is retried, the client gets the status and its
    /// connection closes (one no member could be connected to gets a 503 and stays).
    Failed(Failed),
    /// The response had started, or the client left: both connections close.
    Broken {
        /// Status already sent to the client (0: none).
        status: u16,
        body_sent: u64,
        received: u64,
        /// The member's response had started to the client (its head was being written), in a
        /// body the client reads to the connection's close (an HTTP/1.0 client's decoded body, or
        /// one the member framed by its close): a clean close would make it look whole, so the
        /// connection ends with a reset (`reset`). (A body framed by length or chunks is known to
        /// be short at any close, and closes plainly.)
        reset_client: bool,
    },
    /// The request head does not fit in one AJP packet (AJP has no continuation).
    TooLarge,
    /// The member switched protocols: its 101 went to the client, and both connections now
    /// carry a tunnel (`tunnel`); neither is used for HTTP again.
    Switched(Done),
}

impl Outcome {
    /// `Broken` with a plain close: before any byte of the member's response reached the client
    /// (`status`: ringlb's own, already sent, or 0), or the client left.
    pub fn broken(status: u16, body_sent: u64, received: u64) -> Outcome {
        Outcome::Broken {
            status,
            body_sent,
            received,
            reset_client: false,
        }
    }
}

/// A response relayed whole.
#[derive(Debug)]
pub struct Done {
    pub keep_client: bool,
    /// The client's request was read to its end. Not when an AJP container answered before it
    /// asked for the whole body: the rest is left unread, and the client closes lingering.
    pub request_read: bool,
    /// The member connection may go back to the pool.
    pub reusable: bool,
    /// The longest it may stay there, from the member's `Keep-Alive: timeout` less a margin
    /// (`http::keep_alive::idle_limit`) and less the time since the answer's head came; `None`
    /// when it gave none (the balancer's `idle_ttl`).
    pub idle_limit: Option<Duration>,
    pub status: u16,
    pub body_sent: u64,
    /// Bytes written to and read from the member.
    pub sent: u64,
    pub received: u64,
    /// Time from the request sent to the response head.
    pub head_time: Duration,
}

/// An exchange that failed before the client got any of a response.
#[derive(Debug, Clone, Copy)]
pub struct Failed {
    pub reached: Reached,
    pub failure: Failure,
    /// What the client gets when the request is not retried.
    pub status: u16,
    /// The client's request was read to its end: the 502/504 goes out without draining the rest
    /// of it first (the connection may still close lingering after it: `conn::may_send_more`).
    pub request_read: bool,
    /// The request is still in the client's buffer as it was parsed (head at its start, body up
    /// to `Request::request_end`): nothing consumed it and no timed-out write may have taken the
    /// buffer.
    pub intact: bool,
}

impl Failed {
    /// A request write that failed after bytes may have gone out: a timeout (the member stopped
    /// reading; the buffers may have gone with the cancelled write) or an error.
    pub fn partly_sent(fail: &crate::io::IoFail, request_read: bool, intact: bool) -> Failed {
        match fail {
            crate::io::IoFail::Timeout => Failed {
                reached: Reached::Request,
                failure: Failure::ResponseTimeout,
                status: 504,
                request_read: false,
                intact: false,
            },
            _ => Failed::reset(Reached::Request, request_read, intact),
        }
    }

    /// A close or reset by the member.
    pub fn reset(reached: Reached, request_read: bool, intact: bool) -> Failed {
        Failed {
            reached,
            failure: Failure::Reset,
            status: 502,
            request_read,
            intact,
        }
    }

    /// No connection to the member could be made (503 when no other member may be tried).
    pub fn no_connection(failure: Failure) -> Failed {
        Failed {
            reached: Reached::NoConnection,
            failure,
            status: 503,
            request_read: false,
            intact: true,
        }
    }
}

/// What to do after a failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Answer the client with the failure's status.
    No,
    /// Send the request again on a fresh connection to the same member (a pooled connection the
    /// member may have closed while it idled).
    FreshConnection,
    /// Send it to another member (up to the balancer's `maxattempts`).
    OtherMember,
}

/// The retry rule. `retried`: this request was already sent again on a fresh connection (once
/// per request, whatever the member: a request that breaks every member it reaches goes to at
/// most `maxattempts + 2` of them, not twice to each).
pub fn retry(f: &Failed, req: &Request, retried: bool) -> Retry {
    // After a pooled connection failed, a fresh one to the same member first (it most likely
    // closed the idle connection); after that, or on a fresh connection, another member.
    let again = if req.reused && !retried {
        Retry::FreshConnection
    } else {
        Retry::OtherMember
    };
    match f.reached {
        Reached::NoConnection => Retry::OtherMember,
        _ if !req.replayable || !f.intact => Retry::No,
        // Nothing reached the member: any method may go again.
        Reached::Nothing => again,
        // The member may have seen it: only an idempotent request, only after a close or reset
        // (never after a timeout: the member may still be working on it).
        Reached::Request if req.idempotent && f.failure == Failure::Reset => again,
        // A non-idempotent request the member may have seen, a timeout, a response byte: never.
        Reached::Request | Reached::Response => Retry::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(idempotent: bool, reused: bool, replayable: bool) -> Request {
        Request {
            head_len: 10,
            request_end: 10,
            is_head: false,
            reused,
            replayable,
            idempotent,
        }
    }

    fn failed(reached: Reached, failure: Failure) -> Failed {
        Failed {
            reached,
            failure,
            status: 502,
            request_read: true,
            intact: true,
        }
    }

    #[test]
    fn nothing_written_goes_again_whatever_the_method() {
        let f = failed(Reached::Nothing, Failure::Reset);
        let pooled_post = req(false, true, true);
        assert_eq!(retry(&f, &pooled_post, false), Retry::FreshConnection);
        assert_eq!(retry(&f, &pooled_post, true), Retry::OtherMember);
        assert_eq!(
            retry(&f, &req(false, false, true), false),
            Retry::OtherMember
        );
        assert_eq!(retry(&f, &req(true, true, false), false), Retry::No);
    }

    #[test]
    fn idempotent_requests_the_member_may_have_seen_go_again_after_a_reset() {
        let reset = failed(Reached::Request, Failure::Reset);
        let pooled_get = req(true, true, true);
        assert_eq!(retry(&reset, &pooled_get, false), Retry::FreshConnection);
        assert_eq!(retry(&reset, &pooled_get, true), Retry::OtherMember);
        assert_eq!(
            retry(&reset, &req(true, false, true), false),
            Retry::OtherMember
        );
        assert_eq!(retry(&reset, &req(false, true, true), false), Retry::No);
        assert_eq!(retry(&reset, &req(false, false, true), false), Retry::No);
        assert_eq!(retry(&reset, &req(true, true, false), false), Retry::No);
        let timeout = failed(Reached::Request, Failure::ResponseTimeout);
        assert_eq!(retry(&timeout, &pooled_get, false), Retry::No);
    }

    #[test]
    fn a_consumed_or_lost_buffer_is_never_sent_again() {
        let mut f = failed(Reached::Nothing, Failure::Reset);
        f.intact = false;
        assert_eq!(retry(&f, &req(true, true, true), false), Retry::No);
        let lost = Failed::partly_sent(&crate::io::IoFail::Timeout, true, true);
        assert!(!lost.intact);
        assert_eq!(retry(&lost, &req(true, true, true), false), Retry::No);
    }

    #[test]
    fn a_response_byte_ends_all_retries() {
        let f = failed(Reached::Response, Failure::InvalidResponse);
        assert_eq!(retry(&f, &req(true, true, true), false), Retry::No);
    }

    #[test]
    fn no_connection_means_another_member() {
        let f = failed(Reached::NoConnection, Failure::ConnectRefused);
        assert_eq!(
            retry(&f, &req(false, false, false), true),
            Retry::OtherMember
        );
    }
}
