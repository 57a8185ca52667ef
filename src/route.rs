//! Router: host + longest path prefix -> route (and its balancer). A prefix matches whole path
//! segments, as Apache's `ProxyPass` does: `/os` matches `/os`, `/os/…` and `/os?…`, never `/osx`
//! (a prefix ending in `/` needs nothing more); and `/os;p` (Tomcat's `;jsessionid=`), which
//! Apache does not match.
//!
//! Shared read-only by every core. Must never: allocate per request. Invariant: routes are
//! ordered so that the first match is the right one (host-specific before any-host, then longer
//! path prefix first).

use crate::config::RouteConfig;

/// The route table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteConfig>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut routes = routes.to_vec();
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.path.len().cmp(&a.path.len()))
        });
        Router { routes }
    }

    /// Finds the route for a request's host (any case, port ignored) and path.
    pub fn find(&self, host: &[u8], path: &[u8]) -> Option<&RouteConfig> {
        let host = strip_port(host);
        // A fully qualified name's trailing dot names the same host.
        let host = host.strip_suffix(b".").unwrap_or(host);
        // An absolute-form target without a path ("http://a?q") is forwarded as "/?q".
        let path = if path.first() != Some(&b'/') {
            b"/" as &[u8]
        } else {
            path
        };
        self.routes.iter().find(|r| {
            r.host
                .as_ref()
                .is_none_or(|h| h.as_bytes().eq_ignore_ascii_case(host))
                && prefix_matches(r.path.as_bytes(), path)
        })
    }
}

fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    strip_prefix(path, prefix).is_some()
}

/// `path` after route prefix `prefix`, when `prefix` covers it at a segment boundary: what
/// follows is nothing, or begins with `/`, `?`, `;` or `#` (or `prefix` ends with `/`). The one
/// rule for routing and for `member_path` mapping in both directions (`http::reverse`).
pub fn strip_prefix<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = path.strip_prefix(prefix)?;
    let boundary =
        prefix.ends_with(b"/") || matches!(rest.first(), None | Some(b'/' | b'?' | b';' | b'#'));
    boundary.then_some(rest)
}

/// `example.org:8080` -> `example.org`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str, balancer: usize) -> RouteConfig {
        RouteConfig {
            host: host.map(str::to_string),
            path: path.into(),
            balancer: Some(balancer),
            preserve_host: false,
            member_path: None,
            reverse: false,
            cookie_domains: Vec::new(),
            upgrade: None,
            tunnel_timeout: crate::config::DEFAULT_TUNNEL_TIMEOUT,
        }
    }

    #[test]
    fn longest_prefix_and_host_win() {
        let r = Router::new(&[
            route(None, "/", 0),
            route(None, "/api", 1),
            route(Some("app.example.org"), "/", 2),
        ]);
        assert_eq!(r.find(b"other", b"/x").unwrap().balancer.unwrap(), 0);
        assert_eq!(r.find(b"other", b"/api/v1").unwrap().balancer.unwrap(), 1);
        assert_eq!(
            r.find(b"APP.example.org:8080", b"/api")
                .unwrap()
                .balancer
                .unwrap(),
            2
        );
        assert_eq!(r.find(b"", b"").unwrap().balancer.unwrap(), 0);
        assert_eq!(
            r.find(b"app.example.org.", b"/x")
                .unwrap()
                .balancer
                .unwrap(),
            2
        );
        assert_eq!(
            r.find(b"app.example.org.:80", b"/x")
                .unwrap()
                .balancer
                .unwrap(),
            2
        );
        assert_eq!(r.find(b"other", b"?q").unwrap().balancer.unwrap(), 0);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = Router::new(&[route(None, "/", 0), route(None, "/os", 1)]);
        for (path, want) in [
            (&b"/os"[..], 1),
            (b"/os/", 1),
            (b"/os/x", 1),
            (b"/os?q=1", 1),
            (b"/os;jsessionid=1", 1),
            (b"/osx", 0),
            (b"/os.html", 0),
            (b"/o", 0),
        ] {
            assert_eq!(
                r.find(b"h", path).unwrap().balancer.unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(path)
            );
        }
        let r = Router::new(&[route(None, "/os/", 1)]);
        assert!(r.find(b"h", b"/os").is_none());
        assert_eq!(r.find(b"h", b"/os/x").unwrap().balancer.unwrap(), 1);
    }

    #[test]
    fn no_match_is_none() {
        let r = Router::new(&[route(Some("a.org"), "/app", 0)]);
        assert!(r.find(b"a.org", b"/other").is_none());
        assert!(r.find(b"b.org", b"/app").is_none());
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
    }
}
