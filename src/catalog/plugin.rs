//! Plugins carried by the mesh: a policy component pushed to a registry is a catalog record like a
//! service, so it replicates over the gossip streams, persists in redb with the rest of the
//! catalog and survives a restart with no registry reachable.
//!
//! The record holds the component itself, content-addressed: its sha256 and size travel with the
//! bytes, and every node checks them before the record reaches its replica ([`check`]), so a
//! corrupted or truncated copy from a peer is refused, not stored.
//!
//! Why the bytes ride inside the record rather than being fetched by hash on demand: pushes are
//! rare and components small (the example plugins are 60–110 KiB), and one path then gives
//! replication, anti-entropy repair, persistence and restart for free. The bytes are a
//! [`bytes::Bytes`], so the catalog's snapshots and record clones share them instead of copying.
//! The cost is that anti-entropy, after a gap in a registry's records, resends the component with
//! them; gaps are rare (about one write in ten leaves one straggler at 50 nodes, ARCHITECTURE.md).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::CatalogError;

/// Largest component accepted, from a file, a push or a peer.
pub const MAX_COMPONENT_BYTES: usize = 8 << 20;

/// What a failed plugin call does to its request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fail {
    /// The built-in hook answers (the default).
    #[default]
    Open,
    /// The request is refused: 503 with `x-weft-error: policy`.
    Closed,
}

/// A policy component and the limits it runs under, as pushed with `weft plugin push`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRecord {
    pub name: String,
    /// Hex sha256 of `component`: the version's identity, checked on every node.
    pub sha256: String,
    pub size: u64,
    /// Handed to the plugin by `host.config()`.
    #[serde(default)]
    pub config: String,
    pub fuel: u64,
    pub memory_mb: u32,
    #[serde(default)]
    pub fail: Fail,
    /// The component bytes (base64 in JSON).
    #[serde(with = "base64_component")]
    pub component: Bytes,
}

impl fmt::Debug for PluginRecord {
    // Never dump megabytes of component into a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRecord").field("name", &self.name).field("sha256", &self.sha256).field("size", &self.size).finish_non_exhaustive()
    }
}

/// sha256 of the bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A component as base64 in JSON (the store, the wire's record bodies, the push API), refused
/// before decoding when it cannot fit the cap.
pub mod base64_component {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::MAX_COMPONENT_BYTES;

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() > MAX_COMPONENT_BYTES.div_ceil(3) * 4 {
            return Err(serde::de::Error::custom(format!("more than the {} MiB a plugin may be", MAX_COMPONENT_BYTES >> 20)));
        }
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map(Bytes::from).map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

fn invalid(field: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid { field: field.into(), message: message.into() }
}

/// The record's own consistency: name, limits, and the bytes matching their size and hash. Run
/// on local writes and on every record from a peer (a corrupted or truncated copy fails here).
pub fn check(p: &PluginRecord) -> Result<(), CatalogError> {
    super::validate::plugin_name("name", &p.name)?;
    if p.component.len() > MAX_COMPONENT_BYTES {
        return Err(invalid("component", format!("{} bytes: larger than the {} MiB a plugin may be", p.component.len(), MAX_COMPONENT_BYTES >> 20)));
    }
    if p.size != p.component.len() as u64 {
        return Err(invalid("component", format!("is {} bytes, but the record says {} (truncated?)", p.component.len(), p.size)));
    }
    let actual = sha256_hex(&p.component);
    if actual != p.sha256 {
        return Err(invalid("component", format!("has sha256 {}…, but the record says {}… (corrupted?)", &actual[..12], p.sha256.get(..12).unwrap_or(&p.sha256))));
    }
    check_limits(p.fuel, p.memory_mb)
}

/// A plugin's limits, for a pushed record and a `[[plugin]]` table alike.
pub fn check_limits(fuel: u64, memory_mb: u32) -> Result<(), CatalogError> {
    if fuel == 0 {
        return Err(invalid("fuel", "must be more than 0"));
    }
    if !(1..=1024).contains(&memory_mb) {
        return Err(invalid("memory_mb", format!("must be 1 to 1024, not {memory_mb}")));
    }
    Ok(())
}
