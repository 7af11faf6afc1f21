//! Issue 16: two registries create services claiming the same alias while they cannot see each
//! other (two halves of a five-node mesh that formed apart); when the halves join, every node
//! gives the alias to the same service, reports the conflict (`weft status`, the CLI's warning,
//! `weft.catalog.alias_conflicts`), and no node binds it for two services.
//! VIP nets 230-234.
mod common;
use common::*;

use serde_json::{Value, json};
use std::time::Duration;

fn node(ca: &MeshCa, name: &str, mode: &str, n: u8) -> MeshNode {
    MeshNode::new(name, mode, n, &format!("127.1.{n}.1"), ca.issue(name))
}

fn svc(name: &str) -> Value {
    json!({"namespace": "default", "name": name, "protocol": "http", "aliases": [{"dns_name": "front.conflict", "port": 8080}]})
}

#[test]
fn an_alias_created_on_two_registries_apart_converges_to_one_owner() {
    let ca = MeshCa::new("conflict");
    let r1 = Weft::start_mesh(&node(&ca, "r1", "registry", 230));
    let mut r2 = Weft::start_mesh(&node(&ca, "r2", "registry", 231));
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 232).join(&r1.gossip_addr()));
    let p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 233).join(&r2.gossip_addr()));
    let p3 = Weft::start_mesh(&node(&ca, "p3", "proxy", 234).join(&r2.gossip_addr()));
    // Each half accepts its own service: neither registry knows the other's.
    r1.post_ok("/v1/services", &svc("web"));
    r2.post_ok("/v1/services", &svc("api"));

    // The halves join: r2 restarts with r1 as its seed (its catalog is kept in its data dir).
    let st = std::process::Command::new("kill").args(["-TERM", &r2.pid().to_string()]).status().unwrap();
    assert!(st.success());
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(20), || r2.try_exit().is_some()), "r2 did not stop");
    r2.kill9();
    let config = std::fs::read_to_string(&r2.config).unwrap().replace("join = []", &format!("join = [\"{}\"]", r1.gossip_addr()));
    std::fs::write(&r2.config, config).unwrap();
    r2.restart();

    let all = [&r1, &r2, &p1, &p2, &p3];
    let want = json!([{"alias": "front.conflict:8080", "owner": "default/api", "refused": ["default/web"]}]);
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        all.iter().all(|w| w.service_names() == ["default/api", "default/web"] && w.get_json("/v1/status")["alias_conflicts"] == want)
    });
    let views: Vec<String> = all.iter().map(|w| format!("{}: {:?} {}", w.admin, w.service_names(), w.get_json("/v1/status")["alias_conflicts"])).collect();
    assert!(ok, "the conflict did not settle the same way on every node:\n{}", views.join("\n"));

    for (i, w) in all.iter().enumerate() {
        // One route for the alias on each proxy (registries serve no traffic), to the owner; the
        // other service keeps its record, not the alias.
        let routes: Vec<Value> = w.routes().into_iter().filter(|r| r["dns_name"] == "front.conflict").collect();
        let proxy = i >= 2;
        assert_eq!(routes.len(), usize::from(proxy), "{}: {routes:?}", w.admin);
        assert!(routes.iter().all(|r| r["service"] == "api"), "{}: {routes:?}", w.admin);
        let status = w.cli(&["status"]);
        assert!(status.stderr().contains("alias front.conflict:8080 is claimed by more than one service: served for default/api"), "{}", status.both());
        // The mesh's figures are published with its view, about once a second.
        let metric = || w.get("/metrics").unwrap().text().lines().find(|l| l.starts_with("weft_catalog_alias_conflicts ")).map(str::to_string);
        let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || metric().as_deref() == Some("weft_catalog_alias_conflicts 1.0"));
        assert!(ok, "{}: {:?}", w.admin, metric());
        assert!(!w.log().contains("panicked"), "{}", w.log());
    }
    // Renaming the loser's alias ends the conflict everywhere.
    r1.post_ok("/v1/services", &json!({"namespace": "default", "name": "web", "protocol": "http", "aliases": [{"dns_name": "web.conflict", "port": 8080}]}));
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || all.iter().all(|w| w.get_json("/v1/status")["alias_conflicts"] == json!([])));
    assert!(ok, "the conflict stayed after the rename");
}
