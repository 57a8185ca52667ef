//! `ringlb check` for TLS listeners: every certificate pair loads (key matches certificate), its
//! names and expiry, warnings for expiry within 30 days (or past), and for route hosts no
//! certificate of a TLS listener covers.
//!
//! Owns: that report. Must never: start anything or change a file.

use crate::config::Config;

use super::certs::{self, unix_now};
use super::{load_certs, provider};

/// What `ringlb check` prints for TLS: (lines to print, warnings); `Err` when a pair does not load.
pub fn check(config: &Config) -> Result<(Vec<String>, Vec<String>), String> {
    let provider = provider();
    let now = unix_now();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for l in &config.listen {
        let Some(t) = &l.tls else { continue };
        let loaded = load_certs(t, &provider)?;
        for (i, c) in loaded.iter().enumerate() {
            lines.push(format!(
                "tls {}: {} ({}) covers {}; expires in {} days{}",
                l.address,
                c.files.cert.display(),
                c.files.key_name,
                if c.names.is_empty() {
                    "no name".to_string()
                } else {
                    c.names.join(", ")
                },
                c.days_left(now),
                if i == 0 { " (default)" } else { "" }
            ));
            warnings.extend(certs::warnings(c, now));
        }
        let store = super::store::CertStore::new(&loaded);
        for r in &config.routes {
            let Some(host) = &r.host else { continue };
            if store.covering(host).is_none() {
                warnings.push(format!(
                    "route host {host} is not covered by any certificate of the TLS listener {} (clients get the default certificate and a name mismatch)",
                    l.address
                ));
            }
        }
    }
    Ok((lines, warnings))
}
