//! TLS on the listeners: the crypto provider, one rustls `ServerConfig` per TLS listener (by the
//! listener's slot, `listeners`), and the process-wide `TlsState` that certificate and
//! configuration reloads replace.
//!
//! Files: `certs` (reading and checking a certificate pair), `store` (the certificate for a
//! client's server name), `session` (one connection's rustls state over ringlb's buffers), `seal`
//! (the listeners' TLS 1.3 AES-GCM record sealer, with aws-lc-rs).
//!
//! Owns: building server configs and swapping certificate generations. Must never: let a reload
//! that failed replace the working certificates, change the ticket keys at a reload (tickets
//! issued before a reload still resume after it), or drop the configuration of a listener a
//! reload removed (its queued connections still shake hands). A configuration reload swaps the
//! certificates in just before it publishes the generation (`server::Server::reload`).
//! Invariant: a `Generation` is immutable; a core picks a new one up at its next handshake
//! (`Core::tls_config` compares `TlsState::version`, one atomic load), so no lock is taken per
//! connection.

pub mod certs;
pub mod check;
#[cfg(feature = "aws-lc-rs")]
pub mod seal;
pub mod session;
pub mod store;
pub mod upstream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;
use rustls::ServerConfig;

use crate::config::{Config, TlsConfig, TlsVersion};
use certs::LoadedCert;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("enable the `aws-lc-rs` (default) or the `ring` feature: TLS needs a provider");

/// The crypto provider: aws-lc-rs (post-quantum hybrid key exchange first), or ring.
pub fn provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return rustls::crypto::ring::default_provider();
}

/// The provider for TLS listeners: the same suites, in ringlb's order of preference, which the
/// listeners impose (`ignore_client_order`): TLS 1.3 before 1.2, and in each AES-128-GCM, then
/// AES-256-GCM, then ChaCha20-Poly1305 (Mozilla's "intermediate" order). With aws-lc-rs, the
/// TLS 1.3 AES-GCM suites seal records with `seal`'s sealer.
fn server_provider() -> CryptoProvider {
    let mut p = provider();
    let rank = |s: &rustls::SupportedCipherSuite| {
        let name = s.suite().as_str().unwrap_or("");
        let cipher = if name.contains("AES_128") {
            0
        } else if name.contains("AES_256") {
            1
        } else {
            2
        };
        (s.version() != &rustls::version::TLS13, cipher)
    };
    p.cipher_suites.sort_by_key(rank);
    #[cfg(feature = "aws-lc-rs")]
    seal::direct_sealing(&mut p);
    p
}

/// rustls' `max_fragment_size` for listeners: a record's plaintext plus its 5-byte header. 16,362
/// bytes of plaintext make a TLS 1.3 record of 5 + 16,362 + 1 (content type) + 16 (tag) = 16,384
/// bytes on the wire (TLS 1.2 GCM: 16,391). The full records of one write then follow each other
/// in `tout` at multiples of 64 bytes from where the write began, which keeps rustls' copy of
/// each record into `tout` at one relative alignment (a `rep movsb` between buffers misaligned to
/// each other ran 4 × slower on an AMD host; docs/performance.md, "HTTPS bodies").
const MAX_FRAGMENT_SIZE: usize = 5 + 16_384 - 5 - 1 - 16;

fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return rustls::crypto::ring::Ticketer::new();
}

/// What the status page shows of a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub file: String,
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
}

/// One set of loaded certificates: a server config per listener slot (`listeners::Listeners`;
/// `None`: a plain listener, or a slot no longer open).
pub struct Generation {
    pub configs: Vec<Option<Arc<ServerConfig>>>,
    /// By slot, its certificates (empty for a plain listener).
    pub certs: Vec<Vec<CertInfo>>,
}

impl Generation {
    /// The certificates of the listener in slot `slot`.
    pub fn certs_of(&self, slot: usize) -> &[CertInfo] {
        self.certs.get(slot).map_or(&[], Vec::as_slice)
    }
}

/// The TLS state shared by the workers, the admin API and the main thread's reloads.
pub struct TlsState {
    provider: Arc<CryptoProvider>,
    /// Made once per process: every generation issues and accepts the same tickets.
    ticketer: Arc<dyn ProducesTickets>,
    version: AtomicU64,
    // Both taken only at a reload and when a core sees a new version (at most once per reload),
    // never per connection. `reloading` holds, by slot, the settings the current generation was
    // loaded from; it is held from reading the files to the swap, so two reloads never cross.
    #[allow(clippy::disallowed_types)]
    reloading: std::sync::Mutex<Vec<Option<TlsConfig>>>,
    #[allow(clippy::disallowed_types)]
    current: std::sync::Mutex<Arc<Generation>>,
}

impl TlsState {
    /// Loads every TLS listener's certificates (the `[[listen]]` at index i is slot i). Without a
    /// TLS listener the generation is empty, and a reload may add one.
    pub fn start(config: &Config) -> Result<Arc<TlsState>, String> {
        let provider = Arc::new(server_provider());
        let ticketer = ticketer().map_err(|e| format!("cannot make TLS ticket keys: {e}"))?;
        let listeners: Vec<_> = config.listen.iter().map(|l| l.tls.clone()).collect();
        let first = load_generation(&listeners, &provider, &ticketer)
            .map_err(|e| format!("certificate error: {e}"))?;
        #[allow(clippy::disallowed_types)]
        Ok(Arc::new(TlsState {
            provider,
            ticketer,
            version: AtomicU64::new(1),
            reloading: std::sync::Mutex::new(listeners),
            current: std::sync::Mutex::new(Arc::new(first)),
        }))
    }

    /// Counts reloads: a core whose copy is older takes `current()`.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Generation> {
        match self.current.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads every certificate file of the listeners in use. On any error the loaded
    /// certificates stay in use and the error says which file and why; on success new
    /// handshakes use the new ones (established connections keep theirs). Returns how many
    /// certificates were loaded.
    pub fn reload(&self) -> Result<usize, String> {
        let mut listeners = lock(&self.reloading);
        let same = listeners.clone();
        // Slots without settings are plain listeners or removed ones: a removed one keeps the
        // configuration its last connections were accepted with.
        self.load_and_swap(&mut listeners, same, |_| true)
    }

    /// Loads the certificates of a reloaded file's listeners (`by_slot`: each slot's TLS
    /// settings) and puts them in use, as `reload` does. Every slot the file does not have
    /// (`in_file`: the slots it has) keeps the configuration it has: a listener removed by this or
    /// an earlier reload may still be closing on a core that has not caught up, and a connection
    /// queued on it still gets its handshake (its files may be gone).
    pub fn replace(
        &self,
        by_slot: Vec<Option<TlsConfig>>,
        in_file: &[usize],
    ) -> Result<usize, String> {
        let mut listeners = lock(&self.reloading);
        self.load_and_swap(&mut listeners, by_slot, |slot| !in_file.contains(&slot))
    }

    /// Loads `next` and puts it in use; a slot `next` has no settings for keeps the current
    /// configuration where `carry(slot)`.
    fn load_and_swap(
        &self,
        listeners: &mut Vec<Option<TlsConfig>>,
        next: Vec<Option<TlsConfig>>,
        carry: impl Fn(usize) -> bool,
    ) -> Result<usize, String> {
        let mut generation = load_generation(&next, &self.provider, &self.ticketer)?;
        let count = generation.certs.iter().map(Vec::len).sum();
        let current = self.current();
        for (slot, config) in current.configs.iter().enumerate() {
            if config.is_some() && carry(slot) && next.get(slot).is_none_or(Option::is_none) {
                if generation.configs.len() <= slot {
                    generation.configs.resize(slot + 1, None);
                }
                generation.configs[slot] = config.clone();
            }
        }
        *lock(&self.current) = Arc::new(generation);
        *listeners = next;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(count)
    }
}

#[allow(clippy::disallowed_types)]
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn load_generation(
    listeners: &[Option<TlsConfig>],
    provider: &Arc<CryptoProvider>,
    ticketer: &Arc<dyn ProducesTickets>,
) -> Result<Generation, String> {
    let mut configs = Vec::new();
    let mut certs = Vec::new();
    for l in listeners {
        let Some(t) = l else {
            configs.push(None);
            certs.push(Vec::new());
            continue;
        };
        let loaded = load_certs(t, provider)?;
        let now = certs::unix_now();
        for w in loaded.iter().flat_map(|c| certs::warnings(c, now)) {
            tracing::warn!("{w}");
        }
        certs.push(
            loaded
                .iter()
                .map(|c| CertInfo {
                    file: c.files.cert.display().to_string(),
                    names: c.names.clone(),
                    not_after: c.not_after,
                })
                .collect(),
        );
        configs.push(Some(server_config(t, &loaded, provider, ticketer)?));
    }
    Ok(Generation { configs, certs })
}

/// Loads and checks a listener's certificate pairs.
pub fn load_certs(t: &TlsConfig, provider: &CryptoProvider) -> Result<Vec<LoadedCert>, String> {
    t.certs.iter().map(|f| certs::load(f, provider)).collect()
}

/// The rustls configuration of one TLS listener.
pub fn server_config(
    t: &TlsConfig,
    loaded: &[LoadedCert],
    provider: &Arc<CryptoProvider>,
    ticketer: &Arc<dyn ProducesTickets>,
) -> Result<Arc<ServerConfig>, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut c = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(store::CertStore::new(loaded)));
    c.alpn_protocols = t.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Stateless tickets for both versions: nothing shared between cores to look up.
    c.ticketer = ticketer.clone();
    c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    c.ignore_client_order = true;
    c.max_fragment_size = Some(MAX_FRAGMENT_SIZE);
    Ok(Arc::new(c))
}

/// Tests: a TLS 1.3 rustls client over `provider` that trusts only `cert`, for server `name`.
#[cfg(test)]
pub(crate) fn tls13_client(
    provider: CryptoProvider,
    cert: &rustls::pki_types::CertificateDer<'static>,
    name: &'static str,
) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    rustls::ClientConnection::new(Arc::new(config), name.try_into().unwrap()).unwrap()
}

/// Tests: a handshake between rustls' buffered client and server, through memory.
#[cfg(test)]
pub(crate) fn handshake_in_memory(
    cl: &mut rustls::ClientConnection,
    sv: &mut rustls::ServerConnection,
) {
    let mut wire = Vec::new();
    while cl.is_handshaking() || sv.is_handshaking() {
        cl.write_tls(&mut wire).unwrap();
        sv.read_tls(&mut wire.as_slice()).unwrap();
        sv.process_new_packets().unwrap();
        wire.clear();
        sv.write_tls(&mut wire).unwrap();
        cl.read_tls(&mut wire.as_slice()).unwrap();
        cl.process_new_packets().unwrap();
        wire.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name`, written to `dir` as `<name>.pem` and `<name>.key`.
    fn cert_files(
        dir: &std::path::Path,
        name: &str,
    ) -> (rcgen::Certificate, std::path::PathBuf, std::path::PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (cert, c, k)
    }

    #[test]
    fn a_removed_listener_keeps_its_configuration_and_a_plain_one_has_none() {
        let dir = std::env::temp_dir().join(format!("ringlb-tls-slots-{}", std::process::id()));
        let (_, c, k) = cert_files(&dir, "a.test");
        let tls = format!(
            "[listen.tls]\ncerts = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            c.display(),
            k.display()
        );
        let config = Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n{tls}[[listen]]\naddress = \"127.0.0.1:2\"\n{tls}\
             [[balancer]]\nname = \"b\"\nmembers = [{{ url = \"http://127.0.0.1:9\" }}]\n"
        ))
        .unwrap();
        let state = TlsState::start(&config).unwrap();
        let first = state.current().configs[0].clone().unwrap();
        let settings = config.listen[1].tls.clone();
        // Slot 0 removed by a reload: its configuration stays (the files could be gone).
        std::fs::remove_file(&c).unwrap();
        let (_, c2, k2) = cert_files(&dir, "b.test");
        let mut kept = settings.clone().unwrap();
        kept.certs[0].cert = c2.clone();
        kept.certs[0].key = k2.clone();
        assert_eq!(state.replace(vec![None, Some(kept.clone())], &[1]), Ok(1));
        let g = state.current();
        assert!(Arc::ptr_eq(g.configs[0].as_ref().unwrap(), &first));
        assert!(g.configs[1].is_some());
        // A later reload without it keeps it too (a core may still be closing it).
        assert_eq!(state.replace(vec![None, Some(kept.clone())], &[1]), Ok(1));
        assert!(Arc::ptr_eq(
            state.current().configs[0].as_ref().unwrap(),
            &first
        ));
        // A certificate reload keeps it too; a listener turned plain has none.
        assert_eq!(state.reload(), Ok(1));
        assert!(state.current().configs[0].is_some());
        assert_eq!(state.replace(vec![None, Some(kept)], &[0, 1]), Ok(1));
        assert!(state.current().configs[0].is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "aws-lc-rs")]
    #[test]
    fn listeners_seal_tls13_aes_gcm_records_directly() {
        let p = super::server_provider();
        for (s, ours) in p.cipher_suites[..2]
            .iter()
            .zip([&*seal::AES_128, &*seal::AES_256])
        {
            match s {
                rustls::SupportedCipherSuite::Tls13(t) => assert!(std::ptr::eq(*t, ours)),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A listener's configuration (as `TlsState` builds it) sends a large write in TLS 1.3
    /// records of 16,384 bytes on the wire, the last one shorter.
    #[test]
    fn a_listener_sends_full_records_of_16384_bytes() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ringlb-tls-records-{}", std::process::id()));
        let (cert, c, k) = cert_files(&dir, "r.test");
        let config = Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[listen.tls]\n\
             certs = [{{ cert = \"{}\", key = \"{}\" }}]\n\
             [[balancer]]\nname = \"b\"\nmembers = [{{ url = \"http://127.0.0.1:9\" }}]\n",
            c.display(),
            k.display()
        ))
        .unwrap();
        let server = TlsState::start(&config).unwrap().current().configs[0]
            .clone()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut cl = tls13_client(provider(), cert.der(), "r.test");
        let mut sv = rustls::ServerConnection::new(server).unwrap();
        let mut wire = Vec::new();
        handshake_in_memory(&mut cl, &mut sv);
        while sv.wants_write() {
            sv.write_tls(&mut wire).unwrap(); // tickets, if any are still queued
        }
        wire.clear();
        sv.writer().write_all(&vec![7u8; 60_000]).unwrap();
        while sv.wants_write() {
            sv.write_tls(&mut wire).unwrap();
        }
        let mut sizes = Vec::new();
        let mut at = 0;
        while at + 5 <= wire.len() {
            let len = 5 + u16::from_be_bytes([wire[at + 3], wire[at + 4]]) as usize;
            sizes.push(len);
            at += len;
        }
        assert_eq!(at, wire.len());
        let (last, full) = sizes.split_last().unwrap();
        assert_eq!(full, vec![16_384; 60_000 / 16_362]);
        assert_eq!(*last, 5 + 60_000 % 16_362 + 17);
    }

    #[test]
    fn listeners_prefer_tls13_then_aes128_aes256_chacha() {
        let names: Vec<&str> = super::server_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite().as_str().unwrap_or("?"))
            .collect();
        assert_eq!(
            &names[..3],
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256"
            ]
        );
        let tls12: Vec<&&str> = names.iter().skip(3).collect();
        assert!(
            tls12.iter().all(|n| n.starts_with("TLS_ECDHE_")),
            "{tls12:?}"
        );
        assert!(tls12[0].contains("AES_128") && tls12.last().unwrap().contains("CHACHA20"));
    }
}
