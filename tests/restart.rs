//! Durability: services, endpoints and alias VIPs created through the API survive `kill -9` of weft
//! and a restart with the same data dir; the same VIP:port keeps answering.
mod common;
use common::*;
use std::time::Duration;

fn sorted_routes(w: &Weft) -> Vec<Value> {
    let mut r = w.routes();
    r.sort_by_key(|v| (v["dns_name"].as_str().unwrap_or("").to_string(), v["port"].as_u64()));
    r
}

fn sorted_list(w: &Weft, path: &str, key: &str) -> Vec<Value> {
    let mut v = as_list(&w.get_json(path));
    v.sort_by_key(|x| x[key].as_str().unwrap_or("").to_string());
    v
}

#[test]
fn state_and_vips_survive_kill_9_and_restart() {
    let p1 = free_port();
    let p2 = free_port();
    let _b1 = http_backend(None, "k1", p1);
    let _b2 = http_backend(None, "k2", p2);

    // the config holds no services: everything below is created through the admin API
    let mut w = Weft::start(WeftOpts::new(40));
    w.post_ok("/v1/namespaces", &json!({"name": "durable.test", "description": "restart test"}));
    for (name, alias, port) in [("front", "front.durable", 8080), ("back", "back.durable", 9090)] {
        w.post_ok(
            "/v1/services",
            &json!({"namespace": "durable.test", "name": name, "protocol": "http",
                    "aliases": [{"dns_name": alias, "port": port}, {"dns_name": format!("{name}-short"), "port": port + 1}]}),
        );
    }
    for (id, svc, p) in [("f1", "front", p1), ("f2", "front", p2), ("b1", "back", p1)] {
        w.post_ok(
            "/v1/endpoints",
            &json!({"namespace": "durable.test", "service": svc, "id": id, "address": format!("127.0.0.1:{p}"),
                    "zone": "z1", "attributes": {"role": svc}}),
        );
    }
    let vip = w.vip("front.durable", 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    // Routable once a first health check passed and the catalog published it (≤ 100 ms later).
    let routable = wait_until(Duration::from_secs(5), Duration::from_millis(50), || w.healthy_endpoints("front.durable", 8080).is_some_and(|n| n > 0));
    assert!(routable, "front never routable: {:?}", w.route_now("front.durable", 8080));
    let r = http(&vip, 8080, "GET", "/before", None).expect("GET through VIP before restart");
    assert_eq!(r.status, 200, "{}", r.text());

    // New endpoints start UNKNOWN until their first health check passes: compare settled state.
    let routes_before = wait_for("every endpoint healthy", Duration::from_secs(10), || {
        let r = sorted_routes(&w);
        r.iter().all(|x| x["healthy_endpoints"] == x["endpoints"]).then_some(r)
    });
    assert_eq!(routes_before.len(), 4, "4 aliases expected: {routes_before:?}");
    let services_before = sorted_list(&w, "/v1/services?namespace=durable.test", "name");
    let endpoints_before = sorted_list(&w, "/v1/endpoints?namespace=durable.test", "id");
    assert_eq!(services_before.len(), 2);
    assert_eq!(endpoints_before.len(), 3);

    w.kill9();
    // the VIP must stop answering while weft is down (proves the restarted process serves it again)
    assert!(
        std::net::TcpStream::connect((vip.as_str(), 8080)).is_err(),
        "VIP {vip}:8080 still accepting after kill -9"
    );
    w.restart();

    let routes_after = wait_for("routes restored after restart", Duration::from_secs(10), || {
        let r = sorted_routes(&w);
        (r.len() == routes_before.len()).then_some(r)
    });
    assert_eq!(routes_after, routes_before, "GET /v1/routes must be identical after kill -9 + restart");
    assert_eq!(sorted_list(&w, "/v1/services?namespace=durable.test", "name"), services_before);
    let endpoints_after = sorted_list(&w, "/v1/endpoints?namespace=durable.test", "id");
    // health may legitimately be re-evaluated after a restart; compare everything else
    let strip = |v: &Vec<Value>| {
        v.iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(m) = e.as_object_mut() {
                    m.remove("health");
                }
                e
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&endpoints_after), strip(&endpoints_before), "endpoints must survive restart");
    let ns = w.get_json("/v1/namespaces/durable.test");
    assert_eq!(ns["name"], "durable.test", "{ns}");

    // same VIP:port works after restart
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(10));
    let mut seen = Vec::new();
    for i in 0..10 {
        let r = http(&vip, 8080, "GET", &format!("/after/{i}"), None).expect("GET through VIP after restart");
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(backend_name(&r.text()).unwrap());
    }
    let t = tally(seen);
    assert!(t.keys().all(|k| k == "k1" || k == "k2"), "{t:?}");

    // a second crash/restart cycle keeps the same VIPs too (no re-allocation drift)
    w.kill9();
    w.restart();
    let routes_again = wait_for("routes after 2nd restart", Duration::from_secs(10), || {
        let r = sorted_routes(&w);
        (r.len() == routes_before.len()).then_some(r)
    });
    assert_eq!(routes_again, routes_before, "VIPs must be stable across repeated restarts");
}

/// A data dir started under another `[node] name` (the config changed, or another config used
/// this data dir): the endpoints registered under the old name are retired, not left behind
/// as ghosts that nothing checks (DRAINING from the last shutdown, listed HEALTHY forever).
#[test]
fn endpoints_of_a_former_node_name_are_retired() {
    let (p1, p2) = (free_port(), free_port());
    let _b1 = http_backend(None, "cfg", p1);
    let _b2 = http_backend(None, "api", p2);
    let svc = format!(
        "[[service]]\nnamespace = \"default\"\nname = \"web\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"web.rename\", port = 8080 }}]\n\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"web\"\nid = \"from-config\"\naddress = \"127.0.0.1:{p1}\"\n"
    );
    let mut w = Weft::start(WeftOpts::new(43).extra(&svc));
    w.cli(&["endpoint", "create", "from-api", "-s", "web", "--address", &format!("127.0.0.1:{p2}")]).expect_ok();
    let listed = |w: &Weft| -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = as_list(&w.get_json("/v1/endpoints?service=web"))
            .iter()
            .map(|e| (e["id"].as_str().unwrap_or("?").into(), e["node"].as_str().unwrap_or("?").into(), e["health"].as_str().unwrap_or("?").into()))
            .collect();
        v.sort();
        v
    };
    let old = "test-node-43";
    let healthy = |node: &str, ids: &[&str]| ids.iter().map(|i| (i.to_string(), node.to_string(), "HEALTHY".to_string())).collect::<Vec<_>>();
    wait_for("both endpoints HEALTHY", Duration::from_secs(10), || (listed(&w) == healthy(old, &["from-api", "from-config"])).then_some(()));
    w.sigterm(Duration::from_secs(30));

    let config = std::fs::read_to_string(&w.config).unwrap();
    assert!(config.contains(&format!("name = \"{old}\"")), "{config}");
    std::fs::write(&w.config, config.replace(&format!("name = \"{old}\""), "name = \"renamed\"")).unwrap();
    w.restart();
    // The config's endpoint is registered again under the new name and checked by it; the API
    // one went with the old name (its owner is gone), and the log says so, naming both.
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || listed(&w) == healthy("renamed", &["from-config"]));
    assert!(ok, "after the rename: {:?} (want only from-config, node renamed, HEALTHY)", listed(&w));
    let log = w.log();
    let line = log.lines().find(|l| l.contains("data dir was used by node")).unwrap_or_else(|| panic!("no log line about the rename:\n{log}"));
    assert!(line.contains(old) && line.contains("renamed"), "the log names the old and the new name: {line}");
    // The routing table follows the catalog a moment later.
    let one = || w.routes().first().map(|r| (r["endpoints"].clone(), r["healthy_endpoints"].clone())) == Some((json!(1), json!(1)));
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), one), "{:?}", w.routes());
}
