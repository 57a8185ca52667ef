//! The admin listener's checks on a request from the network (`admin::auth`): any head that
//! parses goes through the `Host` check (DNS rebinding) and the cross-site check without a panic,
//! and a `Host` the check lets through names an IP literal, `localhost` or a configured name,
//! with at most a numeric port.
//!
//! Input: the bytes of a request head (the listener's own parser reads them first).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = parse_request(data, 16384, 100) else {
        return;
    };
    let admin = admin_config(&["lb1.example.org"]);
    let host = head.host.clone().map(|h| &data[h]);
    let _ = same_origin(data, &head);
    if !host_allowed(&admin, host) {
        return;
    }
    let Some(host) = host else {
        return;
    };
    let text = std::str::from_utf8(host).expect("an allowed Host is text");
    let name = match text.strip_prefix('[') {
        Some(rest) => {
            let (ip, tail) = rest.split_once(']').expect("a closed IPv6 literal");
            assert!(ip.parse::<std::net::Ipv6Addr>().is_ok(), "{text:?}");
            assert!(tail.is_empty() || tail[1..].bytes().all(|c| c.is_ascii_digit()), "{text:?}");
            return;
        }
        None => text.rsplit_once(':').map_or(text, |(n, p)| {
            assert!(!p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()), "{text:?}");
            n
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    assert!(
        name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || name == "lb1.example.org",
        "{text:?} let through"
    );
});
