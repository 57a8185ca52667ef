//! What to send: target URLs (with weights), and the request bytes built once per URL.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

use crate::cli::LoadArgs;

/// One URL, its weight and its prebuilt request.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The whole request (head and body), ready to write.
    pub request: Vec<u8>,
    pub is_head: bool,
}

/// Parses `http://host[:port][/path]` into (socket address, host header, path).
pub fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("\"{url}\": only http:// URLs are supported");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    Ok((addr, authority.to_string(), path.to_string()))
}

/// Builds every target from the arguments.
pub fn targets(args: &LoadArgs) -> anyhow::Result<Vec<Target>> {
    let body = match &args.body_file {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let mut list: Vec<(u32, String)> = Vec::new();
    if let Some(file) = &args.urls {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(char::is_whitespace) {
                Some((w, url)) if w.parse::<u32>().is_ok() => {
                    list.push((w.parse()?, url.trim().to_string()))
                }
                _ if line.starts_with("http://") => list.push((1, line.to_string())),
                _ => bail!(
                    "{} line {}: expected \"[weight] http://…\"",
                    file.display(),
                    n + 1
                ),
            }
        }
    }
    if let Some(url) = &args.url {
        list.push((1, url.clone()));
    }
    if list.is_empty() {
        bail!("give a URL or --urls FILE");
    }
    list.into_iter()
        .map(|(weight, url)| {
            let (addr, host, path) = parse_url(&url)?;
            let mut req = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", args.method);
            for h in &args.headers {
                if !h.contains(':') {
                    bail!("header \"{h}\" is not \"Name: value\"");
                }
                req.push_str(h);
                req.push_str("\r\n");
            }
            if !body.is_empty() || args.method == "POST" || args.method == "PUT" {
                req.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            if args.connect_per_request {
                req.push_str("Connection: close\r\n");
            }
            req.push_str("\r\n");
            let mut request = req.into_bytes();
            request.extend_from_slice(&body);
            Ok(Target {
                addr,
                weight: weight.max(1),
                request,
                is_head: args.method == "HEAD",
            })
        })
        .collect()
}

/// Picks targets by weight with a cheap per-connection generator.
pub struct Picker {
    cumulative: Vec<u32>,
    state: u64,
}

impl Picker {
    pub fn new(targets: &[Target], seed: u64) -> Picker {
        let mut total = 0;
        let cumulative = targets
            .iter()
            .map(|t| {
                total += t.weight;
                total
            })
            .collect();
        Picker {
            cumulative,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn next(&mut self) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = r % total;
        self.cumulative.iter().position(|&c| x < c).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let (a, h, p) = parse_url("http://127.0.0.1:8080/x?y=1").unwrap();
        assert_eq!(
            (a.port(), h.as_str(), p.as_str()),
            (8080, "127.0.0.1:8080", "/x?y=1")
        );
        assert_eq!(parse_url("http://127.0.0.1").unwrap().2, "/");
        assert!(parse_url("https://x").is_err());
    }

    #[test]
    fn weights_are_respected() {
        let t = |w| Target {
            addr: "127.0.0.1:1".parse().unwrap(),
            weight: w,
            request: vec![],
            is_head: false,
        };
        let mut p = Picker::new(&[t(3), t(1)], 7);
        let mut counts = [0; 2];
        for _ in 0..40_000 {
            counts[p.next()] += 1;
        }
        assert!((29_000..31_000).contains(&counts[0]), "{counts:?}");
    }
}
