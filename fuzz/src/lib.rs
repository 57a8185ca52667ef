//! Shared pieces of ringlb's fuzz targets.
//!
//! `glue` holds every call into ringlb (update it, and only it, when an API changes); the rest of
//! this file is input decoding and checks that more than one target uses, written against the
//! glue only.

pub mod glue;

use std::ops::Range;

use glue::{connection_lists, HeaderKind, HeaderPos, Sticky};

/// Reads fuzzer input front to back; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// A byte string as an escaped literal, for assertion messages.
pub fn esc(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// `r` is a well-formed range inside `0..len`.
pub fn within(r: &Range<usize>, len: usize) -> bool {
    r.start <= r.end && r.end <= len
}

/// (name, value) pairs of `headers` for which `keep` holds, sorted: compare as multisets.
pub fn header_set(
    buf: &[u8],
    headers: &[HeaderPos],
    keep: impl Fn(&HeaderPos) -> bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = headers
        .iter()
        .filter(|h| keep(h))
        .map(|h| {
            (
                buf[h.name.clone()].to_ascii_lowercase(),
                buf[h.value.clone()].to_vec(),
            )
        })
        .collect();
    v.sort();
    v
}

/// True when a `Connection` header among `headers` lists this header's name.
pub fn named_by_connection(buf: &[u8], headers: &[HeaderPos], h: &HeaderPos) -> bool {
    let name = &buf[h.name.clone()];
    headers
        .iter()
        .filter(|c| c.kind == HeaderKind::Connection)
        .any(|c| connection_lists(&buf[c.value.clone()], name))
}

/// Header lines in a head (the lines between the start line and the blank line).
pub fn header_lines(head: &[u8]) -> usize {
    head.windows(2)
        .filter(|w| w == b"\r\n")
        .count()
        .saturating_sub(2)
}

/// The plainest chunked encoding of `data`: one chunk (none when empty), no extensions, no
/// trailers.
pub fn encode_chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// RFC 9110 tchar.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a field value (or a reason phrase) may hold: HTAB, SP, VCHAR, obs-text.
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80
}

/// Trims SP and HTAB at both ends (what a parser strips around a field value).
pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether a header name reads as one of ringlb's special headers when `_` is taken for `-`
/// (ringlb drops such request headers: CGI-style members would confuse them with the real one).
pub fn special_alias(name: &[u8]) -> bool {
    let dashed: Vec<u8> = name
        .iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    name.contains(&b'_')
        && [
            &b"host"[..],
            b"content-length",
            b"transfer-encoding",
            b"connection",
            b"keep-alive",
            b"te",
            b"trailer",
            b"upgrade",
            b"proxy-connection",
            b"expect",
            b"x-forwarded-for",
            b"x-forwarded-host",
            b"x-forwarded-proto",
        ]
        .contains(&&dashed[..])
}

/// What `sticky::route` should find, the plain (allocating) way: the value of the last
/// `;name=value` parameter of the path (before `?`; a parameter ends at `;` or `/`), else the
/// first `name=value` cookie of the `Cookie` headers (cookies split at `;` and `,`, spaces
/// trimmed around the name and before the value, one pair of quotes removed); then what follows
/// the first separator, when not empty.
pub fn sticky_model(
    buf: &[u8],
    headers: &[HeaderPos],
    target: &[u8],
    s: &Sticky,
) -> Option<Vec<u8>> {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let prefix = [s.path_param.as_bytes(), b"="].concat();
    let mut id: Option<Vec<u8>> = path
        .split(|&b| b == b';')
        .skip(1)
        .map(|piece| piece.split(|&b| b == b'/').next().unwrap_or_default())
        .filter_map(|param| param.strip_prefix(&prefix[..]))
        .last()
        .map(<[u8]>::to_vec);
    if id.is_none() {
        id = headers
            .iter()
            .filter(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .flat_map(|h| buf[h.value.clone()].split(|&b| b == b';' || b == b','))
            .find_map(|pair| {
                let rest = trim_ws(pair).strip_prefix(s.cookie.as_bytes())?;
                let v = trim_ws_start(trim_ws_start(rest).strip_prefix(b"=")?);
                Some(match v {
                    [b'"', inner @ .., b'"'] => inner.to_vec(),
                    v => v.to_vec(),
                })
            });
    }
    let id = id?;
    let at = id.iter().position(|&b| b == s.separator)?;
    Some(id[at + 1..].to_vec()).filter(|r| !r.is_empty())
}

/// Trims ASCII whitespace (space, tab, CR, LF, form feed) at the start.
fn trim_ws_start(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n' | b'\x0c', rest @ ..] = v {
        v = rest;
    }
    v
}

/// Trims ASCII whitespace at both ends.
fn trim_ws(v: &[u8]) -> &[u8] {
    let mut v = trim_ws_start(v);
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'] = v {
        v = rest;
    }
    v
}

/// What ringlb's `http::keep_alive::timeout_secs` should find in a `Keep-Alive` value, found
/// another way: the value cut into items by a three-state machine (plain, quoted, escaped),
/// each item's `timeout=` value read on its own. Also whether the value ends inside a quoted
/// string (then nothing appended to it can count).
pub fn keep_alive_model(v: &[u8]) -> (Option<u32>, bool) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Plain,
        Quoted,
        Escaped,
    }
    let mut items: Vec<Vec<u8>> = vec![Vec::new()];
    let mut state = State::Plain;
    for &b in v {
        state = match (state, b) {
            (State::Plain, b',') => {
                items.push(Vec::new());
                continue;
            }
            (State::Plain, b'"') | (State::Escaped, _) => State::Quoted,
            (State::Plain, _) => State::Plain,
            (State::Quoted, b'"') => State::Plain,
            (State::Quoted, b'\\') => State::Escaped,
            (State::Quoted, _) => State::Quoted,
        };
        items.last_mut().expect("one item at least").push(b);
    }
    let timeout = items
        .iter()
        .filter_map(|item| {
            let eq = item.iter().position(|&b| b == b'=')?;
            let name = item[..eq].to_ascii_lowercase();
            if name.trim_ascii() != b"timeout" {
                return None;
            }
            let mut value = item[eq + 1..].trim_ascii();
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            if !(1..=10).contains(&value.len()) || value.iter().any(|b| !b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
            Some(n.min(u64::from(u32::MAX)) as u32)
        })
        .min();
    (timeout, state != State::Plain)
}
