//! What the status endpoint says about TLS: handshakes (full, resumed), failed handshakes by
//! reason, certificate reloads, and each TLS listener's certificates (names, expiry); the same as
//! Prometheus families.
//!
//! Owns: the `tls` part of `/status.json` and its metrics. Must never: read a certificate file (it
//! shows what the running generation loaded).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::prom::{escape, family};
use crate::board::BoardData;
use crate::config::Config;
use crate::tls::certs::{days_left, unix_now};
use crate::tls::session::HandshakeFail;
use crate::tls::TlsState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TlsReport {
    /// Completed handshakes: "full" and "resumed".
    pub handshakes: BTreeMap<String, u64>,
    /// Failed handshakes by reason: timeout, closed, protocol, incompatible, cert_rejected, other.
    pub failures: BTreeMap<String, u64>,
    /// Successful certificate reloads since start.
    pub reloads: u64,
    pub listeners: Vec<TlsListenerReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TlsListenerReport {
    pub address: String,
    pub certificates: Vec<CertReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertReport {
    pub file: String,
    /// The DNS names it covers (the first certificate also answers any other name).
    pub names: Vec<String>,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
}

impl TlsReport {
    pub fn build(config: &Config, b: &BoardData, tls: &TlsState) -> TlsReport {
        let sum =
            |f: &dyn Fn(&crate::stats::CoreCounters) -> u64| -> u64 { b.cores.iter().map(f).sum() };
        let generation = tls.current();
        let now = unix_now();
        let slots = &b.generation.listeners.slots;
        let listeners = config
            .listen
            .iter()
            .zip(slots.iter().map(|&slot| generation.certs_of(slot)))
            .filter(|(l, _)| l.tls.is_some())
            .map(|(l, certs)| TlsListenerReport {
                address: l.address.to_string(),
                certificates: certs
                    .iter()
                    .map(|c| CertReport {
                        file: c.file.clone(),
                        names: c.names.clone(),
                        not_after: c.not_after,
                        days_left: days_left(c.not_after, now),
                    })
                    .collect(),
            })
            .collect();
        TlsReport {
            handshakes: [("full", 0), ("resumed", 1)]
                .iter()
                .map(|&(n, i)| (n.to_string(), sum(&|c| c.tls_handshakes[i])))
                .collect(),
            failures: HandshakeFail::ALL
                .iter()
                .map(|&f| (f.name().to_string(), sum(&|c| c.tls_failed[f as usize])))
                .collect(),
            reloads: tls.version() - 1,
            listeners,
        }
    }

    /// The Prometheus families.
    pub fn metrics(&self, out: &mut String) {
        family(
            out,
            "ringlb_tls_handshakes_total",
            "counter",
            "Completed TLS handshakes, full or resumed.",
        );
        for (kind, n) in &self.handshakes {
            let _ = writeln!(out, "ringlb_tls_handshakes_total{{kind=\"{kind}\"}} {n}");
        }
        family(
            out,
            "ringlb_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes, by reason.",
        );
        for (reason, n) in &self.failures {
            let _ = writeln!(
                out,
                "ringlb_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            out,
            "ringlb_tls_certificate_reloads_total",
            "counter",
            "Successful certificate reloads.",
        );
        let _ = writeln!(out, "ringlb_tls_certificate_reloads_total {}", self.reloads);
        family(
            out,
            "ringlb_tls_certificate_expiry_seconds",
            "gauge",
            "When each certificate expires (Unix time).",
        );
        for l in &self.listeners {
            for c in &l.certificates {
                let _ = writeln!(
                    out,
                    "ringlb_tls_certificate_expiry_seconds{{listener=\"{}\",file=\"{}\",names=\"{}\"}} {}",
                    escape(&l.address),
                    escape(&c.file),
                    escape(&c.names.join(",")),
                    c.not_after
                );
            }
        }
    }
}
