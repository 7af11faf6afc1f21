//! Unit tests: anti-entropy gap logic, authority rules, wire robustness.

use std::collections::BTreeMap;

use super::sync::{MarkCache, offer};
use super::wire::{self, Message, WireError};
use super::*;
use crate::catalog::{Body, Endpoint, Health, Key, Namespace, Origin, Record, Version};

fn ep(node: &str, id: &str, writer: &str, hlc: u64) -> Record {
    let e = Endpoint {
        namespace: "ns".into(),
        service: "svc".into(),
        id: id.into(),
        node: node.into(),
        address: "127.0.0.1:80".parse().unwrap(),
        zone: String::new(),
        attributes: BTreeMap::new(),
        health: Health::Healthy,
        draining: false,
    };
    Record { key: Key::Endpoint("ns".into(), "svc".into(), id.into()), body: Some(Body::Endpoint(e)), version: Version { hlc, writer: writer.into() }, origin: Origin::Api, registered: hlc }
}

fn tomb(id: &str, writer: &str, hlc: u64) -> Record {
    Record { key: Key::Endpoint("ns".into(), "svc".into(), id.into()), body: None, version: Version { hlc, writer: writer.into() }, origin: Origin::Api, registered: hlc }
}

fn ns(writer: &str, hlc: u64) -> Record {
    let body = Body::Namespace(Namespace { name: "ns".into(), description: String::new() });
    Record { key: Key::Namespace("ns".into()), body: Some(body), version: Version { hlc, writer: writer.into() }, origin: Origin::Api, registered: hlc }
}

fn replica(records: &[Record]) -> MemReplica {
    let mut r = MemReplica::default();
    for x in records {
        r.put(x.clone());
    }
    r
}

/// A digest as the core sends it: totals and marks, over every namespace.
fn dg(r: &MemReplica) -> Digest {
    MarkCache::default().digest(r, &None)
}

fn anyone(_: &str) -> Option<Role> {
    Some(Role::Combined)
}

/// One anti-entropy exchange as the core runs it: `a` pulls from `b`, `b` answers, `a` answers
/// `b`'s need list. Returns how many records travelled.
fn exchange(a: &mut MemReplica, b: &mut MemReplica) -> usize {
    let answer = offer(b, &None, &dg(b), &dg(a), false);
    let mut moved = answer.records.len();
    a.merge(answer.records, &anyone);
    if !answer.need.is_empty() {
        let back = offer(a, &None, &dg(a), &answer.need, true);
        moved += back.records.len();
        b.merge(back.records, &anyone);
    }
    moved
}

#[test]
fn behind_cleanly_gets_only_what_is_above_its_max() {
    let all = [ep("w", "1", "w", 1), ep("w", "2", "w", 2), ep("w", "3", "w", 3)];
    let (a, b) = (replica(&all[..2]), replica(&all));
    let o = offer(&b, &None, &dg(&b), &dg(&a), false);
    assert_eq!(o.records, vec![all[2].clone()]);
    assert!(o.need.is_empty(), "b lacks nothing");
}

#[test]
fn out_of_order_arrival_is_repaired() {
    // a received w's hlc 1 and 3 but lost hlc 2: a max-only digest would call a up to date.
    let all = [ep("w", "1", "w", 1), ep("w", "2", "w", 2), ep("w", "3", "w", 3)];
    let mut a = replica(&[all[0].clone(), all[2].clone()]);
    let mut b = replica(&all);
    assert_eq!(a.digest()["w"].max_hlc, b.digest()["w"].max_hlc);
    assert!(exchange(&mut a, &mut b) > 0);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(exchange(&mut a, &mut b), 0, "converged: nothing travels");
}

#[test]
fn gaps_on_both_sides_and_missing_writers_converge() {
    let mut a = replica(&[ep("w", "1", "w", 1), ep("w", "3", "w", 3), ep("x", "9", "x", 9)]);
    let mut b = replica(&[ep("w", "2", "w", 2), ep("y", "7", "y", 7)]);
    exchange(&mut a, &mut b);
    exchange(&mut b, &mut a);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.records.len(), 5);
}

#[test]
fn a_key_overwritten_by_another_writer_converges() {
    // Same key: a still has w's version, b has z's newer one.
    let mut a = replica(&[ep("w", "1", "w", 1)]);
    let mut b = replica(&[ep("z", "1", "z", 5)]);
    exchange(&mut a, &mut b);
    exchange(&mut b, &mut a);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.get(&ep("z", "1", "z", 5).key).unwrap().version.writer, "z");
}

/// `n` endpoint records of writer `w` at clocks 1..=n.
fn many(w: &str, n: u64) -> Vec<Record> {
    (1..=n).map(|i| ep(w, &i.to_string(), w, i)).collect()
}

#[test]
fn a_gap_near_the_top_resends_only_what_lies_above_a_mark() {
    // A burst: b holds 3,000 of w's records; a has all but one of the newest (a delta in
    // flight). A summary alone would resend all 3,000.
    let all = many("w", 3000);
    let mut a = replica(&all.iter().filter(|r| r.version.hlc != 2995).cloned().collect::<Vec<_>>());
    let mut b = replica(&all);
    let marks = &dg(&a)["w"].marks;
    assert_eq!(marks.iter().map(|m| m.hlc).collect::<Vec<_>>(), vec![2983, 2871, 1975]);
    let moved = exchange(&mut a, &mut b);
    assert!((1..=17).contains(&moved), "{moved} records travelled for one missing");
    assert_eq!(dg(&a), dg(&b));
    assert_eq!(exchange(&mut a, &mut b), 0);
}

#[test]
fn gaps_below_every_mark_and_on_both_sides_still_converge() {
    let all = many("w", 3000);
    // a lacks an old record, b lacks a recent one a holds.
    let mut a = replica(&all.iter().filter(|r| r.version.hlc != 7).cloned().collect::<Vec<_>>());
    let mut b = replica(&all.iter().filter(|r| r.version.hlc != 2990).cloned().collect::<Vec<_>>());
    exchange(&mut a, &mut b);
    exchange(&mut b, &mut a);
    assert_eq!(dg(&a), dg(&b));
    assert_eq!(a.records.len(), 3000);
    // A peer's marks out of order are skipped: only the first below its max is used.
    let a = replica(&all.iter().filter(|r| r.version.hlc != 2995).cloned().collect::<Vec<_>>());
    let mut theirs = dg(&a);
    theirs.get_mut("w").unwrap().marks.reverse();
    let o = offer(&b, &None, &dg(&b), &theirs, false);
    assert_eq!(o.records.len(), 3000 - 1975);
}

#[test]
fn authority_rules() {
    let roles = |w: &str| match w {
        "reg" => Some(Role::Registry),
        "px" => Some(Role::Proxy),
        _ => None,
    };
    assert!(admit(&ep("px", "1", "px", 1), &roles), "owner writes its endpoint");
    assert!(!admit(&ep("px", "1", "reg", 1), &roles), "nobody else writes it, not even a registry");
    assert!(admit(&ns("reg", 1), &roles));
    assert!(!admit(&ns("px", 1), &roles), "a proxy does not write definitions");
    assert!(!admit(&ns("stranger", 1), &roles), "unknown role: refused until membership knows it");
    assert!(admit(&tomb("1", "px", 2), &roles), "endpoint tombstones are left to the replica");
    let mut moved = ep("px", "1", "px", 1);
    moved.key = Key::Endpoint("ns".into(), "svc".into(), "other".into());
    assert!(!admit(&moved, &roles), "a body under another key");
    let mut ns_tomb = ns("px", 3);
    ns_tomb.body = None;
    assert!(!admit(&ns_tomb, &roles));

    // The replica's half: an endpoint tombstone must come from the writer it replaces.
    let mut r = replica(&[ep("px", "1", "px", 1)]);
    assert!(r.merge(vec![tomb("1", "other", 2)], &roles).is_empty());
    assert_eq!(r.merge(vec![tomb("1", "reg", 2)], &roles).len(), 1, "a registry may remove it");
    let mut r = replica(&[ep("px", "1", "px", 1)]);
    assert_eq!(r.merge(vec![tomb("1", "px", 2)], &roles).len(), 1);
    assert!(r.merge(vec![tomb("1", "px", 2)], &roles).is_empty(), "replay");
    assert!(r.merge(vec![ep("px", "1", "px", 1)], &roles).is_empty(), "older version");
}

#[test]
fn wire_roundtrip_and_refusals() {
    let mut d = Digest::new();
    d.insert("w".into(), WriterSummary { max_hlc: 5, count: 2, hash: 77, marks: vec![Mark { hlc: 3, count: 1, hash: 12 }] });
    let msgs = [
        Message::Delta(vec![ep("w", "1", "w", 1), tomb("2", "w", 2)]),
        Message::Pull(d.clone()),
        Message::Push { records: vec![ns("reg", 3)], digest: Some(d) },
    ];
    for m in &msgs {
        let bytes = wire::encode_message("me", m);
        // What a receiver stores is marked Remote (origin does not travel).
        let m = &match m.clone() {
            Message::Delta(rs) => Message::Delta(rs.into_iter().map(|r| Record { origin: Origin::Remote, ..r }).collect()),
            Message::Push { records, digest } => {
                Message::Push { records: records.into_iter().map(|r| Record { origin: Origin::Remote, ..r }).collect(), digest }
            }
            pull => pull,
        };
        let (from, back) = wire::decode_message(&bytes).unwrap();
        assert_eq!((from.as_str(), &back), ("me", m));
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(wire::decode_message(&bytes[..n]).is_err(), "prefix {n} of {m:?}");
        }
        let mut v = bytes.to_vec();
        v[0] = 1;
        assert!(matches!(wire::decode_message(&v), Err(WireError::Version(1))), "a node of the digests without marks");
        let mut v = bytes.to_vec();
        v.push(0);
        assert!(matches!(wire::decode_message(&v), Err(WireError::Trailing(1))));
    }
    assert!(matches!(wire::decode_datagram(&[]), Err(WireError::Empty)));
    // A length prefix claiming 4 GB allocates nothing: the input is 6 bytes.
    assert!(wire::decode_message(&[wire::VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
}

#[test]
fn record_hash_is_pinned() {
    // Nodes on different builds must agree: this value may never change.
    assert_eq!(record_hash(&ep("w", "1", "w", 42)), record_hash(&tomb("1", "other", 42)));
    assert_eq!(record_hash(&ep("w", "1", "w", 42)), 0x445c_c9ba_dfaa_03b0);
}

#[test]
fn retransmissions_follow_cluster_size() {
    let mt = |n| super::core::max_transmissions(n).get();
    assert_eq!((mt(1), mt(9), mt(10), mt(99), mt(100), mt(999), mt(1000)), (4, 4, 8, 8, 12, 12, 16));
}

/// The fuzz corpus (`fuzz/corpus/gossip_wire`) is only worth its name if it decodes with today's
/// codec: seeds of an older wire version stop at the version byte and the fuzzer never reaches
/// the records. `WEFT_WRITE_FUZZ_SEEDS=1 cargo test --lib fuzz_seeds` rewrites them after a
/// wire change; otherwise this checks each committed seed still decodes.
#[test]
fn fuzz_seeds_decode_with_todays_wire() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gossip_wire");
    let id = |name: &str| NodeId::new(name, 3, "10.0.0.1:7946".parse().unwrap(), Role::Registry).with_admin(Some("10.0.0.1:9901".parse().unwrap()));
    let mut d = Digest::new();
    d.insert("r1".into(), WriterSummary { max_hlc: 9, count: 3, hash: 0xfeed, marks: vec![Mark { hlc: 4, count: 1, hash: 0xbeef }] });
    let swim = [0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("datagram-hello", wire::encode_datagram(&wire::Datagram::Hello(id("p1"))).to_vec()),
        ("datagram-welcome", wire::encode_datagram(&wire::Datagram::Welcome(id("r1"))).to_vec()),
        ("datagram-bye", wire::encode_datagram(&wire::Datagram::Bye(id("p2"))).to_vec()),
        ("datagram-swim", wire::encode_datagram(&wire::Datagram::Swim(&swim)).to_vec()),
        ("message-delta", wire::encode_message("p1", &Message::Delta(vec![ep("p1", "1", "p1", 1), ns("r1", 2)])).to_vec()),
        ("message-delta-tombstone", wire::encode_message("p1", &Message::Delta(vec![tomb("1", "p1", 5)])).to_vec()),
        ("message-pull", wire::encode_message("r1", &Message::Pull(d.clone())).to_vec()),
        ("message-push", wire::encode_message("r2", &Message::Push { records: vec![ns("r2", 7)], digest: Some(d) }).to_vec()),
        ("message-push-empty", wire::encode_message("r2", &Message::Push { records: vec![], digest: None }).to_vec()),
    ];
    if std::env::var_os("WEFT_WRITE_FUZZ_SEEDS").is_some() {
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let ok = wire::decode_datagram(&bytes).is_ok() || wire::decode_message(&bytes).is_ok();
        assert!(ok, "{} does not decode with wire version {}: rewrite the seeds (WEFT_WRITE_FUZZ_SEEDS=1)", path.display(), wire::VERSION);
        checked += 1;
    }
    assert!(checked >= seeds.len(), "{checked} seeds in {}", dir.display());
}
