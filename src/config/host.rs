//! What a host in the configuration may be: a DNS name, an IPv4 address, or an IPv6 address in
//! brackets — what a `Host` header can carry and a request can be matched against.
//!
//! Owns: the check of member URLs' hosts and routes' `host`, and splitting a member URL's
//! `host[:port]`. Must never: resolve anything (the caller does, with what this accepted), or
//! accept a host that a resolver reads as something it does not look like (`:::1` resolves as
//! `::` port 1, `127.1` as 127.0.0.1: a name whose last label is a number must be a dotted-quad
//! IPv4 address).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why `host` is not a DNS name (letters, digits, `-`, `_`, in dot-separated labels of at most
/// 63, a trailing dot allowed), an IPv4 address (four decimal octets) or a bracketed IPv6 address
/// (a numeric zone allowed: `[fe80::1%2]`, read as written: `%25` is not taken for RFC 6874's
/// encoded `%`, so `[fe80::1%252]` is interface 252, and no interface name is accepted).
pub fn check(host: &str) -> Result<(), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let address = inner.strip_suffix(']').map(|a| match a.split_once('%') {
            Some((a, zone)) if !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) => a,
            Some(_) => "",
            None => a,
        });
        return match address.map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(
                "an IPv6 address in brackets is [address] or [address%zone], the zone an \
                 interface's number after a bare % (as `ip link` numbers them: [fe80::1%2])",
            ),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Err("a host is a DNS name, an IPv4 address or an IPv6 address in brackets");
    }
    // Resolvers (glibc's `inet_aton`) read `127.1`, `0x7f.1`, `127.0X1` or `2130706433` as
    // 127.0.0.1, and no IPv4 address with a trailing dot.
    let last = name.rsplit('.').next().unwrap_or_default().as_bytes();
    let numeric = match last {
        [b'0', b'x' | b'X', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        _ => last.iter().all(u8::is_ascii_digit),
    };
    if numeric && (name.parse::<Ipv4Addr>().is_err() || name.len() != host.len()) {
        return Err(
            "an IPv4 address is four decimal numbers from 0 to 255 (a name's last label is no number)",
        );
    }
    Ok(())
}

/// `host_port` as a `Host` header carries it: an IPv6 address's zone (`[fe80::1%2]:8080`) left
/// out, as RFC 6874 asks of a client (a zone means something only on the box that wrote it, and
/// a `%` there is no URI syntax a member's parser need accept).
pub fn without_zone(host_port: &str) -> String {
    match (host_port.find('%'), host_port.find(']')) {
        (Some(zone), Some(end)) if host_port.starts_with('[') && zone < end => {
            format!("{}{}", &host_port[..zone], &host_port[end..])
        }
        _ => host_port.to_string(),
    }
}

/// `host` and its port, if written, from `host[:port]` (`[v6]:port` understood; a `[` without
/// its `]` is all host, for `check` to refuse). `None`: a port that is not a number from 0 to
/// 65535 (digits only), or text after an IPv6 address's bracket that is no port.
pub fn split_port(host_port: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match host_port.strip_prefix('[') {
        Some(_) => {
            let Some(end) = host_port.find(']').map(|e| e + 1) else {
                return Some((host_port, None));
            };
            match &host_port[end..] {
                "" => (&host_port[..end], None),
                rest => (&host_port[..end], Some(rest.strip_prefix(':')?)),
            }
        }
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    match port {
        // Digits only: `u16::from_str` would take `+80`.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some((host, Some(p.parse().ok()?)))
        }
        Some(_) => None,
        None => Some((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_bracketed_v6_only() {
        for ok in [
            "tomcat1",
            "app.example.org",
            "tomcat.internal.",
            "10.0.0.7",
            "[::1]",
            "[fe80::1]",
            "[fe80::1%2]",
            "a_b-c.d",
            "1password.example",
            "0xapi",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "::",
            ":::1",
            "::1",
            "a b",
            "a..b",
            ".",
            "[::1",
            "[x]",
            "[::1%]",
            "[::1%eth0]",
            "[fe80::1%25eth0]",
            "h/x",
            "a@b",
            "é.org",
            "127.1",
            "0x7f.1",
            "127.0X1",
            "0xa",
            "10.0.0.7.",
            "example.org..",
            "2130706433",
            "10.0.0.256",
            "01.2.3.4",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(check(&"a".repeat(64)).is_err());
        assert!(check(&["a"; 130].join(".")).is_err(), "over 253");
    }

    #[test]
    fn ports_split_off_where_they_are() {
        assert_eq!(split_port("h:8080"), Some(("h", Some(8080))));
        assert_eq!(split_port("h"), Some(("h", None)));
        assert_eq!(split_port("[::1]:9"), Some(("[::1]", Some(9))));
        assert_eq!(split_port("[::1]"), Some(("[::1]", None)));
        // `:::1` is host `::`, port 1: which `check` then refuses.
        assert_eq!(split_port(":::1"), Some(("::", Some(1))));
        assert_eq!(split_port("[::1:80"), Some(("[::1:80", None)));
        for bad in ["h:x", "h:65536", "[::1]x", "[::1]:", "h:", "h:+80"] {
            assert_eq!(split_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_host_header_leaves_an_ipv6_zone_out() {
        assert_eq!(without_zone("[fe80::1%2]:8080"), "[fe80::1]:8080");
        assert_eq!(without_zone("[fe80::1%25]"), "[fe80::1]");
        for same in ["[::1]:9", "h:80", "h", "[::1]"] {
            assert_eq!(without_zone(same), same);
        }
    }
}
