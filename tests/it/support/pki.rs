//! Certificates made at test time (rcgen): a test CA and leaf certificates it signs, written as
//! PEM files into a temporary directory. No key is ever committed.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::proxy::TempDir;

pub struct Pki {
    pub dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringlb test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: TempDir::new(),
            ca,
        };
        std::fs::write(pki.ca_path(), pki.ca.pem()).unwrap();
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// Issues a certificate for `names` valid until `days` from now (negative: expired), written
    /// to `<stem>.pem` and `<stem>.key`; returns both paths.
    pub fn issue(&self, stem: &str, names: &[&str], days: i64) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.0.join(format!("{stem}.pem")),
            self.dir.0.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A `[listen.tls]` table (to start a config body with) over `(cert, key)` pairs.
    pub fn listen_tls(pairs: &[(PathBuf, PathBuf)], extra: &str) -> String {
        let certs: Vec<String> = pairs
            .iter()
            .map(|(c, k)| {
                format!(
                    "{{ cert = \"{}\", key = \"{}\" }}",
                    c.display(),
                    k.display()
                )
            })
            .collect();
        format!("[listen.tls]\ncerts = [{}]\n{extra}\n", certs.join(", "))
    }

    /// A rustls client config trusting this CA (and resuming sessions, rustls' default).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_for(rustls::DEFAULT_VERSIONS)
    }

    /// The same, limited to `versions`.
    pub fn client_config_for(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// A ringlb with a TLS listener over `pairs` (the first is the default certificate), with
/// `extra` in `[listen.tls]`, in front of `a`, with an admin listener.
pub fn tls_proxy(pairs: &[(PathBuf, PathBuf)], extra: &str, a: &super::Backend) -> super::Ringlb {
    let body = format!(
        "{}{}",
        Pki::listen_tls(pairs, extra),
        super::with_admin(&super::simple_config(&[super::member(a.addr)], ""), "")
    );
    super::Ringlb::start(&body, 1)
}

/// The DNS names of the certificate a TLS client was given.
pub fn served_names(c: &super::Client) -> Vec<String> {
    let tls = c.tls.as_ref().expect("a TLS client");
    let der = &tls.peer_certificates().expect("a certificate")[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// Over TLS to `addr` (`site.test`), in front of `raw_member::close_framed(len)`, as an HTTP/1.0
/// client (which reads such a body to the close; an HTTP/1.1 one gets it chunked): `/whole` ends
/// with close_notify after the whole body, `/cut` with a reset and no close_notify (a body that
/// ends at the close and is cut short: `client::End::Reset`).
pub fn assert_close_notify_when_whole_reset_when_cut(
    addr: std::net::SocketAddr,
    pki: &Pki,
    len: usize,
) {
    for (path, whole) in [("/whole", true), ("/cut", false)] {
        let mut c = super::Client::connect_tls(addr, "site.test", pki.client_config()).unwrap();
        c.set_timeout(std::time::Duration::from_secs(10));
        c.send(format!("GET {path} HTTP/1.0\r\nHost: site.test\r\n\r\n").as_bytes());
        match c.read_until_close() {
            Ok(all) => {
                assert!(whole, "{path}: close_notify after a body cut short");
                assert!(
                    all.ends_with(&super::pattern(len)),
                    "{path}: the whole body"
                );
            }
            Err(e) => {
                assert!(!whole, "{path}: no close_notify after a whole body: {e}");
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{path}: {e}");
            }
        }
    }
}

/// An https member (rustls, certificate `pair`) that answers each connection's request with a
/// body of `len` bytes framed by its close: `/whole` ends with close_notify, `/cut` with a bare
/// TCP close (no close_notify), which makes the body cut short. Serves until the test ends.
pub fn close_framed_tls_member(pair: &(PathBuf, PathBuf), len: usize) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let chain = CertificateDer::pem_file_iter(&pair.0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pair.1).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut t = rustls::StreamOwned::new(conn, s);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match t.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                out.extend_from_slice(&super::pattern(len));
                if t.write_all(&out).is_err() || t.flush().is_err() {
                    return;
                }
                if head.starts_with(b"GET /whole ") {
                    t.conn.send_close_notify();
                    let _ = t.flush();
                }
            });
        }
    });
    addr
}
