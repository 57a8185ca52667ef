//! The names ringlb reads from clients for TLS: the certificate a server name (SNI) gets
//! (`CertStore::covering`) is exactly what a plain model finds (case-blind, one trailing dot
//! ignored; the first certificate naming it exactly, else the first whose `*.` wildcard covers
//! its parent; none for an empty name or one longer than 253 bytes), and the host a redirect to
//! https names (`redirect::host_name`) is a prefix of the Host value made only of a DNS name's
//! bytes or a bracketed IPv6 address, followed by nothing or a short `:port`.
//!
//! Input: a count of certificates (1 byte, 1-4), then names separated by 0x00 and certificates by
//! 0x01, then 0x02 and the server name asked for; the same bytes, whole, are the Host value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;

/// The rule, written plainly.
fn model(certs: &[Vec<String>], sni: &str) -> Option<usize> {
    let sni = sni.strip_suffix('.').unwrap_or(sni);
    if sni.is_empty() || sni.len() > 253 {
        return None;
    }
    let sni = sni.to_ascii_lowercase();
    let norm = |n: &String| n.trim_end_matches('.').to_ascii_lowercase();
    if let Some(i) = certs.iter().position(|c| c.iter().any(|n| norm(n) == sni)) {
        return Some(i);
    }
    let parent = sni.split_once('.')?.1;
    certs.iter().position(|c| {
        c.iter()
            .any(|n| norm(n).strip_prefix("*.") == Some(parent))
    })
}

fn check_redirect_host(host: &[u8]) {
    let Some(name) = redirect_host(host) else { return };
    assert!(!name.is_empty() && host.starts_with(name), "not a prefix");
    let plain = name
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let v6 = name.len() > 2
        && name[0] == b'['
        && name[name.len() - 1] == b']'
        && name[1..name.len() - 1]
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    assert!(plain || v6, "a Location host with other bytes: {name:?}");
    let rest = &host[name.len()..];
    assert!(
        rest.is_empty()
            || (rest[0] == b':' && rest.len() <= 6 && rest[1..].iter().all(u8::is_ascii_digit)),
        "more than a port after the host: {rest:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    check_redirect_host(data);
    let Some((&count, rest)) = data.split_first() else { return };
    let count = usize::from(count % 4) + 1;
    let (names, sni) = match rest.iter().position(|&b| b == 2) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(sni) = std::str::from_utf8(sni) else { return };
    let certs: Vec<Vec<String>> = names
        .split(|&b| b == 1)
        .take(count)
        .map(|c| {
            c.split(|&b| b == 0)
                .filter_map(|n| std::str::from_utf8(n).ok())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(cert_covering(&certs, sni), model(&certs, sni), "sni {sni:?} certs {certs:?}");
});
