//! The record pump without sockets: a client session and a server session (both ringlb's) talk
//! through byte vectors cut at random points; what one encrypts the other reads back whole and in
//! order. And bytes that are not TLS, or a ClientHello damaged at random, end in an error, never a
//! panic or a loop.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::*;

use crate::test_rng::Rng;

/// A server config and a client config trusting it; `fragment`: the client cuts its records
/// (handshake messages included) to this size.
fn configs(fragment: Option<usize>) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["pump.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(crate::tls::provider());
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.max_fragment_size = fragment;
    (Arc::new(server), Arc::new(client))
}

/// Moves what `from` has to send into `to`'s input, in pieces of random size, running `to`'s
/// pump after each piece; `to`'s plaintext goes to `plain`.
fn deliver(
    from: &mut TlsSession,
    to: &mut TlsSession,
    plain: &mut Vec<u8>,
    rng: &mut Rng,
) -> Progress {
    let bytes = from.tout[..from.pending].to_vec();
    from.pending = 0;
    let mut last = to.process(plain).unwrap();
    let mut at = 0;
    while at < bytes.len() {
        let n = 1 + rng.below((bytes.len() - at).min(3000));
        to.tin.extend_from_slice(&bytes[at..at + n]);
        at += n;
        last = to.process(plain).unwrap();
    }
    last
}

fn handshake(rng: &mut Rng, fragment: Option<usize>) -> (TlsSession, TlsSession) {
    let (sc, cc) = configs(fragment);
    let name = rustls::pki_types::ServerName::try_from("pump.test").unwrap();
    let mut client = TlsSession::client(cc, name).unwrap();
    let mut server = TlsSession::server(sc).unwrap();
    let mut junk = Vec::new();
    for _ in 0..10 {
        let c = client.process(&mut junk).unwrap();
        let s = deliver(&mut client, &mut server, &mut junk, rng);
        let c2 = deliver(&mut server, &mut client, &mut junk, rng);
        if matches!((c, s, c2), (_, Progress::Ready, Progress::Ready)) && client.pending == 0 {
            assert!(junk.is_empty());
            return (client, server);
        }
    }
    panic!("no handshake after 10 rounds");
}

#[test]
fn data_crosses_whole_and_in_order_whatever_the_cuts() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..8 {
        // Odd rounds: the client's records are 64 bytes, so its handshake messages span several.
        let fragment = (round % 2 == 1).then_some(64);
        let (mut client, mut server) = handshake(&mut rng, fragment);
        let mut sent_up = Vec::new();
        let mut got_up = Vec::new();
        let mut sent_down = Vec::new();
        let mut got_down = Vec::new();
        for _ in 0..20 {
            let len = rng.below(if round % 2 == 0 { 300 } else { 70_000 });
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                client.encrypt(&data).unwrap();
                sent_up.extend_from_slice(&data);
                deliver(&mut client, &mut server, &mut got_up, &mut rng);
            } else {
                server.encrypt(&data).unwrap();
                sent_down.extend_from_slice(&data);
                deliver(&mut server, &mut client, &mut got_down, &mut rng);
            }
            // The pump took all it could: running it again yields nothing and takes nothing.
            let before = (server.tin.len(), client.tin.len());
            let mut more = Vec::new();
            server.process(&mut more).unwrap();
            client.process(&mut more).unwrap();
            assert!(more.is_empty() && (server.tin.len(), client.tin.len()) == before);
            assert!(!server.has_buffered() && !client.has_buffered());
        }
        assert_eq!(got_up, sent_up);
        assert_eq!(got_down, sent_down);
        // close_notify: the reader sees the end.
        client.queue_close();
        let mut rest = Vec::new();
        deliver(&mut client, &mut server, &mut rest, &mut rng);
        assert!(rest.is_empty() && server.peer_closed);
    }
}

#[test]
fn bytes_that_are_not_tls_end_in_an_error() {
    let (sc, cc) = configs(None);
    let mut rng = Rng(7);
    // A real ClientHello, to damage.
    let name = rustls::pki_types::ServerName::try_from("pump.test").unwrap();
    let mut client = TlsSession::client(cc, name).unwrap();
    client.process(&mut Vec::new()).unwrap();
    let hello = client.tout[..client.pending].to_vec();
    for i in 0..3000 {
        let mut server = TlsSession::server(sc.clone()).unwrap();
        let input: Vec<u8> = match i % 3 {
            0 => (0..rng.below(400)).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut h = hello.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(h.len());
                    h[at] = rng.next() as u8;
                }
                h
            }
            _ => hello[..rng.below(hello.len())].to_vec(),
        };
        server.tin.extend_from_slice(&input);
        let mut plain = Vec::new();
        // Ends (no loop), never yields plaintext before a handshake.
        let _ = server.process(&mut plain);
        assert!(plain.is_empty());
        server.queue_alert();
        server.queue_close();
    }
}

#[test]
fn a_damaged_record_mid_connection_fails_once_and_closes_with_its_alert() {
    let mut rng = Rng(11);
    // The content type, and bytes of the sealed payload (the length bytes would only make it wait).
    for flip in [0usize, 9, 20, 30] {
        let (mut client, mut server) = handshake(&mut rng, None);
        client.encrypt(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut bytes = client.tout[..client.pending].to_vec();
        client.pending = 0;
        let at = flip.min(bytes.len() - 1);
        bytes[at] ^= 0x5a;
        server.tin.extend_from_slice(&bytes);
        let mut plain = Vec::new();
        assert!(server.process(&mut plain).is_err());
        assert!(plain.is_empty(), "a damaged record yields nothing");
        // Closing after the error sends the alert once (rustls asserts that in debug builds), and
        // the session takes nothing more.
        server.queue_close();
        assert!(server.pending > 0, "the alert");
        assert!(server.process(&mut plain).is_err() && server.encrypt(b"x").is_err());
    }
}
