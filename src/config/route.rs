//! The `[[route]]` keys: which requests (host, path prefix) go to which balancer (or to none:
//! `exclude = true`, Apache's `ProxyPass /path !`, answered 404), whether the
//! client's Host is kept, the member path the prefix maps to (Apache's `ProxyPass /os
//! balancer://c/openspecimen`), and whether response URLs and cookie paths are mapped back
//! (`ProxyPassReverse`, `http::reverse`); which protocol switches it tunnels is
//! `config::upgrade`'s.
//!
//! Owns: their names, defaults and rules. Must never: accept a member path that is not a plain
//! absolute path (it is written into every forwarded request line).

use serde::Deserialize;
use toml::Spanned;

use super::{BalancerConfig, ConfigError, Dur, Upgrades, Validator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    host: Option<Spanned<String>>,
    #[serde(default = "default_path")]
    path: Spanned<String>,
    balancer: Option<Spanned<String>>,
    exclude: Option<Spanned<bool>>,
    #[serde(default)]
    preserve_host: bool,
    member_path: Option<Spanned<String>>,
    reverse: Option<Spanned<bool>>,
    #[serde(default)]
    cookie_domains: Vec<Spanned<RawCookieDomain>>,
    upgrade: Option<Spanned<Vec<String>>>,
    tunnel_timeout: Option<Spanned<Dur>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookieDomain {
    from: String,
    to: String,
}

/// One `cookie_domains` pair (Apache's `ProxyPassReverseCookieDomain from to`): a `Set-Cookie`
/// `Domain` equal to `from` (any case, a leading dot kept) becomes `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieDomain {
    /// Lower case, without a leading dot.
    pub from: String,
    pub to: String,
}

fn default_path() -> Spanned<String> {
    Spanned::new(0..0, "/".into())
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Lower-cased host without port; `None` matches any host.
    pub host: Option<String>,
    pub path: String,
    /// Index into `Config::balancers`; `None`: an exclusion (`exclude = true`, Apache's
    /// `ProxyPass /path !`): ringlb answers 404 and forwards nothing.
    pub balancer: Option<usize>,
    pub preserve_host: bool,
    /// What the public `path` prefix becomes in the forwarded request (`None`: itself).
    pub member_path: Option<String>,
    /// Map URLs in `Location`, `Content-Location` and `URI`, and `Set-Cookie` paths, back to
    /// what the client sees (default: on with a `member_path` or `cookie_domains`, off without).
    pub reverse: bool,
    /// `Set-Cookie` domains to rewrite (with `reverse`).
    pub cookie_domains: Vec<CookieDomain>,
    /// The protocols a request may switch to (`101`) and then tunnel (`None`: an `Upgrade` is
    /// not forwarded; `config::upgrade`).
    pub upgrade: Option<Upgrades>,
    /// A tunnel idle this long in both directions closes.
    pub tunnel_timeout: std::time::Duration,
}

impl RouteConfig {
    /// The member path the public prefix maps to (the prefix itself when not mapped).
    pub fn member_prefix(&self) -> &str {
        self.member_path.as_deref().unwrap_or(&self.path)
    }
}

impl Validator<'_> {
    pub(super) fn routes(
        &self,
        raw: &[RawRoute],
        balancers: &[BalancerConfig],
    ) -> Result<Vec<RouteConfig>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r, balancers))
            .collect()
    }

    fn route(
        &self,
        i: usize,
        r: &RawRoute,
        balancers: &[BalancerConfig],
    ) -> Result<RouteConfig, ConfigError> {
        let balancer = match (&r.balancer, &r.exclude) {
            (Some(b), None) => match balancers.iter().position(|x| &x.name == b.get_ref()) {
                Some(i) => Some(i),
                None => {
                    return self.err(
                        b.span(),
                        format!("route[{i}].balancer"),
                        format!("no [[balancer]] is named \"{}\"", b.get_ref()),
                    )
                }
            },
            (None, Some(x)) if *x.get_ref() => {
                if let Some(c) = r.cookie_domains.first() {
                    return self.err(
                        c.span(),
                        format!("route[{i}].cookie_domains"),
                        "an excluded path forwards nothing: remove cookie_domains".into(),
                    );
                }
                if let Some(mp) = &r.member_path {
                    return self.err(
                        mp.span(),
                        format!("route[{i}].member_path"),
                        "an excluded path forwards nothing: remove member_path".into(),
                    );
                }
                None
            }
            (None, Some(x)) => {
                return self.err(
                    x.span(),
                    format!("route[{i}].exclude"),
                    "exclude = false: name a balancer instead".into(),
                )
            }
            (Some(b), Some(_)) => {
                return self.err(
                    b.span(),
                    format!("route[{i}].balancer"),
                    "a route has a balancer or exclude = true, not both".into(),
                )
            }
            (None, None) => {
                return self.err(
                    r.path.span(),
                    format!("route[{i}].balancer"),
                    "missing: name a [[balancer]] (or exclude = true to answer 404)".into(),
                )
            }
        };
        let host = match &r.host {
            Some(h) => {
                // A fully qualified name's trailing dot names the same host (the router drops a
                // request's too): kept without it.
                let name = h.get_ref().strip_suffix('.').unwrap_or(h.get_ref());
                if let Err(why) = super::host::check(h.get_ref()) {
                    return self.err(
                        h.span(),
                        format!("route[{i}].host"),
                        format!("\"{}\": {why}, without a port", h.get_ref()),
                    );
                }
                Some(name.to_ascii_lowercase())
            }
            None => None,
        };
        let path = r.path.get_ref();
        if let Err(why) = plain_path(path) {
            return self.err(r.path.span(), format!("route[{i}].path"), why);
        }
        if let Some(mp) = &r.member_path {
            self.member_path(i, path, mp)?;
        }
        let member_path = r.member_path.as_ref().map(|m| m.get_ref().clone());
        let cookie_domains = self.cookie_domains(i, r)?;
        let (upgrade, tunnel_timeout) = self.upgrades(
            i,
            &r.upgrade,
            &r.tunnel_timeout,
            balancer.map(|b| &balancers[b]),
        )?;
        Ok(RouteConfig {
            host,
            path: path.clone(),
            balancer,
            preserve_host: r.preserve_host,
            reverse: r
                .reverse
                .as_ref()
                .map_or(member_path.is_some() || !cookie_domains.is_empty(), |v| {
                    *v.get_ref()
                }),
            member_path,
            cookie_domains,
            upgrade,
            tunnel_timeout,
        })
    }

    fn cookie_domains(&self, i: usize, r: &RawRoute) -> Result<Vec<CookieDomain>, ConfigError> {
        if let (Some(rev), false) = (&r.reverse, r.cookie_domains.is_empty()) {
            if !*rev.get_ref() {
                return self.err(
                    rev.span(),
                    format!("route[{i}].reverse"),
                    "cookie_domains are rewritten only with reverse = true".into(),
                );
            }
        }
        let domain = |d: &str| {
            !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        };
        let mut out = Vec::new();
        for (j, pair) in r.cookie_domains.iter().enumerate() {
            let p = pair.get_ref();
            let from = p.from.trim_start_matches('.').to_ascii_lowercase();
            let to = p.to.trim_start_matches('.');
            if !domain(&from) || !domain(to) {
                return self.err(
                    pair.span(),
                    format!("route[{i}].cookie_domains[{j}]"),
                    format!(
                        "\"{}\" -> \"{}\": both must be domain names (letters, digits, '-', '.')",
                        p.from, p.to
                    ),
                );
            }
            out.push(CookieDomain {
                from,
                to: to.to_string(),
            });
        }
        Ok(out)
    }

    fn member_path(&self, i: usize, path: &str, mp: &Spanned<String>) -> Result<(), ConfigError> {
        let key = format!("route[{i}].member_path");
        let m = mp.get_ref();
        if let Err(why) = plain_path(m) {
            return self.err(mp.span(), key, why);
        }
        if path.ends_with('/') != m.ends_with('/') {
            return self.err(
                mp.span(),
                key,
                format!("path \"{path}\" and member_path \"{m}\" must both end with / or neither (else /a/b maps to {m}b, as in Apache)"),
            );
        }
        Ok(())
    }
}

/// A path a route may name: written into request lines, `Location` and `Set-Cookie` as it is, so
/// it must already be in ringlb's normal form (`http::path`: no `.` or `..` segment, no `//`, no
/// escape a member reads as a separator) and hold no `?`, `#`, space or control character.
fn plain_path(p: &str) -> Result<(), String> {
    // `;` too: routing looks at paths without their `;parameters` (`http::path::route_key`), so a
    // prefix holding one could never match.
    let plain = |b: u8| b.is_ascii_graphic() && !b"?#;".contains(&b);
    let mut normal = Vec::new();
    let normalised = crate::http::path::normalize(p.as_bytes(), &mut normal);
    if !p.starts_with('/') || !p.bytes().all(plain) || normalised.is_err() || !normal.is_empty() {
        let hint = String::from_utf8_lossy(&normal).into_owned();
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!(" (did you mean \"{hint}\"?)")
        };
        return Err(format!(
            "\"{p}\" is not a plain absolute path: one leading /, no . or .. segment, no //, no ?, #, ;, \\, space, control character or escaped separator{hint}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::error_of;
    use super::super::Config;

    fn with(route: &str) -> String {
        format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n\
             members = [{{ url = \"http://127.0.0.1:9\" }}]\n[[route]]\nbalancer = \"b\"\n{route}"
        )
    }

    #[test]
    fn a_member_path_maps_and_turns_reverse_on() {
        let c = Config::parse(&with("path = \"/os\"\nmember_path = \"/openspecimen\"\n")).unwrap();
        let r = &c.routes[0];
        assert_eq!((r.member_prefix(), r.reverse), ("/openspecimen", true));
        let c = Config::parse(&with("path = \"/os\"\n")).unwrap();
        assert_eq!(
            (c.routes[0].member_prefix(), c.routes[0].reverse),
            ("/os", false)
        );
        let off = "path = \"/os\"\nmember_path = \"/app\"\nreverse = false\n";
        assert!(!Config::parse(&with(off)).unwrap().routes[0].reverse);
    }

    #[test]
    fn cookie_domains_turn_reverse_on_and_are_domain_names() {
        let c = Config::parse(&with(
            "path = \"/os\"\ncookie_domains = [{ from = \".Backend.Internal\", to = \"www.example.org\" }]\n",
        ))
        .unwrap();
        let r = &c.routes[0];
        assert!(r.reverse);
        assert_eq!(r.cookie_domains[0].from, "backend.internal");
        for (bad, key) in [
            (
                "cookie_domains = [{ from = \"a b\", to = \"x\" }]\n",
                "route[0].cookie_domains[0]",
            ),
            (
                "cookie_domains = [{ from = \"a\", to = \"x\\r\\nSet-Cookie: y\" }]\n",
                "route[0].cookie_domains[0]",
            ),
            (
                "cookie_domains = [{ from = \"a\", to = \"b\" }]\nreverse = false\n",
                "route[0].reverse",
            ),
            (
                "cookie_domains = [{ from = \"a\", to = \".\" }]\n",
                "route[0].cookie_domains[0]",
            ),
        ] {
            let (_, k, _) = error_of(&with(bad));
            assert_eq!(k, key, "{bad}");
        }
    }

    #[test]
    fn an_exclusion_has_no_balancer() {
        let base = "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\n\
             members = [{ url = \"http://127.0.0.1:9\" }]\n[[route]]\n";
        let c = Config::parse(&format!("{base}path = \"/static\"\nexclude = true\n")).unwrap();
        assert_eq!(c.routes[0].balancer, None);
        for (bad, key) in [
            ("path = \"/s\"\n", "route[0].balancer"),
            ("path = \"/s\"\nexclude = false\n", "route[0].exclude"),
            (
                "path = \"/s\"\nexclude = true\nbalancer = \"b\"\n",
                "route[0].balancer",
            ),
            (
                "path = \"/s\"\nexclude = true\nmember_path = \"/x\"\n",
                "route[0].member_path",
            ),
        ] {
            let (line, k, _) = error_of(&format!("{base}{bad}"));
            assert_eq!(k, key, "{bad}");
            assert!(line >= 6, "{bad}: line {line}");
        }
    }

    #[test]
    fn bad_member_paths_name_key_and_line() {
        for bad in [
            "app",
            "//evil/x",
            "/a b",
            "/a?x",
            "/a#x",
            "/a\\\\b",
            "/a/../b",
            "/a/.",
            "/a//b",
            "/a%2fb",
            "/%2e%2e/x",
        ] {
            let text = with(&format!("path = \"/os\"\nmember_path = \"{bad}\"\n"));
            let (line, key, _) = error_of(&text);
            assert_eq!((line, key.as_str()), (9, "route[0].member_path"), "{bad}");
        }
        let (_, key, msg) = error_of(&with("path = \"/os/\"\nmember_path = \"/app\"\n"));
        assert_eq!(key, "route[0].member_path");
        assert!(msg.contains("both end with /"), "{msg}");
    }
}
