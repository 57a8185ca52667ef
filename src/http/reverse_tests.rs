//! Examples of each rule (Apache's documented cases first), then properties over generated
//! prefixes and paths: mapping a target and mapping the member's redirect to it back gives the
//! target; nothing is rewritten without a mapping but a member's own address; no output begins a
//! path with `//`, nor with anything a browser reads so (`/\\`, TAB, LF, CR); a value the rules do
//! not recognise comes out byte for byte.

use super::*;
use crate::config::Config;
use crate::test_rng::Rng;

fn members(urls: &[&str]) -> Vec<MemberConfig> {
    let list: Vec<String> = urls
        .iter()
        .map(|u| format!("{{ url = \"{u}\" }}"))
        .collect();
    let text = format!(
        "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [{}]\n",
        list.join(", ")
    );
    Config::parse(&text).unwrap().balancers.remove(0).members
}

/// `origin`: `http://host`, or empty for "".
fn rev<'a>(
    public: &'a str,
    member: &'a str,
    ms: &'a [MemberConfig],
    origin: &'a str,
) -> Reverse<'a> {
    Reverse {
        mapping: Mapping {
            public: public.as_bytes(),
            member: member.as_bytes(),
            members: ms,
            cookie_domains: &[],
        },
        origin: origin.as_bytes(),
    }
}

fn url_of(value: &str, r: &Reverse) -> String {
    let mut out = Vec::new();
    url(&mut out, value.as_bytes(), r);
    String::from_utf8(out).unwrap()
}

fn cookie_of(value: &str, r: &Reverse) -> String {
    let mut out = Vec::new();
    cookie(&mut out, value.as_bytes(), &r.mapping);
    String::from_utf8(out).unwrap()
}

#[test]
fn targets_map_the_public_prefix_onto_the_member_path() {
    let mut out = Vec::new();
    assert!(map_target(b"/os/x?a=1", b"/os", b"/openspecimen", &mut out));
    assert_eq!(out, b"/openspecimen/x?a=1");
    assert!(map_target(b"/os", b"/os", b"/openspecimen", &mut out));
    assert_eq!(out, b"/openspecimen");
    // Whole segments: /osx is not under /os; /os;p (Tomcat's ;jsessionid=) and /os?q are.
    assert!(!map_target(b"/osx", b"/os", b"/openspecimen", &mut out));
    assert!(map_target(
        b"/os;jsessionid=1",
        b"/os",
        b"/openspecimen",
        &mut out
    ));
    assert_eq!(out, b"/openspecimen;jsessionid=1");
    assert!(map_target(b"/os?q", b"/os", b"/openspecimen", &mut out));
    assert_eq!(out, b"/openspecimen?q");
    assert!(map_target(b"/x/y", b"/", b"/app/", &mut out));
    assert_eq!(out, b"/app/x/y");
    assert!(map_target(b"/os/x", b"/os/", b"/", &mut out));
    assert_eq!(out, b"/x");
    // A parameter inside the prefix: not the prefix as written.
    assert!(!map_target(b"/o;s=1/x", b"/os", b"/app", &mut out));
}

#[test]
fn locations_at_a_member_or_under_the_member_path_come_back_public() {
    let ms = members(&["http://10.0.0.1:8080", "http://127.0.0.2:80"]);
    let r = rev("/os", "/openspecimen", &ms, "http://www.example.org");
    // The member's own address (Apache: ProxyPassReverse /os balancer://c/openspecimen).
    let cases = [
        (
            "http://10.0.0.1:8080/openspecimen/login",
            "http://www.example.org/os/login",
        ),
        (
            "HTTP://10.0.0.1:8080/openspecimen?x=1",
            "http://www.example.org/os?x=1",
        ),
        (
            "http://127.0.0.2/openspecimen/a",
            "http://www.example.org/os/a",
        ),
        // Outside the member path: the address still becomes the client's, the path stays.
        ("http://10.0.0.1:8080/other", "http://www.example.org/other"),
        // A path under the member path (Tomcat's relative redirects).
        ("/openspecimen/home", "/os/home"),
        // The client's own Host with the member path (AJP, preserve_host).
        (
            "https://www.example.org/openspecimen/x",
            "https://www.example.org/os/x",
        ),
        // Not ours: as they are.
        (
            "http://10.0.0.1:8081/openspecimen/x",
            "http://10.0.0.1:8081/openspecimen/x",
        ),
        (
            "https://10.0.0.1:8080/openspecimen/x",
            "https://10.0.0.1:8080/openspecimen/x",
        ),
        (
            "http://elsewhere.example/openspecimen",
            "http://elsewhere.example/openspecimen",
        ),
        ("/other/x", "/other/x"),
        (
            "//10.0.0.1:8080/openspecimen",
            "//10.0.0.1:8080/openspecimen",
        ),
        ("relative/path", "relative/path"),
        ("", ""),
    ];
    for (given, want) in cases {
        assert_eq!(url_of(given, &r), want, "{given}");
    }
    let tls = Reverse {
        origin: b"https://www.example.org",
        ..r
    };
    assert_eq!(
        url_of("http://10.0.0.1:8080/openspecimen/", &tls),
        "https://www.example.org/os/"
    );
    // Without a Host the client's address is unknown: a member URL stays.
    let nohost = rev("/os", "/openspecimen", &ms, "");
    assert_eq!(
        url_of("http://10.0.0.1:8080/openspecimen/x", &nohost),
        "http://10.0.0.1:8080/openspecimen/x"
    );
}

#[test]
fn a_result_never_names_another_host_and_odd_hosts_are_not_used() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let r = rev("/", "/app/", &ms, "http://h");
    assert_eq!(url_of("/app///evil.example/x", &r), "/evil.example/x");
    // A browser takes `\` for `/` and drops TAB, LF and CR: mapped, these would name
    // evil.example; they stay as the member wrote them (a path under /app/ on this host).
    for v in [
        "/app/\\evil.example/x",
        "/app/\t/evil.example",
        "/app/\t\\evil.example",
        "/app/\\/x",
    ] {
        assert_eq!(url_of(v, &r), v, "{v:?}");
    }
    // After an origin it would name nothing else, but the path stays unmapped all the same.
    assert_eq!(
        url_of("http://10.0.0.1:8080/app/\\evil", &r),
        "http://h/app/\\evil"
    );
    assert_eq!(
        url_of("/app/a\\b", &r),
        "/a\\b",
        "a backslash later is a path's"
    );
    assert_eq!(
        url_of("http://10.0.0.1:8080/app//evil", &r),
        "http://h/evil"
    );
    let mut out = Vec::new();
    assert!(map_target(b"/", b"/", b"/app/", &mut out));
    assert_eq!(out, b"/app/");
    assert!(map_target(b"?q=1", b"/", b"/app/", &mut out));
    assert_eq!(out, b"/app/?q=1");
    assert!(!map_target(b"?q=1", b"/os", b"/app", &mut out));
    for (host, https, want) in [
        ("www.example.org:8443", true, "https://www.example.org:8443"),
        ("10.0.0.9", false, "http://10.0.0.9"),
        ("[::1]:80", false, "http://[::1]:80"),
        ("x@evil.example", false, ""),
        ("a b", false, ""),
        ("h/x", false, ""),
        ("h:80x", false, ""),
        ("[::1", false, ""),
        ("", false, ""),
    ] {
        public_origin(&mut out, host.as_bytes(), https);
        assert_eq!(out, want.as_bytes(), "{host}");
    }
}

#[test]
fn without_a_member_path_only_a_members_own_address_is_rewritten() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let r = rev("/", "/", &ms, "http://site:8443");
    assert_eq!(url_of("http://10.0.0.1:8080/x", &r), "http://site:8443/x");
    assert_eq!(url_of("/x", &r), "/x");
    assert_eq!(url_of("http://site:8443/x", &r), "http://site:8443/x");
    let mut out = Vec::new();
    push_response_header(&mut out, b"Set-Cookie", b"a=1; Path=/", Some(&r));
    assert_eq!(out, b"Set-Cookie: a=1; Path=/\r\n");
}

#[test]
fn a_zoned_ipv6_members_address_is_its_own_with_the_zone_or_without() {
    // Its Host header goes without the zone, so a redirect built from Host has none.
    let ms = members(&["http://[fe80::1%2]:8080"]);
    let r = rev("/", "/", &ms, "http://site");
    assert_eq!(url_of("http://[fe80::1]:8080/x", &r), "http://site/x");
    assert_eq!(url_of("http://[fe80::1%2]:8080/x", &r), "http://site/x");
    assert_eq!(
        url_of("http://[fe80::2]:8080/x", &r),
        "http://[fe80::2]:8080/x"
    );
    assert_eq!(
        url_of("http://[fe80::1]:8081/x", &r),
        "http://[fe80::1]:8081/x"
    );
}

#[test]
fn cookie_paths_under_the_member_path_move_under_the_public_prefix() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let r = rev("/os", "/openspecimen", &ms, "http://h");
    let cases = [
        (
            "JSESSIONID=AB12; Path=/openspecimen; HttpOnly",
            "JSESSIONID=AB12; Path=/os; HttpOnly",
        ),
        (
            "JSESSIONID=AB12; path=/openspecimen/",
            "JSESSIONID=AB12; path=/os/",
        ),
        (
            "a=1;Path = /openspecimen/x ;Secure",
            "a=1;Path = /os/x ;Secure",
        ),
        ("a=1; Path=/openspecimenx", "a=1; Path=/openspecimenx"),
        ("a=1; Path=/other", "a=1; Path=/other"),
        // The cookie's own name or value is never a Path attribute.
        ("Path=/openspecimen; Secure", "Path=/openspecimen; Secure"),
        ("a=1", "a=1"),
    ];
    for (given, want) in cases {
        assert_eq!(cookie_of(given, &r), want, "{given}");
    }
    let root = rev("/", "/app/", &ms, "http://h");
    assert_eq!(cookie_of("s=1; Path=/app", &root), "s=1; Path=/");
    assert_eq!(cookie_of("s=1; Path=/app/x", &root), "s=1; Path=/x");
    assert_eq!(cookie_of("s=1; Path=/app//x", &root), "s=1; Path=/x");
    let under = rev("/os/", "/", &ms, "http://h");
    assert_eq!(cookie_of("s=1; Path=/", &under), "s=1; Path=/os/");
    assert_eq!(cookie_of("s=1; Path=/x", &under), "s=1; Path=/os/x");
}

#[test]
fn cookie_domains_named_by_the_route_are_replaced() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let domains = [crate::config::CookieDomain {
        from: "backend.internal".into(),
        to: "www.example.org".into(),
    }];
    let mut r = rev("/os", "/openspecimen", &ms, "http://h");
    r.mapping.cookie_domains = &domains;
    let cases = [
        (
            "a=1; Domain=backend.internal; Path=/openspecimen/x; HttpOnly",
            "a=1; Domain=www.example.org; Path=/os/x; HttpOnly",
        ),
        (
            "a=1; domain=.Backend.Internal",
            "a=1; domain=.www.example.org",
        ),
        (
            "a=1;Domain = backend.internal ;Secure",
            "a=1;Domain = www.example.org ;Secure",
        ),
        ("a=1; Domain=other.internal", "a=1; Domain=other.internal"),
        (
            "a=1; Domain=xbackend.internal",
            "a=1; Domain=xbackend.internal",
        ),
        // The cookie's own name or value is never an attribute.
        (
            "Domain=backend.internal; Secure",
            "Domain=backend.internal; Secure",
        ),
        // Every matching attribute, empty ones and stray separators as they are.
        (
            "a=1; Path=/openspecimen; Domain=; Path=; ;Domain=backend.internal;",
            "a=1; Path=/os; Domain=; Path=; ;Domain=www.example.org;",
        ),
        (";;", ";;"),
    ];
    for (given, want) in cases {
        assert_eq!(cookie_of(given, &r), want, "{given}");
    }
    // Without a member path, domains alone.
    let mut same = rev("/os", "/os", &ms, "http://h");
    same.mapping.cookie_domains = &domains;
    assert_eq!(
        cookie_of("a=1; Domain=backend.internal; Path=/os", &same),
        "a=1; Domain=www.example.org; Path=/os"
    );
}

#[test]
fn only_url_headers_and_set_cookie_are_touched() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let r = rev("/os", "/openspecimen", &ms, "http://h");
    let mut out = Vec::new();
    for name in ["Location", "content-location", "URI"] {
        out.clear();
        push_response_header(&mut out, name.as_bytes(), b"/openspecimen/x", Some(&r));
        assert_eq!(out, format!("{name}: /os/x\r\n").as_bytes());
    }
    out.clear();
    push_response_header(&mut out, b"Refresh", b"0; url=/openspecimen/x", Some(&r));
    assert_eq!(out, b"Refresh: 0; url=/openspecimen/x\r\n");
    out.clear();
    push_response_header(&mut out, b"Location", b"/openspecimen/x", None);
    assert_eq!(out, b"Location: /openspecimen/x\r\n");
}

/// A path of 0-3 segments from a small alphabet (collisions with the prefixes are likely).
fn path(rng: &mut Rng) -> String {
    let n = rng.next() % 4;
    let segments = ["a", "os", "app", "x", "%41", ";j=1", ""];
    (0..n)
        .map(|_| format!("/{}", rng.pick(&segments)))
        .collect()
}

#[test]
fn no_mapped_path_names_another_host_as_a_browser_reads_it() {
    // Every value of up to five bytes from the characters that matter, after a member path.
    let ms = members(&["http://10.0.0.1:8080"]);
    let alphabet = [b'/', b'\\', b'\t', b'\r', b'\n', b'e', b'?'];
    let browser_host = |v: &[u8]| {
        let s: Vec<u8> = v
            .iter()
            .copied()
            .filter(|b| !b"\t\r\n".contains(b))
            .collect();
        s.len() >= 2 && b"/\\".contains(&s[0]) && b"/\\".contains(&s[1])
    };
    for (public, member) in [
        ("/", "/app/"),
        ("/os", "/app"),
        ("/", "/app"),
        ("/os/", "/"),
    ] {
        let r = rev(public, member, &ms, "http://h");
        for n in 0..=5u32 {
            for k in 0..alphabet.len().pow(n) {
                let mut v = member.as_bytes().to_vec();
                let mut k = k;
                for _ in 0..n {
                    v.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let mut out = Vec::new();
                url(&mut out, &v, &r);
                assert!(
                    !browser_host(&out) || out == v,
                    "{v:?} under {member} became {out:?}"
                );
            }
        }
    }
}

#[test]
fn a_mapped_target_redirected_to_comes_back_as_the_target() {
    let ms = members(&["http://10.0.0.1:8080"]);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let prefixes = [
        ("/os", "/openspecimen"),
        ("/os/", "/app/"),
        ("/", "/app/"),
        ("/a/b", "/a"),
        ("/os/", "/"),
    ];
    for _ in 0..5000 {
        let (public, member) = prefixes[(rng.next() % prefixes.len() as u64) as usize];
        let query = rng.pick(&["", "?q=1", "?u=/openspecimen/x"]);
        let p = path(&mut rng);
        let rest = match (public.ends_with('/'), rng.next() % 4) {
            (true, _) => p.trim_start_matches('/').to_string(),
            // Now and then a path that only shares the prefix's bytes (`/osx`): not mapped.
            (false, 0) => format!("x{p}"),
            (false, _) => p,
        };
        let target = format!("{public}{rest}{query}");
        let mut forwarded = Vec::new();
        // Whole segments only: `/os` followed by `x` is another path, never mapped.
        let after = &target[public.len()..];
        let boundary =
            public.ends_with('/') || after.is_empty() || after.starts_with(['/', '?', ';']);
        let ok = map_target(
            target.as_bytes(),
            public.as_bytes(),
            member.as_bytes(),
            &mut forwarded,
        );
        assert_eq!(ok, boundary, "{target} under {public}");
        if !ok {
            continue;
        }
        assert!(forwarded.starts_with(member.as_bytes()));
        assert!(!forwarded.starts_with(b"//"), "{target}");
        let r = rev(public, member, &ms, "http://pub.example");
        let back = url_of(std::str::from_utf8(&forwarded).unwrap(), &r);
        assert_eq!(back, target, "{public} -> {member}");
        let absolute = format!(
            "http://10.0.0.1:8080{}",
            std::str::from_utf8(&forwarded).unwrap()
        );
        assert_eq!(url_of(&absolute, &r), format!("http://pub.example{target}"));
        // Any other value: byte for byte, or mapped from a path under the member path only.
        let other = format!("http://other.example{}", path(&mut rng));
        assert_eq!(url_of(&other, &r), other);
    }
}
