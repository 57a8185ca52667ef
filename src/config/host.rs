//! What a host in the configuration may be: a DNS name, an IPv4 address, or an IPv6 address in
//! brackets — what a `Host` header can carry and a request can be matched against.
//!
//! Owns: the check of member URLs' hosts and routes' `host`, and splitting a member URL's
//! `host[:port]`. Must never: resolve anything (the caller does, with what this accepted), or
//! accept a host that a resolver would read otherwise than it reads (`:::1` resolves as `::`
//! port 1).

use std::net::Ipv6Addr;

/// Why `host` is not a DNS name (letters, digits, `-`, `_`, in dot-separated labels of at most
/// 63), an IPv4 address or a bracketed IPv6 address.
pub fn check(host: &str) -> Result<(), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err("an IPv6 address in brackets is [address]"),
        };
    }
    let labels_ok = host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if labels_ok {
        Ok(())
    } else {
        Err("a host is a DNS name, an IPv4 address or an IPv6 address in brackets")
    }
}

/// `host` and its port, if written, from `host[:port]` (`[v6]:port` understood; a `[` without
/// its `]` is all host, for `check` to refuse). `None`: a port that is not a number from 0 to
/// 65535, or text after an IPv6 address's bracket that is no port.
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
        Some(p) => Some((host, Some(p.parse().ok()?))),
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
            "10.0.0.7",
            "[::1]",
            "[fe80::1]",
            "a_b-c.d",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "::", ":::1", "::1", "a b", "a..b", "a.", "[::1", "[x]", "h/x", "a@b", "é.org",
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
        for bad in ["h:x", "h:65536", "[::1]x", "[::1]:", "h:"] {
            assert_eq!(split_port(bad), None, "{bad}");
        }
    }
}
