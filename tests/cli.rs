//! The CLI as a client of the admin API: namespace/service/endpoint create/list/describe/delete,
//! `-o json`, error exits, and `weft discover` with Cloud Map DiscoverInstances semantics.
mod common;
use common::*;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

/// A port that accepts TCP connections for the rest of the test process (a "live" endpoint for
/// active health checks).
fn live_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    port
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("discover result without instances: {v}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn find<'a>(list: &'a [Value], key: &str, val: &str) -> Option<&'a Value> {
    list.iter().find(|x| x[key].as_str() == Some(val))
}

#[test]
fn namespace_service_endpoint_lifecycle() {
    let w = Weft::start(WeftOpts::new(80));
    let backend = live_port();
    let addr = format!("127.0.0.1:{backend}");

    let st = w.cli(&["status", "-o", "json"]);
    st.expect_ok();
    assert!(st.json().is_object(), "status -o json: {}", st.stdout());
    w.cli(&["status"]).expect_ok();

    // namespace
    w.cli(&["namespace", "create", "cli.test", "--description", "made by the cli"]).expect_ok();
    let bad = w.cli(&["namespace", "create", "bad name!"]);
    assert_eq!(bad.code, Some(1), "an invalid namespace name must fail with exit 1: {}", bad.both());
    assert!(!bad.stderr().trim().is_empty(), "client errors print the server's message on stderr");
    let list = as_list(&w.cli(&["namespace", "list", "-o", "json"]).expect_ok().json());
    assert!(find(&list, "name", "cli.test").is_some(), "{list:?}");
    assert!(find(&list, "name", "default").is_some(), "namespace default is ensured: {list:?}");
    let d = w.cli(&["namespace", "describe", "cli.test", "-o", "json"]).expect_ok().json();
    assert_eq!(d["name"], "cli.test", "{d}");
    assert_eq!(d["description"], "made by the cli", "{d}");
    let table = w.cli(&["namespace", "list"]).expect_ok().stdout();
    assert!(table.contains("cli.test") && table.contains("default"), "table output: {table}");

    // service
    w.cli(&[
        "service", "create", "api", "--namespace", "cli.test", "--protocol", "http", "--alias", "api.cli:8080",
        "--alias", "api:9000", "--request-timeout", "7", "--idle-timeout", "60", "--connect-timeout-ms", "250",
    ])
    .expect_ok();
    w.cli(&["service", "create", "db", "--namespace", "cli.test", "--protocol", "tcp"]).expect_ok();
    let bad = w.cli(&["service", "create", "x", "--namespace", "cli.test", "--protocol", "htp"]);
    assert_ne!(bad.code, Some(0), "protocol htp must be rejected: {}", bad.both());
    let taken = w.cli(&["service", "create", "y", "--namespace", "cli.test", "--alias", "api.cli:8080"]);
    assert_eq!(taken.code, Some(1), "alias already taken: {}", taken.both());
    assert!(taken.stderr().contains("api.cli"), "message names the alias: {}", taken.stderr());

    let svcs = as_list(&w.cli(&["service", "list", "--namespace", "cli.test", "-o", "json"]).expect_ok().json());
    assert_eq!(svcs.len(), 2, "{svcs:?}");
    assert_eq!(find(&svcs, "name", "api").unwrap()["protocol"], "http");
    assert_eq!(find(&svcs, "name", "db").unwrap()["protocol"], "tcp");
    let api = w.cli(&["service", "describe", "api", "--namespace", "cli.test", "-o", "json"]).expect_ok().json();
    assert_eq!(api["name"], "api", "{api}");
    assert_eq!(api["namespace"], "cli.test", "{api}");
    let aliases: BTreeSet<(String, u64)> = api["aliases"]
        .as_array()
        .unwrap_or_else(|| panic!("describe lacks aliases: {api}"))
        .iter()
        .map(|a| (a["dns_name"].as_str().unwrap().to_string(), a["port"].as_u64().unwrap()))
        .collect();
    assert_eq!(aliases, [("api".to_string(), 9000), ("api.cli".to_string(), 8080)].into_iter().collect());
    assert_eq!(api["timeouts"]["request_s"], 7, "{api}");
    assert_eq!(api["timeouts"]["idle_s"], 60, "{api}");
    assert_eq!(api["timeouts"]["connect_ms"], 250, "{api}");
    let table = w.cli(&["service", "list", "--namespace", "cli.test"]).expect_ok().stdout();
    assert!(table.contains("api") && table.contains("db"), "{table}");

    // endpoint
    w.cli(&[
        "endpoint", "create", "api-1", "--service", "api", "--namespace", "cli.test", "--address", &addr, "--zone",
        "z1", "--attr", "version=v1", "--attr", "stage=prod",
    ])
    .expect_ok();
    w.cli(&["endpoint", "create", "api-2", "--service", "api", "--namespace", "cli.test", "--address", &addr])
        .expect_ok();
    let bad = w.cli(&["endpoint", "create", "api-3", "--service", "api", "--namespace", "cli.test", "--address", "nowhere"]);
    assert!(bad.code.is_some_and(|c| c != 0), "bad address must be rejected: {}", bad.both());
    assert!(bad.stderr().contains("address"), "error names the address: {}", bad.stderr());
    let eps = as_list(
        &w.cli(&["endpoint", "list", "--namespace", "cli.test", "--service", "api", "-o", "json"]).expect_ok().json(),
    );
    assert_eq!(eps.len(), 2, "{eps:?}");
    let e = w
        .cli(&["endpoint", "describe", "api-1", "--service", "api", "--namespace", "cli.test", "-o", "json"])
        .expect_ok()
        .json();
    assert_eq!(e["id"], "api-1", "{e}");
    assert_eq!(e["address"], addr.as_str(), "{e}");
    assert_eq!(e["zone"], "z1", "{e}");
    assert_eq!(e["attributes"], json!({"version": "v1", "stage": "prod"}), "{e}");
    let table = w.cli(&["endpoint", "list", "--namespace", "cli.test"]).expect_ok().stdout();
    assert!(table.contains("api-1") && table.contains("api-2"), "{table}");

    // the routes reflect it
    let routes = as_list(&w.cli(&["routes", "-o", "json"]).expect_ok().json());
    let r = routes.iter().find(|r| r["dns_name"] == "api.cli").unwrap_or_else(|| panic!("{routes:?}"));
    assert_eq!(r["endpoints"], 2, "{r}");
    assert_eq!(r["port"], 8080);

    // CLI and API agree
    let via_api = as_list(&w.get_json("/v1/endpoints?namespace=cli.test&service=api"));
    assert_eq!(via_api.len(), 2);

    // delete
    w.cli(&["endpoint", "delete", "api-2", "--service", "api", "--namespace", "cli.test"]).expect_ok();
    let again = w.cli(&["endpoint", "describe", "api-2", "--service", "api", "--namespace", "cli.test"]);
    assert_eq!(again.code, Some(1), "describe of a deleted endpoint: {}", again.both());
    let nope = w.cli(&["service", "describe", "nope", "--namespace", "cli.test"]);
    assert_eq!(nope.code, Some(1), "{}", nope.both());
    assert!(nope.stderr().contains("nope"), "error names the missing service: {}", nope.stderr());
    w.cli(&["endpoint", "delete", "api-1", "--service", "api", "--namespace", "cli.test"]).expect_ok();
    w.cli(&["service", "delete", "api", "--namespace", "cli.test"]).expect_ok();
    w.cli(&["service", "delete", "db", "--namespace", "cli.test"]).expect_ok();
    let svcs = as_list(&w.cli(&["service", "list", "--namespace", "cli.test", "-o", "json"]).expect_ok().json());
    assert!(svcs.is_empty(), "{svcs:?}");
    let gone = || w.routes().iter().all(|r| r["namespace"] != "cli.test");
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), gone), "{:?}", w.routes());
    w.cli(&["namespace", "delete", "cli.test"]).expect_ok();
    let list = as_list(&w.cli(&["namespace", "list", "-o", "json"]).expect_ok().json());
    assert!(find(&list, "name", "cli.test").is_none(), "{list:?}");
    let gone = w.cli(&["namespace", "describe", "cli.test"]);
    assert_eq!(gone.code, Some(1), "{}", gone.both());

    // WEFT_ADMIN env and -c both find the daemon
    let mut c = std::process::Command::new(WEFT);
    c.args(["namespace", "list", "-o", "json"]).env("WEFT_ADMIN", &w.admin);
    let out = run_cmd(&mut c, None, std::time::Duration::from_secs(20));
    out.expect_ok();
    assert!(find(&as_list(&out.json()), "name", "default").is_some());
    let out = w.cli_c(&["namespace", "list", "-o", "json"]);
    out.expect_ok();
    // no daemon: exit 1 with a message
    let mut c = std::process::Command::new(WEFT);
    c.args(["--admin", &format!("127.0.0.1:{}", free_port()), "namespace", "list"]).env_remove("WEFT_ADMIN");
    let out = run_cmd(&mut c, None, std::time::Duration::from_secs(20));
    assert_eq!(out.code, Some(1), "unreachable admin API: {}", out.both());
    assert!(!out.stderr().trim().is_empty());
}

#[test]
fn discover_follows_cloud_map_semantics() {
    let w = Weft::start(WeftOpts::new(81));
    let live = format!("127.0.0.1:{}", live_port());
    let dead = format!("127.0.0.1:{}", free_port()); // nothing listens here
    w.cli(&["service", "create", "disc", "--check-interval-ms", "100"]).expect_ok();
    // declared health agrees with what the active TCP health check finds (the check decides)
    for (id, attrs, addr, health) in [
        ("e1", ["version=v1", "stage=prod"], &live, "HEALTHY"),
        ("e2", ["version=v2", "stage=prod"], &live, "HEALTHY"),
        ("e3", ["version=v1", "stage=canary"], &dead, "UNHEALTHY"),
    ] {
        w.cli(&[
            "endpoint", "create", id, "--service", "disc", "--address", addr, "--zone", "z1", "--attr", attrs[0],
            "--attr", attrs[1], "--health", health,
        ])
        .expect_ok();
    }
    let disc = |args: &[&str]| -> Value {
        let mut a = vec!["discover", "disc"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        w.cli(&a).expect_ok().json()
    };
    // New endpoints start UNKNOWN; one passed check admits e1 and e2, two failed ones mark e3.
    wait_for("health checks to settle", Duration::from_secs(10), || {
        (ids(&disc(&["--health", "HEALTHY"])) == set(&["e1", "e2"]) && ids(&disc(&["--health", "UNHEALTHY"])) == set(&["e3"])).then_some(())
    });

    let all = disc(&["--health", "ALL"]);
    assert_eq!(ids(&all), set(&["e1", "e2", "e3"]), "{all}");
    for i in all["instances"].as_array().unwrap() {
        for k in ["id", "namespace", "service", "address", "zone", "attributes", "health"] {
            assert!(i.get(k).is_some(), "instance lacks `{k}`: {i}");
        }
        assert_eq!(i["namespace"], "default");
        assert_eq!(i["service"], "disc");
    }
    assert!(all["instances_revision"].is_u64(), "instances_revision must be a number: {all}");

    assert_eq!(ids(&disc(&["--health", "HEALTHY"])), set(&["e1", "e2"]));
    assert_eq!(ids(&disc(&["--health", "UNHEALTHY"])), set(&["e3"]));
    // query parameters: exact match, AND-ed
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "version=v1"])), set(&["e1", "e3"]));
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "version=v1", "--query", "stage=prod"])), set(&["e1"]));
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "version=v"])), set(&[]), "no prefix matching");
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "version=v9"])), set(&[]), "no match -> empty");
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "nokey=v1"])), set(&[]));
    // optional parameters: applied only if some instance matches them
    assert_eq!(ids(&disc(&["--health", "ALL", "--query", "stage=prod", "--optional", "version=v2"])), set(&["e2"]));
    assert_eq!(
        ids(&disc(&["--health", "ALL", "--query", "stage=prod", "--optional", "version=v9"])),
        set(&["e1", "e2"]),
        "optional parameters that match nothing are ignored"
    );
    assert_eq!(
        ids(&disc(&["--health", "ALL", "--optional", "version=v1", "--optional", "stage=canary"])),
        set(&["e3"]),
        "optional parameters are AND-ed"
    );
    assert_eq!(
        ids(&disc(&["--health", "ALL", "--query", "stage=prod", "--optional", "stage=canary"])),
        set(&["e1", "e2"]),
        "optional applies after query filtering (no instance matches both)"
    );
    // HEALTHY_OR_ELSE_ALL
    assert_eq!(ids(&disc(&["--health", "HEALTHY_OR_ELSE_ALL"])), set(&["e1", "e2"]));
    assert_eq!(ids(&disc(&["--health", "HEALTHY_OR_ELSE_ALL", "--query", "version=v1"])), set(&["e1"]));
    assert_eq!(
        ids(&disc(&["--health", "HEALTHY_OR_ELSE_ALL", "--query", "stage=canary"])),
        set(&["e3"]),
        "no healthy instance matches -> all matching instances"
    );
    assert_eq!(ids(&disc(&["--health", "HEALTHY", "--query", "stage=canary"])), set(&[]));
    // max results
    let one = disc(&["--health", "ALL", "--max", "1"]);
    assert_eq!(one["instances"].as_array().unwrap().len(), 1, "{one}");
    let two = disc(&["--health", "ALL", "--max", "2"]);
    assert_eq!(two["instances"].as_array().unwrap().len(), 2, "{two}");
    // randomized order
    let orders: BTreeSet<Vec<String>> = (0..30)
        .map(|_| {
            let v = w.post_ok("/v1/discover", &json!({"namespace": "default", "service": "disc", "health_status": "ALL"}));
            v["instances"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
        })
        .collect();
    assert!(orders.len() > 1, "instance order should be randomized, saw only {orders:?}");
    // the API gives the same answer
    let api = w.post_ok(
        "/v1/discover",
        &json!({"namespace": "default", "service": "disc", "query_parameters": {"version": "v1"},
                "optional_parameters": {"stage": "canary"}, "health_status": "ALL"}),
    );
    assert_eq!(ids(&api), set(&["e3"]), "{api}");
    let missing = w.cli(&["discover", "ghost-service"]);
    assert_eq!(missing.code, Some(1), "discover of an unknown service: {}", missing.both());

    // instances_revision: stable without changes, changed by register/deregister, not by health
    let rev = |v: &Value| v["instances_revision"].as_u64().unwrap();
    let r0 = rev(&disc(&["--health", "ALL"]));
    assert_eq!(rev(&disc(&["--health", "ALL"])), r0, "revision must be stable with no changes");
    w.cli(&["endpoint", "create", "e4", "--service", "disc", "--address", &dead, "--attr", "version=v4", "--health", "HEALTHY"])
        .expect_ok();
    let after_reg = disc(&["--health", "ALL"]);
    let r1 = rev(&after_reg);
    assert_ne!(r1, r0, "registering an instance must change instances_revision");
    assert!(ids(&after_reg).contains("e4"));

    // health change: re-register e4 unchanged but UNHEALTHY (Cloud Map RegisterInstance updates in
    // place); e4's address is dead, so an active health check agrees.
    let up = w.cli(&["endpoint", "create", "e4", "--service", "disc", "--address", &dead, "--attr", "version=v4", "--health", "UNHEALTHY"]);
    up.expect_ok();
    let unhealthy = wait_for("e4 reported UNHEALTHY", std::time::Duration::from_secs(15), || {
        let v = disc(&["--health", "UNHEALTHY"]);
        ids(&v).contains("e4").then_some(v)
    });
    assert_eq!(
        rev(&unhealthy),
        r1,
        "a health change must not change instances_revision (Cloud Map: health status updates don't update it)"
    );
    assert!(!ids(&disc(&["--health", "HEALTHY"])).contains("e4"));

    w.cli(&["endpoint", "delete", "e4", "--service", "disc"]).expect_ok();
    let after_dereg = disc(&["--health", "ALL"]);
    assert_ne!(rev(&after_dereg), r1, "deregistering must change instances_revision");
    assert_eq!(ids(&after_dereg), set(&["e1", "e2", "e3"]));
}

#[test]
fn healthy_or_else_all_falls_back_when_nothing_is_healthy() {
    let w = Weft::start(WeftOpts::new(82));
    let dead1 = format!("127.0.0.1:{}", free_port());
    let dead2 = format!("127.0.0.1:{}", free_port());
    w.cli(&["namespace", "create", "sick.test"]).expect_ok();
    // No active check: the registered health is what discovery answers (Cloud Map custom health).
    w.cli(&["service", "create", "sick", "--namespace", "sick.test", "--protocol", "tcp", "--check", "none"]).expect_ok();
    for (id, a) in [("s1", &dead1), ("s2", &dead2)] {
        w.cli(&["endpoint", "create", id, "--service", "sick", "--namespace", "sick.test", "--address", a, "--health", "UNHEALTHY"])
            .expect_ok();
    }
    let d = |h: &str| w.cli(&["discover", "sick", "--namespace", "sick.test", "--health", h, "-o", "json"]).expect_ok().json();
    assert_eq!(ids(&d("HEALTHY")), set(&[]));
    assert_eq!(ids(&d("HEALTHY_OR_ELSE_ALL")), set(&["s1", "s2"]));
    assert_eq!(ids(&d("ALL")), set(&["s1", "s2"]));
    assert_eq!(ids(&d("UNHEALTHY")), set(&["s1", "s2"]));
}

#[test]
fn create_refuses_an_existing_service_and_update_replaces_it() {
    let w = Weft::start(WeftOpts::new(95));
    w.cli(&["service", "create", "web", "--alias", "web.test:8080"]).expect_ok();
    let again = w.cli(&["service", "create", "web", "--alias", "other.test:8080"]);
    assert!(!again.ok() && again.stderr().contains("already exists") && again.stderr().contains("weft service update"), "{}", again.both());
    let first = || w.routes().iter().any(|r| r["dns_name"] == "web.test");
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), first), "a refused create must not touch the service: {:?}", w.routes());
    let upd = w.cli(&["service", "update", "web", "--alias", "other.test:8080"]);
    assert!(upd.ok() && upd.stdout().contains("updated"), "{}", upd.both());
    // The routing table follows the catalog a moment after the write is acknowledged.
    let moved = |routes: &[Value]| routes.iter().any(|r| r["dns_name"] == "other.test") && !routes.iter().any(|r| r["dns_name"] == "web.test");
    assert!(wait_until(Duration::from_secs(5), Duration::from_millis(20), || moved(&w.routes())), "{:?}", w.routes());
    let ns = w.cli(&["namespace", "create", "default"]);
    assert!(!ns.ok() && ns.stderr().contains("already exists"), "{}", ns.both());
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let w = Weft::start(WeftOpts::new(96));
    for _ in 0..5 {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(format!("'{WEFT}' --admin {} status | true", w.admin));
        let out = run_cmd(&mut sh, None, std::time::Duration::from_secs(10));
        assert!(!out.stderr().contains("panicked"), "{}", out.both());
    }
}

/// `weft service update` (and `PATCH /v1/services/NS/NAME`) change only the settings given, and
/// `weft service describe` shows every setting.
#[test]
fn service_update_changes_only_what_it_is_given() {
    let w = Weft::start(WeftOpts::new(84));
    w.cli(&[
        "service", "create", "rpc", "--protocol", "grpc", "--alias", "rpc.upd:50051", "--alias", "rpc-alt.upd:50052", "--check", "grpc",
        "--check-interval-ms", "2000", "--retries", "3", "--lb", "round-robin",
    ])
    .expect_ok();
    let describe = || w.cli(&["service", "describe", "rpc", "-o", "json"]).expect_ok().json();
    let before = describe();

    // CLI: only the connect timeout changes (it used to turn the service into `http` with no
    // aliases and default settings).
    w.cli(&["service", "update", "rpc", "--connect-timeout-ms", "250"]).expect_ok();
    let after = describe();
    assert_eq!((&after["protocol"], &after["aliases"]), (&before["protocol"], &before["aliases"]), "protocol and aliases after an update of the connect timeout");
    let mut expected = before.clone();
    expected["timeouts"]["connect_ms"] = json!(250);
    assert_eq!(after, expected, "after `service update --connect-timeout-ms 250`");

    // Every setting is shown, defaults included; `--set` reaches any of them.
    w.cli(&["service", "update", "rpc", "--set", "outlier.consecutive_failures=7", "--set", "health_check.grpc_service=shop.Rpc"]).expect_ok();
    expected["outlier"]["consecutive_failures"] = json!(7);
    expected["health_check"]["grpc_service"] = json!("shop.Rpc");
    let shown = describe();
    assert_eq!(shown, expected, "after --set");
    let want = [
        ("/protocol", json!("grpc")),
        ("/aliases/0/dns_name", json!("rpc.upd")),
        ("/aliases/1/port", json!(50052)),
        ("/health_check/kind", json!("grpc")),
        ("/health_check/interval_ms", json!(2000)),
        ("/health_check/grpc_service", json!("shop.Rpc")),
        ("/health_check/timeout_ms", json!(1000)),
        ("/lb", json!("round-robin")),
        ("/retry/max_retries", json!(3)),
        ("/retry/budget_percent", json!(20)),
        ("/outlier/consecutive_failures", json!(7)),
        ("/outlier/max_ejected_percent", json!(50)),
        ("/timeouts/connect_ms", json!(250)),
        ("/timeouts/request_s", json!(15)),
        ("/rules", json!([])),
    ];
    for (ptr, v) in &want {
        assert_eq!(shown.pointer(ptr), Some(v), "describe {ptr}: {shown}");
    }
    let table = w.cli(&["service", "describe", "rpc"]).expect_ok().stdout();
    for key in ["protocol", "aliases", "health_check.kind", "lb", "retry.max_retries", "outlier.base_ejection_s", "timeouts.idle_s", "rules"] {
        assert!(table.lines().any(|l| l.starts_with(key)), "describe table lacks {key}:\n{table}");
    }

    // API: a merge patch; again only what it names.
    let r = w.request("PATCH", "/v1/services/default/rpc", Some(&json!({"timeouts": {"request_s": 30}, "retry": {"per_try_timeout_ms": 500}}))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    expected["timeouts"]["request_s"] = json!(30);
    expected["retry"]["per_try_timeout_ms"] = json!(500);
    assert_eq!(describe(), expected, "after PATCH");
    // `null` puts a setting back to its default; a boolean flag can be turned off again.
    w.request("PATCH", "/v1/services/default/rpc", Some(&json!({"lb": null}))).unwrap();
    w.cli(&["service", "update", "rpc", "--retry-non-idempotent"]).expect_ok();
    assert_eq!(describe()["retry"]["non_idempotent"], json!(true));
    w.cli(&["service", "update", "rpc", "--retry-non-idempotent=false"]).expect_ok();
    expected["lb"] = json!("p2c");
    assert_eq!(describe(), expected, "after lb: null and non_idempotent on/off");

    // Bad patches are refused, naming the field, and change nothing.
    for (patch, field) in [
        (json!({"timeouts": {"connect_ms": "soon"}}), "timeouts.connect_ms"),
        (json!({"lb": "fastest"}), "lb"),
        (json!({"retry": {"max_retries": 99}}), "retry.max_retries"),
        (json!({"colour": "blue"}), "colour"),
        (json!({"name": "other"}), "name"),
    ] {
        let r = w.request("PATCH", "/v1/services/default/rpc", Some(&patch)).unwrap();
        assert_eq!(r.status, 400, "PATCH {patch}: {}", r.text());
        assert!(r.text().contains(field), "PATCH {patch}: the error names `{field}`: {}", r.text());
    }
    assert_eq!(describe(), expected, "refused patches changed nothing");
    let none = w.cli(&["service", "update", "rpc"]);
    assert!(!none.ok() && none.stderr().contains("nothing to change"), "{}", none.both());
    let missing = w.cli(&["service", "update", "nope", "--lb", "p2c"]);
    assert!(!missing.ok() && missing.stderr().contains("weft service create"), "{}", missing.both());
}

/// `--admin` and `-o` belong to the client commands: `weft run` refuses them (it used to start and
/// ignore `--admin`), its help does not list them, and client commands take them before or after
/// the command, the last one given winning over WEFT_ADMIN.
#[test]
fn client_flags_are_refused_by_run_and_left_out_of_its_help() {
    let tmp = TempDir::new("run-flags");
    let closed = |_: ()| format!("127.0.0.1:{}", free_port());
    let weft = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(WEFT);
        c.args(args).env_remove("WEFT_ADMIN").env("XDG_STATE_HOME", tmp.join("xdg"));
        if let Some(a) = env {
            c.env("WEFT_ADMIN", a);
        }
        // a `run` that accepted the flag would keep running: the timeout fails the test
        run_cmd(&mut c, None, Duration::from_secs(10))
    };
    let listen = closed(());
    for args in [
        vec!["run", "--no-dns", "--listen-admin", &listen, "--admin", "127.0.0.1:9999"],
        vec!["--admin", "127.0.0.1:9999", "run", "--no-dns", "--listen-admin", &listen],
        vec!["run", "--no-dns", "--listen-admin", &listen, "-o", "json"],
    ] {
        let out = weft(&args, None);
        assert_eq!(out.code, Some(2), "`weft {}` must be refused: {}", args.join(" "), out.both());
        let err = out.stderr();
        assert!(err.contains("client commands") && err.contains("weft run") && err.contains("--listen-admin"), "the refusal says whose flag it is: {err}");
    }
    let out = weft(&["validate", "--admin", "127.0.0.1:9999", "x.toml"], None);
    assert_eq!(out.code, Some(2), "{}", out.both());

    for cmd in [&["run", "--help"][..], &["validate", "--help"], &["ca", "init", "--help"]] {
        let help = weft(cmd, None).expect_ok().stdout();
        assert!(!help.contains("--admin") && !help.contains("--output") && !help.contains("WEFT_ADMIN"), "`weft {}` lists client flags:\n{help}", cmd.join(" "));
    }
    let help = weft(&["run", "--help"], None).stdout();
    assert!(help.contains("--listen-admin"), "{help}");
    let help = weft(&["service", "list", "--help"], None).expect_ok().stdout();
    assert!(help.contains("--admin") && help.contains("--output") && help.contains("WEFT_ADMIN"), "client commands keep them:\n{help}");

    // which address a client command uses: the error names it
    let (a, b, env) = (closed(()), closed(()), closed(()));
    let target = |args: &[&str], env_addr: Option<&str>| {
        let out = weft(args, env_addr);
        assert_eq!(out.code, Some(1), "{}", out.both());
        out.stderr()
    };
    assert!(target(&["status", "--admin", &a], Some(&env)).contains(&a));
    assert!(target(&["--admin", &a, "status"], Some(&env)).contains(&a));
    assert!(target(&["status"], Some(&env)).contains(&env));
    assert!(target(&["service", "--admin", &a, "list"], None).contains(&a));
    assert!(target(&["--admin", &a, "endpoint", "list", "--admin", &b], None).contains(&b));
}

/// `localhost:PORT` is accepted wherever an endpoint address is given — `[[endpoint]] address`,
/// `weft endpoint create --address`, the admin API — resolved by the node when it registers the
/// endpoint, which then gets traffic at the resolved address. A host that does not resolve is
/// refused naming it (`run` exits 78 at the entry; `validate` warns).
#[test]
fn endpoint_addresses_may_be_host_names() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let _b2 = http_backend(None, "by-cli", p2);
    let _b3 = http_backend(None, "by-api", p3);
    let _b1 = http_backend(None, "by-config", p1);
    let toml = one_service_toml("named", "http", "named.test", 8080, &format!("localhost:{p1}")).replace("\"named-1\"", "\"by-config\"");
    let w = Weft::start(WeftOpts::new(83).extra(&toml));
    let out = w.cli(&["endpoint", "create", "by-cli", "--service", "named", "--address", &format!("localhost:{p2}")]);
    out.expect_ok();
    assert!(out.stdout().contains(&format!("127.0.0.1:{p2}")) && out.stdout().contains(&format!("localhost:{p2}")), "{}", out.stdout());
    let v = w.post_ok("/v1/endpoints", &json!({ "namespace": "default", "service": "named", "id": "by-api", "address": format!("localhost:{p3}") }));
    assert!(v.to_string().contains(&format!("127.0.0.1:{p3}")), "the record keeps the resolved address: {v}");

    let list = as_list(&w.cli(&["endpoint", "list", "--service", "named", "-o", "json"]).expect_ok().json());
    let addrs: BTreeSet<String> = list.iter().map(|e| e["address"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(addrs, set(&[&format!("127.0.0.1:{p1}"), &format!("127.0.0.1:{p2}"), &format!("127.0.0.1:{p3}")]), "{list:?}");

    // all three get traffic through the alias
    let vip = w.vip("named.test", 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let mut seen = BTreeSet::new();
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        if let Ok(r) = http(&vip, 8080, "GET", "/x", None)
            && r.status == 200
            && let Some(name) = backend_name(&r.text())
        {
            seen.insert(name);
        }
        seen.len() == 3
    });
    assert!(ok, "endpoints registered by host name must get traffic; answered: {seen:?}");

    // a host that does not resolve: named, and nothing registered
    let out = w.cli(&["endpoint", "create", "ghost", "--service", "named", "--address", "no-such-host.invalid:80"]);
    assert_eq!(out.code, Some(1), "{}", out.both());
    assert!(out.stderr().contains("no-such-host.invalid"), "{}", out.stderr());
    let r = w.post("/v1/endpoints", &json!({ "namespace": "default", "service": "named", "id": "ghost", "address": "no-such-host.invalid:80" }));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no-such-host.invalid") && r.text().contains("address"), "{}", r.text());
    assert_eq!(w.get("/v1/endpoints/default/named/ghost").map(|r| r.status).unwrap_or(0), 404);

    // in a config: validate warns, run refuses at the entry (exit 78)
    let tmp = TempDir::new("ghost-conf");
    let cfg = tmp.join("ghost.toml");
    let data = tmp.join("data");
    std::fs::write(
        &cfg,
        format!(
            "[node]\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[dns]\nenabled = false\nvip_cidr = \"{}\"\n{}",
            data.display(),
            free_port(),
            vip_cidr(84),
            one_service_toml("ghost", "http", "ghost.test", 8080, "no-such-host.invalid:80")
        ),
    )
    .unwrap();
    let out = weft_cmd(&["validate", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stderr().contains("warning") && out.stderr().contains("no-such-host.invalid"), "{}", out.both());
    let mut c = std::process::Command::new(WEFT);
    c.args(["run", "-c", cfg.to_str().unwrap()]).env_remove("WEFT_ADMIN");
    let out = run_cmd(&mut c, None, Duration::from_secs(30));
    assert_eq!(out.code, Some(EX_CONFIG), "{}", out.both());
    assert!(out.stderr().contains("no-such-host.invalid") && out.stderr().contains(&format!("{}:", cfg.display())), "{}", out.stderr());
}
