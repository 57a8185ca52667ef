//! Request heads: parse arbitrary bytes; when ringlb accepts them, the head it forwards to a member
//! must parse the same way again (same method, path, body framing and end-to-end headers), and end
//! exactly where ringlb wrote its end. Read in pieces (sizes drawn from the cut), parsing only
//! when `HeadScan` says so decides as parsing every read does, and no later than the read that
//! brings a control byte. Empty lines before the request, which ringlb drops between requests,
//! change nothing parsing decides.
//!
//! Input: max_headers (1 byte), max head bytes (2 bytes), flags (1 byte: preserve_host, IPv6
//! client, trusted proxy, TLS client), a cut (2 bytes), then the bytes a client sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{
    esc, header_lines, header_set, named_by_connection, special_alias, within, Input,
};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max_headers = 1 + usize::from(input.u8()) % MAX_HEADERS_CAP;
    let max_bytes = MIN_REQUEST_HEAD_BYTES + usize::from(input.u16());
    assert!(max_bytes <= MAX_REQUEST_HEAD_BYTES);
    let flags = input.u8();
    let cut = input.u16();
    let raw = input.rest();
    scan_decides_as_every_read(raw, max_bytes, max_headers, cut);
    empty_lines_first_change_nothing(raw, max_bytes, max_headers);

    let head = match parse_request(raw, max_bytes, max_headers) {
        Ok(h) => h,
        Err(HeadError::Partial) => {
            assert!(raw.len() < max_bytes, "Partial at or over the limit");
            return;
        }
        Err(_) => return,
    };
    let n = head.head_len;
    assert!(
        n <= raw.len() && n <= max_bytes,
        "head_len {n} over the input"
    );
    for r in request_ranges(&head) {
        assert!(within(&r, n), "range {r:?} outside the head ({n})");
    }

    // The head alone parses the same (nothing after it counts), and any shorter prefix of it is
    // Partial: ringlb re-parses as bytes arrive, so a head must not depend on how reads split it.
    let alone = parse_request(&raw[..n], max_bytes, max_headers).expect("the head alone");
    assert_eq!(alone.head_len, n);
    assert_eq!(alone.body, head.body);
    for p in [n - 1, usize::from(cut) % n] {
        assert_eq!(
            parse_request(&raw[..p], max_bytes, max_headers).err(),
            Some(HeadError::Partial),
            "prefix of {p} bytes of a valid head: {}",
            esc(&raw[..p])
        );
    }

    // What ringlb forwards: the rewritten head, then the body bytes as it frames them.
    let member = Member {
        host_port: "127.0.0.1:9001",
        preserve_host: flags & 1 != 0,
        client: if flags & 2 != 0 {
            "[2001:db8::7]:50000".parse().unwrap()
        } else {
            "10.0.0.7:50000".parse().unwrap()
        },
        trusted: flags & 4 != 0,
        https: flags & 8 != 0,
    };
    // ringlb refuses a path above the root; any other goes out in normal form.
    let Some(target) = forward_target(raw, &head) else {
        return;
    };
    let mut out = Vec::new();
    rewrite_request(&mut out, raw, &head, &target, &member);
    let written = out.len();
    let mut ours = Tracker::new(head.body);
    let body = ours.advance_with(&raw[n..], |_| {});
    let body_len = *body.as_ref().unwrap_or(&0);
    out.extend_from_slice(&raw[n..n + body_len]);

    let again = match parse_request(&out, MAX_REQUEST_HEAD_BYTES, MAX_HEADERS_CAP) {
        Ok(h) => h,
        Err(HeadError::TooLarge) if header_lines(&out[..written]) > MAX_HEADERS_CAP => return,
        Err(e) => panic!(
            "the forwarded head does not parse ({e:?})\nclient sent: {}\nforwarded:   {}",
            esc(&raw[..n]),
            esc(&out[..written])
        ),
    };
    let ctx = || {
        format!(
            "\nclient sent: {}\nforwarded:   {}",
            esc(&raw[..n]),
            esc(&out[..written])
        )
    };
    assert_eq!(again.head_len, written, "head ends elsewhere{}", ctx());
    assert_eq!(
        again.method(&out),
        head.method(raw),
        "method changed{}",
        ctx()
    );
    let want_path = if target.first() == Some(&b'/') || target == b"*" {
        target.clone()
    } else {
        [&b"/"[..], &target].concat()
    };
    assert_eq!(
        &out[again.path.clone()],
        &want_path[..],
        "path changed{}",
        ctx()
    );
    assert_eq!(
        forward_target(&out, &again).as_deref(),
        Some(&want_path[..]),
        "the forwarded path is not in normal form{}",
        ctx()
    );
    assert!(
        again.authority.is_none(),
        "forwarded in absolute form{}",
        ctx()
    );
    assert_eq!(again.minor_version, 1);
    assert_eq!(again.body, head.body, "body framing changed{}", ctx());
    assert!(!again.expect_continue, "Expect forwarded{}", ctx());

    // Host: the client's (preserve_host) or the member's.
    let client_host = head.routing_host(raw);
    let want_host: &[u8] = if member.preserve_host && !client_host.is_empty() {
        client_host
    } else {
        member.host_port.as_bytes()
    };
    assert_eq!(again.routing_host(&out), want_host, "Host{}", ctx());

    // End-to-end headers go through unchanged; hop-by-hop ones, and those the client's Connection
    // header names, do not.
    assert_eq!(
        header_set(&out, &again.headers, |h| h.kind == HeaderKind::Other),
        header_set(raw, &head.headers, |h| {
            h.kind == HeaderKind::Other
                && !named_by_connection(raw, &head.headers, h)
                && !special_alias(&raw[h.name.clone()])
        }),
        "end-to-end headers changed{}",
        ctx()
    );
    // An upgrade (on a route tunnelling any protocol, as `rewrite_request` assumes) goes with
    // exactly its offer and `Connection: upgrade`, any other request with `Connection:
    // keep-alive`; nothing else carries either header.
    let any = ringlb::config::Upgrades {
        any: true,
        protocols: Vec::new(),
    };
    let offer = ringlb::http::upgrade::offer(raw, &head, &any);
    let upgrading = usize::from(offer.is_some());
    if let Some(r) = &offer {
        let h = again.headers.iter().find(|h| h.kind == HeaderKind::Upgrade).unwrap();
        assert_eq!(&out[h.value.clone()], &raw[r.clone()], "the Upgrade offer{}", ctx());
    }
    let connection = again.headers.iter().find(|h| h.kind == HeaderKind::Connection);
    let want: &[u8] = if offer.is_some() { b"upgrade" } else { b"keep-alive" };
    assert_eq!(
        connection.map(|h| &out[h.value.clone()]),
        Some(want),
        "the Connection header{}",
        ctx()
    );
    for (kind, want) in [
        (HeaderKind::XForwardedFor, 1),
        (
            HeaderKind::XForwardedHost,
            usize::from(!client_host.is_empty()),
        ),
        (HeaderKind::XForwardedProto, 1),
        (HeaderKind::Connection, 1),
        (HeaderKind::Upgrade, upgrading),
        (HeaderKind::HopByHop, 0),
        (HeaderKind::KeepAlive, 0),
        (HeaderKind::Expect, 0),
    ] {
        let have = again.headers.iter().filter(|h| h.kind == kind).count();
        assert_eq!(have, want, "{kind:?} headers{}", ctx());
    }

    // The trail: a trusted proxy's X-Forwarded-For values (trimmed, empty ones left out) then the
    // client's address; anyone else's address alone. The scheme: a trusted proxy's last
    // X-Forwarded-Proto element when it is http or https, else the client's own (https over TLS).
    let value_of = |kind: HeaderKind| {
        let h = again.headers.iter().find(|h| h.kind == kind).unwrap();
        out[h.value.clone()].to_vec()
    };
    let mut trail: Vec<Vec<u8>> = head
        .headers
        .iter()
        .filter(|h| member.trusted && h.kind == HeaderKind::XForwardedFor)
        .map(|h| raw[h.value.clone()].trim_ascii().to_vec())
        .filter(|v| !v.is_empty())
        .collect();
    trail.push(member.client.ip().to_canonical().to_string().into_bytes());
    assert_eq!(
        value_of(HeaderKind::XForwardedFor),
        trail.join(&b", "[..]),
        "X-Forwarded-For{}",
        ctx()
    );
    let proto = head
        .headers
        .iter()
        .rev()
        .find(|h| member.trusted && h.kind == HeaderKind::XForwardedProto)
        .and_then(|h| raw[h.value.clone()].split(|&b| b == b',').next_back())
        .map(|v| v.trim_ascii().to_ascii_lowercase())
        .filter(|v| v == b"http" || v == b"https")
        .unwrap_or(if member.https { b"https".to_vec() } else { b"http".to_vec() });
    assert_eq!(
        value_of(HeaderKind::XForwardedProto),
        proto,
        "X-Forwarded-Proto{}",
        ctx()
    );

    // The member finds the same body end as ringlb did.
    if body.is_ok() {
        let mut theirs = Tracker::new(again.body);
        let used = theirs.advance_with(&out[written..], |_| {});
        assert_eq!(used, Ok(body_len), "member's body differs{}", ctx());
        assert_eq!(
            theirs.is_done(),
            ours.is_done(),
            "body end differs{}",
            ctx()
        );
    }
});

/// What parsing after every read decides (`Some`: a whole head's length, or an error's status).
fn outcome(buf: &[u8], max_bytes: usize, max_headers: usize) -> Option<Result<usize, u16>> {
    match parse_request(buf, max_bytes, max_headers) {
        Ok(h) => Some(Ok(h.head_len)),
        Err(HeadError::Partial) => None,
        Err(e) => Some(Err(e.status())),
    }
}

/// `raw` arrives in reads of 1 to 16 bytes (sizes from `seed`): parsing only when `HeadScan` says
/// so comes to the same decision, in the same read as parsing every read where that read brought
/// a control byte, else by the next line end or the limit.
fn scan_decides_as_every_read(raw: &[u8], max_bytes: usize, max_headers: usize, seed: u16) {
    let raw = &raw[..raw.len().min(max_bytes)];
    let mut scan = HeadScan::default();
    let (mut at, mut rng) = (0usize, u32::from(seed) | 1);
    let (mut every, mut gated) = (None, None);
    while at < raw.len() && gated.is_none() {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        at = (at + 1 + (rng >> 16) as usize % 16).min(raw.len());
        let buf = &raw[..at];
        let now = outcome(buf, max_bytes, max_headers);
        every = every.or(now);
        if scan.worth_parsing(buf, max_bytes) {
            gated = now;
        }
        if gated.is_none() && every.is_some() {
            let stray = buf
                .iter()
                .any(|&b| (b < 0x20 && !b"\t\r\n".contains(&b)) || b == 0x7f);
            assert!(!stray, "a control byte waited for more: {}", esc(buf));
        }
    }
    if let Some(Ok(n)) = every {
        assert_eq!(gated, Some(Ok(n)), "a whole head not found: {}", esc(raw));
    }
    if gated.is_some() {
        assert_eq!(every, gated, "decided otherwise: {}", esc(raw));
    }
}

/// The empty lines ringlb drops before a request (`leading_empty_lines`, between requests) are
/// only CR and LF, leave no empty line at the start, and change nothing parsing decides: the same
/// outcome, the head ending at the same byte.
fn empty_lines_first_change_nothing(raw: &[u8], max_bytes: usize, max_headers: usize) {
    let skip = leading_empty_lines(raw);
    assert!(skip <= raw.len());
    assert!(raw[..skip].iter().all(|&b| b == b'\r' || b == b'\n'));
    assert_eq!(leading_empty_lines(&raw[skip..]), 0);
    // Within the limit, so that both parse all of what they are given.
    if raw.len() < max_bytes {
        let all = parse_request(raw, max_bytes, max_headers).map(|h| (h.head_len, h.body));
        let rest = parse_request(&raw[skip..], max_bytes, max_headers)
            .map(|h| (h.head_len + skip, h.body));
        assert_eq!(all, rest, "{}", esc(raw));
    }
}
