//! The admin API's JSON bodies: namespaces, services and endpoints as written with PUT/POST, a
//! discover query, and a service PATCH (JSON merge patch), read with the API's own body parser
//! and checked with the catalog's validation, all without a catalog or a socket. The first byte
//! picks the body kind. Nothing may panic, and:
//! - a body that validates reads back equal from its own JSON and still validates (the catalog
//!   stores and serves the JSON; a record that changes on a round trip is a different record);
//! - a valid service also survives the gossip wire unchanged (the registry replicates it);
//! - a discover answer holds at most `max_results` instances, each matching the query;
//! - a merge patch applied twice gives what it gave once (RFC 7386 patches are idempotent).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft::fuzzing::*;

/// Reads back from its own JSON unchanged.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let json = serde_json::to_vec(v).expect("serializes");
    let again: T = admin_body(&json).unwrap_or_else(|e| panic!("{v:?} does not read back from {}: {e}", String::from_utf8_lossy(&json)));
    assert_eq!(&again, v);
}

fn record(body: Body) -> Record {
    Record { key: body.key(), body: Some(body), version: Version { hlc: 1, writer: "n1".into() }, origin: Origin::Api, registered: 1 }
}

/// A catalog with one service and three endpoints, for discover queries.
fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let svc: Service = serde_json::from_str(r#"{"namespace":"default","name":"web"}"#).expect("service");
        let mut records = BTreeMap::new();
        let r = record(Body::Service(svc));
        records.insert(r.key.clone(), r);
        for (i, (zone, health)) in [("a", "HEALTHY"), ("b", "UNHEALTHY"), ("a", "UNKNOWN")].iter().enumerate() {
            let ep = serde_json::json!({"namespace": "default", "service": "web", "id": format!("e{i}"), "address": format!("10.0.0.{}:80", i + 1), "zone": zone, "attributes": {"zone": zone, "v": i.to_string()}, "health": health});
            let r = record(Body::Endpoint(serde_json::from_value(ep).expect("endpoint")));
            records.insert(r.key.clone(), r);
        }
        Snapshot::build(&records, &BTreeMap::new(), 1)
    })
}

fn namespace(body: &[u8]) {
    let Ok(ns) = admin_body::<Namespace>(body) else { return };
    if validate::namespace(&ns).is_ok() {
        round_trip(&ns);
    }
}

fn service(body: &[u8]) {
    let Ok(svc) = admin_body::<Service>(body) else { return };
    if validate::service(&svc).is_err() {
        return;
    }
    round_trip(&svc);
    let r = record(Body::Service(svc));
    validate::record(&r).expect("a valid service is a valid record");
    let (_, msg) = decode_message(&encode_message("n1", &Message::Delta(vec![r.clone()]))).expect("decodes");
    let Message::Delta(got) = msg else { panic!("not a delta") };
    // The wire marks what it carries as remote.
    assert_eq!(got, vec![Record { origin: Origin::Remote, ..r }]);
}

fn endpoint(body: &[u8]) {
    // As `admin::handlers::parse_endpoint`: a HOST:PORT address is resolved before the endpoint
    // is read. Resolving needs the network, so such a body stops at parsing the address.
    let Ok(v) = admin_body::<Value>(body) else { return };
    if let Some(Value::String(text)) = v.get("address")
        && text.parse::<std::net::SocketAddr>().is_err()
    {
        let _ = text.parse::<EndpointAddress>();
        return;
    }
    let Ok(ep) = admin_body::<Endpoint>(&serde_json::to_vec(&v).expect("serializes")) else { return };
    if validate::endpoint(&ep).is_ok() {
        round_trip(&ep);
    }
}

fn discover_query(body: &[u8]) {
    let Ok(q) = admin_body::<DiscoverQuery>(body) else { return };
    let Ok(found) = discover(snapshot(), &q, &|e: &Endpoint| e.health) else { return };
    assert!(found.instances.len() <= q.max_results.unwrap_or(100));
    for e in &found.instances {
        assert!(q.query_parameters.iter().all(|(k, v)| e.attributes.get(k) == Some(v)), "{e:?} does not match {q:?}");
    }
}

fn patch(body: &[u8]) {
    let Ok(patch) = admin_body::<Value>(body) else { return };
    if !patch.is_object() {
        return;
    }
    let current = serde_json::json!({"namespace": "default", "name": "web", "protocol": "http", "aliases": [{"dns_name": "web.svc", "port": 80}], "timeouts": {"connect_ms": 100}});
    let mut once = current.clone();
    merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch applied twice");
    if let Ok(svc) = serde_json::from_value::<Service>(once)
        && validate::service(&svc).is_ok()
    {
        round_trip(&svc);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 5 {
        0 => namespace(body),
        1 => service(body),
        2 => endpoint(body),
        3 => discover_query(body),
        _ => patch(body),
    }
});
