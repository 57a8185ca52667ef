//! What an HTTP check sends and how its answer is judged: the request bytes, the status against
//! `hcexpect`, the body against `hcbody_excludes`. No I/O here (`probe` does it).
//!
//! Owns: the check request's form and the pass/fail texts. Must never: panic on any status or body.
//! Invariant: a status passes iff it lies in one of the inclusive `expect` ranges.

use crate::config::MemberConfig;

/// The check request of an HTTP member (`None` for other methods): `METHOD hcuri HTTP/1.1`, the
/// member's own `Host`, and `Connection: close` (every check uses a fresh connection).
pub fn request(member: &MemberConfig) -> Option<Vec<u8>> {
    let method = member.health.method.http_method()?;
    Some(
        format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringlb-health-check\r\n\
Connection: close\r\n\r\n",
            member.health.uri, member.host_header
        )
        .into_bytes(),
    )
}

/// "200-399", "200,204,300-302".
pub fn expect_text(expect: &[(u16, u16)]) -> String {
    let parts: Vec<String> = expect
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    parts.join(",")
}

/// The status passes (its text: "200") or fails ("status 503 not in 200-399").
pub fn status(expect: &[(u16, u16)], status: u16) -> Result<String, String> {
    if expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
        Ok(status.to_string())
    } else {
        Err(format!("status {status} not in {}", expect_text(expect)))
    }
}

/// The body (what was read of it) fails when it contains `excludes`.
pub fn body(body: &[u8], excludes: &str) -> Result<(), String> {
    let needle = excludes.as_bytes();
    if !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle) {
        Err(format!("body contains {excludes:?}"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn member(keys: &str) -> MemberConfig {
        let c = Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n{keys}\n\
members = [{{ url = \"http://LocalHost:8080\" }}]\n"
        ))
        .unwrap();
        c.balancers[0].members[0].clone()
    }

    #[test]
    fn request_has_the_members_host_and_closes() {
        let m = member("hcmethod = \"head\"\nhcuri = \"/health?x=1\"");
        assert_eq!(
            request(&m).unwrap(),
            b"HEAD /health?x=1 HTTP/1.1\r\nHost: LocalHost:8080\r\nUser-Agent: ringlb-health-check\r\nConnection: close\r\n\r\n"
        );
        assert!(request(&member("hcmethod = \"tcp\"")).is_none());
        assert!(request(&member("")).is_none());
    }

    #[test]
    fn statuses_against_ranges() {
        let dflt = [(200, 399)];
        assert_eq!(status(&dflt, 200), Ok("200".into()));
        assert_eq!(status(&dflt, 399), Ok("399".into()));
        assert_eq!(
            status(&dflt, 503),
            Err("status 503 not in 200-399".to_string())
        );
        assert_eq!(status(&dflt, 199), Err("status 199 not in 200-399".into()));
        let list = [(200, 200), (204, 204), (300, 302)];
        assert!(status(&list, 204).is_ok());
        assert!(status(&list, 301).is_ok());
        assert_eq!(
            status(&list, 203),
            Err("status 203 not in 200,204,300-302".into())
        );
    }

    #[test]
    fn body_exclusion() {
        assert!(body(b"all good", "Under maintenance").is_ok());
        assert!(body(b"", "Under maintenance").is_ok());
        assert_eq!(
            body(b"<h1>Under maintenance</h1>", "Under maintenance"),
            Err("body contains \"Under maintenance\"".into())
        );
        assert!(body(b"Under maintenanc", "Under maintenance").is_ok());
    }
}
