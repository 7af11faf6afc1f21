//! Node-wide figures: gossip membership, QUIC peers, DNS answers and the exporter's own. The
//! mesh task writes the membership and peer figures each time it publishes its view; the DNS
//! responder counts each answer with one relaxed add; the exporter counts its exports.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// What a DNS query was answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// A service name this node knows: answered with its VIP.
    Local,
    /// Forwarded to an upstream resolver, which answered.
    Forwarded,
    NxDomain,
    ServFail,
    FormErr,
    NotImp,
}

pub const DNS_ANSWERS: [&str; 6] = ["local", "forwarded", "nxdomain", "servfail", "formerr", "notimp"];

/// One QUIC peer's path as last read from its connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerFigures {
    pub rtt_s: Option<f64>,
    pub lost_packets: u64,
    pub sent_packets: u64,
}

/// The mesh's figures as the gossip task last published them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeshFigures {
    /// Members by state (alive, suspect, down), this node included among the alive.
    pub members: BTreeMap<&'static str, u64>,
    /// Gossip and transport events by kind (records merged, bad datagrams, handshakes rejected…).
    pub events: BTreeMap<&'static str, u64>,
    /// Seconds between a record's write on its node and its merge here, for the last record
    /// merged from a peer.
    pub replication_lag_s: Option<f64>,
    /// Per peer node name.
    pub peers: BTreeMap<String, PeerFigures>,
    /// Relayed streams open right now (target side).
    pub active_relays: i64,
    /// Failed mutual-TLS handshakes: peers we refused (target side) and dials that failed
    /// their handshake (client side).
    pub tls_errors_target: u64,
    pub tls_errors_client: u64,
    /// Seconds until this node's certificate expires (negative once it has).
    pub cert_remaining_s: Option<f64>,
    /// Aliases more than one service claims (`catalog::AliasConflict`).
    pub alias_conflicts: u64,
}

pub struct NodeStats {
    /// Write on its node to merge here (ms) of the newest record last merged from a peer;
    /// `u64::MAX` until one is.
    pub replication_lag_ms: AtomicU64,
    dns: [AtomicU64; 6],
    mesh: Mutex<Option<MeshFigures>>,
    /// Exports the OTLP exporter made, and the ones that failed.
    pub exports: AtomicU64,
    pub export_failures: AtomicU64,
}

/// The node-wide part of a snapshot.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeReport {
    pub dns_answers: BTreeMap<&'static str, u64>,
    /// None on a node without a mesh.
    pub mesh: Option<MeshFigures>,
    pub exports: u64,
    pub export_failures: u64,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            replication_lag_ms: AtomicU64::new(u64::MAX),
            dns: Default::default(),
            mesh: Mutex::default(),
            exports: AtomicU64::default(),
            export_failures: AtomicU64::default(),
        }
    }
}

impl NodeStats {
    #[inline]
    pub fn dns_answer(&self, a: DnsAnswer) {
        self.dns[a as usize].fetch_add(1, Relaxed);
    }

    pub fn set_mesh(&self, figures: MeshFigures) {
        *self.mesh.lock().unwrap_or_else(|p| p.into_inner()) = Some(figures);
    }

    pub fn report(&self) -> NodeReport {
        NodeReport {
            dns_answers: DNS_ANSWERS.iter().zip(&self.dns).map(|(k, v)| (*k, v.load(Relaxed))).collect(),
            mesh: self.mesh.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            exports: self.exports.load(Relaxed),
            export_failures: self.export_failures.load(Relaxed),
        }
    }
}
