//! The mesh's catalog as an operator reads it, on loopback like tests/mesh.rs (each node a real
//! `weft run` on 127.1.N.1, N = its VIP net):
//! - the endpoints of a node that is gone (kill -9, or a clean stop) show UNHEALTHY at once in
//!   every admin view (`weft endpoint list`, discover, service counts) on the registry and on
//!   proxies, and the registry removes them after `endpoint_grace_s`, even when the member was
//!   already forgotten (`remove_down_after_s` shorter than the grace);
//! - a clean stop is shown as `left` (members list, CLI, logs), a crash as `down`;
//! - a write refused by a proxy names the registry's admin address, which works as `--admin`.
//!
//! VIP nets 160-166.
mod common;
use common::*;
use std::time::{Duration, Instant};

/// Loopback address of the node with VIP net `n`.
fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn node(ca: &MeshCa, name: &str, mode: &str, n: u8) -> MeshNode {
    MeshNode::new(name, mode, n, &ip(n), ca.issue(name))
}

fn endpoint_toml(svc: &str, id: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n")
}

fn wait_members(nodes: &[&Weft], names: &[&str], timeout: Duration) {
    let ok = wait_until(timeout, Duration::from_millis(100), || nodes.iter().all(|w| w.sees_all_alive(names)));
    if !ok {
        let views: Vec<String> = nodes.iter().map(|w| format!("{}: {:?}", w.admin, w.try_members())).collect();
        panic!("members did not converge to {names:?} (all alive) within {timeout:?}:\n{}", views.join("\n"));
    }
}

/// `id → health` of service `api` as `weft endpoint list -o json` prints it on `w`.
fn cli_health(w: &Weft) -> Vec<(String, String)> {
    let out = w.cli(&["endpoint", "list", "-s", "api", "-o", "json"]);
    let mut v: Vec<(String, String)> = as_list(&out.expect_ok().json())
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or("?").to_string(), e["health"].as_str().unwrap_or("?").to_string()))
        .collect();
    v.sort();
    v
}

fn health_of(w: &Weft, id: &str) -> Option<String> {
    cli_health(w).into_iter().find(|(i, _)| i == id).map(|(_, h)| h)
}

/// Ids `POST /v1/discover` returns for service `api` with this health filter.
fn discovered(w: &Weft, filter: &str) -> Vec<String> {
    let r = w.post_ok("/v1/discover", &json!({"namespace": "default", "service": "api", "health_status": filter}));
    let mut ids: Vec<String> = r["instances"].as_array().into_iter().flatten().filter_map(|i| i["id"].as_str().map(str::to_string)).collect();
    ids.sort();
    ids
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Checks every admin view of `w` shows endpoint `gone` UNHEALTHY and exactly `kept` HEALTHY.
fn views_show_gone(w: &Weft, gone: &str, kept: &[&str]) -> Result<(), String> {
    let listed = cli_health(w);
    if health_of(w, gone).as_deref() != Some("UNHEALTHY") || kept.iter().any(|k| health_of(w, k).as_deref() != Some("HEALTHY")) {
        return Err(format!("{}: endpoint list {listed:?}", w.node_name()));
    }
    let healthy = discovered(w, "HEALTHY");
    if healthy != strings(kept) {
        return Err(format!("{}: discover HEALTHY {healthy:?}", w.node_name()));
    }
    let unhealthy = discovered(w, "UNHEALTHY");
    if !unhealthy.contains(&gone.to_string()) {
        return Err(format!("{}: discover UNHEALTHY {unhealthy:?}", w.node_name()));
    }
    let svc = w.get_json("/v1/services/default/api");
    if svc["healthy_endpoints"] != kept.len() {
        return Err(format!("{}: service view {svc}", w.node_name()));
    }
    Ok(())
}

/// A node killed with -9 and one stopped cleanly: their endpoints turn UNHEALTHY everywhere at
/// once and are removed after the grace, although the registry forgot the members before that.
#[test]
fn gone_nodes_endpoints_unhealthy_at_once_and_removed_after_grace() {
    let ca = MeshCa::new("gone");
    let svc = "[[service]]\nnamespace = \"default\"\nname = \"api\"\nprotocol = \"http\"\naliases = [{ dns_name = \"api.gone\", port = 8080 }]\nhealth_check = { interval_ms = 500 }\n";
    // The registry forgets a down member after 2 s, long before the 8 s grace ends: the grace
    // clock must not live in the member entry.
    let mut rn = node(&ca, "r", "registry", 160).extra(svc);
    rn.gossip_extra.push_str("remove_down_after_s = 2\nendpoint_grace_s = 8\n");
    let r = Weft::start_mesh(&rn);
    let seed = r.gossip_addr();
    let (port1, port2, port3) = (free_port(), free_port(), free_port());
    let _b1 = http_backend(None, "e1", port1);
    let _b2 = http_backend(None, "e2", port2);
    let _b3 = http_backend(None, "e3", port3);
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 161).join(&seed).extra(&endpoint_toml("api", "e1", port1)));
    let mut p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 162).join(&seed).extra(&endpoint_toml("api", "e2", port2)));
    let mut p3 = Weft::start_mesh(&node(&ca, "p3", "proxy", 163).join(&seed).node_extra("drain_timeout_s = 3").extra(&endpoint_toml("api", "e3", port3)));
    wait_members(&[&r, &p1, &p2, &p3], &["r", "p1", "p2", "p3"], Duration::from_secs(20));
    let all_healthy = strings(&["e1", "e2", "e3"]).into_iter().map(|i| (i, "HEALTHY".to_string())).collect::<Vec<_>>();
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || cli_health(&r) == all_healthy && cli_health(&p1) == all_healthy);
    assert!(ok, "endpoints never all HEALTHY: r {:?}, p1 {:?}", cli_health(&r), cli_health(&p1));

    // kill -9: UNHEALTHY in every view of the registry and of p1 within 3 s.
    p2.kill9();
    let t0 = Instant::now();
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        [&r, &p1].iter().all(|w| health_of(w, "e2").as_deref() == Some("UNHEALTHY"))
    });
    assert!(ok, "3 s after kill -9 of p2: r lists {:?}, p1 lists {:?} (want e2 UNHEALTHY); r sees p2 {:?}", cli_health(&r), cli_health(&p1), r.member_state("p2"));
    eprintln!("e2 UNHEALTHY on r and p1 {:?} after kill -9", t0.elapsed());
    for w in [&r, &p1] {
        views_show_gone(w, "e2", &["e1", "e3"]).unwrap_or_else(|e| panic!("after kill -9 of p2: {e}"));
    }
    // The registry forgets p2 (2 s after down); e2 stays listed, UNHEALTHY, until the grace ends.
    wait_for("r forgets member p2", Duration::from_secs(8), || r.member_entries("p2").is_empty().then_some(()));
    assert!(t0.elapsed() < Duration::from_secs(8), "p2 forgotten only {:?} after kill -9", t0.elapsed());
    assert_eq!(health_of(&r, "e2").as_deref(), Some("UNHEALTHY"), "r no longer lists p2; its endpoint: {:?}", cli_health(&r));
    let gone = |w: &Weft, id: &str| health_of(w, id).is_none();
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(200), || gone(&r, "e2") && gone(&p1, "e2"));
    assert!(ok, "{:?} after kill -9 (grace 8 s): r lists {:?}, p1 lists {:?}", t0.elapsed(), cli_health(&r), cli_health(&p1));
    eprintln!("e2 removed everywhere {:?} after kill -9", t0.elapsed());
    assert!(r.log().contains("down longer than the grace period"), "r logs why it removed e2:\n{}", r.log());

    // A clean stop: `left`, not `down`; its endpoint UNHEALTHY at once, gone after the grace.
    let st = p3.sigterm(Duration::from_secs(30));
    assert!(st.success(), "p3 exit after SIGTERM: {st}");
    let t1 = Instant::now();
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        p1.member_state("p3").as_deref() == Some("left") && [&r, &p1].iter().all(|w| health_of(w, "e3").as_deref() == Some("UNHEALTHY"))
    });
    assert!(ok, "3 s after p3 stopped cleanly: p1 sees p3 {:?}, r lists {:?}, p1 lists {:?}", p1.member_state("p3"), cli_health(&r), cli_health(&p1));
    let cli = as_list(&p1.cli(&["members", "-o", "json"]).expect_ok().json());
    let p3_row = cli.iter().find(|m| m["name"] == "p3").cloned();
    assert_eq!(p3_row.as_ref().map(|m| m["state"].clone()), Some(json!("left")), "weft members on p1: {cli:?}");
    let table = p1.cli(&["members"]).expect_ok().stdout();
    assert!(table.lines().any(|l| l.starts_with("p3") && l.contains("left")), "weft members table on p1:\n{table}");
    let p3_log = p3.log();
    assert!(p3_log.contains("left the cluster"), "p3 logs its leave:\n{p3_log}");
    assert!(!p3_log.contains("declared down and cannot rejoin"), "a clean stop is not a crash:\n{p3_log}");
    for w in [&r, &p1] {
        let log = w.log();
        assert!(log.lines().any(|l| l.contains("left the cluster") && l.contains("p3")), "{} logs that p3 left:\n{log}", w.node_name());
    }
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(200), || gone(&r, "e3") && gone(&p1, "e3"));
    assert!(ok, "{:?} after p3's clean stop (grace 8 s): r lists {:?}, p1 lists {:?}", t1.elapsed(), cli_health(&r), cli_health(&p1));
    assert_eq!(cli_health(&r), vec![("e1".to_string(), "HEALTHY".to_string())]);
}

/// A service write sent to a proxy is refused with the registry's admin address, and that
/// address works as `weft --admin`.
#[test]
fn proxy_refusal_names_the_registry_admin_address() {
    let ca = MeshCa::new("refuse");
    let r = Weft::start_mesh(&node(&ca, "reg", "registry", 164));
    let p = Weft::start_mesh(&node(&ca, "px", "proxy", 165).join(&r.gossip_addr()));
    wait_members(&[&r, &p], &["reg", "px"], Duration::from_secs(20));
    let out = p.cli(&["service", "create", "orders", "--alias", "orders.refuse:8080"]);
    assert!(!out.ok(), "a proxy must refuse a service definition: {}", out.both());
    let err = out.stderr();
    let hint = format!("weft --admin {}", r.admin);
    assert!(err.contains(&hint), "the refusal names the registry's admin address ({hint}): {err}");
    assert!(!err.contains(&r.gossip_addr()), "the refusal gives the admin address, not the gossip one: {err}");

    let listed = p.member_entries("reg");
    assert_eq!(listed.first().map(|m| m["admin"].clone()), Some(json!(r.admin)), "p lists reg's admin address: {listed:?}");

    // Following the hint works.
    let mut c = std::process::Command::new(WEFT);
    c.args(hint.split_whitespace().skip(1)).args(["service", "create", "orders", "--alias", "orders.refuse:8080"]).env_remove("WEFT_ADMIN");
    run_cmd(&mut c, None, Duration::from_secs(30)).expect_ok();
    wait_for("orders on the proxy", Duration::from_secs(10), || p.service_names().contains(&"default/orders".to_string()).then_some(()));
}
