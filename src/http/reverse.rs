//! A route's path mapping (Apache's `ProxyPass /os balancer://c/openspecimen`) and its reverse
//! (`ProxyPassReverse`, `ProxyPassReverseCookiePath`, `ProxyPassReverseCookieDomain`): the
//! forwarded target with the route's public prefix replaced by the member path, and in a response
//! the `Location`, `Content-Location` and `URI` headers that point at a member (its own address,
//! or the member path) turned into what the client can follow, a `Set-Cookie` `Path` under the
//! member path moved under the public prefix, and a `Set-Cookie` `Domain` named in the route's
//! `cookie_domains` replaced.
//!
//! Owns: both directions of the mapping, and which response headers it touches. Must never:
//! change a header's name, a value it does not recognise, or anything that is not a URL or a
//! cookie's Path or Domain; write a value that is not the input's bytes (or the client's own Host,
//! the two prefixes, or a configured cookie domain, which the configuration holds to letters,
//! digits, `-` and `.`) — no CR, LF or NUL can appear that was not there; map a URL into a path
//! that a browser reads as naming another host (`//`, or `/\`, TAB, LF or CR between them: WHATWG
//! URL parsing drops those three anywhere and takes `\` for `/`; `names_a_host`).
//!
//! Prefixes match whole segments (`route::strip_prefix`, the router's rule too): `/os` maps
//! `/os/x`, `/os?q` and `/os;p`, never `/osx`; a Location under `/openspecimenx` is not under
//! `/openspecimen`.

use crate::config::{CookieDomain, MemberConfig};

/// A route's mapping, from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Mapping<'a> {
    /// The route's `path`.
    pub public: &'a [u8],
    /// The route's `member_path` (the same as `public` when it has none).
    pub member: &'a [u8],
    /// The balancer's members: a URL at one of their addresses is the member's own.
    pub members: &'a [MemberConfig],
    /// The route's `cookie_domains`.
    pub cookie_domains: &'a [CookieDomain],
}

/// What a response is rewritten with: the route's mapping and the client's view.
#[derive(Debug, Clone, Copy)]
pub struct Reverse<'a> {
    pub mapping: Mapping<'a>,
    /// `http(s)://host[:port]` as the client asked (`public_origin`); empty when it named no
    /// host or one that is not a plain host name or address: a member's URLs are then left as
    /// they are.
    pub origin: &'a [u8],
}

impl Mapping<'_> {
    fn mapped(&self) -> bool {
        self.public != self.member
    }
}

/// Writes `target` (path, then `?query`) with the public prefix replaced by the member path into
/// `out`. A target without a path (`?q`, or empty: an absolute-form request without one) is under
/// `/`. `false`: `target` does not begin with the public prefix as written (a `;parameter` inside
/// it): it cannot be mapped. (`*` is not a path: the caller forwards it as it is.)
pub fn map_target(target: &[u8], public: &[u8], member: &[u8], out: &mut Vec<u8>) -> bool {
    let rest = match target.first() {
        Some(b'/') => crate::route::strip_prefix(target, public),
        _ if public == b"/" => Some(target),
        _ => None,
    };
    let Some(rest) = rest else {
        return false;
    };
    out.clear();
    join(out, member, rest);
    true
}

/// `prefix` followed by `rest`, one `/` where both bring some: a result never begins with `//`
/// (which would name another host).
fn join(out: &mut Vec<u8>, prefix: &[u8], rest: &[u8]) {
    out.extend_from_slice(prefix);
    let rest = match prefix.last() {
        Some(b'/') => &rest[rest.iter().take_while(|&&b| b == b'/').count()..],
        _ => rest,
    };
    out.extend_from_slice(rest);
}

/// The client's origin for `public_origin`: `http(s)://host`, or nothing when `host` is not a
/// plain host name, IPv4 or bracketed IPv6 address with an optional port (a value ringlb would
/// not put into a URL).
pub fn public_origin(out: &mut Vec<u8>, host: &[u8], https: bool) {
    out.clear();
    if valid_host(host) {
        out.extend_from_slice(if https { b"https://" } else { b"http://" });
        out.extend_from_slice(host);
    }
}

fn valid_host(h: &[u8]) -> bool {
    let (name, port) = match h.first() {
        Some(b'[') => match h.iter().position(|&b| b == b']') {
            Some(end) => h.split_at(end + 1),
            None => return false,
        },
        _ => match h.iter().position(|&b| b == b':') {
            Some(i) => h.split_at(i),
            None => (h, &[][..]),
        },
    };
    let port_ok = port.is_empty()
        || (port.len() <= 6 && port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit));
    let name_ok = match name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        }
        None => {
            !name.is_empty()
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
        }
    };
    port_ok && name_ok
}

/// Whether a response header is one whose value is a URL the mapping applies to.
pub fn is_url_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"location")
        || name.eq_ignore_ascii_case(b"content-location")
        || name.eq_ignore_ascii_case(b"uri")
}

/// Writes one response header for the client, its value rewritten where `reverse` applies.
pub fn push_response_header(
    out: &mut Vec<u8>,
    name: &[u8],
    value: &[u8],
    reverse: Option<&Reverse>,
) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    match reverse {
        Some(r) if is_url_header(name) => url(out, value, r),
        Some(r)
            if (r.mapping.mapped() || !r.mapping.cookie_domains.is_empty())
                && name.eq_ignore_ascii_case(b"set-cookie") =>
        {
            cookie(out, value, &r.mapping)
        }
        _ => out.extend_from_slice(value),
    }
    out.extend_from_slice(b"\r\n");
}

/// A URL as the client should see it (`ProxyPassReverse`):
/// - at a member's own address: the client's scheme and Host instead, its path mapped;
/// - at the client's Host (a member that was given it, AJP's): its path mapped;
/// - a path (`/…`): mapped;
/// - anything else (another site, a relative reference): as it is.
pub fn url(out: &mut Vec<u8>, value: &[u8], r: &Reverse) {
    let m = &r.mapping;
    let host = split_absolute(r.origin).map_or(&[][..], |(_, h, _)| h);
    if let Some((scheme, authority, rest)) = split_absolute(value) {
        let at_member = m
            .members
            .iter()
            .any(|mc| member_origin(mc, scheme, authority));
        if at_member && !host.is_empty() {
            out.extend_from_slice(r.origin);
            return path(out, rest, m);
        }
        let at_client = !host.is_empty() && same_authority(authority, host, scheme);
        if at_client && m.mapped() {
            out.extend_from_slice(&value[..value.len() - rest.len()]);
            return path(out, rest, m);
        }
    } else if value.starts_with(b"/") && !value.starts_with(b"//") && m.mapped() {
        return path(out, value, m);
    }
    out.extend_from_slice(value);
}

/// A URL's path (with its query), under the public prefix if it is under the member path, unless
/// mapped it would name another host (`/app/\\evil.example` under a public `/`): then as it is.
fn path(out: &mut Vec<u8>, p: &[u8], m: &Mapping) {
    let start = out.len();
    match crate::route::strip_prefix(p, m.member) {
        Some(rest) if m.mapped() => {
            join(out, m.public, rest);
            if names_a_host(&out[start..]) {
                out.truncate(start);
                out.extend_from_slice(p);
            }
        }
        _ => out.extend_from_slice(p),
    }
}

/// Whether a browser reads `v` as a reference to another host: its first two characters, once
/// TAB, LF and CR are dropped, are each `/` or `\` (WHATWG URL parsing, for http and https).
fn names_a_host(v: &[u8]) -> bool {
    let mut s = v.iter().filter(|&&b| !matches!(b, b'\t' | b'\n' | b'\r'));
    matches!(
        (s.next(), s.next()),
        (Some(b'/' | b'\\'), Some(b'/' | b'\\'))
    )
}

/// `scheme://authority` and the rest (path, query, fragment) of an absolute URL.
fn split_absolute(value: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let colon = value.windows(3).position(|w| w == b"://")?;
    let scheme = &value[..colon];
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return None;
    }
    let after = &value[colon + 3..];
    let end = after
        .iter()
        .position(|b| b"/?#".contains(b))
        .unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// Whether `scheme://authority` is member `mc`'s own address (its URL's scheme, host and port,
/// a default port written or not; an IPv6 zone written or not, as its Host header goes without).
fn member_origin(mc: &MemberConfig, scheme: &[u8], authority: &[u8]) -> bool {
    let Some((ms, ma, _)) = split_absolute(mc.url.as_bytes()) else {
        return false;
    };
    let zoneless = mc.host_header.as_bytes();
    ms.eq_ignore_ascii_case(scheme)
        && (same_authority(authority, ma, scheme)
            || (zoneless.len() != ma.len() && same_authority(authority, zoneless, scheme)))
}

/// Whether two authorities name the same host and port (case-blind; a missing port is the
/// scheme's default).
fn same_authority(a: &[u8], b: &[u8], scheme: &[u8]) -> bool {
    let default: &[u8] = if scheme.eq_ignore_ascii_case(b"https") {
        b"443"
    } else {
        b"80"
    };
    let (ah, ap) = host_port(a, default);
    let (bh, bp) = host_port(b, default);
    ah.eq_ignore_ascii_case(bh) && ap == bp
}

/// `host:port` split, the port defaulted (`[v6]:port` understood).
fn host_port<'a>(authority: &'a [u8], default: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let colon = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if !authority[i..].contains(&b']') => i,
        _ => return (authority, default),
    };
    let port = &authority[colon + 1..];
    (
        &authority[..colon],
        if port.is_empty() { default } else { port },
    )
}

/// A `Set-Cookie` value with a `Path` attribute under the member path moved under the public
/// prefix (`ProxyPassReverseCookiePath`) and a `Domain` attribute named in `cookie_domains`
/// replaced (`ProxyPassReverseCookieDomain`, a leading dot kept); every other byte as it is.
pub fn cookie(out: &mut Vec<u8>, value: &[u8], m: &Mapping) {
    let mut copied = 0;
    let mut start = 0;
    for (i, part) in value.split(|&b| b == b';').enumerate() {
        let at = start;
        start += part.len() + 1;
        let Some(eq) = part.iter().position(|&b| b == b'=').filter(|_| i > 0) else {
            continue;
        };
        let name = part[..eq].trim_ascii();
        let raw = &part[eq + 1..];
        let v = raw.trim_ascii();
        // Decided before anything is written: bytes are copied once, up to a replacement.
        let new = if name.eq_ignore_ascii_case(b"path") {
            cookie_path(v, m)
        } else if name.eq_ignore_ascii_case(b"domain") {
            cookie_domain(v, m)
        } else {
            None
        };
        let Some(new) = new else {
            continue;
        };
        let v_at = at + eq + 1 + (raw.len() - raw.trim_ascii_start().len());
        out.extend_from_slice(&value[copied..v_at]);
        match new {
            Attr::Path(rest) => {
                let before = out.len();
                join(out, trim_slash(m.public), rest);
                // Never a path beginning with `//` (`/app//x` under a public `/`): one slash.
                let run = out[before..].iter().take_while(|&&b| b == b'/').count();
                out.drain(before..before + run.saturating_sub(1));
                if out.len() == before {
                    out.push(b'/');
                }
            }
            Attr::Domain(dot, to) => {
                if dot {
                    out.push(b'.');
                }
                out.extend_from_slice(to);
            }
        }
        copied = v_at + v.len();
    }
    out.extend_from_slice(&value[copied..]);
}

/// A cookie attribute's new value: a path's rest under the public prefix, or a domain (with its
/// leading dot or not).
enum Attr<'a> {
    Path(&'a [u8]),
    Domain(bool, &'a [u8]),
}

/// A cookie path under the member path: what follows the member path.
fn cookie_path<'a>(v: &'a [u8], m: &Mapping) -> Option<Attr<'a>> {
    let rest = v
        .strip_prefix(trim_slash(m.member))
        .filter(|r| m.mapped() && (r.is_empty() || r[0] == b'/'))?;
    Some(Attr::Path(rest))
}

/// A cookie domain named in `cookie_domains`: the domain it becomes.
fn cookie_domain<'a>(v: &[u8], m: &Mapping<'a>) -> Option<Attr<'a>> {
    let (dot, d) = match v.strip_prefix(b".") {
        Some(d) => (true, d),
        None => (false, v),
    };
    let pair = m
        .cookie_domains
        .iter()
        .find(|p| p.from.as_bytes().eq_ignore_ascii_case(d))?;
    Some(Attr::Domain(dot, pair.to.as_bytes()))
}

fn trim_slash(p: &[u8]) -> &[u8] {
    p.strip_suffix(b"/").unwrap_or(p)
}

#[cfg(test)]
#[path = "reverse_tests.rs"]
mod tests;
