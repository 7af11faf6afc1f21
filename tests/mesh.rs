//! The multi-host mesh on one machine: every node is a real `weft run` on its own loopback address
//! (127.1.N.1, N = the node's VIP net), all with certificates from one `weft ca init` CA. A client
//! on one proxy calls an alias whose endpoint is on another proxy; the request must travel over
//! QUIC to that proxy (its target-side figures prove it), for HTTP, TCP (redis) and gRPC.
//! Membership: kill -9 is noticed within 3 s and a restart replaces the old incarnation. A node
//! of another CA is refused; an authenticated peer sending garbage (tests/mesh/garbage_peer.py,
//! aioquic) and plain UDP garbage do not disturb a node.
//!
//! VIP nets 110-122, 126 and 248-250 (tests/mesh_vpc.rs has 123-125).
mod common;
use common::*;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

/// Loopback address of the node with VIP net `n`.
fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn node(ca: &MeshCa, name: &str, mode: &str, n: u8) -> MeshNode {
    MeshNode::new(name, mode, n, &ip(n), ca.issue(name))
}

/// Waits until every node lists exactly `names`, all alive.
fn wait_members(nodes: &[&Weft], names: &[&str], timeout: Duration) {
    let ok = wait_until(timeout, Duration::from_millis(100), || nodes.iter().all(|w| w.sees_all_alive(names)));
    if !ok {
        let views: Vec<String> = nodes.iter().map(|w| format!("{}: {:?}", w.admin, w.try_members())).collect();
        panic!("members did not converge to {names:?} (all alive) within {timeout:?}:\n{}", views.join("\n"));
    }
}

fn svc_json(name: &str, protocol: &str, dns: &str, port: u16) -> Value {
    json!({"namespace": "default", "name": name, "protocol": protocol, "aliases": [{"dns_name": dns, "port": port}]})
}

/// Waits until the node's route for `dns:port` has `n` healthy endpoints; returns its VIP.
fn wait_healthy(w: &Weft, dns: &str, port: u16, n: u64, timeout: Duration) -> String {
    let ok = wait_until(timeout, Duration::from_millis(100), || w.healthy_endpoints(dns, port) == Some(n));
    assert!(ok, "route {dns}:{port} on {} never had {n} healthy endpoint(s): {:?}", w.admin, w.route_now(dns, port));
    w.vip(dns, port)
}

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).status().map(|s| s.success()).unwrap_or(false)
}

/// Python module needed: fail under CI, loud skip otherwise.
fn require_python(test: &str, module: &str) -> bool {
    if python_has(module) {
        return true;
    }
    if ci() {
        panic!("{test} needs python3 module {module} (pip install -r tests/requirements.txt)");
    }
    loud(&format!("*** SKIP {test}: python3 module {module} missing (pip install -r tests/requirements.txt) ***"));
    false
}

fn redis_cli(host: &str, port: u16, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-h", host, "-p", &port.to_string()]).args(args);
    let out = run_cmd(&mut c, None, Duration::from_secs(30));
    out.expect_ok();
    out.stdout().trim().to_string()
}

fn grpc_client(target: &str) -> Value {
    let mut c = Command::new("python3");
    c.arg(support_path("grpc/client.py")).arg(target).arg("5");
    c.env_remove("http_proxy").env_remove("https_proxy").env_remove("grpc_proxy");
    let out = run_cmd(&mut c, None, Duration::from_secs(60));
    out.expect_ok();
    out.json()
}

/// Asserts `f` moved a figure of p3's: relayed streams and the endpoint's target-side connections.
fn assert_relayed(p3: &Weft, svc: &str, id: &str, before: (u64, u64), what: &str) {
    // The far side counts when it has connected to the endpoint: poll briefly, the client may
    // have finished a moment before the relay task updated the figure.
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        p3.mesh_counter("relayed_streams") > before.0 && p3.endpoint_stat("default", svc, id, "connections") > before.1
    });
    assert!(
        ok,
        "{what}: the owner of {id} shows no relayed traffic (relayed_streams {} -> {}, endpoint connections {} -> {}): \
         the request did not travel over the mesh",
        before.0,
        p3.mesh_counter("relayed_streams"),
        before.1,
        p3.endpoint_stat("default", svc, id, "connections")
    );
}

fn relay_figures(p3: &Weft, svc: &str, id: &str) -> (u64, u64) {
    (p3.mesh_counter("relayed_streams"), p3.endpoint_stat("default", svc, id, "connections"))
}

/// Acceptance 1: two registries and three proxies; services replicate everywhere; HTTP, TCP and
/// gRPC reach an endpoint on p3 through p1's alias over QUIC; proxies refuse definitions.
#[test]
fn five_nodes() {
    let ca = MeshCa::new("five");
    let r1 = Weft::start_mesh(&node(&ca, "r1", "registry", 110));
    let r1_addr = r1.gossip_addr();
    let r2 = Weft::start_mesh(&node(&ca, "r2", "registry", 111).join(&r1_addr));
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 112).join(&r1_addr));
    let p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 113).join(&r2.gossip_addr()));
    // p3 knows only p1: membership of the rest reaches it through gossip
    let p3 = Weft::start_mesh(&node(&ca, "p3", "proxy", 114).join(&p1.gossip_addr()));
    let all = [&r1, &r2, &p1, &p2, &p3];
    let names = ["r1", "r2", "p1", "p2", "p3"];
    wait_members(&all, &names, Duration::from_secs(20));
    for w in &all {
        let me: Vec<Value> = w.members().into_iter().filter(|m| m["myself"] == json!(true)).collect();
        assert_eq!(me.len(), 1, "{}: exactly one member is `myself`: {me:?}", w.admin);
        let roles: BTreeSet<String> = w.members().iter().map(|m| format!("{}={}", m["name"].as_str().unwrap(), m["role"].as_str().unwrap_or("?"))).collect();
        let want: BTreeSet<String> = ["r1=registry", "r2=registry", "p1=proxy", "p2=proxy", "p3=proxy"].iter().map(|s| s.to_string()).collect();
        assert_eq!(roles, want, "{}: roles in GET /v1/members", w.admin);
    }
    let cli_members = p2.cli(&["members", "-o", "json"]);
    let cli_names: BTreeSet<String> = as_list(&cli_members.expect_ok().json()).iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(cli_names, names.iter().map(|s| s.to_string()).collect(), "weft members -o json on p2");

    // Services: web (API on r1), cache (CLI on r1), widgets (API on the OTHER registry, r2).
    r1.post_ok("/v1/services", &svc_json("web", "http", "web.mesh", 8080));
    r1.cli(&["service", "create", "cache", "--protocol", "tcp", "--alias", "cache.mesh:6379"]).expect_ok();
    r2.post_ok("/v1/services", &svc_json("widgets", "grpc", "widgets.mesh", 50051));
    let want_services = vec!["default/cache".to_string(), "default/web".to_string(), "default/widgets".to_string()];
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || all.iter().all(|w| w.service_names() == want_services));
    let views: Vec<String> = all.iter().map(|w| format!("{}: {:?}", w.admin, w.service_names())).collect();
    assert!(ok, "services did not reach every node within 15 s (want {want_services:?}):\n{}", views.join("\n"));

    // HTTP: endpoint on p3 (API), called through p1's alias.
    let web_port = free_port();
    let _web = http_backend(None, "web-p3", web_port);
    p3.post_ok(
        "/v1/endpoints",
        &json!({"namespace": "default", "service": "web", "id": "web-p3", "address": format!("127.0.0.1:{web_port}")}),
    );
    let listed = wait_for("web-p3 listed on p1 with node p3", Duration::from_secs(10), || {
        p1.endpoints_of("default", "web").into_iter().find(|e| e["id"] == "web-p3")
    });
    assert_eq!(listed["node"], "p3", "the endpoint is owned by the proxy that registered it: {listed}");
    let vip = wait_healthy(&p1, "web.mesh", 8080, 1, Duration::from_secs(10));
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let before = relay_figures(&p3, "web", "web-p3");
    for i in 0..3 {
        let (code, body, err) = curl_get(None, &format!("http://{vip}:8080/hello/{i}"));
        assert_eq!(code, 200, "curl via p1's alias web.mesh: {body} {err}\n{}", p1.log());
        assert_eq!(backend_name(&body).as_deref(), Some("web-p3"), "answered by p3's endpoint: {body}");
        assert!(body.contains(&format!("path=/hello/{i}")), "{body}");
    }
    assert_relayed(&p3, "web", "web-p3", before, "HTTP via p1");
    // a POST body crosses intact
    let post = curl(None, &["-o", "-", "--data-binary", "0123456789abcdef", &format!("http://{vip}:8080/post")]);
    assert!(post.stdout().contains("len=16"), "POST through the mesh: {}", post.both());

    // TCP: redis-server owned by p3 (endpoint via CLI on p3), SET/GET through p1's alias.
    if require_program("five_nodes", "redis-server") && require_program("five_nodes", "redis-cli") {
        let tmp = TempDir::new("mesh-redis");
        let rport = free_port();
        let mut rc = Command::new("redis-server");
        rc.args(["--port", &rport.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(tmp.path());
        let _redis = Bg::spawn("redis-server", &mut rc, Some(tmp.join("redis.log")));
        wait_tcp(&format!("127.0.0.1:{rport}"), Duration::from_secs(10));
        p3.cli(&["endpoint", "create", "cache-p3", "-s", "cache", "--address", &format!("127.0.0.1:{rport}")]).expect_ok();
        let cvip = wait_healthy(&p1, "cache.mesh", 6379, 1, Duration::from_secs(10));
        wait_tcp(&format!("{cvip}:6379"), Duration::from_secs(5));
        let before = relay_figures(&p3, "cache", "cache-p3");
        assert_eq!(redis_cli(&cvip, 6379, &["SET", "mesh:k", "over-quic"]), "OK");
        assert_eq!(redis_cli(&cvip, 6379, &["GET", "mesh:k"]), "over-quic");
        assert_eq!(redis_cli("127.0.0.1", rport, &["GET", "mesh:k"]), "over-quic", "the value reached the real redis");
        assert_relayed(&p3, "cache", "cache-p3", before, "redis via p1");
    }

    // gRPC: tests/grpc/server.py owned by p3 (config-less: API), tests/grpc/client.py via p1.
    if require_program("five_nodes", "python3") && require_python("five_nodes", "grpc") {
        let tmp = TempDir::new("mesh-grpc");
        let gport = free_port();
        let mut sc = Command::new("python3");
        sc.arg(support_path("grpc/server.py")).arg(gport.to_string());
        let mut server = Bg::spawn("grpc server", &mut sc, Some(tmp.join("server.log")));
        wait_tcp(&format!("127.0.0.1:{gport}"), Duration::from_secs(20));
        assert!(server.alive(), "grpc server died: {}", server.log_text());
        p3.post_ok(
            "/v1/endpoints",
            &json!({"namespace": "default", "service": "widgets", "id": "widgets-p3", "address": format!("127.0.0.1:{gport}")}),
        );
        let gvip = wait_healthy(&p1, "widgets.mesh", 50051, 1, Duration::from_secs(10));
        wait_tcp(&format!("{gvip}:50051"), Duration::from_secs(5));
        let before = relay_figures(&p3, "widgets", "widgets-p3");
        let direct = grpc_client(&format!("127.0.0.1:{gport}"));
        let via = grpc_client(&format!("{gvip}:50051"));
        assert_eq!(via["unary"], "echo:hello weft", "unary echo over the mesh");
        assert_eq!(via["unary_big_ok"], true, "1 MiB unary echo over the mesh");
        assert_eq!(via["unary_trailers"]["x-server"], "weft-test", "trailers over the mesh");
        assert_eq!(via["error"]["code"], "NOT_FOUND");
        assert_eq!(via["many"], 50);
        assert_eq!(via, direct, "gRPC through p1 -> QUIC -> p3 must equal direct access");
        assert_relayed(&p3, "widgets", "widgets-p3", before, "gRPC via p1");
    }

    // Both registries converge: same services, same endpoints.
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        r1.service_names() == r2.service_names()
            && ["web", "cache", "widgets"].iter().all(|s| r1.endpoint_ids("default", s) == r2.endpoint_ids("default", s))
    });
    assert!(
        ok,
        "registries differ: r1 {:?} {:?} / r2 {:?} {:?}",
        r1.service_names(),
        r1.endpoint_ids("default", "web"),
        r2.service_names(),
        r2.endpoint_ids("default", "web")
    );

    // A proxy refuses to define services, naming the registries.
    let refused = p1.post("/v1/services", &svc_json("rogue", "http", "rogue.mesh", 8080));
    assert_eq!(refused.status, 403, "service create on a proxy: {} {}", refused.status, refused.text());
    let text = refused.text();
    assert!(text.contains("r1") || text.contains("r2"), "the 403 names a registry: {text}");
    let cli = p2.cli(&["service", "create", "rogue2", "--alias", "rogue2.mesh:8080"]);
    assert!(!cli.ok(), "weft service create on a proxy must fail: {}", cli.both());
    assert!(cli.stderr().contains("r1") || cli.stderr().contains("r2"), "CLI error names a registry: {}", cli.stderr());
    holds_for("no node has the refused services", Duration::from_secs(1), || {
        for w in &all {
            let s = w.service_names();
            if s.iter().any(|n| n.contains("rogue")) {
                return Err(format!("{} lists {s:?}", w.admin));
            }
        }
        Ok(())
    });
}

/// Acceptance 2: kill -9 of an endpoint's node takes it out of routing within 3 s everywhere;
/// a restart replaces the old incarnation (higher generation, listed once, no ghost).
#[test]
fn kill9_and_restart() {
    let ca = MeshCa::new("kill9");
    // Round robin: the test checks that both endpoints serve, request by request.
    let svc = "[[service]]\nnamespace = \"default\"\nname = \"api\"\nprotocol = \"http\"\nlb = \"round-robin\"\naliases = [{ dns_name = \"api.mesh\", port = 8080 }]\n";
    let r = Weft::start_mesh(&node(&ca, "r", "registry", 115).extra(svc));
    let seed = r.gossip_addr();
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 116).join(&seed));
    let p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 117).join(&seed));
    let (port2, port3) = (free_port(), free_port());
    let _b2 = http_backend(None, "api-p2", port2);
    let _b3 = http_backend(None, "api-p3", port3);
    let p3_ep = format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"api-p3\"\naddress = \"127.0.0.1:{port3}\"\n");
    // p3's endpoint comes from its config: it registers once the registry's definition arrives
    let p3_node = node(&ca, "p3", "proxy", 118).join(&seed).extra(&p3_ep);
    let mut p3 = Weft::start_mesh(&p3_node);
    wait_members(&[&r, &p1, &p2, &p3], &["r", "p1", "p2", "p3"], Duration::from_secs(20));
    wait_for("service api on p2", Duration::from_secs(10), || p2.service_names().contains(&"default/api".to_string()).then_some(()));
    p2.cli(&["endpoint", "create", "api-p2", "-s", "api", "--address", &format!("127.0.0.1:{port2}")]).expect_ok();
    let vip = wait_healthy(&p1, "api.mesh", 8080, 2, Duration::from_secs(15));
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let url = format!("http://{vip}:8080/who");
    let seen = tally((0..10).map(|_| {
        let (code, body, err) = curl_get(None, &url);
        assert_eq!(code, 200, "{body} {err}");
        backend_name(&body).unwrap_or_default()
    }));
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), vec!["api-p2".to_string(), "api-p3".to_string()], "both endpoints serve: {seen:?}");

    let old_gen = p3.generation();
    let listed_gen = p1.member_entries("p3")[0]["generation"].as_u64().unwrap();
    assert_eq!(listed_gen, old_gen, "p1 lists p3 with the generation p3 reports");

    p3.kill9();
    let t0 = Instant::now();
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        [&r, &p1, &p2].iter().all(|w| matches!(w.member_state("p3").as_deref(), Some(s) if s != "alive"))
            && p1.healthy_endpoints("api.mesh", 8080) == Some(1)
    });
    assert!(
        ok,
        "3 s after kill -9 of p3: states r={:?} p1={:?} p2={:?}, p1 route {:?}",
        r.member_state("p3"),
        p1.member_state("p3"),
        p2.member_state("p3"),
        p1.route_now("api.mesh", 8080)
    );
    eprintln!("p3 out of routing {:?} after kill -9", t0.elapsed());
    for i in 0..10 {
        let (code, body, err) = curl_get(None, &url);
        assert_eq!((code, backend_name(&body).as_deref()), (200, Some("api-p2")), "request {i} after p3 died: {body} {err}");
    }

    // Back at another gossip port (same name, same data dir): the new incarnation replaces the
    // old one everywhere, although its address changed.
    let old_addr = p3.gossip_addr_from_config();
    let moved = format!("{}:{}", ip(118), free_udp_port(&ip(118)));
    p3.set_gossip_listen(&old_addr, &moved);
    p3.restart();
    let new_gen = p3.generation();
    assert!(new_gen > old_gen, "generation after restart {new_gen} must exceed {old_gen}");
    assert_eq!(p3.gossip_addr(), moved);
    wait_listed_once(&[&r, &p1, &p2, &p3], "p3", new_gen, &moved);
    serves_again(&p1, &url);

    // The case as an operator sees it most: kill -9 and restart in place (same data dir, same
    // address). Others declare p3 down first, then it comes back.
    p3.kill9();
    let ok = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        [&r, &p1, &p2].iter().all(|w| matches!(w.member_state("p3").as_deref(), Some(s) if s != "alive"))
    });
    assert!(ok, "second kill -9 of p3 not noticed within 3 s: r={:?} p1={:?} p2={:?}", r.member_state("p3"), p1.member_state("p3"), p2.member_state("p3"));
    p3.restart();
    let gen3 = p3.generation();
    assert!(gen3 > new_gen, "generation after the second restart {gen3} must exceed {new_gen}");
    assert_eq!(p3.gossip_addr(), moved);
    wait_listed_once(&[&r, &p1, &p2, &p3], "p3", gen3, &moved);
    serves_again(&p1, &url);
}

/// p3 kept its endpoint (back within the grace period) and serves again through p1.
fn serves_again(p1: &Weft, url: &str) {
    wait_healthy(p1, "api.mesh", 8080, 2, Duration::from_secs(10));
    let back = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        backend_name(&curl_get(None, url).1).as_deref() == Some("api-p3")
    });
    assert!(back, "p3's endpoint never answered through p1 after the restart");
}

/// Waits until every node lists `name` exactly once, alive, with generation `generation` at `addr`, and
/// checks that this holds for 5 s (several SWIM probe rounds: a live node must not be suspected)
/// with no extra (ghost) member anywhere.
fn wait_listed_once(nodes: &[&Weft], name: &str, generation: u64, addr: &str) {
    let total = nodes.len();
    let once_alive = |w: &Weft| -> Result<(), String> {
        let e = w.member_entries(name);
        if e.len() == 1 && e[0]["state"] == "alive" && e[0]["generation"].as_u64() == Some(generation) && e[0]["address"] == addr {
            Ok(())
        } else {
            Err(format!("{} lists {name} as {e:?} (want once, alive, generation {generation}, address {addr})", w.node_name()))
        }
    };
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || nodes.iter().all(|w| once_alive(w).is_ok()));
    let detail: Vec<String> = nodes.iter().filter_map(|w| once_alive(w).err()).collect();
    assert!(ok, "after restart: {detail:?}");
    let since = Instant::now();
    holds_for(&format!("{name} listed once, alive, generation {generation} (no ghost)"), Duration::from_secs(5), || {
        for w in nodes {
            once_alive(w).map_err(|e| format!("{:.1} s after all listed it alive: {e}", since.elapsed().as_secs_f64()))?;
            let n = w.try_members().unwrap_or_default().len();
            if n != total {
                return Err(format!("{} lists {n} members, want {total}: {:?}", w.admin, w.try_members()));
            }
        }
        Ok(())
    });
}

/// Acceptance 3: a node whose certificate comes from another CA cannot join.
#[test]
fn foreign_ca_is_rejected() {
    let ca = MeshCa::new("home");
    let other = MeshCa::new("elsewhere");
    let svc = "[[service]]\nnamespace = \"default\"\nname = \"secret\"\nprotocol = \"http\"\naliases = [{ dns_name = \"secret.mesh\", port = 8080 }]\n";
    let s1 = Weft::start_mesh(&node(&ca, "s1", "combined", 119).extra(svc));
    let seed = s1.gossip_addr();
    assert_eq!(s1.mesh_counter("handshakes_rejected"), 0);
    let rogue = Weft::start_mesh(&node(&other, "intruder", "combined", 120).join(&seed));
    wait_for("s1 logs and counts a rejected connection", Duration::from_secs(10), || {
        (s1.log().contains("refused a node connection in the TLS handshake") && s1.mesh_counter("handshakes_rejected") >= 1).then_some(())
    });
    // Both sides count the failed negotiation: the rogue's dial (client side) and s1 (target),
    // also as `weft.tls.negotiation.errors` in /metrics.
    wait_for("the rogue counts its failed handshakes", Duration::from_secs(10), || (rogue.mesh_counter("handshakes_failed") >= 1).then_some(()));
    let metrics = rogue.get("/metrics").unwrap().text();
    assert!(metrics.lines().any(|l| l.starts_with("weft_tls_negotiation_errors_total{weft_tls_side=\"client\"}") && !l.ends_with(" 0")), "{metrics}");
    holds_for("the rogue stays alone and learns nothing", Duration::from_secs(4), || {
        let m = rogue.try_members().ok_or("rogue: no GET /v1/members")?;
        if m.len() != 1 || m[0]["name"] != "intruder" || m[0]["myself"] != json!(true) {
            return Err(format!("rogue's members: {m:?}"));
        }
        let s = rogue.service_names();
        if s.iter().any(|n| n.ends_with("/secret")) {
            return Err(format!("rogue's catalog has the mesh's service: {s:?}"));
        }
        if !s1.member_entries("intruder").is_empty() {
            return Err(format!("s1 lists the rogue: {:?}", s1.try_members()));
        }
        Ok(())
    });
}

/// A certificate issued to one node cannot be used by a node of another name.
#[test]
fn certificate_of_another_node_is_refused_at_start() {
    let ca = MeshCa::new("names");
    let mut n = node(&ca, "right", "combined", 126);
    n.tls = ca.issue("wrong");
    let mut w = Weft::spawn_mesh(&n);
    let st = wait_for("weft to exit", Duration::from_secs(15), || w.try_exit());
    assert!(!st.success(), "weft must refuse a certificate for another node; log:\n{}", w.log());
    assert!(w.log().contains("wrong") && w.log().contains("right"), "the error names both names:\n{}", w.log());
}

/// Acceptance 4: an authenticated peer sending garbage is counted and ignored; plain UDP garbage
/// has no effect.
#[test]
fn garbage_from_an_authenticated_peer() {
    if !require_program("garbage", "python3") || !require_python("garbage", "aioquic") {
        return;
    }
    let ca = MeshCa::new("garbage");
    let svc = "[[service]]\nnamespace = \"default\"\nname = \"echo\"\nprotocol = \"http\"\naliases = [{ dns_name = \"echo.mesh\", port = 8080 }]\n";
    let mut g1 = Weft::start_mesh(&node(&ca, "g1", "combined", 121).extra(svc));
    let g1_addr = g1.gossip_addr();
    let bport = free_port();
    let _backend = http_backend(None, "echo-g2", bport);
    let ep = format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"echo\"\nid = \"echo-g2\"\naddress = \"127.0.0.1:{bport}\"\n");
    let g2 = Weft::start_mesh(&node(&ca, "g2", "proxy", 122).join(&g1_addr).extra(&ep));
    wait_members(&[&g1, &g2], &["g1", "g2"], Duration::from_secs(20));
    // g1's only endpoint is on g2: a curl via g1 uses g1's QUIC transport, the part under attack
    let vip = wait_healthy(&g1, "echo.mesh", 8080, 1, Duration::from_secs(15));
    let url = format!("http://{vip}:8080/ok");
    let serves = |w: &Weft| {
        let (code, body, err) = curl_get(None, &url);
        assert_eq!((code, backend_name(&body).as_deref()), (200, Some("echo-g2")), "curl via g1: {body} {err}\n{}", w.log());
    };
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    serves(&g1);

    let view = |w: &Weft| -> (Vec<String>, Vec<String>) {
        let mut m: Vec<String> = w
            .try_members()
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} generation{}", m["name"].as_str().unwrap_or("?"), m["state"].as_str().unwrap_or("?"), m["generation"]))
            .collect();
        m.sort();
        let mut r: Vec<String> = w
            .routes()
            .iter()
            .map(|r| format!("{} {}:{} {}/{} healthy={}", r["dns_name"], r["vip"], r["port"], r["namespace"], r["service"], r["healthy_endpoints"]))
            .collect();
        r.sort();
        (m, r)
    };
    let before_view = view(&g1);
    let counters = ["bad_datagrams", "bad_messages", "bad_streams", "handshakes_rejected"];
    let before: Vec<u64> = counters.iter().map(|c| g1.mesh_counter(c)).collect();

    let garbler = ca.issue("garbler");
    let (host, port) = g1_addr.rsplit_once(':').unwrap();
    let mut c = Command::new("python3");
    c.arg(support_path("mesh/garbage_peer.py"))
        .args(["--host", host, "--port", port, "--server-name", "g1"])
        .arg("--ca")
        .arg(&garbler.ca)
        .arg("--cert")
        .arg(&garbler.cert)
        .arg("--key")
        .arg(&garbler.key)
        .args(["--foreign-endpoint", "default/echo/echo-g2"]);
    let out = run_cmd(&mut c, None, Duration::from_secs(90));
    out.expect_ok();
    let report = out.json();
    eprintln!("garbage peer report: {report}");
    assert_eq!(report["connected"], true, "the peer's handshake (CA-signed cert, ALPN weft/1) must succeed: {report}");
    assert!(g1.running(), "g1 died under garbage; log:\n{}", g1.log());

    // what the far side answered on bi streams: never "connected" (status 0) for garbage, and
    // never a relay to an endpoint g1 does not own
    let bi = &report["bi"];
    for (name, v) in bi.as_object().expect("bi results") {
        let status = v["status"].as_i64();
        assert_ne!(status, Some(0), "bi stream `{name}` was accepted as a relay: {v}");
    }
    assert_eq!(bi["foreign_endpoint"]["status"], 1, "g1 must refuse to relay to another node's endpoint (NotHere): {bi}");
    assert_eq!(bi["no_such_endpoint"]["status"], 1, "unknown endpoint: NotHere: {bi}");

    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        g1.mesh_counter("bad_datagrams") > before[0] && g1.mesh_counter("bad_messages") > before[1] && g1.mesh_counter("bad_streams") > before[2]
    });
    let after: Vec<u64> = counters.iter().map(|c| g1.mesh_counter(c)).collect();
    assert!(ok, "garbage must be counted: {counters:?} before {before:?} after {after:?}");
    eprintln!("counters {counters:?}: before {before:?} after {after:?}; relayed_streams {}", g1.mesh_counter("relayed_streams"));

    // still serving, nothing changed
    holds_for("g1's members and routes unchanged after garbage", Duration::from_secs(2), || {
        let v = view(&g1);
        if v == before_view { Ok(()) } else { Err(format!("before {before_view:?}, now {v:?}")) }
    });
    serves(&g1);
    assert!(g2.sees_all_alive(&["g1", "g2"]), "g2's view: {:?}", g2.try_members());

    // Plain UDP garbage at the gossip port: settle the counters first (streams of the closed
    // garbage connection may still be finishing), then fire, then nothing may move.
    let mut last: Vec<u64> = Vec::new();
    wait_for("mesh counters settle", Duration::from_secs(10), || {
        let now: Vec<u64> = counters.iter().map(|c| g1.mesh_counter(c)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let again: Vec<u64> = counters.iter().map(|c| g1.mesh_counter(c)).collect();
        last = again.clone();
        (now == again).then_some(())
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300usize {
        let len = [1usize, 7, 20, 64, 300, 1200, 1350, 1500][i % 8];
        let mut pkt: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if i % 3 == 0 && len >= 20 {
            // QUIC long header, version 1, Initial, random connection ids: parses, cannot decrypt
            pkt[0] = 0xc0 | (pkt[0] & 0x0f);
            pkt[1..5].copy_from_slice(&[0, 0, 0, 1]);
            pkt[5] = 8;
        } else if i % 3 == 1 && len >= 8 {
            // unknown version: invites a version negotiation at most
            pkt[0] |= 0x80;
            pkt[1..5].copy_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a]);
        }
        let _ = sock.send_to(&pkt, &g1_addr);
    }
    serves(&g1);
    holds_for("plain UDP garbage changes nothing", Duration::from_secs(2), || {
        let now: Vec<u64> = counters.iter().map(|c| g1.mesh_counter(c)).collect();
        if now != last {
            return Err(format!("counters {counters:?} moved {last:?} -> {now:?}"));
        }
        let v = view(&g1);
        if v != before_view {
            return Err(format!("view changed: before {before_view:?}, now {v:?}"));
        }
        Ok(())
    });
    assert!(g1.running(), "g1 died; log:\n{}", g1.log());
    assert!(!g1.log().contains("panicked"), "g1 panicked:\n{}", g1.log());
}

/// The names of a process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> BTreeSet<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"));
    tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).map(|c| c.trim().to_string()).collect()
}

/// One-CPU nodes (`taskset`): the data plane keeps the process's single runtime thread and the
/// control plane (gossip, health checks, the admin API, the plugin watchers) runs on a second
/// runtime of its own (`node::control`), so a burst of catalog writes does not hold requests
/// back. Everything that crosses the two still works: membership, replication, an endpoint's
/// HTTP health checks, a request relayed over QUIC to the endpoint's node (the relay runs on
/// the transport's runtime, not the gossip task's), a registration through the API, a clean stop.
#[test]
fn one_cpu_nodes_run_the_control_plane_on_a_thread_of_its_own() {
    let ca = MeshCa::new("one-cpu");
    let r1 = Weft::start_mesh(&node(&ca, "r1", "registry", 248).one_cpu());
    let seed = r1.gossip_addr();
    let p1 = Weft::start_mesh(&node(&ca, "p1", "proxy", 249).one_cpu().join(&seed));
    let mut p2 = Weft::start_mesh(&node(&ca, "p2", "proxy", 250).one_cpu().join(&seed));
    wait_members(&[&r1, &p1, &p2], &["r1", "p1", "p2"], Duration::from_secs(20));
    for w in [&r1, &p1, &p2] {
        let threads = thread_names(w.pid());
        assert!(threads.contains("weft") && threads.contains("weft-control"), "{}: threads {threads:?}", w.admin);
    }
    let mut svc = svc_json("web", "http", "web.one", 8080);
    svc["health_check"] = json!({"kind": "http", "path": "/", "interval_ms": 500});
    r1.post_ok("/v1/services", &svc);
    wait_for("web replicated to p2", Duration::from_secs(10), || p2.service_names().contains(&"default/web".to_string()).then_some(()));
    let port = free_port();
    let _web = http_backend(None, "web-p2", port);
    p2.post_ok("/v1/endpoints", &json!({"namespace": "default", "service": "web", "id": "web-p2", "address": format!("127.0.0.1:{port}")}));
    // Healthy on p1 only after p2's check loop probed it and gossip carried the result over.
    let vip = wait_healthy(&p1, "web.one", 8080, 1, Duration::from_secs(15));
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let before = relay_figures(&p2, "web", "web-p2");
    for i in 0..20 {
        let (code, body, err) = curl_get(None, &format!("http://{vip}:8080/one/{i}"));
        assert_eq!(code, 200, "request {i} via p1: {body} {err}\n{}", p1.log());
        assert_eq!(backend_name(&body).as_deref(), Some("web-p2"), "{body}");
    }
    assert_relayed(&p2, "web", "web-p2", before, "HTTP via p1 on one CPU");
    let status = p2.sigterm(Duration::from_secs(20));
    assert!(status.success(), "p2 stops cleanly: {status:?}\n{}", p2.log());
    assert!(p2.log().contains("weft stopped"), "{}", p2.log());
    wait_for("p1 sees p2 leave", Duration::from_secs(10), || (p1.member_state("p2").as_deref() != Some("alive")).then_some(()));
}
