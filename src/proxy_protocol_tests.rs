//! `proxy_protocol::parse`: examples of each form and each refusal, and property tests with the
//! `ppp` crate as the oracle: every header generated (v1 and v2, random addresses, ports and
//! TLVs) parses to ppp's source address and length; every strict prefix of one is "more needed";
//! and whatever mutated bytes ringlb accepts, ppp accepts with the same address (ringlb is never
//! the more lenient reader).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;
use crate::test_rng::Rng;

fn done(buf: &[u8]) -> Header {
    match parse(buf) {
        Ok(Some(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn version_1_forms() {
    let h = done(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n");
    assert_eq!(h.len, 41);
    assert_eq!(h.source.addr(), Some("192.0.2.7:56324".parse().unwrap()));
    let h = done(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 80\r\n");
    assert_eq!(
        h.source.addr(),
        Some("[2001:db8::7]:65535".parse().unwrap())
    );
    assert_eq!(done(b"PROXY UNKNOWN\r\n").source, Source::Unknown);
    assert_eq!(
        done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").source,
        Source::Unknown
    );
}

#[test]
fn version_1_refusals_and_partials() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n"[..],
        b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443 9\r\n",
        b"PROXY TCP4 192.0.2.7  10.0.0.1 56324 443\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
        b"PROXY TCP6 192.0.2.7 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 0443 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 443\r\n",
        b"PROXY TCP4 192.0.2.07 10.0.0.1 1 443\r\n",
        b"PROXY tcp4 192.0.2.7 10.0.0.1 1 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 443\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 443\r\r\n",
        b"PROXY TCP4 192.0.2.7\t10.0.0.1 1 443\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 \xff\r\n",
        b"PROXY \r\n",
    ] {
        assert_eq!(
            parse(bad),
            Err(Invalid::Malformed),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Invalid::NotAHeader));
    assert_eq!(parse(b"PROXZ"), Err(Invalid::NotAHeader));
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
    assert_eq!(parse(&long), Err(Invalid::TooLong));
    for partial in [
        &b""[..],
        b"P",
        b"PROXY",
        b"PROXY TCP4 1.2.3.4",
        b"PROXY UNKNOWN\r",
    ] {
        assert_eq!(parse(partial), Ok(None), "{partial:?}");
    }
}

/// A version 2 header: command, family byte, address block and TLVs.
fn v2_bytes(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.push(0x20 | command);
    b.push(family);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn version_2_forms_and_refusals() {
    let v4 = [192, 0, 2, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb];
    let h = done(&v2_bytes(1, 0x11, &v4));
    assert_eq!(
        (h.len, h.source.addr()),
        (28, Some("192.0.2.7:56324".parse().unwrap()))
    );
    // TLVs after the addresses are skipped when whole.
    let tlvs = [0x04, 0x00, 0x02, b'h', b'i', 0x01, 0x00, 0x00];
    let h = done(&v2_bytes(1, 0x11, &[&v4[..], &tlvs].concat()));
    assert_eq!(h.len, 36);
    let mut v6 = [0u8; 36];
    v6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    v6[32..34].copy_from_slice(&80u16.to_be_bytes());
    assert_eq!(
        done(&v2_bytes(1, 0x21, &v6)).source.addr(),
        Some("[2001:db8::7]:80".parse().unwrap())
    );
    // LOCAL (a health check from the balancer) and UNSPEC: the connection's own address.
    assert_eq!(done(&v2_bytes(0, 0x11, &v4)).source, Source::Local);
    assert_eq!(done(&v2_bytes(0, 0x00, &[])).source, Source::Local);
    assert_eq!(done(&v2_bytes(1, 0x00, &[])).source, Source::Unknown);
    // Refusals.
    assert_eq!(
        parse(&v2_bytes(1, 0x11, &v4[..11])),
        Err(Invalid::Malformed)
    );
    assert_eq!(
        parse(&v2_bytes(
            1,
            0x11,
            &[&v4[..], &[0x04, 0x00, 0x05, 1]].concat()
        )),
        Err(Invalid::Malformed)
    );
    assert_eq!(parse(&v2_bytes(1, 0x12, &v4)), Err(Invalid::Unsupported));
    assert_eq!(
        parse(&v2_bytes(1, 0x31, &[0; 216])),
        Err(Invalid::Unsupported)
    );
    assert_eq!(parse(&v2_bytes(2, 0x11, &v4)), Err(Invalid::Malformed));
    let mut bad_version = v2_bytes(1, 0x11, &v4);
    bad_version[12] = 0x11;
    assert_eq!(parse(&bad_version), Err(Invalid::Malformed));
    let mut huge = v2_bytes(1, 0x11, &v4);
    huge[14..16].copy_from_slice(&((V2_MAX_BODY + 1) as u16).to_be_bytes());
    assert_eq!(parse(&huge), Err(Invalid::TooLong));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(Invalid::NotAHeader));
    assert_eq!(parse(b"\r\nGET"), Err(Invalid::NotAHeader));
}

/// A random valid header and the source ppp must find in it.
fn generated(rng: &mut Rng) -> Vec<u8> {
    let ip4 = |rng: &mut Rng| Ipv4Addr::from(rng.next() as u32);
    let ip6 = |rng: &mut Rng| Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
    let port = |rng: &mut Rng| rng.next() as u16;
    match rng.below(5) {
        0 => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            ip4(rng),
            ip4(rng),
            port(rng),
            port(rng)
        )
        .into_bytes(),
        1 => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            ip6(rng),
            ip6(rng),
            port(rng),
            port(rng)
        )
        .into_bytes(),
        2 => b"PROXY UNKNOWN\r\n".to_vec(),
        family => {
            let (src, dst): (SocketAddr, SocketAddr) = if family == 3 {
                ((ip4(rng), port(rng)).into(), (ip4(rng), port(rng)).into())
            } else {
                ((ip6(rng), port(rng)).into(), (ip6(rng), port(rng)).into())
            };
            let af = if src.is_ipv4() { 0x11 } else { 0x21 };
            let mut builder =
                ppp::v2::Builder::with_addresses(0x21, ppp::v2::Protocol::Stream, (src, dst));
            for _ in 0..rng.below(3) {
                let value: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                builder = builder
                    .write_tlv(0xE0 + rng.below(16) as u8, &value)
                    .unwrap();
            }
            let b = builder.build().unwrap();
            assert_eq!(b[13], af);
            b
        }
    }
}

/// ppp's reading: the header's length and source, `None` when it refuses or wants more.
fn oracle(buf: &[u8]) -> Option<(usize, Option<SocketAddr>)> {
    match ppp::HeaderResult::parse(buf) {
        ppp::HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Some((h.header.len(), source))
        }
        ppp::HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Some((h.header.len(), source))
        }
        _ => None,
    }
}

#[test]
fn generated_headers_read_as_ppp_reads_them_and_prefixes_wait_for_more() {
    let mut rng = Rng(0x005e_ed0f_9099);
    for _ in 0..3000 {
        let header = generated(&mut rng);
        let with_request = [&header[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
        let ours = done(&with_request);
        let theirs = oracle(&header).expect("ppp reads the generated header");
        assert_eq!((ours.len, ours.source.addr()), theirs, "{header:?}");
        assert_eq!(ours.len, header.len());
        let cut = rng.below(header.len());
        assert_eq!(parse(&header[..cut]), Ok(None), "{:?}", &header[..cut]);
    }
}

#[test]
fn what_ringlb_accepts_after_mutation_ppp_accepts_the_same_way() {
    let mut rng = Rng(0xbad_5eed);
    let mut accepted = 0;
    for _ in 0..20000 {
        let mut header = generated(&mut rng);
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(header.len());
            match rng.below(3) {
                0 => header[at] = rng.next() as u8,
                1 => {
                    header.remove(at);
                }
                _ => header.insert(at, rng.pick(&[b' ', b'\r', b'\n', b'0', b':', 0, 0xff])),
            }
        }
        if let Ok(Some(ours)) = parse(&header) {
            accepted += 1;
            assert!(ours.len <= header.len());
            let theirs = oracle(&header[..ours.len]);
            assert_eq!(Some((ours.len, ours.source.addr())), theirs, "{header:?}");
        }
    }
    assert!(
        accepted > 100,
        "the mutations left too few headers to compare: {accepted}"
    );
}
