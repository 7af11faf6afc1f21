//! Issue 13: plugins carried by the mesh. A component pushed to a registry with `weft plugin push`
//! replicates to every node, goes live on the proxies whose services name it, survives a proxy
//! restart with the registry stopped, and cannot be pushed from a proxy. Real `weft run` nodes on
//! loopback (like tests/mesh.rs), the real canary-router component, real HTTP backends.
//!
//! VIP nets 251-254.
mod common;
use common::*;

use std::time::{Duration, Instant};

fn canary_wasm() -> String {
    let p = format!("{}/plugins/target/wasm32-wasip2/release/canary_router.wasm", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&p).exists(), "{p} is missing: run `bash plugins/build.sh` first (.ci/run does)");
    p
}

fn fixture(name: &str) -> String {
    format!("{}/plugins/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn node(ca: &MeshCa, name: &str, mode: &str, n: u8) -> MeshNode {
    MeshNode::new(name, mode, n, &format!("127.1.{n}.1"), ca.issue(name))
}

const SERVICES: &str = "[[service]]\nnamespace = \"default\"\nname = \"api\"\naliases = [{ dns_name = \"api.pmesh\", port = 8080 }]\npolicy = \"canary\"\n\n\
     [[service]]\nnamespace = \"default\"\nname = \"api-v2\"\n";

fn endpoints(api: u16, v2: u16) -> String {
    format!(
        "[[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"v1\"\naddress = \"127.0.0.1:{api}\"\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"api-v2\"\nid = \"v2\"\naddress = \"127.0.0.1:{v2}\"\n"
    )
}

/// Which backend a request with `x-canary: 1` reaches through `w`'s VIP for api.pmesh.
fn canary_request(w: &Weft, vip: &str) -> String {
    match http_with(vip, 8080, "GET", "/x", &[("x-canary", "1")], None) {
        Ok(r) if r.status == 200 => r.header("x-backend").unwrap_or("?").to_string(),
        Ok(r) => format!("status {} on {}", r.status, w.node_name()),
        Err(e) => format!("error {e} on {}", w.node_name()),
    }
}

fn ready_vip(w: &Weft) -> String {
    for svc in ["api", "api-v2"] {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || w.endpoints_of("default", svc).iter().any(|e| e["health"] == "HEALTHY"));
        assert!(ok, "{}: {svc} never had a healthy endpoint", w.node_name());
    }
    let vip = w.vip("api.pmesh", 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    vip
}

#[test]
fn pushed_plugin_goes_live_on_every_proxy_and_survives_a_restart_without_registry() {
    let ca = MeshCa::new("pmesh");
    let (api_port, v2_port) = (free_port(), free_port());
    let _api = http_backend(None, "v1", api_port);
    let _v2 = http_backend(None, "v2", v2_port);
    let mut r = Weft::start_mesh(&node(&ca, "r", "registry", 251).extra(SERVICES));
    let seed = r.gossip_addr();
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 252).join(&seed).extra(&endpoints(api_port, v2_port)));
    let p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 253).join(&seed));
    let mut p3 = Weft::start_mesh(&node(&ca, "p3", "proxy", 254).join(&seed));
    let proxies = [&p1, &p2, &p3];
    let vips: Vec<String> = proxies.iter().map(|w| ready_vip(w)).collect();
    // No plugin yet: the service names one the mesh does not have, so the built-in route keeps
    // the request on api.
    for (w, vip) in proxies.iter().zip(&vips) {
        assert_eq!(canary_request(w, vip), "v1", "{} before the push", w.node_name());
    }

    // A proxy may not push.
    let refused = p2.cli(&["plugin", "push", &canary_wasm(), "--name", "canary", "--plugin-config", r#"{"service":"api-v2"}"#]);
    assert!(!refused.ok(), "a proxy accepted a push: {}", refused.both());
    assert!(refused.stderr().contains("plugins are defined on a registry node"), "the refusal says why: {}", refused.stderr());

    // A component the host refuses is refused at the push, naming it, and stores nothing.
    let bad = r.cli(&["plugin", "push", &fixture("wrong-world.wasm"), "--name", "canary"]);
    assert!(!bad.ok(), "a wrong-world component was accepted: {}", bad.both());
    assert!(bad.stderr().contains("pushed component `canary`"), "the refusal names the push: {}", bad.stderr());

    let t0 = Instant::now();
    let out = r.cli(&["plugin", "push", &canary_wasm(), "--name", "canary", "--plugin-config", r#"{"service":"api-v2"}"#]).expect_ok().stdout();
    assert!(out.contains("pushed to the mesh") && out.contains("route"), "push output: {out}");
    // The 2 s goal is measured by benches/plugin_push.sh on a release build; a debug build that
    // shares two cores with other builds gets a loose bound here.
    for (w, vip) in proxies.iter().zip(&vips) {
        let ok = wait_until(Duration::from_secs(10).saturating_sub(t0.elapsed()), Duration::from_millis(20), || canary_request(w, vip) == "v2");
        assert!(ok, "{}: the pushed plugin is not live {:?} after the push: {}", w.node_name(), t0.elapsed(), canary_request(w, vip));
    }
    eprintln!("pushed plugin live on three proxies {:?} after the push (debug build)", t0.elapsed());
    // Without the header, api.
    assert_eq!(http(&vips[1], 8080, "GET", "/x", None).unwrap().header("x-backend"), Some("v1"));

    let listed = as_list(&p2.cli(&["plugin", "list", "-o", "json"]).expect_ok().json());
    let canary = listed.iter().find(|p| p["name"] == "canary").unwrap_or_else(|| panic!("p2 lists no canary: {listed:?}"));
    assert_eq!((canary["source"].as_str(), canary["status"].as_str()), (Some("mesh"), Some("active")), "{canary}");
    assert_eq!(canary["services"], serde_json::json!(["default/api"]), "{canary}");
    let on_registry = as_list(&r.cli(&["plugin", "list", "-o", "json"]).expect_ok().json());
    assert!(on_registry.iter().any(|p| p["name"] == "canary" && p["status"].as_str().unwrap_or("").starts_with("stored")), "the registry stores, does not run: {on_registry:?}");

    // Deleting it while a service names it is refused.
    let rm = r.cli(&["plugin", "rm", "canary"]);
    assert!(!rm.ok() && rm.stderr().contains("set another policy on service default/api"), "rm while in use: {}", rm.both());

    // The registry stops; p3 restarts and serves with the stored plugin from its first requests.
    assert!(r.sigterm(Duration::from_secs(30)).success());
    assert!(p3.sigterm(Duration::from_secs(30)).success());
    p3.restart();
    let vip3 = ready_vip(&p3);
    assert_eq!(canary_request(&p3, &vip3), "v2", "p3 restarted without a registry; log:\n{}", p3.log());
    let log = p3.log();
    assert!(!log.contains("panicked"), "p3 log:\n{log}");
}
