//! The certificates of one TLS listener and the choice among them by the name the client asks
//! for (SNI): an exact name first, then a `*.suffix` wildcard (one label deep), else the first
//! certificate of the list (also when the client sends no name).
//!
//! Owns: that choice (`CertStore::find`) and rustls' hook to it. Must never: fail a handshake for
//! want of a matching name (the default answers; the client decides whether it trusts it), or
//! allocate for a name longer than a DNS name can be.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// The longest DNS name (RFC 1035), in bytes.
const MAX_NAME: usize = 253;

/// One generation of a listener's certificates.
#[derive(Debug)]
pub struct CertStore {
    certs: Vec<Arc<CertifiedKey>>,
    /// Exact names → index in `certs` (the first certificate to name it wins).
    exact: HashMap<String, usize>,
    /// `*.example.org` stored as `example.org` → index.
    wildcard: HashMap<String, usize>,
}

impl CertStore {
    /// Indexes the certificates by the names each covers; `loaded[0]` is the default.
    pub fn new(loaded: &[LoadedCert]) -> CertStore {
        let mut store = CertStore::from_names(loaded.iter().map(|c| c.names.as_slice()));
        store.certs = loaded.iter().map(|c| c.key.clone()).collect();
        store
    }

    /// The index alone (no keys): each certificate's names, in order.
    pub fn from_names<'a>(names: impl Iterator<Item = &'a [String]>) -> CertStore {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, list) in names.enumerate() {
            for name in list {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(i),
                    None => exact.entry(name).or_insert(i),
                };
            }
        }
        CertStore {
            certs: Vec::new(),
            exact,
            wildcard,
        }
    }

    /// The index of the certificate for `sni` (none, or no certificate covers it: the default, 0).
    pub fn find(&self, sni: Option<&str>) -> usize {
        sni.and_then(|n| self.covering(n)).unwrap_or(0)
    }

    /// The index of the certificate that covers `sni`, exactly or by a wildcard; `None` when none
    /// does.
    pub fn covering(&self, sni: &str) -> Option<usize> {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        if sni.is_empty() || sni.len() > MAX_NAME {
            return None;
        }
        let mut lower = [0u8; MAX_NAME];
        let lower = &mut lower[..sni.len()];
        lower.copy_from_slice(sni.as_bytes());
        lower.make_ascii_lowercase();
        let name = std::str::from_utf8(lower).ok()?;
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        let parent = name.split_once('.').map(|(_, rest)| rest)?;
        self.wildcard.get(parent).copied()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.get(self.find(hello.server_name())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store over names only: `find` never looks at the keys.
    fn store(names: &[&[&str]]) -> CertStore {
        let lists: Vec<Vec<String>> = names
            .iter()
            .map(|l| l.iter().map(|n| n.to_string()).collect())
            .collect();
        CertStore::from_names(lists.iter().map(Vec::as_slice))
    }

    #[test]
    fn exact_before_wildcard_before_default() {
        let s = store(&[&["default.test"], &["*.example.org"], &["WWW.example.org."]]);
        assert_eq!(s.find(Some("www.example.org")), 2);
        assert_eq!(s.find(Some("WWW.Example.ORG.")), 2);
        assert_eq!(s.find(Some("api.example.org")), 1);
        assert_eq!(
            s.find(Some("a.b.example.org")),
            0,
            "a wildcard covers one label"
        );
        assert_eq!(
            s.find(Some("example.org")),
            0,
            "a wildcard does not cover its parent"
        );
        assert_eq!(s.find(Some("other.test")), 0);
        assert_eq!(s.find(None), 0);
        assert_eq!(s.find(Some("")), 0);
        assert_eq!(s.find(Some(&"a".repeat(300))), 0);
    }

    #[test]
    fn the_first_certificate_to_name_a_host_serves_it() {
        let s = store(&[&["a.test"], &["a.test", "b.test"]]);
        assert_eq!(s.find(Some("a.test")), 0);
        assert_eq!(s.find(Some("b.test")), 1);
    }

    /// Property: for any name, `find` agrees with the rule written plainly (exact, then the
    /// wildcard of its parent, then 0), whatever the case and a trailing dot.
    #[test]
    fn find_follows_the_rule_for_generated_names() {
        let labels = ["a", "b", "www", "api", "x-1", "example", "org", "test"];
        let names: &[&[&str]] = &[
            &["example.org"],
            &["*.example.org", "b.test"],
            &["www.example.org", "*.test"],
        ];
        let s = store(names);
        let rule = |name: &str| -> usize {
            for (i, list) in names.iter().enumerate() {
                if list.contains(&name) {
                    return i;
                }
            }
            if let Some((_, parent)) = name.split_once('.') {
                for (i, list) in names.iter().enumerate() {
                    if list.iter().any(|n| n.strip_prefix("*.") == Some(parent)) {
                        return i;
                    }
                }
            }
            0
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = 1 + (seed % 4) as usize;
            let name: Vec<&str> = (0..n)
                .map(|k| labels[((seed >> (8 * k + 3)) % labels.len() as u64) as usize])
                .collect();
            let name = name.join(".");
            let mut asked = if seed & 1 == 1 {
                name.to_ascii_uppercase()
            } else {
                name.clone()
            };
            if seed & 2 == 2 {
                asked.push('.');
            }
            assert_eq!(s.find(Some(&asked)), rule(&name), "{asked}");
        }
    }
}
