//! Alias VIPs: one stable loopback address per alias dns name, drawn from a CIDR (ECS uses
//! 127.255.0.0/16 too). Linux routes all of 127/8 to `lo`, so binding needs no setup.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipRange {
    base: u32,
    prefix: u8,
}

impl VipRange {
    pub fn parse(s: &str) -> Result<VipRange, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("`{s}` is not a CIDR like 127.255.0.0/16"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("`{prefix}` is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("prefix /{prefix} must be between /8 and /30"));
        }
        if !ip.is_loopback() {
            return Err(format!("{s} is outside 127.0.0.0/8; VIPs must be loopback addresses"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(VipRange { base: u32::from(ip) & mask, prefix })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// The first free address, skipping the network and broadcast addresses of the range.
    pub fn allocate(&self, taken: &BTreeMap<String, Ipv4Addr>) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        let used: std::collections::HashSet<u32> = taken.values().map(|ip| u32::from(*ip)).collect();
        (1..size - 1).map(|i| self.base + i).find(|a| !used.contains(a)).map(Ipv4Addr::from)
    }
}

impl fmt::Display for VipRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_free_and_rejects_non_loopback() {
        let r = VipRange::parse("127.255.3.0/24").unwrap();
        let mut taken = BTreeMap::new();
        assert_eq!(r.allocate(&taken), Some(Ipv4Addr::new(127, 255, 3, 1)));
        taken.insert("a".into(), Ipv4Addr::new(127, 255, 3, 1));
        assert_eq!(r.allocate(&taken), Some(Ipv4Addr::new(127, 255, 3, 2)));
        assert!(VipRange::parse("10.0.0.0/8").is_err());
        assert!(VipRange::parse("127.0.0.1").is_err());
        let tiny = VipRange::parse("127.1.1.0/30").unwrap();
        taken.insert("b".into(), Ipv4Addr::new(127, 1, 1, 1));
        taken.insert("c".into(), Ipv4Addr::new(127, 1, 1, 2));
        assert_eq!(tiny.allocate(&taken), None);
    }
}
