//! `redirect_https`: on a plain listener so marked, every request is answered with a 301 to the
//! same host and target on https (the port of the first TLS listener when it is not 443).
//!
//! Owns: the redirect answer and its validation of the host. Must never: send a request to a
//! member, or write a `Location` built from a host that is not a plain host name or address
//! (anything else gets a 400), or keep reading a connection whose request had a body (it closes,
//! lingering).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::client::{linger_close, log_own_answer, refuse, send_own_answer, target, Client};
use crate::core::Core;
use crate::core_gen::CoreGen;
use crate::http::framing::BodyKind;

/// How long the client gets to take the answer.
const WRITE_LIMIT: Duration = Duration::from_secs(10);

/// Answers the parsed request in `c` with a redirect. Returns whether to keep the connection.
pub async fn to_https(core: &Core, gen: &CoreGen, c: &mut Client) -> bool {
    let started = Instant::now();
    let host = c.head.routing_host(&c.buf);
    let Some(name) = host_name(host) else {
        core.stats.borrow_mut().refused(400);
        refuse(c, 400).await;
        return false;
    };
    let port = gen
        .config
        .listen
        .iter()
        .find(|l| l.tls.is_some())
        .map_or(443, |l| l.address.port());
    let has_body = !matches!(c.head.body, BodyKind::Empty | BodyKind::Length(0));
    // ringlb's own answer to a request asking to switch protocols ends the connection (as every
    // local answer does: `upgrade::asked`).
    let close = has_body
        || !c.head.keep_alive
        || crate::http::upgrade::asked(&c.buf, &c.head)
        || core.ends_connection(gen, c.listener);
    c.out.clear();
    let _ = write!(
        c.out,
        "HTTP/1.1 301 Moved Permanently\r\nServer: ringlb\r\nLocation: https://"
    );
    c.out.extend_from_slice(name);
    if port != 443 {
        let _ = write!(c.out, ":{port}");
    }
    c.out.extend_from_slice(target(&c.buf, &c.head, &c.path));
    c.out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
    if close {
        c.out.extend_from_slice(b"Connection: close\r\n");
    }
    c.out.extend_from_slice(b"\r\n");
    core.stats.borrow_mut().core.redirected += 1;
    if let Some(log) = &core.access_log {
        log_own_answer(log, c, 301, started);
    }
    if !send_own_answer(c, WRITE_LIMIT).await {
        return false;
    }
    if close {
        // The body is not read: close lingering, so the client reads the 301, not a reset.
        linger_close(c).await;
        return false;
    }
    c.buf.drain(..c.head.head_len);
    true
}

/// The host name of a Host value without its port: letters, digits, `-` and `.`, or a bracketed
/// IPv6 address; `None` for anything else (or an empty host).
pub fn host_name(host: &[u8]) -> Option<&[u8]> {
    let name = if host.first() == Some(&b'[') {
        let end = host.iter().position(|&b| b == b']')?;
        let name = &host[..=end];
        let inner = &name[1..end];
        let ok = !inner.is_empty()
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok).then_some(name)?
    } else {
        let name = match host.iter().position(|&b| b == b':') {
            Some(i) => &host[..i],
            None => host,
        };
        let ok = !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        ok.then_some(name)?
    };
    let rest = &host[name.len()..];
    let port_ok = rest.is_empty()
        || (rest[0] == b':' && rest.len() <= 6 && rest[1..].iter().all(u8::is_ascii_digit));
    port_ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn only_plain_hosts_are_redirected_to() {
        assert_eq!(host_name(b"example.org"), Some(&b"example.org"[..]));
        assert_eq!(host_name(b"example.org:8080"), Some(&b"example.org"[..]));
        assert_eq!(host_name(b"[::1]:80"), Some(&b"[::1]"[..]));
        assert_eq!(host_name(b"10.0.0.1"), Some(&b"10.0.0.1"[..]));
        for bad in [
            &b""[..],
            b"evil.com/x",
            b"a@b",
            b"a b",
            b"host:80:80",
            b"host:8x",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"host:1234567",
            b"\\evil",
        ] {
            assert_eq!(host_name(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
