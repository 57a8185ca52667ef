//! TLS to `https://` members: one rustls client configuration per member (its roots: the `ca`
//! file or the system's; or no verification with `verify = false`), and per core a copy with its
//! own session cache, so that new connections to a member resume their TLS sessions without a
//! lock shared between cores.
//!
//! Owns: reading `ca` files and the system roots (once, at start), the `verify = false` warning.
//! Must never: skip verification unless the member says `verify = false`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{Config, MemberTls};

/// Sessions each core remembers per member.
const SESSIONS_PER_MEMBER: usize = 64;

/// How one core speaks TLS to one member.
#[derive(Clone)]
pub struct MemberTlsConfig {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// `[balancer][member]`: `None` for plain members.
pub type MemberConfigs = Vec<Vec<Option<MemberTlsConfig>>>;

/// The client configurations of every `https://` member, built at start.
pub struct Upstreams {
    members: MemberConfigs,
}

impl Upstreams {
    /// Reads every `ca` file (and the system roots when a verified member has none).
    pub fn load(config: &Config) -> Result<Upstreams, String> {
        let provider = Arc::new(super::provider());
        let mut system: Option<Arc<RootCertStore>> = None;
        let mut members = Vec::new();
        for b in &config.balancers {
            let mut list = Vec::new();
            for m in &b.members {
                let Some(t) = &m.tls else {
                    list.push(None);
                    continue;
                };
                let roots = match (&t.ca, t.verify) {
                    (_, false) => None,
                    (Some(_), true) => Some(Arc::new(ca_roots(t)?)),
                    (None, true) => {
                        if system.is_none() {
                            system = Some(Arc::new(system_roots()?));
                        }
                        system.clone()
                    }
                };
                if !t.verify {
                    tracing::warn!(
                        member = %m.url,
                        "verify = false: ringlb does NOT check this member's certificate; anyone on the path can read and change its traffic"
                    );
                }
                let name = ServerName::try_from(t.name.clone())
                    .map_err(|e| format!("line {}, key `{}.sni`: {e}", t.line, t.key))?;
                list.push(Some(MemberTlsConfig {
                    config: client_config(&provider, roots)?,
                    name,
                }));
            }
            members.push(list);
        }
        Ok(Upstreams { members })
    }

    /// Whether any member speaks TLS.
    pub fn any(&self) -> bool {
        self.members.iter().flatten().any(Option::is_some)
    }

    /// A core's copy: the same settings, its own session cache.
    pub fn for_core(&self) -> MemberConfigs {
        self.members
            .iter()
            .map(|list| {
                list.iter()
                    .map(|m| {
                        m.as_ref().map(|m| {
                            let mut c = (*m.config).clone();
                            c.resumption = Resumption::in_memory_sessions(SESSIONS_PER_MEMBER);
                            MemberTlsConfig {
                                config: Arc::new(c),
                                name: m.name.clone(),
                            }
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let mut c = match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
            .with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

fn ca_roots(t: &MemberTls) -> Result<RootCertStore, String> {
    let at = |what: String| format!("line {}, key `{}.ca`: {what}", t.line, t.key);
    let path = t.ca.as_ref().expect("a ca path");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(at(format!(
            "{} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(
            "an https:// member without `ca` is verified against the system's CA certificates, and none were found (install ca-certificates, or set `ca`)"
                .into(),
        );
    }
    Ok(roots)
}

/// `verify = false`: any certificate is accepted; the handshake's signatures are still checked
/// (the member must hold the key of the certificate it sent).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
