//! Multi-host replication, sans-IO: SWIM membership (foca 2) plus our own record dissemination
//! (delta push + pull anti-entropy). The [`Core`] never reads a clock, opens a socket or touches a
//! global RNG: inputs are messages and the current time, outputs are messages and timer requests.
//! One driver task feeds it from the QUIC endpoint; [`sim`] feeds it in memory, deterministically.
//!
//! Channels: SWIM rides unreliable QUIC datagrams ([`Input::Datagram`]); deltas and anti-entropy
//! ride reliable streams, one message per stream ([`Input::Message`]). Records are never put in
//! foca's custom broadcasts: those share a ~1.2 KB datagram with membership updates and have no
//! repair path, whereas our streams have no size cap and anti-entropy repairs every loss.
//!
//! Beyond plain foca: seeds are bare addresses, so a joiner sends `Hello` and announces to the
//! identity in the `Welcome`; Suspect and Down are gossiped at once (not on the next round), and
//! every node that hears a suspicion runs the Suspect → Down timer, not only the prober; a node
//! declared down while alive renews its identity and rejoins. Every sender is checked against
//! the certificate name the driver reports, before foca or the replica sees anything.

mod authority;
mod core;
mod identity;
mod local_health;
mod members;
mod plumbing;
mod records;
mod replica;
mod scope;
pub mod sim;
mod sync;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::catalog::Record;

pub use self::core::Core;
pub use authority::{admit, may_replace};
pub use identity::NodeId;
pub use scope::{Grants, visible};
pub use replica::{Digest, Mark, MemReplica, Replica, WriterSummary, record_hash, summarize};
pub use wire::WireError;

/// What a node does in the mesh; it decides which records the node may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes namespaces and services, proxies nothing.
    Registry,
    /// Proxies traffic and owns its own endpoints only.
    Proxy,
    Combined,
}

impl Role {
    pub fn writes_definitions(self) -> bool {
        matches!(self, Role::Registry | Role::Combined)
    }
}

/// Mesh timings (not foca's WAN preset: 90 s to declare a node down is far too slow for routing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    /// With the defaults a dead host is declared down cluster-wide within ~3 s.
    pub suspect_to_down: Duration,
    /// Short retention: renewable identities make a long one unnecessary.
    pub remove_down_after: Duration,
    /// Delta push fanout; 6 reaches ≥ 99 % of 1000 nodes by push alone (1 − e^-6).
    pub fanout: usize,
    /// One anti-entropy pull to one random alive member this often (a digest is a few bytes per
    /// writer, so this is cheap).
    pub anti_entropy_every: Duration,
    /// Announce to a random member, to down members and to seeds not in the cluster this often,
    /// so a healed partition rejoins even after its members were forgotten.
    pub periodic_announce: Duration,
    /// foca's periodic gossip of membership updates (faster spread of Suspect/Down).
    pub swim_gossip_every: Duration,
    /// Largest datagram we send or accept (1178 fits QUIC's minimum datagram size).
    pub max_datagram: usize,
    /// How many restored members `restore` announces to (bounded: a restart must not storm).
    pub restore_announce: usize,
    /// How long a node that hears from no peer holds its Suspect → Down verdicts (it is more
    /// likely cut off itself; see `local_health`). A node left alone by real deaths declares
    /// them after this instead of `suspect_to_down`; they are unroutable as Suspect meanwhile.
    pub isolation_patience: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            suspect_to_down: Duration::from_secs(1),
            remove_down_after: Duration::from_secs(60),
            fanout: 6,
            // Push reaches every node in most rounds; this repairs the few a push missed (about
            // one write in ten leaves one straggler at 50 nodes), so it bounds the tail.
            anti_entropy_every: Duration::from_millis(250),
            periodic_announce: Duration::from_secs(5),
            swim_gossip_every: Duration::from_millis(200),
            max_datagram: 1178,
            restore_announce: 5,
            isolation_patience: local_health::ISOLATION_PATIENCE,
        }
    }
}

/// Milliseconds since an arbitrary epoch, supplied by the caller (sim time or Instant-based).
pub type Millis = u64;

/// Handle of a timer the core asked for; give it back in [`Input::Timer`] when it is due.
pub type TimerId = u64;

#[derive(Clone, Debug)]
pub enum Input {
    /// A QUIC datagram (SWIM). `peer` = node name from the peer's verified certificate.
    Datagram { peer: String, from: SocketAddr, bytes: Bytes },
    /// One reliable message (its own QUIC uni stream): deltas, digests, record batches.
    /// `grants`: the namespaces the peer's certificate names (`scope`).
    Message { peer: String, from: SocketAddr, bytes: Bytes, grants: Grants },
    /// A timer the core asked for came due.
    Timer(TimerId),
    /// Records this node just wrote itself (already committed locally): push them.
    LocalChange(Vec<Record>),
    /// Announce to these addresses (config `join`, and on boot). Idempotent.
    Join(Vec<SocketAddr>),
    /// Graceful shutdown: tell the cluster we are leaving (a `Bye` to every active member, then
    /// foca's own leave), so it shows this node as `left`, not `down`.
    Leave,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Datagram { to: SocketAddr, bytes: Bytes },
    Message { to: SocketAddr, bytes: Bytes },
    Timer { after: Duration, id: TimerId },
    /// Membership changed (up / suspect / down / removed): update routing, persist `members()`.
    MembersChanged,
    /// This many records from peers were merged into the replica.
    Merged(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
    /// Down because it said goodbye (a clean stop), not because it stopped answering.
    Left,
}

impl MemberState {
    /// Alive or suspect: its endpoints are still there (a suspect may be slow, not gone).
    pub fn is_up(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }
}

/// One peer as this node sees it (never this node itself). `renewal` and `incarnation` are
/// foca's bookkeeping, kept so `restore` can rebuild the exact identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub name: String,
    pub generation: u64,
    pub addr: SocketAddr,
    pub role: Role,
    pub state: MemberState,
    /// When this node last saw the state change (or first saw the member).
    pub since: Millis,
    pub renewal: u32,
    pub incarnation: u16,
    /// Its admin API address, when it announced one.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
}

/// Counters for metrics and tests; inputs that were refused never change any other state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Datagrams that did not decode (ours or foca's layer).
    pub bad_datagrams: u64,
    /// Messages that did not decode.
    pub bad_messages: u64,
    /// Datagrams or messages whose claimed sender is not the certificate's name.
    pub impersonations: u64,
    /// Records refused by the authority check (before `Replica::merge`).
    pub rejected_records: u64,
    /// Plugin records whose component did not match its size and sha256 (also in `rejected_records`).
    pub corrupt_plugins: u64,
    /// Other records a local write would refuse (also in `rejected_records`).
    pub invalid_records: u64,
    pub deltas_sent: u64,
    pub deltas_forwarded: u64,
    pub pulls_sent: u64,
    pub pushes_sent: u64,
    pub records_merged: u64,
    /// foca refused an operation (stale timer, not connected, ...): expected now and then.
    pub swim_errors: u64,
    /// Suspect → Down timers held back because this node heard from no one (`local_health`).
    pub downs_held: u64,
    /// Suspects told directly of their suspicion, so they refute it (`local_health`).
    pub suspects_told: u64,
    /// Records of a namespace the sender's certificate or this node's does not name (`scope`).
    pub out_of_scope_records: u64,
}
