//! One TLS connection's rustls state (ringlb as the server to a client, or as the client to an
//! `https://` member), driven over ringlb's own buffers with rustls' unbuffered API: ciphertext
//! read from the socket goes into `tin`, rustls decrypts it and hands over plaintext, which is
//! appended to the caller's buffer (the client's `buf`); plaintext to send is encrypted straight
//! into `tout`, which is written to the socket.
//!
//! Owns: the record pump (`process`, `encrypt`), the handshake and the I/O that needs TLS state
//! (`read_more`, `recv_ready`, `write`, `write_two`, `send`, `flush`, `close`, `idle_check`, and
//! the non-blocking `send_ready` and `close_ready` of a tunnel).
//! Must never: lose plaintext rustls produced (what arrives while ringlb writes is kept in `unread`
//! and read first), stop processing while `tin` holds a record rustls could take (every call runs
//! the pump until rustls asks for more bytes), or hold buffers while idle that it could lend
//! (`lend`), or report a TCP close without close_notify as the peer's end (it is an `UnexpectedEof`
//! error, so a body framed by the close is not taken as whole). Invariant: between calls `tin`
//! holds only bytes rustls is not done with (part of a record, records holding part of a
//! handshake message, records behind a close_notify, or a failed session's input);
//! `tout[..pending]` is ciphertext not yet written, in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use crate::io::{read_more as tcp_read_more, send_request, write_range, IoFail, Unsent};

/// Ciphertext read per receive.
const READ_CHUNK: usize = 16 * 1024 + 64;
/// Plaintext encrypted per write: larger writes go out in pieces of this size.
const WRITE_CHUNK: usize = 64 * 1024;
/// Room for record headers, tags and padding per 16 KiB record (and one more record).
const RECORD_OVERHEAD: usize = 64;

/// One TLS connection's state.
pub struct TlsSession {
    conn: Conn,
    /// Ciphertext received; `tin[..taken]` is done with and dropped once per pump run (not per
    /// record: many small records would make that quadratic).
    tin: Vec<u8>,
    taken: usize,
    /// Ciphertext to send is `tout[..pending]`; the rest is room kept for the next records.
    tout: Vec<u8>,
    pending: usize,
    /// Plaintext that arrived while ringlb was writing: read before anything else.
    unread: Vec<u8>,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// ringlb sent close_notify.
    closed: bool,
    /// rustls reported an error: the session takes no more input (it only sends its alert; the
    /// input that failed would fail again).
    failed: bool,
    /// Random, made at the handshake: the session id AJP containers are told.
    id: [u8; 16],
}

/// Where the record pump stopped.
enum Progress {
    /// Handshake done; every complete record has been processed.
    Ready,
    /// The handshake needs more bytes from the client.
    NeedMore,
    /// Both sides have closed.
    Closed,
}

/// Why a handshake failed (the status page counts them by this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFail {
    /// Not done within `header_timeout`.
    Timeout,
    /// The client closed or reset the connection.
    Closed,
    /// Not TLS, or a malformed or unexpected message.
    Protocol,
    /// No version, cipher suite or group in common.
    Incompatible,
    /// The client refused the certificate (an alert such as unknown_ca or bad_certificate).
    CertRejected,
    /// Another alert from the client, or another error.
    Other,
}

impl HandshakeFail {
    pub const ALL: [HandshakeFail; 6] = [
        HandshakeFail::Timeout,
        HandshakeFail::Closed,
        HandshakeFail::Protocol,
        HandshakeFail::Incompatible,
        HandshakeFail::CertRejected,
        HandshakeFail::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HandshakeFail::Timeout => "timeout",
            HandshakeFail::Closed => "closed",
            HandshakeFail::Protocol => "protocol",
            HandshakeFail::Incompatible => "incompatible",
            HandshakeFail::CertRejected => "cert_rejected",
            HandshakeFail::Other => "other",
        }
    }

    fn of(e: &rustls::Error) -> HandshakeFail {
        use rustls::AlertDescription as A;
        match e {
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::DecryptError
            | rustls::Error::PeerMisbehaved(_) => HandshakeFail::Protocol,
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                HandshakeFail::Incompatible
            }
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied,
            ) => HandshakeFail::CertRejected,
            rustls::Error::AlertReceived(A::ProtocolVersion | A::HandshakeFailure) => {
                HandshakeFail::Incompatible
            }
            _ => HandshakeFail::Other,
        }
    }
}

/// A failed handshake: why (counted), and rustls' words for it (logged).
#[derive(Debug)]
pub struct HandshakeError {
    pub reason: HandshakeFail,
    pub detail: Option<rustls::Error>,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(e) => write!(f, "{}: {e}", self.reason.name()),
            None => f.write_str(self.reason.name()),
        }
    }
}

fn failed(reason: HandshakeFail) -> HandshakeError {
    HandshakeError {
        reason,
        detail: None,
    }
}

/// What a failed TLS read or write came to, for the I/O layer.
fn io_fail(e: rustls::Error) -> IoFail {
    IoFail::Error(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The two sides ringlb plays: server to clients, client to `https://` members.
enum Conn {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// The session's buffers a step of the record pump writes to.
struct Out<'a> {
    tout: &'a mut Vec<u8>,
    pending: &'a mut usize,
    unread: &'a mut Vec<u8>,
    peer_closed: &'a mut bool,
}

/// One step of rustls over `tin` for either side: `$handle(state, &mut discard, &mut out, args..)`
/// (generic over the side), then the processed bytes are counted as taken.
macro_rules! step {
    ($s:expr, $handle:ident $(, $arg:expr)*) => {{
        let TlsSession { conn, tin, taken, tout, pending, unread, peer_closed, .. } = &mut *$s;
        let mut out = Out { tout, pending, unread, peer_closed };
        let input = &mut tin[*taken..];
        let (discard, result) = match conn {
            Conn::Server(c) => {
                let UnbufferedStatus { mut discard, state } = c.process_tls_records(input);
                let r = $handle(state, &mut discard, &mut out $(, $arg)*);
                (discard, r)
            }
            Conn::Client(c) => {
                let UnbufferedStatus { mut discard, state } = c.process_tls_records(input);
                let r = $handle(state, &mut discard, &mut out $(, $arg)*);
                (discard, r)
            }
        };
        *taken = (*taken + discard).min(tin.len());
        result
    }};
}

type State<'c, 'i, D> = Result<ConnectionState<'c, 'i, D>, rustls::Error>;

/// Reading: plaintext to `plain`; `Some` when the pump should stop.
fn on_read<D>(
    state: State<'_, '_, D>,
    discard: &mut usize,
    out: &mut Out<'_>,
    plain: &mut Vec<u8>,
) -> Result<Option<Progress>, rustls::Error> {
    match state? {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                let rec = rec?;
                *discard += rec.discard;
                plain.extend_from_slice(rec.payload);
            }
            Ok(None)
        }
        ConnectionState::EncodeTlsData(mut e) => encode(&mut e, out).map(|_| None),
        ConnectionState::TransmitTlsData(t) => {
            // Sent with the next flush, before anything encrypted after it.
            t.done();
            Ok(None)
        }
        ConnectionState::PeerClosed => {
            *out.peer_closed = true;
            Ok(None)
        }
        ConnectionState::BlockedHandshake => Ok(Some(Progress::NeedMore)),
        ConnectionState::WriteTraffic(_) => Ok(Some(Progress::Ready)),
        ConnectionState::Closed => Ok(Some(Progress::Closed)),
        // Early data is never enabled (max_early_data_size is 0); anything else is new.
        _ => Err(rustls::Error::General("unexpected TLS state".into())),
    }
}

/// Writing: `data` encrypted into `tout`; `true` once it is. Plaintext that arrives meanwhile
/// goes to `unread`.
fn on_write<D>(
    state: State<'_, '_, D>,
    discard: &mut usize,
    out: &mut Out<'_>,
    data: &[u8],
) -> Result<bool, rustls::Error> {
    match state? {
        ConnectionState::WriteTraffic(mut w) => {
            let room = data.len() + RECORD_OVERHEAD * (data.len() / 16384 + 2);
            grow(out.tout, *out.pending + room);
            match w.encrypt(data, &mut out.tout[*out.pending..]) {
                Ok(n) => {
                    *out.pending += n;
                    Ok(true)
                }
                Err(EncryptError::InsufficientSize(s)) => {
                    grow(out.tout, *out.pending + s.required_size);
                    Ok(false)
                }
                Err(e) => Err(rustls::Error::General(e.to_string())),
            }
        }
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                let rec = rec?;
                *discard += rec.discard;
                out.unread.extend_from_slice(rec.payload);
            }
            Ok(false)
        }
        ConnectionState::EncodeTlsData(mut e) => encode(&mut e, out).map(|_| false),
        ConnectionState::TransmitTlsData(t) => {
            t.done();
            Ok(false)
        }
        ConnectionState::PeerClosed => {
            *out.peer_closed = true;
            Ok(false)
        }
        _ => Err(rustls::Error::General(
            "cannot write on this connection".into(),
        )),
    }
}

/// Closing: a close_notify alert into `tout`; `true` when done (or impossible).
fn on_close<D>(state: State<'_, '_, D>, _: &mut usize, out: &mut Out<'_>) -> bool {
    match state {
        Ok(ConnectionState::WriteTraffic(mut w)) => {
            grow(out.tout, *out.pending + RECORD_OVERHEAD);
            if let Ok(n) = w.queue_close_notify(&mut out.tout[*out.pending..]) {
                *out.pending += n;
            }
            true
        }
        Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out).is_err(),
        Ok(ConnectionState::TransmitTlsData(t)) => {
            t.done();
            false
        }
        Ok(ConnectionState::ReadTraffic(mut r)) => {
            while let Some(Ok(_)) = r.next_record() {}
            false
        }
        _ => true,
    }
}

/// After a failed handshake: the alert rustls queued for the peer; `true` while there is more.
fn on_alert<D>(state: State<'_, '_, D>, _: &mut usize, out: &mut Out<'_>) -> bool {
    match state {
        Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out).is_ok(),
        Ok(ConnectionState::TransmitTlsData(t)) => {
            t.done();
            true
        }
        _ => false,
    }
}

impl TlsSession {
    /// A server session for a client that just connected.
    pub fn server(config: Arc<rustls::ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut id = [0u8; 16];
        config.crypto_provider().secure_random.fill(&mut id)?;
        Ok(TlsSession::with(
            Conn::Server(UnbufferedServerConnection::new(config)?),
            id,
        ))
    }

    /// A client session to a member named `name` (SNI and certificate verification).
    pub fn client(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsSession, rustls::Error> {
        let conn = UnbufferedClientConnection::new(config, name)?;
        Ok(TlsSession::with(Conn::Client(conn), [0; 16]))
    }

    fn with(conn: Conn, id: [u8; 16]) -> TlsSession {
        TlsSession {
            id,
            conn,
            tin: Vec::new(),
            taken: 0,
            tout: Vec::new(),
            pending: 0,
            unread: Vec::new(),
            peer_closed: false,
            closed: false,
            failed: false,
        }
    }

    /// Runs rustls over `tin` until it needs more bytes, appending any plaintext to `plain` and
    /// any ciphertext to send to `tout`.
    fn process(&mut self, plain: &mut Vec<u8>) -> Result<Progress, rustls::Error> {
        if self.failed {
            return Err(rustls::Error::General("the TLS session failed".into()));
        }
        let result = loop {
            match step!(self, on_read, plain) {
                Ok(None) => {}
                Ok(Some(p)) => break Ok(p),
                Err(e) => break Err(e),
            }
        };
        self.compact();
        self.failed |= result.is_err();
        result
    }

    /// Encrypts `data` into `tout` (after what is pending).
    fn encrypt(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        if self.failed {
            return Err(rustls::Error::General("the TLS session failed".into()));
        }
        let result = loop {
            match step!(self, on_write, data) {
                Ok(false) => {}
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.compact();
        self.failed |= result.is_err();
        result
    }

    /// Queues a close_notify alert (best effort); after an error, the alert rustls made instead.
    fn queue_close(&mut self) {
        if self.failed {
            return self.queue_alert();
        }
        for _ in 0..8 {
            if step!(self, on_close) {
                break;
            }
        }
        self.compact();
    }

    /// After an error: encodes the alerts rustls queued for the peer. Only while it has some: a
    /// call with none would process the input again, and fail (and alert) again. The input stays
    /// as it is (rustls keeps offsets into it).
    fn queue_alert(&mut self) {
        self.failed = true;
        for _ in 0..4 {
            if !self.common().wants_write() || !step!(self, on_alert) {
                break;
            }
        }
        self.compact();
    }

    /// Drops the ciphertext rustls is done with.
    fn compact(&mut self) {
        self.tin.drain(..self.taken);
        self.taken = 0;
    }

    /// Whether nothing waits in the session: no ciphertext rustls is not done with, no plaintext
    /// unread, nothing to send.
    fn is_clear(&self) -> bool {
        self.tin.is_empty() && self.unread.is_empty() && self.pending == 0
    }

    fn common(&self) -> &rustls::CommonState {
        match &self.conn {
            Conn::Server(c) => c,
            Conn::Client(c) => c,
        }
    }

    /// Takes bytes already read from the socket (after a PROXY header) as the first it processes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.tin.extend_from_slice(bytes);
    }

    /// Encrypted bytes waiting to be sent (`send_ready` could not send them all).
    pub fn unsent(&self) -> usize {
        self.pending
    }

    /// Whether plaintext has already arrived that a reader has not taken: an idle wait must not
    /// poll the socket for it.
    pub fn has_buffered(&self) -> bool {
        // Every pump run processes all that rustls can take: what is left in `tin` needs more
        // bytes from the socket, so only plaintext kept during a write counts.
        !self.unread.is_empty()
    }

    /// Whether ciphertext waits that rustls is not done with (the start of a record, records
    /// holding part of a handshake message, records behind a close_notify, or a failed session's
    /// input): the start of the client's next request, which waits
    /// for the rest by the head's deadline, not idle (and not parked, which would keep the
    /// buffer holding it). Between calls `taken` is 0 (`compact`).
    pub fn mid_record(&self) -> bool {
        !self.tin.is_empty()
    }

    /// Whether the peer sent close_notify: it sends nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The negotiated cipher suite's IANA name (`TLS_AES_128_GCM_SHA256`) and its key size in
    /// bits, for AJP's SSL attributes.
    pub fn cipher(&self) -> Option<(&'static str, u16)> {
        let suite = self.common().negotiated_cipher_suite()?;
        let name = iana_name(suite.suite().as_str()?);
        let bits = if name.contains("AES_128") { 128 } else { 256 };
        Some((name, bits))
    }

    /// The session id AJP containers are told, in hex: random per TLS connection (rustls does
    /// not expose the protocol's session id, and TLS 1.3 has none).
    pub fn session_id(&self) -> [u8; 32] {
        let mut hex = [0u8; 32];
        for (i, b) in self.id.iter().enumerate() {
            hex[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
            hex[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 15)];
        }
        hex
    }

    /// Whether this connection resumed an earlier session.
    pub fn resumed(&self) -> bool {
        matches!(
            self.common().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The negotiated protocol version, as AJP's `AJP_SSL_PROTOCOL` names it (`TLSv1.3`).
    pub fn version(&self) -> &'static str {
        match self.common().protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        }
    }

    /// Takes the buffers while the connection idles, or once it closed; `None` while they hold
    /// bytes still to be read or sent. (`tout` keeps its length as room: what it holds was sent,
    /// and only what a later record writes over it is ever sent.)
    pub fn lend(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if !self.is_clear() {
            return None;
        }
        if !self.holds_buffers() {
            return None;
        }
        self.unread = Vec::new();
        Some((
            std::mem::take(&mut self.tin),
            std::mem::take(&mut self.tout),
        ))
    }

    /// Whether it holds buffers (with room) that `lend` could give.
    pub fn holds_buffers(&self) -> bool {
        self.tin.capacity() > 0 || self.tout.capacity() > 0
    }

    /// Takes buffers (lent by some connection) again; they must be empty.
    pub fn take(&mut self, (tin, tout): (Vec<u8>, Vec<u8>)) {
        if self.tin.capacity() == 0 && tin.is_empty() {
            self.tin = tin;
        }
        if self.tout.capacity() == 0 && self.pending == 0 {
            self.tout = tout;
        }
    }
}

/// rustls calls TLS 1.3 suites `TLS13_AES_128_GCM_SHA256`; their IANA names start with `TLS_`.
fn iana_name(name: &'static str) -> &'static str {
    match name {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        other => other,
    }
}

/// Makes `buf` at least `len` long (zeroed once; its length is kept as room).
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

fn encode<D>(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    out: &mut Out<'_>,
) -> Result<(), rustls::Error> {
    loop {
        grow(out.tout, *out.pending + 4096);
        match e.encode(&mut out.tout[*out.pending..]) {
            Ok(n) => {
                *out.pending += n;
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => grow(out.tout, *out.pending + s.required_size),
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        }
    }
}

/// Writes what is pending in `s.tout` (records rustls owes the client).
pub async fn flush(tcp: &mut TcpStream, s: &mut TlsSession, limit: Duration) -> Result<(), IoFail> {
    if s.pending == 0 {
        return Ok(());
    }
    let n = s.pending;
    s.pending = 0;
    write_range(tcp, &mut s.tout, 0..n, limit).await
}

/// Runs the handshake until the connection can carry requests, by `deadline`. Application data
/// the client sent along (a request right after its Finished) goes to `plain`.
pub async fn handshake(
    tcp: &mut TcpStream,
    s: &mut TlsSession,
    plain: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    loop {
        let progress = match s.process(plain) {
            Ok(p) => p,
            Err(e) => {
                let reason = HandshakeFail::of(&e);
                s.queue_alert();
                let _ = flush(tcp, s, Duration::from_millis(100)).await;
                return Err(HandshakeError {
                    reason,
                    detail: Some(e),
                });
            }
        };
        // What is owed goes out even once the deadline has passed (the last flight may have come
        // in the read's timer slack): one write, not a loop.
        let left = crate::deadline::left(deadline).unwrap_or(crate::deadline::TICK);
        match flush(tcp, s, left).await {
            Ok(()) => {}
            Err(IoFail::Timeout) => return Err(failed(HandshakeFail::Timeout)),
            Err(_) => return Err(failed(HandshakeFail::Closed)),
        }
        match progress {
            Progress::Ready => return Ok(()),
            Progress::Closed => return Err(failed(HandshakeFail::Closed)),
            Progress::NeedMore => {}
        }
        let Some(left) = crate::deadline::left(deadline) else {
            return Err(failed(HandshakeFail::Timeout));
        };
        match tcp_read_more(tcp, &mut s.tin, READ_CHUNK, left).await {
            Ok(_) => {}
            Err(IoFail::Timeout) => return Err(failed(HandshakeFail::Timeout)),
            Err(_) => return Err(failed(HandshakeFail::Closed)),
        }
    }
}

/// Appends at least one byte of plaintext to `buf`, waiting at most `limit`.
pub async fn read_more(
    tcp: &mut TcpStream,
    s: &mut TlsSession,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<usize, IoFail> {
    let deadline = Instant::now() + limit;
    let before = buf.len();
    if !s.unread.is_empty() {
        buf.append(&mut s.unread);
    }
    loop {
        let progress = s.process(buf).map_err(io_fail)?;
        // Answers rustls owes the client (a KeyUpdate) go out before we wait for more.
        flush(tcp, s, deadline.saturating_duration_since(Instant::now())).await?;
        if buf.len() > before {
            return Ok(buf.len() - before);
        }
        if s.peer_closed || matches!(progress, Progress::Closed) {
            return Err(IoFail::Closed);
        }
        let left = crate::deadline::left(deadline).ok_or(IoFail::Timeout)?;
        match tcp_read_more(tcp, &mut s.tin, READ_CHUNK, left).await {
            // The connection ended without close_notify: what came may be cut short (a body that
            // ends at the close is not whole), so it is not the peer's own end.
            Err(IoFail::Closed) => return Err(IoFail::Error(no_close_notify())),
            r => r?,
        };
    }
}

/// The failure of a read whose TLS connection ended without close_notify.
fn no_close_notify() -> std::io::Error {
    tracing::debug!("TLS peer closed the connection without close_notify");
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "closed without close_notify",
    )
}

/// Reads what the peer has sent (the socket is readable) without blocking and processes it,
/// appending plaintext to `buf`. `WouldBlock`: nothing was there; `UnexpectedEof`: the connection
/// ended without close_notify.
pub fn recv_ready(
    tcp: &TcpStream,
    s: &mut TlsSession,
    buf: &mut Vec<u8>,
) -> std::io::Result<Received> {
    if !s.unread.is_empty() {
        buf.append(&mut s.unread);
        return Ok(Received::Bytes);
    }
    // A close_notify that came with the last plaintext: the peer has closed, whatever TCP says.
    if s.peer_closed {
        return Ok(Received::Closed);
    }
    s.tin.reserve(READ_CHUNK);
    let spare = rustix::buffer::spare_capacity(&mut s.tin);
    let (n, _) = rustix::net::recv(tcp, spare, rustix::net::RecvFlags::DONTWAIT)?;
    if n == 0 {
        // Not the peer's own end (a tunnel passes it on as a failed direction, not a close).
        return Err(no_close_notify());
    }
    let before = buf.len();
    s.process(buf)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(if buf.len() > before {
        Received::Bytes
    } else if s.peer_closed {
        Received::Closed
    } else {
        Received::Partial
    })
}

/// Sends without blocking: first the records waiting in the session, then, once they are all
/// out, up to `WRITE_CHUNK` of `data`, encrypted (and sent as far as the socket takes it).
/// Returns how much of `data` was taken (0: the socket takes nothing now, or `data` is empty).
pub fn send_ready(tcp: &TcpStream, s: &mut TlsSession, data: &[u8]) -> std::io::Result<usize> {
    if !send_pending(tcp, s)? || data.is_empty() {
        return Ok(0);
    }
    let n = data.len().min(WRITE_CHUNK);
    s.encrypt(&data[..n])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    send_pending(tcp, s)?;
    Ok(n)
}

/// Queues close_notify (once) and sends what waits without blocking. `true`: all is out (the
/// caller then shuts down the socket's write side); `false`: call again when it is writable.
pub fn close_ready(tcp: &TcpStream, s: &mut TlsSession) -> std::io::Result<bool> {
    if !std::mem::replace(&mut s.closed, true) {
        s.queue_close();
    }
    send_pending(tcp, s)
}

/// Sends the waiting records without blocking, as far as the socket takes them. `true`: all are
/// out.
fn send_pending(tcp: &TcpStream, s: &mut TlsSession) -> std::io::Result<bool> {
    while s.pending > 0 {
        let n = crate::io::send_now(tcp, &s.tout[..s.pending])?;
        if n == 0 {
            return Ok(false);
        }
        s.tout.copy_within(n..s.pending, 0);
        s.pending -= n;
    }
    Ok(true)
}

/// What a non-blocking receive on a readable connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Bytes for the reader were appended.
    Bytes,
    /// TLS: bytes were taken, but they make no plaintext yet (part of a record, or a record
    /// without data).
    Partial,
    /// The peer closed (FIN, or close_notify).
    Closed,
}

/// Encrypts and writes `data`, at most `WRITE_CHUNK` at a time, each piece within `limit`.
pub async fn write(
    tcp: &mut TcpStream,
    s: &mut TlsSession,
    data: &[u8],
    limit: Duration,
) -> Result<(), IoFail> {
    for piece in data.chunks(WRITE_CHUNK) {
        s.encrypt(piece).map_err(io_fail)?;
        flush(tcp, s, limit).await?;
    }
    Ok(())
}

/// Encrypts `a` and `b` and writes them, `a` with the first piece of `b` in one write.
pub async fn write_two(
    tcp: &mut TcpStream,
    s: &mut TlsSession,
    a: &[u8],
    b: &[u8],
    limit: Duration,
) -> Result<(), IoFail> {
    s.encrypt(a).map_err(io_fail)?;
    let first = b.len().min(WRITE_CHUNK - a.len().min(WRITE_CHUNK / 2));
    s.encrypt(&b[..first]).map_err(io_fail)?;
    flush(tcp, s, limit).await?;
    write(tcp, s, &b[first..], limit).await
}

/// Queues close_notify once and sends what waits (best effort, briefly): also a close_notify
/// `close_ready` queued but could not send.
pub async fn close(tcp: &mut TcpStream, s: &mut TlsSession) {
    if !std::mem::replace(&mut s.closed, true) {
        s.queue_close();
    }
    let _ = flush(tcp, s, Duration::from_millis(500)).await;
}

/// Encrypts a request (`head`, then `body`) and writes it, telling "nothing written" (the first
/// write failed) from "maybe written", as `io::send_request` does.
pub async fn send(
    tcp: &mut TcpStream,
    s: &mut TlsSession,
    head: &[u8],
    body: &[u8],
    limit: Duration,
) -> Result<(), Unsent> {
    let encrypted = s.encrypt(head).and_then(|_| s.encrypt(body));
    encrypted.map_err(|e| Unsent::Nothing(io_fail(e)))?;
    let n = std::mem::take(&mut s.pending);
    let mut records = std::mem::take(&mut s.tout);
    records.truncate(n);
    let sent = send_request(tcp, &mut records, &mut Vec::new(), 0..0, limit).await;
    // Its length stays as room (no zero-filling again for the next request).
    s.tout = records;
    sent
}

/// Whether an idle pooled connection is fit for a request: nothing waits in the session, and
/// what the socket holds, if anything, is whole records without data (a late session ticket),
/// taken now; not when they held data, a close, part of a record, or an error.
pub fn idle_check(tcp: &TcpStream, s: &mut TlsSession) -> bool {
    if !s.is_clear() {
        return false;
    }
    if crate::io::idle_and_open(tcp) {
        return true;
    }
    let mut plain = Vec::new();
    let quiet = matches!(recv_ready(tcp, s, &mut plain), Ok(Received::Partial));
    quiet && s.is_clear() && crate::io::idle_and_open(tcp)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
