//! TLS for load connections: the client configuration built from the command line (roots,
//! `--insecure`, resumption, version, `--tls-kx` key exchange group) and a rustls
//! `ClientConnection` driven over a compio `TcpStream` with the buffered API (socket bytes in
//! through `read_tls`, records out through `write_tls`).
//!
//! Owns: the run's shared client configuration (its crypto provider: aws-lc-rs's default key
//! exchange groups, or only the one `--tls-kx` names, so that a benchmark against a server without
//! ML-KEM and one with it measures the same key exchange), the `--tls-resume` ticket store (room
//! for every connection's ticket, where rustls's cache keeps 8), the `--insecure` verifier, one
//! connection's TLS state and socket buffers, and the one stderr line naming the run's first TLS
//! error (the report counts them all). Must never: touch plain connections (they keep their
//! zero-extra-copy path in `client.rs`), time the handshake itself (the caller bounds it with
//! `--timeout`), or block: every socket operation is a compio await. Invariant: socket bytes not
//! yet given to rustls stay in `rbuf[pos..]` and are fed before the socket is read again, so
//! nothing is lost between the handshake and the first response.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, SupportedKxGroup,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, NamedGroup,
    RootCertStore, SignatureScheme,
};

use crate::cli::LoadArgs;
use crate::client::Fail;

/// Socket reads for a TLS connection go through a buffer of this size.
const IO_BUF: usize = 64 * 1024;

/// Prints the first TLS failure of the run (the error counts say how many followed).
pub fn note_first(what: &str, e: &dyn std::fmt::Display) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("ringlb-load: first TLS error: {what}: {e}");
    }
}

/// Builds the one client configuration every TLS connection of the run shares (so that, with
/// `--tls-resume`, a session from one connection resumes on another, on any thread).
pub fn config(args: &LoadArgs) -> anyhow::Result<Arc<ClientConfig>> {
    if args.tls_kx.as_deref() == Some("mlkem") && args.tls_version.as_deref() == Some("1.2") {
        bail!("--tls-kx mlkem needs TLS 1.3 (give --tls-version 1.3 or none)");
    }
    let provider = Arc::new(provider(args.tls_kx.as_deref())?);
    let versions: &[&rustls::SupportedProtocolVersion] = match args.tls_version.as_deref() {
        None => rustls::DEFAULT_VERSIONS,
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(v) => bail!("--tls-version {v}: give 1.2 or 1.3"),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS configuration")?;
    let mut config = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &args.cacert {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                {
                    let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("bad certificate in {}", path.display()))?;
                }
                if roots.is_empty() {
                    bail!("{}: no certificates", path.display());
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    bail!("no system root certificates found: give --cacert FILE or --insecure");
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if args.tls_resume {
        Resumption::store(Arc::new(TicketStore::new(args.connections)))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// aws-lc-rs with `--tls-kx`'s one key exchange group, or with its default list (X25519MLKEM768
/// first where rustls prefers post-quantum, then X25519, P-256, P-384). One group only, so a
/// server can pick nothing else: benchmarks against OpenSSL 3.0 peers (no ML-KEM) compare the
/// same key exchange.
fn provider(kx: Option<&str>) -> anyhow::Result<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let mut provider = default_provider();
    let group: &'static dyn SupportedKxGroup = match kx {
        None => return Ok(provider),
        Some("x25519") => kx_group::X25519,
        Some("p256") => kx_group::SECP256R1,
        Some("mlkem") => kx_group::X25519MLKEM768,
        Some(g) => bail!("--tls-kx {g}: give x25519, p256 or mlkem"),
    };
    provider.kx_groups = vec![group];
    Ok(provider)
}

/// `--tls-resume`'s session store. rustls's memory cache keeps at most 8 TLS 1.3 tickets per
/// server: with more connections than that reconnecting together (a batch of responses read, then
/// a batch of connects), the tickets run out and the rest make full handshakes, in a share that
/// depends on the server's timing, so two servers would not be measured alike. This one keeps up
/// to two tickets per connection of the run (a ticket is used once; servers send one or two per
/// handshake), newest taken first; the key exchange hints and TLS 1.2 sessions stay in rustls's
/// cache.
#[derive(Debug)]
struct TicketStore {
    inner: ClientSessionMemoryCache,
    cap: usize,
    // Taken once per handshake and once per ticket received, never per request.
    #[allow(clippy::disallowed_types)]
    tickets: std::sync::Mutex<HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>>,
}

impl TicketStore {
    fn new(connections: usize) -> TicketStore {
        TicketStore {
            inner: ClientSessionMemoryCache::new(256),
            cap: connections.saturating_mul(2).max(8),
            tickets: Default::default(),
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>) -> R,
    ) -> R {
        f(&mut self.tickets.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.with(|map| {
            let tickets = map.entry(server_name).or_default();
            if tickets.len() >= self.cap {
                tickets.pop_front();
            }
            tickets.push_back(value);
        });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.with(|map| map.get_mut(server_name)?.pop_back())
    }
}

/// `--insecure`: accepts any certificate and name, but still checks that the handshake was
/// signed by the key in the certificate presented (with the provider's algorithms).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// One connection's TLS state.
pub struct Tls {
    conn: ClientConnection,
    /// Bytes read from the socket; those from `pos` on are not yet fed to rustls.
    rbuf: Vec<u8>,
    pos: usize,
    /// Records on their way to the socket.
    wbuf: Vec<u8>,
}

impl Tls {
    /// Runs the handshake over a connected socket. Any failure is `Fail::Tls` (the caller bounds
    /// the time). The client's last flight is left queued: it goes out with the first request.
    pub async fn handshake(
        s: &mut TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Box<Tls>, Fail> {
        let mut conn = ClientConnection::new(config, name).map_err(|e| {
            note_first("client setup", &e);
            Fail::Tls
        })?;
        // Requests are encrypted whole and written in one go.
        conn.set_buffer_limit(None);
        let mut tls = Box::new(Tls {
            conn,
            rbuf: Vec::with_capacity(IO_BUF),
            pos: 0,
            wbuf: Vec::with_capacity(4096),
        });
        while tls.conn.is_handshaking() {
            if tls.conn.wants_write() {
                tls.flush(s).await.map_err(|f| {
                    note_first("handshake", &format_args!("write failed ({f:?})"));
                    Fail::Tls
                })?;
            } else {
                tls.read_socket(s).await.map_err(|f| {
                    note_first("handshake", &format_args!("read failed ({f:?})"));
                    Fail::Tls
                })?;
                if tls.feed(None).is_err() {
                    // Tell the server why (a certificate rejected, say); best effort.
                    let _ = tls.flush(s).await;
                    return Err(Fail::Tls);
                }
            }
        }
        Ok(tls)
    }

    /// Full or resumed (a hello retry counts as full).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Encrypts `data` and writes it, with anything rustls has queued, to the socket.
    pub async fn write_all(&mut self, s: &mut TcpStream, data: &[u8]) -> Result<(), Fail> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|_| Fail::Write)?;
        self.flush(s).await
    }

    /// Appends at least one byte of plaintext to `buf` (like compio's `append`); `Fail::Closed`
    /// at the end of the stream, with or without close_notify.
    pub async fn append(&mut self, s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Fail> {
        let before = buf.len();
        loop {
            self.feed(Some(buf))?;
            let open = self.drain(buf)?;
            if buf.len() > before {
                return Ok(buf.len() - before);
            }
            if !open {
                return Err(Fail::Closed);
            }
            self.read_socket(s).await?;
        }
    }

    /// Writes every queued record to the socket.
    async fn flush(&mut self, s: &mut TcpStream) -> Result<(), Fail> {
        self.wbuf.clear();
        while self.conn.wants_write() {
            self.conn
                .write_tls(&mut self.wbuf)
                .map_err(|_| Fail::Write)?;
        }
        let owned = std::mem::take(&mut self.wbuf);
        let BufResult(res, mut owned) = s.write_all(owned).await;
        owned.clear();
        self.wbuf = owned;
        res.map_err(|_| Fail::Write)
    }

    /// Reads what the socket has (everything read before must have been fed).
    async fn read_socket(&mut self, s: &mut TcpStream) -> Result<(), Fail> {
        let mut owned = std::mem::take(&mut self.rbuf);
        owned.clear();
        owned.reserve(IO_BUF);
        let BufResult(res, owned) = s.read(owned).await;
        self.rbuf = owned;
        self.pos = 0;
        match res {
            Ok(0) => Err(Fail::Closed),
            Ok(_) => Ok(()),
            Err(_) => Err(Fail::Read),
        }
    }

    /// Gives the unfed socket bytes to rustls. With `out`, decrypted data is moved there as it
    /// comes (rustls holds only 16 KiB of plaintext); without (handshake), feeding stops when the
    /// handshake is done, leaving the rest for the first `append`.
    fn feed(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), Fail> {
        while self.pos < self.rbuf.len() {
            if out.is_none() && !self.conn.is_handshaking() {
                return Ok(());
            }
            let n = self
                .conn
                .read_tls(&mut &self.rbuf[self.pos..])
                .map_err(|e| {
                    note_first("read_tls", &e);
                    Fail::Tls
                })?;
            self.pos += n;
            self.conn.process_new_packets().map_err(|e| {
                note_first("received data", &e);
                Fail::Tls
            })?;
            if let Some(buf) = out.as_deref_mut() {
                self.drain(buf)?;
            }
            if n == 0 {
                // close_notify came: nothing after it counts.
                self.pos = self.rbuf.len();
                break;
            }
        }
        Ok(())
    }

    /// Moves decrypted data into `buf`; false once the peer has closed (cleanly or not).
    fn drain(&mut self, buf: &mut Vec<u8>) -> Result<bool, Fail> {
        let mut reader = self.conn.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => return Ok(false),
                Ok(chunk) => {
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
                Err(_) => return Err(Fail::Read),
            }
        }
    }
}
