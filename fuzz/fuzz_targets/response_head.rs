//! Response heads: parse arbitrary bytes from a member; when ringlb accepts them, the head it
//! writes to the client must parse again with the same status, reason, end-to-end headers and the
//! framing ringlb relays the body with (chunked passed through, or de-chunked and close-delimited
//! for an HTTP/1.0 client; a close-delimited body framed as chunked for an HTTP/1.1 client), and
//! the client must find the body's end where ringlb does (for a close-delimited body, the member
//! closes after the input's last byte). The head's `Keep-Alive` timeout is the smallest its
//! `Keep-Alive` headers hold.
//!
//! Input: flags (1 byte: request was HEAD, client HTTP/1.0, client wants keep-alive), max head
//! bytes (2 bytes; 0 = ringlb's own limit), then the bytes the member sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{esc, header_lines, header_set, named_by_connection, within, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let max_bytes = match input.u16() {
        0 => MAX_RESPONSE_HEAD,
        m => usize::from(m),
    };
    let raw = input.rest();
    let is_head = flags & 1 != 0;
    let client_minor = u8::from(flags & 2 == 0);
    let client_keep_alive = flags & 4 != 0;

    let head = match parse_response(raw, max_bytes) {
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
    for r in response_ranges(&head) {
        assert!(within(&r, n), "range {r:?} outside the head ({n})");
    }
    assert!(
        head.body != BodyKind::UntilClose || !head.keep_alive,
        "a close-delimited response cannot keep the member connection"
    );
    // The member's Keep-Alive timeout: the smallest any of its Keep-Alive headers holds.
    let hinted = head
        .headers
        .iter()
        .filter(|h| raw[h.name.clone()].eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|h| keep_alive_timeout(raw[h.value.clone()].trim_ascii()))
        .min();
    assert_eq!(head.keep_alive_timeout, hinted, "Keep-Alive timeout");
    let alone = parse_response(&raw[..n], max_bytes).expect("the head alone");
    assert_eq!((alone.head_len, alone.body), (n, head.body));
    assert_eq!(
        parse_response(&raw[..n - 1], max_bytes).err(),
        Some(HeadError::Partial),
        "a valid head cut short"
    );

    let f = client_framing(&head, is_head, client_minor, client_keep_alive);
    let mut out = Vec::new();
    rewrite_response(&mut out, raw, &head, f.mode, client_minor, f.keep_client);
    let written = out.len();

    // What ringlb sends after the head: the framed bytes, the decoded data when de-chunking, or
    // the data as chunks (in two reads: the first byte, then the rest) and the last chunk when the
    // member's close ends it.
    let mut ours = Tracker::new(f.kind);
    let mut data = Vec::new();
    let body = ours.advance_with(&raw[n..], |r| data.extend_from_slice(&raw[n..][r]));
    if let Ok(used) = body {
        match f.mode {
            ClientBody::Dechunk => out.extend_from_slice(&data),
            ClientBody::Enchunk => {
                let mut chunks = ChunkEncoder::default();
                let (first, rest) = data.split_at(data.len().min(1));
                for part in [first, rest] {
                    chunks.start(&mut out, part.len());
                    out.extend_from_slice(part);
                }
                assert!(
                    ours.finish_at_close(),
                    "a close ends a close-delimited body"
                );
                chunks.finish(&mut out);
            }
            _ => out.extend_from_slice(&raw[n..n + used]),
        }
    }

    let again = match parse_response(&out, MAX_RESPONSE_HEAD) {
        Ok(h) => h,
        Err(HeadError::TooLarge) if header_lines(&out[..written]) > RESPONSE_HEADERS_CAP => return,
        Err(e) => panic!(
            "the client's head does not parse ({e:?})\nmember sent: {}\nclient got:  {}",
            esc(&raw[..n]),
            esc(&out[..written])
        ),
    };
    let ctx = || {
        format!(
            "\nmember sent: {}\nclient got:  {}\n{f:?}",
            esc(&raw[..n]),
            esc(&out[..written])
        )
    };
    assert_eq!(again.head_len, written, "head ends elsewhere{}", ctx());
    assert_eq!(again.status, head.status, "status{}", ctx());
    assert_eq!(
        &out[again.reason.clone()],
        &raw[head.reason.clone()],
        "reason{}",
        ctx()
    );

    // Framing: as declared, except that a de-chunked body is close-delimited, a close-delimited
    // one for an HTTP/1.1 client chunked, and that the transfer codings of a bodyless answer are
    // dropped for a 204 or an HTTP/1.0 client, and otherwise end in chunked as the answer's body
    // would have been framed (a member's codings without it: read to the close, then chunked).
    let codings_dropped = f.mode == ClientBody::None && (client_minor == 0 || head.status == 204);
    let coded = head.headers.iter().any(|h| {
        h.kind == HeaderKind::TransferEncoding && tokens(&raw[h.value.clone()]).next().is_some()
    });
    let want_body = match f.mode {
        ClientBody::Dechunk => BodyKind::UntilClose,
        ClientBody::Enchunk => BodyKind::Chunked,
        _ if codings_dropped && head.body == BodyKind::Chunked => BodyKind::UntilClose,
        ClientBody::None if !codings_dropped && coded && head.body == BodyKind::UntilClose => {
            BodyKind::Chunked
        }
        _ => head.body,
    };
    assert_eq!(again.body, want_body, "framing{}", ctx());
    // The client's view of the body (it knows a HEAD/204/304 response has none).
    let client_kind = if f.mode == ClientBody::None {
        BodyKind::Empty
    } else {
        again.body
    };
    if again.body != BodyKind::UntilClose {
        assert_eq!(again.keep_alive, f.keep_client, "keep-alive{}", ctx());
    } else {
        assert!(
            !f.keep_client || client_kind != BodyKind::UntilClose,
            "connection kept after a close-delimited body{}",
            ctx()
        );
    }

    // End-to-end headers go through unchanged. (What the member's Connection header names is
    // hop-by-hop; the Connection header ringlb writes is its own, and names nothing it forwards.)
    let framing_or_hop = |h: &HeaderPos| {
        matches!(
            h.kind,
            HeaderKind::Connection
                | HeaderKind::HopByHop
                | HeaderKind::KeepAlive
                | HeaderKind::Upgrade
                | HeaderKind::ContentLength
                | HeaderKind::TransferEncoding
        )
    };
    assert_eq!(
        header_set(&out, &again.headers, |h| !framing_or_hop(h)),
        header_set(raw, &head.headers, |h| {
            !framing_or_hop(h) && !named_by_connection(raw, &head.headers, h)
        }),
        "end-to-end headers changed{}",
        ctx()
    );

    // The client finds the body's end where ringlb does.
    if body.is_ok() {
        let sent = out.len() - written;
        let mut theirs = Tracker::new(client_kind);
        let used = theirs.advance_with(&out[written..], |_| {});
        assert_eq!(used, Ok(sent), "client's body differs{}", ctx());
        if ours.is_done() && client_kind != BodyKind::UntilClose {
            assert!(theirs.is_done(), "client waits for more body{}", ctx());
        }
    }
});
