//! Sticky-session lookup (`sticky::route`) on any request: it never panics, the route it returns
//! is a non-empty slice of the request's own bytes (the head or the routed target), and it is
//! exactly what a plain model finds (the last `;name=` path parameter, else the first cookie,
//! then what follows the first separator). A routed path parameter decides whatever cookie comes
//! with it.
//!
//! Input: flags (1 byte: bits 0-1 the names, bit 2 arbitrary mode), separator (1 byte; an ASCII
//! byte as it is, others give `.`), then either a request a client sent (parsed as ringlb does,
//! and looked up on its normalised target) or, in arbitrary mode, a header count (1 byte), four
//! range bytes per header, a target length (1 byte), the target and the bytes the ranges index.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::{esc, sticky_model, Input};

const NAMES: [(&str, &str); 4] = [
    ("JSESSIONID", "jsessionid"),
    ("JSESSIONID", "JSESSIONID"),
    ("ROUTEID", "routeid"),
    ("s", "s"),
];

/// Whether `part` lies inside `whole`'s memory.
fn within_slice(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr_range(), whole.as_ptr_range());
    w.start <= p.start && p.end <= w.end
}

fn check(buf: &[u8], head: &RequestHead, target: &[u8], s: &Sticky) {
    let got = sticky_route(buf, head, target, s);
    if let Some(r) = got {
        assert!(!r.is_empty(), "an empty route");
        assert!(
            within_slice(r, buf) || within_slice(r, target),
            "the route is not a slice of the request"
        );
    }
    let want = sticky_model(buf, &head.headers, target, s);
    assert_eq!(
        got.map(<[u8]>::to_vec),
        want,
        "route vs model: buf {} target {}",
        esc(buf),
        esc(target)
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let sep = input.u8();
    let (cookie, path_param) = NAMES[usize::from(flags & 3)];
    let s = Sticky {
        cookie: cookie.into(),
        path_param: path_param.into(),
        separator: if sep.is_ascii() { sep } else { b'.' },
        nofailover: false,
    };
    if flags & 4 == 0 {
        let raw = input.rest();
        let Ok(head) = parse_request(raw, MAX_REQUEST_HEAD_BYTES, MAX_HEADERS_CAP) else {
            return;
        };
        // As the proxy looks it up: on the normalised target, and on the raw one.
        if let Some(target) = forward_target(raw, &head) {
            check(raw, &head, &target, &s);
        }
        check(raw, &head, &raw[head.path.clone()], &s);
        // A routed path parameter decides: a Cookie naming another route changes nothing.
        let target = &raw[head.path.clone()];
        if let Some(route) = sticky_route(raw, &head, target, &s) {
            let from_path = sticky_model(raw, &[], target, &s);
            if from_path.as_deref() == Some(route) && raw[..head.head_len].ends_with(b"\r\n\r\n") {
                let mut more = raw[..head.head_len - 2].to_vec();
                more.extend_from_slice(
                    format!("Cookie: {cookie}=X{}other\r\n\r\n", s.separator as char).as_bytes(),
                );
                // The cookie may make the head unacceptable (too many headers): then no check.
                if let Ok(h) = parse_request(&more, MAX_REQUEST_HEAD_BYTES, MAX_HEADERS_CAP) {
                    let again = sticky_route(&more, &h, &more[h.path.clone()], &s);
                    assert_eq!(
                        again,
                        Some(route),
                        "a cookie overrode the path: {}",
                        esc(&more)
                    );
                }
            }
        }
    } else {
        let n = usize::from(input.u8() % 16);
        let ranges: Vec<[u8; 4]> = (0..n)
            .map(|_| [input.u8(), input.u8(), input.u8(), input.u8()])
            .collect();
        let target_len = usize::from(input.u8());
        let target = input.bytes(target_len);
        let buf = input.rest();
        let range = |a: u8, b: u8| {
            let start = usize::from(a) % (buf.len() + 1);
            start..start + usize::from(b) % (buf.len() - start + 1)
        };
        let headers = ranges
            .iter()
            .map(|r| {
                let name = range(r[0], r[1]);
                HeaderPos {
                    kind: classify(&buf[name.clone()]),
                    name,
                    value: range(r[2], r[3]),
                }
            })
            .collect();
        check(buf, &head_with_headers(headers), target, &s);
    }
});
