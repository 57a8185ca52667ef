//! The responses ringlb writes itself: refusals (400/405/408/414/431/501), 404, and the gateway errors
//! (502/503/504), each with a short text body, or for a gateway error the balancer's configured
//! page (`error_pages`).
//!
//! Must never: allocate (writes into the caller's reused buffer). Invariant: `close` responses carry
//! `Connection: close` and the caller closes the connection after writing them.

use std::io::Write;

/// The reason phrase for the statuses ringlb produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Writes a complete error response with a one-line body.
pub fn error(out: &mut Vec<u8>, status: u16, close: bool) {
    error_page(out, status, close, None, false);
}

/// Writes a complete error response with `page` as its body when there is one, else a one-line
/// text body. `head`: the answer to a HEAD request, the same head without the body (a body there
/// would be read as the start of the next response on a kept connection).
pub fn error_page(
    out: &mut Vec<u8>,
    status: u16,
    close: bool,
    page: Option<&crate::config::ErrorPage>,
    head: bool,
) {
    let reason = reason(status);
    if let Some(p) = page {
        let _ = write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nServer: ringlb\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
            p.content_type,
            p.body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if !head {
            out.extend_from_slice(&p.body);
        }
        return;
    }
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nServer: ringlb\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        reason.len() + 1,
        if close { "Connection: close\r\n" } else { "" }
    );
    if !head {
        let _ = writeln!(out, "{reason}");
    }
}

/// The interim response sent to a client that asked `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_well_formed() {
        let mut out = Vec::new();
        super::error(&mut out, 503, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nService Unavailable\n"));
        assert!(text.contains("Content-Length: 20\r\n"));
    }

    #[test]
    fn a_page_is_the_body_with_its_type_and_the_status_kept() {
        let page = crate::config::ErrorPage {
            content_type: "text/html; charset=utf-8",
            body: b"<h1>Back soon</h1>".to_vec(),
        };
        let mut out = Vec::new();
        super::error_page(&mut out, 503, false, Some(&page), false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("Content-Length: 18\r\n"));
        assert!(!text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\n<h1>Back soon</h1>"));
        // HEAD: the same head, no body.
        for page in [Some(&page), None] {
            let (mut get, mut head) = (Vec::new(), Vec::new());
            super::error_page(&mut get, 503, false, page, false);
            super::error_page(&mut head, 503, false, page, true);
            let end = get.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert_eq!(head, &get[..end]);
        }
    }
}
