//! Wire formats: one enum per channel, a version byte first, then postcard.
//!
//! Decoding never panics and allocates only in proportion to the input: postcard reads lengths
//! against the bytes actually present, and serde caps pre-allocation from a length prefix.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Digest, NodeId};
use crate::catalog::{Body, Key, Origin, Record, Version};

/// 2: digests carry marks (`sync`); a node of version 1 is refused with "unknown wire version".
pub const VERSION: u8 = 2;

/// Bytes our datagram envelope adds around a foca packet (version, tag, 2-byte length), rounded
/// up: foca's `max_packet_size` is `max_datagram` minus this.
pub const DATAGRAM_OVERHEAD: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty input")]
    Empty,
    #[error("unknown wire version {0}")]
    Version(u8),
    #[error("decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("record body: {0}")]
    Body(String),
}

/// The datagram channel.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Datagram<'a> {
    /// A foca packet, passed through untouched.
    Swim(&'a [u8]),
    /// "Who are you?" to a seed known only by address; answered with `Welcome`, after which the
    /// joiner can address a foca announce to the seed's real identity.
    Hello(NodeId),
    Welcome(NodeId),
    /// "I am leaving" (a clean stop), sent to every active member just before foca's leave: foca
    /// gossips only a Down, which looks the same as a crash.
    Bye(NodeId),
}

/// The message channel (one reliable stream each).
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Records to merge and, if new, forward once.
    Delta(Vec<Record>),
    /// Anti-entropy request: my digest.
    Pull(Digest),
    /// Anti-entropy answer: records the other side lacks, plus (if set) a digest of the writers
    /// where the sender may lack something, to be answered with a `Push` without digest.
    Push { records: Vec<Record>, digest: Option<Digest> },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    body: WireBody,
}

#[derive(Serialize, Deserialize)]
enum WireBody {
    Delta(Vec<WireRecord>),
    Pull(Digest),
    Push { records: Vec<WireRecord>, digest: Option<Digest> },
}

/// A record on the wire. The body travels as JSON: catalog types use an internally tagged enum
/// and `skip_serializing_if`, which postcard (not self-describing) cannot read back.
#[derive(Serialize, Deserialize)]
struct WireRecord {
    key: Key,
    body: Option<String>,
    version: Version,
    registered: u64,
}

fn seal<T: Serialize>(value: &T) -> Bytes {
    let mut out = vec![VERSION];
    // Serializing our own in-memory values into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    Bytes::from(out)
}

fn open<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (value, trailing) = postcard::take_from_bytes(rest)?;
    if !trailing.is_empty() {
        return Err(WireError::Trailing(trailing.len()));
    }
    Ok(value)
}

pub fn encode_datagram(d: &Datagram<'_>) -> Bytes {
    seal(d)
}

pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram<'_>, WireError> {
    open(bytes)
}

pub fn encode_message(from: &str, m: &Message) -> Bytes {
    let recs = |rs: &[Record]| rs.iter().map(to_wire).collect();
    let body = match m {
        Message::Delta(rs) => WireBody::Delta(recs(rs)),
        Message::Pull(d) => WireBody::Pull(d.clone()),
        Message::Push { records, digest } => WireBody::Push { records: recs(records), digest: digest.clone() },
    };
    seal(&Envelope { from: from.to_string(), body })
}

/// Returns the claimed sender and the message.
pub fn decode_message(bytes: &[u8]) -> Result<(String, Message), WireError> {
    let env: Envelope = open(bytes)?;
    let recs = |rs: Vec<WireRecord>| rs.into_iter().map(from_wire).collect::<Result<Vec<_>, _>>();
    let msg = match env.body {
        WireBody::Delta(rs) => Message::Delta(recs(rs)?),
        WireBody::Pull(d) => Message::Pull(d),
        WireBody::Push { records, digest } => Message::Push { records: recs(records)?, digest },
    };
    Ok((env.from, msg))
}

fn to_wire(r: &Record) -> WireRecord {
    WireRecord {
        key: r.key.clone(),
        // Catalog bodies are plain data: JSON encoding cannot fail.
        body: r.body.as_ref().map(|b| serde_json::to_string(b).unwrap_or_default()),
        version: r.version.clone(),
        registered: r.registered,
    }
}

fn from_wire(w: WireRecord) -> Result<Record, WireError> {
    let body = match w.body {
        Some(json) => Some(serde_json::from_str::<Body>(&json).map_err(|e| WireError::Body(e.to_string()))?),
        None => None,
    };
    Ok(Record { key: w.key, body, version: w.version, origin: Origin::Remote, registered: w.registered })
}
