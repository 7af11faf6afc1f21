//! Issue 16, crash safety: `kill -9` in the middle of a stream of API writes loses no write the
//! API acknowledged, and leaves nothing half-written. Two writers post services and endpoints as
//! fast as the node answers; the node is killed at a moment picked from the clock; after the
//! restart every acknowledged service and endpoint is there with the body that was acknowledged,
//! and every record is whole (each listed endpoint's service exists, each service parses).
//! Three rounds, killing at a different point each time. VIP net 90.
mod common;
use common::*;

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Alias ports: every service gets `crash.test:<port>`, one name and so one VIP for them all (a
/// name per service would use up the test's /24 of VIPs in the second round).
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// What a writer got a 2xx for: (kind, name).
type Acked = Arc<Mutex<Vec<(&'static str, String)>>>;

fn writer(admin: String, tag: &'static str, acked: Acked, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (host, port) = admin.rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap())).unwrap();
        let mut i = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let name = format!("{tag}-{i}");
            let alias_port = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let svc = json!({"namespace": "default", "name": name, "protocol": "http", "aliases": [{"dns_name": "crash.test", "port": alias_port}]});
            let body = serde_json::to_vec(&svc).unwrap();
            // A connection refused or cut by the kill is simply not an acknowledgement.
            match http(&host, port, "POST", "/v1/services", Some(body.as_slice())) {
                Ok(r) if (200..300).contains(&r.status) => acked.lock().unwrap().push(("service", name.clone())),
                Ok(r) if r.status != 503 => panic!("POST /v1/services {name}: {} {}", r.status, r.text()),
                _ => break,
            }
            let ep = json!({"namespace": "default", "service": name, "id": format!("{name}-e"), "address": format!("127.0.0.1:{}", 10000 + i % 50000)});
            let body = serde_json::to_vec(&ep).unwrap();
            match http(&host, port, "POST", "/v1/endpoints", Some(body.as_slice())) {
                Ok(r) if (200..300).contains(&r.status) => acked.lock().unwrap().push(("endpoint", name.clone())),
                _ => break,
            }
            i += 1;
        }
    })
}

#[test]
fn kill_9_during_api_writes_loses_no_acknowledged_write() {
    let mut w = Weft::start(WeftOpts::new(90));
    for (round, after_ms) in [(1, 700u64), (2, 1300), (3, 2100)] {
        let acked: Acked = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tags = [["a1", "b1"], ["a2", "b2"], ["a3", "b3"]][round - 1];
        let writers: Vec<_> = tags.iter().map(|t| writer(w.admin.clone(), t, acked.clone(), stop.clone())).collect();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(after_ms) {
            std::thread::sleep(Duration::from_millis(5));
        }
        w.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in writers {
            t.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        w.restart();

        let services: Vec<Value> = as_list(&w.get_json("/v1/services"));
        let endpoints: Vec<Value> = as_list(&w.get_json("/v1/endpoints"));
        let svc_names: std::collections::BTreeSet<String> = services.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
        let ep_services: std::collections::BTreeSet<String> = endpoints.iter().map(|e| e["service"].as_str().unwrap().to_string()).collect();
        let mut lost = Vec::new();
        for (kind, name) in &acked {
            let present = match *kind {
                "service" => svc_names.contains(name),
                _ => endpoints.iter().any(|e| e["id"] == json!(format!("{name}-e")) && e["service"] == json!(name)),
            };
            if !present {
                lost.push(format!("{kind} {name}"));
            }
        }
        eprintln!("round {round}: killed after {after_ms} ms; {} writes acknowledged; {} services and {} endpoints after the restart", acked.len(), svc_names.len(), endpoints.len());
        assert!(acked.len() > 20, "round {round}: too few writes before the kill to prove anything: {}", acked.len());
        assert!(lost.is_empty(), "round {round}: acknowledged writes lost by kill -9: {lost:?}");
        // Nothing half-written: every endpoint's service is there, every service has its alias.
        assert!(ep_services.is_subset(&svc_names), "round {round}: endpoints of missing services: {:?}", ep_services.difference(&svc_names).collect::<Vec<_>>());
        for s in &services {
            let name = s["name"].as_str().unwrap();
            assert_eq!(s["aliases"][0]["dns_name"], json!("crash.test"), "round {round}: {name}: {s}");
        }
        assert!(!w.log().contains("panicked"), "{}", w.log());
    }
}
