//! Certificate files: read a PEM chain and its key, check that they belong together, and learn
//! what the leaf certificate covers (its DNS names) and until when.
//!
//! Owns: reading and checking the files of one `[listen.tls] certs` pair, at start, at a reload and
//! for `ringlb check`. Must never: accept a pair whose key does not match its certificate, or a
//! file without a certificate or key; it never panics on what a file holds.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::CertFiles;

/// Expiry closer than this is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A loaded, checked certificate and key.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// The DNS names the leaf certificate covers (lower-cased; `*.example.org` for wildcards).
    pub names: Vec<String>,
    /// When the leaf stops being valid, in seconds since the Unix epoch.
    pub not_after: i64,
    /// When the leaf starts being valid, in seconds since the Unix epoch.
    pub not_before: i64,
    /// Where it came from (for messages and the status page).
    pub files: CertFiles,
}

impl LoadedCert {
    /// Days left until it expires (negative once expired), from `now` (Unix seconds).
    pub fn days_left(&self, now: i64) -> i64 {
        days_left(self.not_after, now)
    }
}

/// Whole days from `now` until `not_after` (Unix seconds; negative once past).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads and checks one pair. The error names the pair's key and line and says what is wrong.
pub fn load(files: &CertFiles, provider: &CryptoProvider) -> Result<LoadedCert, String> {
    let at = |what: String| format!("line {}, key `{}`: {what}", files.line, files.key_name);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            at(format!(
                "cannot read certificates from {}: {e}",
                files.cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(at(format!(
            "{} holds no PEM certificate",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        at(format!(
            "cannot read a private key from {}: {e}",
            files.key.display()
        ))
    })?;
    let (names, not_before, not_after) =
        leaf_facts(&chain[0]).map_err(|e| at(format!("{}: {e}", files.cert.display())))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        at(format!(
            "the key in {} does not fit the certificate in {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        not_before,
        files: files.clone(),
    })
}

/// The leaf's DNS names (its subjectAltName entries; the common name only when it has none) and
/// its validity window.
fn leaf_facts(der: &[u8]) -> Result<(Vec<String>, i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the first certificate cannot be parsed: {e}"))?;
    let mut names = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    if let Some(san) = san {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    } else {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    let v = cert.validity();
    Ok((names, v.not_before.timestamp(), v.not_after.timestamp()))
}

/// What `ringlb check` says of a loaded certificate beyond "it loads": expired, not yet valid,
/// expiring within `EXPIRY_WARNING_DAYS`, or covering no name.
pub fn warnings(c: &LoadedCert, now: i64) -> Vec<String> {
    let mut w = Vec::new();
    let days = c.days_left(now);
    if c.not_after <= now {
        w.push(format!(
            "{} expired {} days ago",
            c.files.cert.display(),
            -days
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        w.push(format!("{} expires in {days} days", c.files.cert.display()));
    }
    if c.not_before > now {
        w.push(format!("{} is not valid yet", c.files.cert.display()));
    }
    if c.names.is_empty() {
        w.push(format!(
            "{} names no DNS host (no subjectAltName DNS entry): it only serves as the default",
            c.files.cert.display()
        ));
    }
    w
}
