//! Issue 13 acceptance, "picker across two hosts": the version-picker plugin
//! (plugins/version-picker, `pick-endpoint`) on a service whose endpoints live on two weft hosts
//! of one mesh — real processes on loopback like tests/failover.rs: A (combined: registry +
//! proxy, gossip on 127.1.178.1) and B (proxy, 127.1.179.1), certificates from one `weft ca init`.
//!
//! `api` has four endpoints, each a tests/support/counter_backend.py: a1 (version v1) and a2 (v2)
//! registered on A, b1 (v1) and b2 (v2) on B. Both nodes configure the plugin (`[[plugin]]` is a
//! node's own configuration); the service's `policy = "picker"` comes with the catalog. Through
//! each node's VIP: requests with `x-version: v2` reach a2 and b2 only — both of them, so the
//! picker saw B's endpoint (with its attributes) from A and A's from B — and requests without the
//! header reach all four (`lb = "round-robin"`: the built-in balancer's latency-weighted choice
//! could leave one of four unpicked in 80 requests).
//!
//! VIP nets 178-179.
mod common;
use common::plugin::*;
use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

const DNS: &str = "api.picker";
const PORT: u16 = 8080;
const REQUESTS: usize = 80;

fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn plugin_toml() -> String {
    format!("[[plugin]]\nname = \"picker\"\npath = \"{}\"\nconfig = '{{\"header\":\"x-version\",\"attribute\":\"version\"}}'\n", example("version_picker"))
}

fn service_toml() -> String {
    format!(
        "[[service]]\nnamespace = \"default\"\nname = \"api\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{DNS}\", port = {PORT} }}]\npolicy = \"picker\"\nlb = \"round-robin\"\n\
         [service.health_check]\nkind = \"http\"\npath = \"/healthz\"\ninterval_ms = 200\n"
    )
}

fn endpoint_toml(id: &str, version: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\nattributes = {{ version = \"{version}\" }}\n")
}

/// `REQUESTS` sequential GETs through `vip`, each must be 200: how many each backend answered.
fn spread(vip: &str, headers: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..REQUESTS {
        let r = http_with(vip, PORT, "GET", &format!("/v/{i}"), headers, None).unwrap_or_else(|e| panic!("GET through {vip}: {e}"));
        assert_eq!(r.status, 200, "GET through {vip} {headers:?}: {}", r.text());
        *seen.entry(r.header("x-backend").unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    seen
}

#[test]
fn version_header_picks_endpoints_on_both_hosts() {
    let tmp = TempDir::new("picker-mesh");
    let ca = MeshCa::new("picker");
    let mut backends = Vec::new();
    let mut ports = BTreeMap::new();
    for id in ["a1", "a2", "b1", "b2"] {
        let port = free_port();
        backends.push(counter_backend(id, port, &[], Some(tmp.join(&format!("{id}.log")))));
        ports.insert(id, port);
    }
    let a = Weft::start_mesh(
        &MeshNode::new("a", "combined", 178, &ip(178), ca.issue("a"))
            .extra(&service_toml())
            .extra(&plugin_toml())
            .extra(&endpoint_toml("a1", "v1", ports["a1"]))
            .extra(&endpoint_toml("a2", "v2", ports["a2"])),
    );
    let b = Weft::start_mesh(
        &MeshNode::new("b", "proxy", 179, &ip(179), ca.issue("b"))
            .join(&a.gossip_addr())
            .extra(&plugin_toml())
            .extra(&endpoint_toml("b1", "v1", ports["b1"]))
            .extra(&endpoint_toml("b2", "v2", ports["b2"])),
    );
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || a.sees_all_alive(&["a", "b"]) && b.sees_all_alive(&["a", "b"]));
    assert!(ok, "a and b did not see each other alive: a {:?} / b {:?}", a.try_members(), b.try_members());
    for (name, w) in [("a", &a), ("b", &b)] {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let eps = w.endpoints_of("default", "api");
            eps.len() == 4 && eps.iter().all(|e| e["health"] == "HEALTHY" && e["attributes"]["version"].is_string())
        });
        assert!(ok, "node {name} never saw the four endpoints healthy with their attributes: {:?}", w.endpoints_of("default", "api"));
    }

    for (name, w) in [("a", &a), ("b", &b)] {
        let vip = w.vip(DNS, PORT);
        wait_tcp(&format!("{vip}:{PORT}"), Duration::from_secs(5));
        let v2 = spread(&vip, &[("x-version", "v2")]);
        let v1 = spread(&vip, &[("x-version", "v1")]);
        let any = spread(&vip, &[]);
        eprintln!("through {name}: x-version v2 → {v2:?}; v1 → {v1:?}; no header → {any:?}");
        assert_eq!(v2.keys().collect::<Vec<_>>(), ["a2", "b2"], "through {name}, x-version: v2 must reach both v2 endpoints (A's and B's) and no other");
        assert_eq!(v1.keys().collect::<Vec<_>>(), ["a1", "b1"], "through {name}, x-version: v1 must reach both v1 endpoints and no other");
        assert_eq!(any.keys().collect::<Vec<_>>(), ["a1", "a2", "b1", "b2"], "through {name}, no header: the built-in balancer over all four");
        let list = w.cli(&["plugin", "list", "-o", "json"]).expect_ok().json();
        let p = &list[0];
        eprintln!("node {name}: pick-endpoint {} counters {}", p["calls"]["pick-endpoint"], p["counters"]);
        // A call per header value (v2, v1, none), then the kept answers (`reuse = same-headers`).
        let pick = &p["calls"]["pick-endpoint"];
        assert!(pick["calls"].as_u64().unwrap_or(0) >= 3 && pick["calls"].as_u64().unwrap_or(0) + pick["reused"].as_u64().unwrap_or(0) >= 3 * REQUESTS as u64, "{list}");
        assert_eq!(p["calls"]["pick-endpoint"]["failures"], 0, "{list}");
        assert!(p["counters"]["matched"].as_u64().unwrap_or(0) >= 2 * REQUESTS as u64, "the picker's own count of matches: {list}");
    }
}
