//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): the code that reads bytes from
//! peers, clients and operators, reached without sockets or files. Not an API: it follows the
//! code it wraps and changes with it. Each function calls what weft runs; none re-implements it.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::catalog::{Body, DiscoverQuery, Endpoint, EndpointAddress, Health, Key, Namespace, Origin, Record, Service, Snapshot, Version, discover, validate};
pub use crate::config::{Config, ConfigError};
pub use crate::gossip::wire::{Datagram, Message, WireError, decode_datagram, decode_message, encode_datagram, encode_message};
pub use crate::proxy::h1::chunked::{ChunkError, ChunkedScanner};
pub use crate::proxy::h1::head::{BodyKind, Head, HeadError};
pub use crate::transport::relay::RelayRequest;

/// A head as the strict scanner (`proxy::h1::scan`) read it: positions in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes the head occupies at the front of the buffer.
    pub len: usize,
    /// Empty for a response.
    pub method: Range<usize>,
    /// The request target, or a response's reason phrase (`0..0` when it has none).
    pub target: Range<usize>,
    pub status: u16,
    pub minor: u8,
    pub fields: Vec<(Range<usize>, Range<usize>)>,
}

fn scanned(line: Option<crate::proxy::h1::scan::Line>, fields: Vec<(Range<usize>, Range<usize>)>) -> Option<Scanned> {
    line.map(|l| Scanned { len: l.len, method: l.method, target: l.target, status: l.status, minor: l.minor, fields })
}

/// The strict pass over a request head; `None` when it leaves the head to httparse.
pub fn scan_request(buf: &[u8]) -> Option<Scanned> {
    let mut fields = Vec::new();
    let line = crate::proxy::h1::scan::request(buf, &mut fields);
    scanned(line, fields)
}

/// The strict pass over a response head; `None` when it leaves the head to httparse.
pub fn scan_response(buf: &[u8]) -> Option<Scanned> {
    let mut fields = Vec::new();
    let line = crate::proxy::h1::scan::response(buf, &mut fields);
    scanned(line, fields)
}

/// The start of a relay stream as the far side reads it: the request and how many bytes the
/// preface took (the caller's own bytes follow). `None` where the far side answers BadPreface.
pub fn relay_preface(stream: &[u8]) -> Option<(RelayRequest, usize)> {
    let head: [u8; 3] = stream.get(..3)?.try_into().ok()?;
    let len = crate::transport::relay::preface_len(head)?;
    let body = stream.get(3..3 + len)?;
    RelayRequest::decode(body).map(|r| (r, 3 + len))
}

/// A DNS request datagram (a TCP message without its length prefix when `tcp`) answered by the
/// responder with `names` as its aliases and no upstream.
pub fn dns_answer(raw: &[u8], tcp: bool, names: &[(&str, Ipv4Addr)], ttl: u32) -> Option<Vec<u8>> {
    let table = names.iter().map(|(n, ip)| (n.to_string(), *ip)).collect();
    let names = Arc::new(arc_swap::ArcSwap::from_pointee(table));
    crate::dns::responder::answer_offline(raw, tcp, names, ttl)
}

/// Configuration files (name, text; in merge order) loaded as `weft run` loads them from disk.
pub fn load_config(files: Vec<(PathBuf, String)>) -> Result<Config, ConfigError> {
    crate::config::load::load_texts(files)
}

/// A request body read as the admin API reads it; the error is its 400 message.
pub fn admin_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::admin::handlers::parse(bytes).map_err(|e| e.message)
}

/// The admin API's JSON merge patch (`PATCH /v1/services/...`).
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    crate::admin::services::merge_patch(target, patch)
}

#[cfg(test)]
mod tests {
    /// Seeds that no longer parse (after a preface change) would leave the fuzzer at the door.
    #[test]
    fn relay_preface_seeds_read_with_todays_preface() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/relay_preface");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(super::relay_preface(&bytes).is_some(), "{} is no relay preface today", path.display());
            n += 1;
        }
        assert!(n >= 3, "{n} seeds in {}", dir.display());
    }
}
