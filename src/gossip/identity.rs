//! The SWIM identity of a node.

use std::net::SocketAddr;

use foca::Identity;
use serde::{Deserialize, Serialize};

use super::Role;

/// foca identity. foca keeps one member per [`Identity::addr`], and ours is the node name: a node
/// restarted with a higher generation (even on another address) or renewed after a false Down
/// *replaces* its old incarnation instead of leaving a ghost next to it.
///
/// Build it with [`NodeId::new`]: foca's key is derived from `name` once, so `name` must not be
/// changed afterwards (the other fields may).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub name: String,
    /// Bumped by every start of the process (persisted by the store).
    pub generation: u64,
    /// Where peers send datagrams and messages (the advertise address).
    pub addr: SocketAddr,
    pub role: Role,
    /// Bumped in-process by `renew()` when the cluster declared us down while we were alive.
    pub renewal: u32,
    /// Where this node's admin API answers (`weft --admin`), so a proxy refusing a write can say
    /// where to send it. Travels with the identity: every member learns it with the member.
    pub admin: Option<SocketAddr>,
    /// `name_key(name)`, cached: foca computes `addr()` in linear scans on every packet.
    key: u128,
}

/// The wire form: every field but the cached key, which the receiver recomputes.
#[derive(Serialize, Deserialize)]
struct Wire<S> {
    name: S,
    generation: u64,
    addr: SocketAddr,
    role: Role,
    renewal: u32,
    admin: Option<SocketAddr>,
}

impl Serialize for NodeId {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        Wire { name: self.name.as_str(), generation: self.generation, addr: self.addr, role: self.role, renewal: self.renewal, admin: self.admin }
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::<String>::deserialize(d)?;
        Ok(NodeId { key: name_key(&w.name), name: w.name, generation: w.generation, addr: w.addr, role: w.role, renewal: w.renewal, admin: w.admin })
    }
}

impl NodeId {
    pub fn new(name: impl Into<String>, generation: u64, addr: SocketAddr, role: Role) -> Self {
        let name = name.into();
        NodeId { key: name_key(&name), name, generation, addr, role, renewal: 0, admin: None }
    }

    pub fn with_admin(mut self, admin: Option<SocketAddr>) -> Self {
        self.admin = admin;
        self
    }

    /// The order that decides which of two identities with the same name is current. addr and role
    /// only break exact ties (two processes misconfigured with one name) so every node agrees.
    fn rank(&self) -> (u64, u32, SocketAddr, Role) {
        (self.generation, self.renewal, self.addr, self.role)
    }
}

/// foca's member key for a name: a 128-bit FNV-1a hash. foca compares `Addr`s in linear scans
/// on every packet, so it must be cheap (a `String` costs an allocation per comparison); at 128
/// bits a collision between node names is not a practical concern (~n²/2¹²⁹).
pub fn name_key(name: &str) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in name.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

impl Identity for NodeId {
    type Addr = u128;

    /// Auto-rejoin after a false Down: same generation, next renewal, which wins the conflict.
    fn renew(&self) -> Option<Self> {
        Some(NodeId { renewal: self.renewal.checked_add(1)?, ..self.clone() })
    }

    fn addr(&self) -> u128 {
        self.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.rank() > adversary.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_generation_and_renewal_win() {
        let a: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let b: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let old = NodeId::new("n1", 3, a, Role::Proxy);
        let restarted = NodeId::new("n1", 4, b, Role::Proxy);
        assert!(restarted.win_addr_conflict(&old) && !old.win_addr_conflict(&restarted));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert!(restarted.win_addr_conflict(&renewed));
        assert_eq!(renewed.addr(), old.addr());
    }
}
