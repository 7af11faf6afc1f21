//! Mesh behaviour over time, on loopback like tests/mesh.rs (each node a real `weft run` on
//! 127.1.N.1, N = its VIP net):
//! - static stability: with the registry down, a proxy restarted in place serves a cross-host
//!   alias from its first request (catalog and member list come from its own store);
//! - a node down longer than `[gossip] endpoint_grace_s` loses its endpoints: out of routing at
//!   once, out of the catalog everywhere after the grace (a registry's tombstone), back when the
//!   node returns and registers again;
//! - the transport re-reads its `[tls]` files: a node refused for a foreign CA joins once its
//!   files are replaced with the mesh CA's, without a restart.
//!
//! VIP nets 131-140.
mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Loopback address of the node with VIP net `n`.
fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn node(ca: &MeshCa, name: &str, mode: &str, n: u8) -> MeshNode {
    MeshNode::new(name, mode, n, &ip(n), ca.issue(name))
}

fn service_toml(name: &str, dns: &str, port: u16) -> String {
    format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{dns}\", port = {port} }}]\n")
}

fn endpoint_toml(svc: &str, id: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n")
}

/// Waits until every node lists exactly `names`, all alive.
fn wait_members(nodes: &[&Weft], names: &[&str], timeout: Duration) {
    let ok = wait_until(timeout, Duration::from_millis(100), || nodes.iter().all(|w| w.sees_all_alive(names)));
    if !ok {
        let views: Vec<String> = nodes.iter().map(|w| format!("{}: {:?}", w.admin, w.try_members())).collect();
        panic!("members did not converge to {names:?} (all alive) within {timeout:?}:\n{}", views.join("\n"));
    }
}

/// Waits until the node's route for `dns:port` has `n` healthy endpoints; returns its VIP.
fn wait_healthy(w: &Weft, dns: &str, port: u16, n: u64, timeout: Duration) -> String {
    let ok = wait_until(timeout, Duration::from_millis(100), || w.healthy_endpoints(dns, port) == Some(n));
    assert!(ok, "route {dns}:{port} on {} never had {n} healthy endpoint(s): {:?}", w.admin, w.route_now(dns, port));
    w.vip(dns, port)
}

fn wait_service(w: &Weft, svc: &str, timeout: Duration) {
    let want = format!("default/{svc}");
    wait_for(&format!("service {want} on {}", w.admin), timeout, || w.service_names().contains(&want).then_some(()));
}

/// Replaces `dst` atomically: the new content goes to a temp file in the same directory, which is
/// then renamed over it (what a certificate rotation tool does).
fn replace_file(dst: &Path, content: &[u8]) {
    let tmp = dst.with_file_name(format!(".{}.tmp", dst.file_name().unwrap().to_string_lossy()));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, dst).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), dst.display()));
}

/// 1. Static stability: registry down AND the proxy restarted; the proxy still routes to an
///    endpoint on another proxy from its first request, from what it stored itself.
#[test]
fn static_stability() {
    let ca = MeshCa::new("static");
    let mut r = Weft::start_mesh(&node(&ca, "r", "registry", 131).extra(&service_toml("web", "web.static", 8080)));
    let seed = r.gossip_addr();
    let mut p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 132).join(&seed));
    let p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 133).join(&seed));
    wait_members(&[&r, &p1, &p2], &["r", "p1", "p2"], Duration::from_secs(20));
    wait_service(&p2, "web", Duration::from_secs(10));

    let port = free_port();
    let _backend = http_backend(None, "web-p2", port);
    p2.post_ok("/v1/endpoints", &json!({"namespace": "default", "service": "web", "id": "web-p2", "address": format!("127.0.0.1:{port}")}));
    let vip = wait_healthy(&p1, "web.static", 8080, 1, Duration::from_secs(10));
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let (code, body, err) = curl_get(None, &format!("http://{vip}:8080/before"));
    assert_eq!((code, backend_name(&body).as_deref()), (200, Some("web-p2")), "curl via p1 before any failure: {body} {err}");

    // The registry goes away (and stays away).
    let st = r.sigterm(Duration::from_secs(10));
    assert!(st.success(), "registry r exited with {st} on SIGTERM; log:\n{}", r.log());
    // p1 notices r is gone before it is restarted (what it stores is a view without r alive).
    wait_for("p1 and p2 see r not alive", Duration::from_secs(5), || {
        [&p1, &p2].iter().all(|w| w.member_state("r").as_deref() != Some("alive")).then_some(())
    });

    // p1 restarts in place: same config, same data dir. Its only seed (r) is down.
    let old_gen = p1.generation();
    let st = p1.sigterm(Duration::from_secs(10));
    assert!(st.success(), "p1 exited with {st} on SIGTERM; log:\n{}", p1.log());
    let relayed_before = p2.mesh_counter("relayed_streams");
    let conns_before = p2.endpoint_stat("default", "web", "web-p2", "connections");
    p1.restart();
    let ready_at = Instant::now();

    // The very first request after `weft ready` must work: no wait for membership or routes.
    let vip_after = p1.vip("web.static", 8080);
    let (code, body, err) = curl_get(None, &format!("http://{vip_after}:8080/first-after-restart"));
    let first_took = ready_at.elapsed();
    assert_eq!(
        (code, backend_name(&body).as_deref()),
        (200, Some("web-p2")),
        "first curl via p1 right after its restart (registry down) failed: {body} {err}\nroute now {:?}\nmembers now {:?}\n--- p1 log ---\n{}",
        p1.route_now("web.static", 8080),
        p1.try_members(),
        p1.log()
    );
    eprintln!("first request via restarted p1 answered {first_took:?} after ready");
    assert_eq!(vip_after, vip, "the alias keeps its VIP across the restart");
    assert!(p1.generation() > old_gen, "p1's generation must grow across a restart");
    // it really went to p2 over QUIC
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        p2.mesh_counter("relayed_streams") > relayed_before && p2.endpoint_stat("default", "web", "web-p2", "connections") > conns_before
    });
    assert!(
        ok,
        "p2 shows no relayed stream for the first request (relayed_streams {relayed_before} -> {}, web-p2 connections {conns_before} -> {})",
        p2.mesh_counter("relayed_streams"),
        p2.endpoint_stat("default", "web", "web-p2", "connections")
    );

    // `weft members` on p1 lists p2: restored from its own store (the seed is down).
    let out = p1.cli(&["members", "-o", "json"]);
    let listed = as_list(&out.expect_ok().json());
    let p2_entries: Vec<&Value> = listed.iter().filter(|m| m["name"] == "p2").collect();
    assert_eq!(p2_entries.len(), 1, "`weft members` on restarted p1 must list p2 once (restored): {listed:?}");
    // the restored member is live: p1 and p2 see each other alive (p2 with p1's new generation)
    let new_gen = p1.generation();
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        p1.member_state("p2").as_deref() == Some("alive")
            && p2.member_entries("p1").iter().any(|m| m["state"] == "alive" && m["generation"].as_u64() == Some(new_gen))
    });
    assert!(ok, "p1/p2 did not see each other alive after the restart: p1 {:?} / p2 {:?}", p1.try_members(), p2.try_members());
    assert!(!r.running(), "r stayed down throughout");
    for i in 0..5 {
        let (code, body, err) = curl_get(None, &format!("http://{vip}:8080/again/{i}"));
        assert_eq!((code, backend_name(&body).as_deref()), (200, Some("web-p2")), "request {i} via p1 with r down: {body} {err}");
    }
}

/// 2. A node down longer than the registry's `endpoint_grace_s` loses its endpoints: out of
///    routing within 3 s, out of every catalog after the grace; back when it returns.
#[test]
fn down_endpoints_removed_after_grace() {
    let ca = MeshCa::new("grace");
    let mut rn = node(&ca, "r", "registry", 134).extra(&service_toml("api", "api.grace", 8080));
    rn.gossip_extra.push_str("endpoint_grace_s = 3\n");
    let r = Weft::start_mesh(&rn);
    let seed = r.gossip_addr();
    let (port1, port2) = (free_port(), free_port());
    let _b1 = http_backend(None, "api-e1", port1);
    let _b2 = http_backend(None, "api-e2", port2);
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 135).join(&seed));
    // p2's endpoint comes from its config: registered at every start
    let mut p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 136).join(&seed).extra(&endpoint_toml("api", "e2", port2)));
    wait_members(&[&r, &p1, &p2], &["r", "p1", "p2"], Duration::from_secs(20));
    wait_service(&p1, "api", Duration::from_secs(10));
    // p1 has a local endpoint too, so its route keeps one healthy endpoint when p2 is gone
    p1.post_ok("/v1/endpoints", &json!({"namespace": "default", "service": "api", "id": "e1", "address": format!("127.0.0.1:{port1}")}));
    let both = vec!["e1".to_string(), "e2".to_string()];
    wait_for("e1 and e2 in the catalog of r and p1", Duration::from_secs(10), || {
        (r.endpoint_ids("default", "api") == both && p1.endpoint_ids("default", "api") == both).then_some(())
    });
    let vip = wait_healthy(&p1, "api.grace", 8080, 2, Duration::from_secs(10));
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let url = format!("http://{vip}:8080/who");
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || backend_name(&curl_get(None, &url).1).as_deref() == Some("api-e2"));
    assert!(ok, "e2 (on p2) never answered through p1");

    p2.kill9();
    let t0 = Instant::now();
    // Out of p1's routing within 3 s: only e1 healthy.
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || p1.healthy_endpoints("api.grace", 8080) == Some(1));
    assert!(ok, "3 s after kill -9 of p2, p1's route: {:?} (want 1 healthy endpoint: e1); p1 sees p2 {:?}", p1.route_now("api.grace", 8080), p1.member_state("p2"));
    let out_of_routing = t0.elapsed();
    // ...but still in the catalog: the grace (3 s, counted from when p2 is declared down) has not run out
    let ids_now = p1.endpoint_ids("default", "api");
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(3) && ids_now == both, "{elapsed:?} after kill -9 (grace 3 s not over), p1's catalog: {ids_now:?}");
    eprintln!("e2 out of p1's routing {out_of_routing:?} after kill -9; still catalogued during the grace");
    for i in 0..10 {
        let (code, body, err) = curl_get(None, &url);
        assert_eq!((code, backend_name(&body).as_deref()), (200, Some("api-e1")), "request {i} via p1 after p2 died: {body} {err}");
    }

    // After the grace: the registry tombstones e2; the removal replicates to p1. e1 stays.
    let gone = |w: &Weft| w.endpoint_ids("default", "api") == vec!["e1".to_string()];
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || gone(&r) && gone(&p1));
    assert!(
        ok,
        "{:?} after kill -9 of p2 (grace 3 s): r lists {:?}, p1 lists {:?} (want only e1); r sees p2 {:?}",
        t0.elapsed(),
        r.endpoint_ids("default", "api"),
        p1.endpoint_ids("default", "api"),
        r.member_state("p2")
    );
    eprintln!("e2 gone from r and p1 {:?} after kill -9", t0.elapsed());
    assert!(r.log().contains("down longer than the grace period"), "r logs why it removed e2:\n{}", r.log());
    assert_eq!(p1.healthy_endpoints("api.grace", 8080), Some(1), "route {:?}", p1.route_now("api.grace", 8080));

    // p2 comes back (same data dir, same config): it registers e2 again and it is everywhere.
    p2.restart();
    wait_members(&[&r, &p1, &p2], &["r", "p1", "p2"], Duration::from_secs(15));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        [&r, &p1, &p2].iter().all(|w| w.endpoint_ids("default", "api") == both)
    });
    assert!(
        ok,
        "after p2's restart e2 is not back everywhere: r {:?} p1 {:?} p2 {:?}\n--- p2 log ---\n{}",
        r.endpoint_ids("default", "api"),
        p1.endpoint_ids("default", "api"),
        p2.endpoint_ids("default", "api"),
        p2.log()
    );
    let listed = p1.endpoints_of("default", "api").into_iter().find(|e| e["id"] == "e2").unwrap();
    assert_eq!(listed["node"], "p2", "{listed}");
    wait_healthy(&p1, "api.grace", 8080, 2, Duration::from_secs(10));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || backend_name(&curl_get(None, &url).1).as_deref() == Some("api-e2"));
    assert!(ok, "e2 never answered through p1 after p2 came back");
    // and it stays (no late tombstone from the registry's old timer)
    holds_for("e2 stays in r's and p1's catalog", Duration::from_secs(2), || {
        for w in [&r, &p1] {
            let ids = w.endpoint_ids("default", "api");
            if ids != both {
                return Err(format!("{} lists {ids:?}", w.node_name()));
            }
        }
        Ok(())
    });
}

/// 3. The transport re-reads its certificate files: a node refused for its foreign CA joins once
///    its `[tls]` files are replaced (in place) with the mesh CA's, without a restart.
#[test]
fn certificate_reload_without_restart() {
    let ca = MeshCa::new("reload");
    let foreign = MeshCa::new("reload-foreign");
    let s = Weft::start_mesh(&node(&ca, "s", "combined", 137).extra(&service_toml("vault", "vault.reload", 8080)));
    let seed = s.gossip_addr();

    // n's [tls] files live in a directory of their own, first the foreign CA's
    let tls_dir = TempDir::new("reload-tls");
    let bad = foreign.issue("n");
    let files = NodeTls { ca: tls_dir.join("ca.pem"), cert: tls_dir.join("n.pem"), key: tls_dir.join("n-key.pem") };
    fs::copy(&bad.ca, &files.ca).unwrap();
    fs::copy(&bad.cert, &files.cert).unwrap();
    fs::copy(&bad.key, &files.key).unwrap();
    let mut n = Weft::start_mesh(&MeshNode::new("n", "proxy", 138, &ip(138), files.clone()).join(&seed));
    let pid = n.pid();
    let generation = n.generation();

    // Refused: the seed logs and counts it, n stays alone.
    wait_for("s logs and counts a rejected connection from n", Duration::from_secs(10), || {
        (s.log().contains("refused a node connection in the TLS handshake") && s.mesh_counter("handshakes_rejected") >= 1).then_some(())
    });
    let m = n.members();
    assert!(m.len() == 1 && m[0]["name"] == "n" && m[0]["myself"] == json!(true), "n with a foreign certificate must be alone: {m:?}");
    assert!(s.member_entries("n").is_empty(), "s must not list n: {:?}", s.try_members());

    // Rotate n's files in place to the mesh CA's (temp file + rename, each file).
    let good = ca.issue("n");
    let (ca_pem, cert_pem, key_pem) = (fs::read(&good.ca).unwrap(), fs::read(&good.cert).unwrap(), fs::read(&good.key).unwrap());
    replace_file(&files.ca, &ca_pem);
    replace_file(&files.cert, &cert_pem);
    replace_file(&files.key, &key_pem);
    let t0 = Instant::now();

    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || s.sees_all_alive(&["s", "n"]) && n.sees_all_alive(&["s", "n"]));
    assert!(
        ok,
        "15 s after n's [tls] files were replaced with the mesh CA's: s lists {:?}, n lists {:?}\n--- n log ---\n{}",
        s.try_members(),
        n.try_members(),
        n.log()
    );
    eprintln!("n joined {:?} after its certificate files were replaced", t0.elapsed());
    assert!(n.log().contains("reloaded TLS certificates"), "n's log must say it reloaded its certificates:\n{}", n.log());
    assert!(n.running() && n.pid() == pid && n.generation() == generation, "n must not have restarted");
    // joined for real: the mesh's catalog reaches it
    wait_service(&n, "vault", Duration::from_secs(10));
}
