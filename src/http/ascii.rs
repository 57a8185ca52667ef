//! Numbers and addresses as the ASCII text that heads and AJP packets carry: `Content-Length`,
//! status codes, chunk sizes (hexadecimal), `X-Forwarded-For`, AJP's `remote_addr` and
//! `AJP_REMOTE_PORT`.
//!
//! Owns: writing them onto the stack exactly as `Display` would; numbers and IPv4 addresses
//! without the formatting machinery (this runs for every request and response), IPv6 ones
//! through it into the stack buffer. Must never: allocate, or write anything `Display` would not
//! (a property test compares them).

use std::io::Write as _;
use std::net::IpAddr;

/// A number's decimal digits, on the stack.
pub struct Decimal {
    digits: [u8; 20],
    at: usize,
}

impl Decimal {
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.at..]
    }
}

/// `n` in decimal.
pub fn decimal(mut n: u64) -> Decimal {
    let mut d = Decimal {
        digits: [0; 20],
        at: 20,
    };
    loop {
        d.at -= 1;
        d.digits[d.at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Appends `n` in lowercase hexadecimal, as `{:x}` writes it (a chunk size).
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - (n | 1).leading_zeros()).div_ceil(4);
    for k in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (4 * k) & 0xf) as usize]);
    }
}

/// An address's text, on the stack.
pub struct Address {
    text: [u8; 45],
    len: usize,
}

impl Address {
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// `ip` as `Display` writes it (an IPv4 one, the common case, digit by digit). The caller decides
/// about `to_canonical` (an IPv4 client on an IPv6 listener).
pub fn address(ip: IpAddr) -> Address {
    let mut a = Address {
        text: [0; 45],
        len: 0,
    };
    match ip {
        IpAddr::V4(v4) => {
            let mut push = |b: u8| {
                a.text[a.len] = b;
                a.len += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(b'.');
                }
                if octet >= 100 {
                    push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    push(b'0' + octet / 10 % 10);
                }
                push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            // 45 bytes hold any form (the longest `Display` writes is eight full groups, 39).
            let mut cur = std::io::Cursor::new(&mut a.text[..]);
            let _ = write!(cur, "{v6}");
            a.len = cur.position() as usize;
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let edges = [0, 9, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX];
        for n in edges
            .into_iter()
            .chain((0..2000).map(|_| rng.next() >> rng.below(64)))
        {
            assert_eq!(decimal(n).as_bytes(), n.to_string().as_bytes());
            let mut hex = b"x".to_vec();
            push_hex(&mut hex, n);
            assert_eq!(hex, format!("x{n:x}").as_bytes());
        }
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let widest_v4: IpAddr = "255.255.255.255".parse().unwrap();
        let mut cases = vec![longest, widest_v4];
        for _ in 0..2000 {
            let bits = rng.next();
            cases.push(IpAddr::from((bits as u32).to_be_bytes()));
            cases.push(IpAddr::from(std::net::Ipv6Addr::from(
                u128::from(bits) << rng.below(64) | u128::from(rng.next()),
            )));
        }
        for ip in cases {
            assert_eq!(address(ip).as_bytes(), ip.to_string().as_bytes(), "{ip}");
        }
    }
}
