//! Who may use the admin listener, and from where: the `Host` check (DNS rebinding), the
//! credentials (a bearer token for scripts; HTTP Basic for browsers, with the token as the
//! password or `[admin] user` with its bcrypt `password_hash`), and the cross-site check for
//! requests that change something.
//!
//! Owns: those three decisions. Must never: run a bcrypt verification on the worker's loop or its
//! core (it takes milliseconds by design: it runs on compio's blocking pool, on a thread that
//! first leaves the worker's pinned core for all of them, at most `MAX_VERIFYING` at a time in the
//! whole process, and a verified pair is remembered so that a browser's every request does not
//! pay it again); compare a secret in time that depends on where it differs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;

use crate::config::AdminConfig;
use crate::http::parse::RequestHead;

/// Verifications in flight in the process; more are answered 503 rather than queued.
const MAX_VERIFYING: usize = 2;
static VERIFYING: AtomicUsize = AtomicUsize::new(0);
/// Verified `(hash, user:password)` pairs remembered per core.
const REMEMBERED: usize = 4;

thread_local! {
    static VERIFIED: RefCell<Vec<(String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// No credentials are configured (a loopback admin listener).
    Open,
    Bearer,
    Basic,
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No or wrong credentials: 401.
    Credentials,
    /// Too many password verifications in flight: 503.
    Busy,
}

/// Whether the `Host` a request names is one the admin listener answers to: an IP literal (with
/// or without port), `localhost`, or a name in `[admin] hosts`. A request without `Host` comes
/// from no browser and passes. Only a browser tricked by DNS rebinding sends another name.
pub fn host_allowed(admin: &AdminConfig, host: Option<&[u8]>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:9900`.
        let Some((ip, tail)) = rest.split_once(']') else {
            return false;
        };
        return ip.parse::<std::net::Ipv6Addr>().is_ok()
            && (tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok));
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || admin.hosts.contains(&name)
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|c| c.is_ascii_digit())
}

/// Whether a request that changes something comes from a page of this admin listener (or from no
/// browser at all): a browser names the page that sent it in `Origin` (and `Sec-Fetch-Site`),
/// which must be this listener's own origin.
pub fn same_origin(buf: &[u8], head: &RequestHead) -> bool {
    let host = head.host.clone().map(|h| &buf[h]);
    head.headers.iter().all(|h| {
        let name = &buf[h.name.clone()];
        let value = buf[h.value.clone()].trim_ascii();
        if name.eq_ignore_ascii_case(b"origin") {
            let Some(origin_host) = value.strip_prefix(b"http://") else {
                return false;
            };
            host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
        } else if name.eq_ignore_ascii_case(b"sec-fetch-site") {
            value.eq_ignore_ascii_case(b"same-origin") || value.eq_ignore_ascii_case(b"none")
        } else {
            true
        }
    })
}

/// Lets a request in, or says why not.
pub async fn authenticate(
    admin: Option<&AdminConfig>,
    buf: &[u8],
    head: &RequestHead,
) -> Result<Via, Refusal> {
    let Some(admin) = admin.filter(|a| a.needs_credentials()) else {
        return Ok(Via::Open);
    };
    let mut basic = None;
    for h in &head.headers {
        if !buf[h.name.clone()].eq_ignore_ascii_case(b"authorization") {
            continue;
        }
        let v = buf[h.value.clone()].trim_ascii();
        let (scheme, rest) = v.split_at(v.iter().position(|&c| c == b' ').unwrap_or(v.len()));
        let rest = rest.trim_ascii();
        if scheme.eq_ignore_ascii_case(b"bearer") {
            if admin
                .token
                .as_ref()
                .is_some_and(|t| same_secret(rest, t.as_bytes()))
            {
                return Ok(Via::Bearer);
            }
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            basic = base64::engine::general_purpose::STANDARD.decode(rest).ok();
        }
    }
    let Some(pair) = basic else {
        return Err(Refusal::Credentials);
    };
    let Some(colon) = pair.iter().position(|&c| c == b':') else {
        return Err(Refusal::Credentials);
    };
    let (user, password) = (&pair[..colon], &pair[colon + 1..]);
    let user_ok = admin.user.as_ref().is_none_or(|u| u.as_bytes() == user);
    if user_ok
        && admin
            .token
            .as_ref()
            .is_some_and(|t| same_secret(password, t.as_bytes()))
    {
        return Ok(Via::Basic);
    }
    match &admin.password_hash {
        Some(hash) if admin.user.as_ref().is_some_and(|u| u.as_bytes() == user) => {
            verify(hash, &pair, password).await.map(|()| Via::Basic)
        }
        _ => Err(Refusal::Credentials),
    }
}

/// Checks `password` against the bcrypt `hash` off the loop, remembering a success.
async fn verify(hash: &str, pair: &[u8], password: &[u8]) -> Result<(), Refusal> {
    let known = VERIFIED.with_borrow(|v| v.iter().any(|(h, p)| h == hash && same_secret(p, pair)));
    if known {
        return Ok(());
    }
    // A slot, waited for up to a second (a flood of wrong guesses must not lock the operator out
    // at once).
    let mut tries = 0;
    while VERIFYING
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_VERIFYING).then_some(n + 1)
        })
        .is_err()
    {
        tries += 1;
        if tries > 20 {
            return Err(Refusal::Busy);
        }
        compio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Given back however this future ends (answered, or dropped at a stop).
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            VERIFYING.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _slot = Slot;
    let (h, p) = (hash.to_string(), password.to_vec());
    let ok = compio::runtime::spawn_blocking(move || {
        super::unpin();
        bcrypt::verify(p, &h).unwrap_or(false)
    })
    .await;
    if !matches!(ok, Ok(true)) {
        return Err(Refusal::Credentials);
    }
    VERIFIED.with_borrow_mut(|v| {
        if v.len() >= REMEMBERED {
            v.remove(0);
        }
        v.push((hash.to_string(), pair.to_vec()));
    });
    Ok(())
}

/// Compares a presented secret with the expected one in time that depends only on their
/// lengths, not on where they first differ.
pub fn same_secret(given: &[u8], want: &[u8]) -> bool {
    if given.len() != want.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(hosts: &[&str]) -> AdminConfig {
        AdminConfig {
            address: "127.0.0.1:9900".parse().unwrap(),
            token: Some("s3cret-token".into()),
            user: None,
            password_hash: None,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            state_file: None,
        }
    }

    #[test]
    fn token_comparison() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3creT", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn hosts_a_rebinding_page_cannot_name() {
        let a = admin(&["lb1.example.org"]);
        for ok in [
            &b"127.0.0.1:9900"[..],
            b"127.0.0.1",
            b"10.1.2.3:80",
            b"[::1]:9900",
            b"[::1]",
            b"localhost:9900",
            b"LOCALHOST",
            b"lb1.example.org:9900",
            b"LB1.example.org.",
        ] {
            assert!(
                host_allowed(&a, Some(ok)),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"evil.example:9900"[..],
            b"lb1.example.org.evil",
            b"127.0.0.1.nip.io",
            b"[::1",
            b"[::1]x",
            b"[nothing]:1",
            b"127.0.0.1:99x",
            b"127.0.0.1:",
            b"",
            b"\xff",
        ] {
            assert!(
                !host_allowed(&a, Some(bad)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(host_allowed(&a, None));
    }
}
