//! A route's mapping (`http::reverse`) on any target and any response header value: no panic; a
//! mapped target begins with the member path and never with `//`; a rewritten header is one line
//! (`name: value\r\n`) whose value has no CR, LF or NUL the input did not have, and is the input
//! itself unless it is a URL header or a Set-Cookie (whose Domain may become a configured one); mapping a target and then the member's
//! redirect to it gives the target back.
//!
//! Input: a selector byte (bits 0-2 the prefix pair, bit 3 https, bits 4-5 the header name), a
//! Host length byte, the Host (made an origin by `public_origin`, or none), then the value (also
//! used as the target's rest).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_fuzz::glue::*;
use ringlb_fuzz::Input;

const PAIRS: [(&str, &str); 6] = [
    ("/os", "/openspecimen"),
    ("/os/", "/app/"),
    ("/", "/app/"),
    ("/os/", "/"),
    ("/a/b", "/a"),
    ("/same", "/same"),
];
const NAMES: [&[u8]; 4] = [b"Location", b"Set-Cookie", b"Content-Location", b"X-Other"];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let host_len = usize::from(input.u8() % 64);
    let host = input.bytes(host_len).to_vec();
    let value = input.rest();
    let mut origin = Vec::new();
    public_origin(&mut origin, &host, sel & 8 != 0);
    let (public, member) = PAIRS[usize::from(sel & 7) % PAIRS.len()];
    let domains = [CookieDomain {
        from: "backend.internal".into(),
        to: "www.example.org".into(),
    }];
    let r = Reverse {
        mapping: Mapping {
            public: public.as_bytes(),
            member: member.as_bytes(),
            members: &[],
            cookie_domains: &domains,
        },
        origin: &origin,
    };
    let name = NAMES[usize::from(sel >> 4) & 3];
    let out = reverse_header(name, value, &r);
    let line_end = out.len() - 2;
    assert!(out.starts_with(name) && out[name.len()..].starts_with(b": "));
    assert!(out.ends_with(b"\r\n"));
    let written = &out[name.len() + 2..line_end];
    for bad in [b'\r', b'\n', 0] {
        let had = value.contains(&bad);
        assert!(had || !written.contains(&bad), "a new {bad:#x} in {written:?}");
    }
    if name == b"X-Other" {
        assert_eq!(written, value);
    }
    // A browser drops TAB, LF and CR and takes `\` for `/`: a mapped value never names a host
    // that the member's did not.
    let browser: Vec<u8> = written.iter().copied().filter(|b| !b"\t\r\n".contains(b)).collect();
    let url_header = name == b"Location" || name == b"Content-Location";
    if url_header && browser.len() >= 2 && b"/\\".contains(&browser[0]) && b"/\\".contains(&browser[1]) {
        assert_eq!(written, value, "mapped into a reference to another host");
    }
    // The target: the public prefix and the value's bytes up to a space (a request line's).
    let rest: Vec<u8> = value.iter().copied().take_while(|&b| b > b' ' && b != b'#').collect();
    let mut target = public.as_bytes().to_vec();
    target.extend_from_slice(rest.strip_prefix(b"/").filter(|_| public.ends_with('/')).unwrap_or(&rest));
    let mut mapped = Vec::new();
    // Whole segments only: `/os` followed by `x` is another path, never mapped.
    let after = &target[public.len()..];
    let boundary = public.ends_with('/') || matches!(after.first(), None | Some(b'/' | b'?' | b';'));
    let ok = map_target(&target, public.as_bytes(), member.as_bytes(), &mut mapped);
    assert_eq!(ok, boundary, "{target:?} under {public:?}");
    if !ok {
        return;
    }
    assert!(mapped.starts_with(member.as_bytes()));
    assert!(!mapped.starts_with(b"//"), "{mapped:?}");
    let odd = |w: &[u8]| w[0] == b'/' && (w[1] == b'/' || w[1] == b'\\');
    if !rest.starts_with(b"/") && !rest.starts_with(b"\\") && !target.windows(2).any(odd) {
        let back = reverse_header(b"Location", &mapped, &r);
        assert_eq!(&back[10..back.len() - 2], &target[..], "{target:?} -> {mapped:?}");
    }
});
