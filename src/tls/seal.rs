//! TLS 1.3 AES-GCM records sealed from the caller's plaintext where it lies: rustls' own sealer
//! (the aws-lc-rs provider's) copies each record's plaintext into the record's buffer and encrypts
//! it there, in place; this one has aws-lc-rs read the plaintext and write the ciphertext into the
//! record's buffer (out of place), which it only zero-fills first. Plaintext that rustls hands
//! over in several pieces is still gathered into the record and sealed in place.
//!
//! Owns: `direct_sealing`, which replaces the provider's TLS 1.3 AES-128-GCM and AES-256-GCM
//! suites by aws-lc-rs' rustls suites with this sealer (the provider is aws-lc-rs' here), and the
//! sealer. Decryption, the key schedule, TLS 1.2 and ChaCha20-Poly1305 stay rustls'.
//! Must never: produce a record other than rustls' own sealer would for the same key, IV and
//! sequence number (nonce IV ^ seq, AAD, inner content type, no padding, tag; the tests compare
//! them byte for byte with rustls' for AES-256 and with aws-lc-rs' plain AEAD for both); state a
//! length (`encrypted_payload_len`) other than the record's, by which rustls sizes its output;
//! fail on a well-formed record (rustls panics on a sealing error); or seal twice under one nonce
//! (aws-lc-rs' TLS sealing key refuses a sequence number that does not increase, and rustls
//! starts each new key, after a key update, at 0 with a new sealer). It falls back to rustls'
//! sealer only if aws-lc-rs refused the key, which the pairing of each suite with its algorithm
//! rules out (a test checks it).

use std::sync::LazyLock;

use aws_lc_rs::aead::{self, Aad, TlsProtocolId, TlsRecordSealingKey};
use rustls::crypto::aws_lc_rs::cipher_suite as suites;
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, Iv, MessageDecrypter, MessageEncrypter, Nonce, OutboundChunks,
    OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm,
    UnsupportedOperationError,
};
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite,
    Tls13CipherSuite,
};

/// Replaces the provider's TLS 1.3 AES-GCM suites by the same suites with the direct sealer,
/// in place (the order of preference is kept).
pub fn direct_sealing(p: &mut CryptoProvider) {
    for s in p.cipher_suites.iter_mut() {
        match s.suite() {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => *s = SupportedCipherSuite::Tls13(&AES_128),
            CipherSuite::TLS13_AES_256_GCM_SHA384 => *s = SupportedCipherSuite::Tls13(&AES_256),
            _ => {}
        }
    }
}

pub(super) static AES_128: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| with_sealer(&AES_128_SEALER));
pub(super) static AES_256: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| with_sealer(&AES_256_SEALER));

static AES_128_SEALER: Direct = Direct {
    suite: tls13(&suites::TLS13_AES_128_GCM_SHA256),
    alg: &aead::AES_128_GCM,
};
static AES_256_SEALER: Direct = Direct {
    suite: tls13(&suites::TLS13_AES_256_GCM_SHA384),
    alg: &aead::AES_256_GCM,
};

/// The TLS 1.3 suite in `s`, at compile time: a TLS 1.2 suite here fails the build.
const fn tls13(s: &SupportedCipherSuite) -> &'static Tls13CipherSuite {
    match s {
        SupportedCipherSuite::Tls13(t) => t,
        SupportedCipherSuite::Tls12(_) => panic!("the sealers name TLS 1.3 suites"),
    }
}

/// rustls' suite with `d` as its AEAD (everything else is the suite's own).
fn with_sealer(d: &'static Direct) -> Tls13CipherSuite {
    let o = d.suite;
    Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: o.common.suite,
            hash_provider: o.common.hash_provider,
            confidentiality_limit: o.common.confidentiality_limit,
        },
        hkdf_provider: o.hkdf_provider,
        aead_alg: d,
        quic: o.quic,
    }
}

/// A TLS 1.3 AES-GCM suite's AEAD: rustls' for everything but the encrypter.
struct Direct {
    /// rustls' own suite (aws-lc-rs provider), whose AEAD does the rest.
    suite: &'static Tls13CipherSuite,
    alg: &'static aead::Algorithm,
}

impl Direct {
    fn rustls(&self) -> &'static dyn Tls13AeadAlgorithm {
        self.suite.aead_alg
    }
}

impl Tls13AeadAlgorithm for Direct {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        match TlsRecordSealingKey::new(self.alg, TlsProtocolId::TLS13, key.as_ref()) {
            Ok(key) => Box::new(Sealer { key, iv }),
            // Not reached: rustls derives `key_len()` bytes, the length of `alg`'s keys (tested).
            Err(_) => self.rustls().encrypter(key, iv),
        }
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        self.rustls().decrypter(key, iv)
    }

    fn key_len(&self) -> usize {
        self.rustls().key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.rustls().extract_keys(key, iv)
    }

    fn fips(&self) -> bool {
        // Not claimed: aws-lc-rs does not check the FIPS indicator for the out-of-place seal.
        false
    }
}

/// One direction's record sealer.
struct Sealer {
    key: TlsRecordSealingKey,
    iv: Iv,
}

impl MessageEncrypter for Sealer {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let n = msg.payload.len();
        let total = self.encrypted_payload_len(n);
        let nonce = aead::Nonce::assume_unique_for_key(Nonce::new(&self.iv, seq).0);
        let aad = Aad::from(make_tls13_aad(total));
        let typ = [u8::from(msg.typ)];
        let mut payload = PrefixedPayload::with_capacity(total);
        let sealed = match msg.payload {
            OutboundChunks::Single(plain) => {
                // Room for the record (a fill, not a copy), then sealed into it.
                payload.extend(std::iter::repeat_n(&0u8, total));
                let (out, type_and_tag) = payload.as_mut().split_at_mut(n);
                self.key
                    .seal_out_of_place_scatter(nonce, aad, plain, out, &typ, type_and_tag)
            }
            chunks => {
                // Plaintext in several pieces: gathered into the record, sealed in place.
                payload.extend_from_chunks(&chunks);
                payload.extend_from_slice(&typ);
                self.key.seal_in_place_append_tag(nonce, aad, &mut payload)
            }
        };
        sealed.map_err(|_| rustls::Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + self.key.algorithm().tag_len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn each_sealer_takes_keys_of_its_suites_length() {
        for d in [&AES_128_SEALER, &AES_256_SEALER] {
            assert_eq!(d.alg.key_len(), d.key_len());
            let zeros = vec![0u8; d.key_len()];
            assert!(TlsRecordSealingKey::new(d.alg, TlsProtocolId::TLS13, &zeros).is_ok());
        }
    }

    /// Records of random lengths (in one piece and in three) sealed in a row by one sealer, the
    /// sequence number growing by one and by jumps past 2^32, against aws-lc-rs' plain AEAD over
    /// RFC 8446's record: header and AAD 23, 3, 3, length; nonce IV ^ seq; content, then type.
    #[test]
    fn records_sealed_in_a_row_equal_rfc_8446s_construction() {
        let mut rng = Rng(0x8446);
        let data: Vec<u8> = (0..16384).map(|_| rng.below(256) as u8).collect();
        for alg in [&aead::AES_128_GCM, &aead::AES_256_GCM] {
            let mut key = vec![0u8; alg.key_len()];
            let mut iv = [0u8; 12];
            key.iter_mut()
                .chain(iv.iter_mut())
                .for_each(|b| *b = rng.below(256) as u8);
            let mut sealer = Sealer {
                key: TlsRecordSealingKey::new(alg, TlsProtocolId::TLS13, &key).unwrap(),
                iv: Iv::new(iv),
            };
            let plain_aead = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).unwrap());
            let mut seq = 0u64;
            for round in 0..200 {
                let len = match round % 4 {
                    0 => rng.below(64),
                    1 => 16384,
                    _ => rng.below(16385),
                };
                let typ = rng.pick(&[ContentType::ApplicationData, ContentType::Handshake]);
                let plain = &data[..len];
                let mut nonce = iv;
                for (n, b) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                    *n ^= b;
                }
                let total = len + 1 + 16;
                let head = [23, 3, 3, (total >> 8) as u8, total as u8];
                let mut body = [plain, &[u8::from(typ)]].concat();
                plain_aead
                    .seal_in_place_append_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        Aad::from(head),
                        &mut body,
                    )
                    .unwrap();
                let expected = [&head[..], &body].concat();
                let pieces = [&plain[..len / 2], &plain[len / 2..]];
                let payload = match round % 3 {
                    0 => OutboundChunks::new(&pieces),
                    _ => OutboundChunks::Single(plain),
                };
                let msg = OutboundPlainMessage {
                    typ,
                    version: ProtocolVersion::TLSv1_2,
                    payload,
                };
                let got = sealer.encrypt(msg, seq).unwrap().encode();
                assert_eq!(got, expected, "record {round}: {len} bytes, seq {seq}");
                seq += match round {
                    99 => 1 << 32,
                    150 => 1 << 40,
                    _ => 1,
                };
            }
        }
    }

    /// Every length around block and record boundaries, three content types and random sequence
    /// numbers: AES-256-GCM records sealed directly equal rustls' own byte for byte, from
    /// plaintext in one piece and in three. (AES-128 is checked through whole sessions below:
    /// a 16-byte `AeadKey` cannot be made outside rustls.)
    #[test]
    fn a_record_sealed_directly_equals_rustls_own() {
        let mut rng = Rng(0x5ea1);
        let lens: Vec<usize> = (0..70)
            .chain([255, 256, 1000, 4095, 4096, 4097, 16361, 16362, 16383, 16384])
            .chain((0..20).map(|_| rng.below(16385)))
            .collect();
        let data: Vec<u8> = (0..16384).map(|_| rng.below(256) as u8).collect();
        let types = [
            ContentType::ApplicationData,
            ContentType::Handshake,
            ContentType::Alert,
        ];
        for &len in &lens {
            for typ in types {
                let mut key = [0u8; 32];
                let mut iv = [0u8; 12];
                key.iter_mut()
                    .chain(iv.iter_mut())
                    .for_each(|b| *b = rng.below(256) as u8);
                let seq = rng.below(1 << 30) as u64;
                let sealer = |ours: bool| {
                    let (k, v) = (AeadKey::from(key), Iv::new(iv));
                    match ours {
                        true => AES_256_SEALER.encrypter(k, v),
                        false => AES_256_SEALER.rustls().encrypter(k, v),
                    }
                };
                let plain = &data[..len];
                let seal = |ours: bool, payload: OutboundChunks<'_>| {
                    let version = ProtocolVersion::TLSv1_2;
                    let msg = OutboundPlainMessage {
                        typ,
                        version,
                        payload,
                    };
                    sealer(ours).encrypt(msg, seq).unwrap().encode()
                };
                let expected = seal(false, OutboundChunks::Single(plain));
                let got = seal(true, OutboundChunks::Single(plain));
                assert_eq!(got, expected, "{len} bytes, {typ:?}");
                assert_eq!(got.len(), 5 + sealer(true).encrypted_payload_len(len));
                let pieces = [
                    &plain[..len / 3],
                    &plain[len / 3..len / 2],
                    &plain[len / 2..],
                ];
                let got = seal(true, OutboundChunks::new(&pieces));
                assert_eq!(got, expected, "{len} bytes in three pieces, {typ:?}");
            }
        }
    }

    /// A server whose provider seals directly, and a client with rustls' own provider forced to
    /// each TLS 1.3 AES-GCM suite: what the server sends (handshake, tickets, 200 KiB of data in
    /// writes of every size, a key update halfway) the client reads back whole, in order and
    /// authenticated.
    #[test]
    fn a_client_with_rustls_own_sealer_reads_what_the_direct_sealer_wrote() {
        use std::io::{Read, Write};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["seal.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut server_provider = crate::tls::provider();
        direct_sealing(&mut server_provider);
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(server_provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        let server = Arc::new(server);
        let mut rng = Rng(7);
        let data: Vec<u8> = (0..200 * 1024).map(|_| rng.below(256) as u8).collect();
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
        ] {
            let mut p = crate::tls::provider();
            p.cipher_suites = vec![suite];
            let mut c = crate::tls::tls13_client(p, cert.der(), "seal.test");
            let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut wire = Vec::new();
            crate::tls::handshake_in_memory(&mut c, &mut s);
            let ours: &Tls13CipherSuite = match suite.suite() {
                CipherSuite::TLS13_AES_128_GCM_SHA256 => &AES_128,
                _ => &AES_256,
            };
            match s.negotiated_cipher_suite() {
                Some(SupportedCipherSuite::Tls13(t)) => assert!(std::ptr::eq(t, ours)),
                other => panic!("{other:?}: not the direct sealer's suite"),
            }
            let mut at = 0;
            let mut read = Vec::new();
            let mut updated = false;
            while at < data.len() {
                if at > data.len() / 2 && !updated {
                    // A key update: a new sealer (sequence numbers from 0) for the rest.
                    s.refresh_traffic_keys().unwrap();
                    updated = true;
                }
                let n = (1 + rng.below(40_000)).min(data.len() - at);
                s.writer().write_all(&data[at..at + n]).unwrap();
                at += n;
                while s.wants_write() {
                    s.write_tls(&mut wire).unwrap();
                }
                let mut from = wire.as_slice();
                let mut buf = vec![0u8; 64 * 1024];
                while !from.is_empty() {
                    c.read_tls(&mut from).unwrap();
                    c.process_new_packets().unwrap();
                    while let Ok(got @ 1..) = c.reader().read(&mut buf) {
                        read.extend_from_slice(&buf[..got]);
                    }
                }
                wire.clear();
            }
            assert!(
                read == data,
                "{:?}: the client read back what was sent",
                suite.suite()
            );
        }
    }
}
