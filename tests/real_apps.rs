//! Issue 12: weft's promises on applications shaped like the ones users run, not fast toys — a
//! slow app server with a worker pool (tests/support/slow_app.py), a GET that counts votes, plain
//! `python3 -m http.server` with its backlog of 5 — each with an endpoint SIGKILLed under load.
//!
//! VIP nets 200-209.
mod common;
use common::load::{Load, Report, Spec};
use common::*;
use std::process::Command;
use std::time::Duration;

/// Starts tests/support/slow_app.py NAME on 127.0.0.1:PORT and waits for its `/_count`.
fn slow_app(name: &str, port: u16, args: &[&str], log: std::path::PathBuf) -> Bg {
    let mut c = Command::new("python3");
    c.arg(support_path("support/slow_app.py")).arg(name).arg(port.to_string()).args(args);
    let mut bg = Bg::spawn(&format!("slow app {name}"), &mut c, Some(log));
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(25), || {
        http("127.0.0.1", port, "GET", "/_count", None).map(|r| r.status == 200).unwrap_or(false)
    });
    assert!(ok && bg.alive(), "slow app {name} on port {port} did not come up: {}", bg.log_text());
    bg
}

fn counts(port: u16) -> Value {
    http("127.0.0.1", port, "GET", "/_count", None).map(|r| r.json()).unwrap_or(Value::Null)
}

fn service_toml(name: &str, dns: &str, port: u16, body: &str, endpoints: &[(&str, u16)]) -> String {
    let mut t = format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{dns}\", port = {port} }}]\n{body}\n");
    for (id, p) in endpoints {
        t.push_str(&format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{name}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{p}\"\n"));
    }
    t
}

fn ready(w: &Weft, dns: &str, port: u16, n: u64) -> String {
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(50), || w.healthy_endpoints(dns, port) == Some(n));
    assert!(ok, "alias {dns}:{port} never had {n} healthy endpoints: {:?}\n{}", w.route_now(dns, port), w.log());
    let vip = w.vip(dns, port);
    wait_tcp(&format!("{vip}:{port}"), Duration::from_secs(5));
    vip
}

fn stats_of(w: &Weft, svc: &str) -> Value {
    w.get_json("/v1/stats")[format!("default/{svc}")].clone()
}

fn show(label: &str, r: &Report, w: &Weft, svc: &str) {
    r.print(label);
    eprintln!("{label}: weft figures {}", stats_of(w, svc));
}

/// Three endpoints answering in 1–2.5 s with 8 workers each, 50 clients (so each app queues
/// requests, health checks included), health checks `kind = "http"` with weft's default timing
/// (every 5 s, 1 s timeout). One endpoint is SIGKILLed mid-run. Before the fix the checks of the
/// live endpoints timed out under load, all three went UNHEALTHY, and the dead one — failing
/// fastest, so cheapest by latency × in-flight — drew most of the picks: 175 of 924 requests
/// failed. Now: none.
#[test]
fn slow_endpoints_one_killed_under_50_clients_lose_nothing() {
    let tmp = TempDir::new("slow-kill");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut apps: Vec<Bg> = ports.iter().enumerate().map(|(i, p)| slow_app(&format!("app{i}"), *p, &["--workers", "8"], tmp.join(&format!("app{i}.log")))).collect();
    let eps: Vec<(String, u16)> = ports.iter().enumerate().map(|(i, p)| (format!("app{i}"), *p)).collect();
    let eps: Vec<(&str, u16)> = eps.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let toml = service_toml("slow", "slow.real", 4567, "[service.health_check]\nkind = \"http\"\npath = \"/health\"\n", &eps);
    let w = Weft::start(WeftOpts::new(200).extra(&toml));
    let vip = ready(&w, "slow.real", 4567, 3);

    let spec = Spec::new(&[&format!("{vip}:4567")]).workers(50).duration(Duration::from_secs(45)).path("/api/list").timeout(Duration::from_secs(30));
    let load = Load::start(spec);
    // Long enough under load for two health-check rounds to have timed out on a queueing app.
    load.sleep_until(Duration::from_secs(15));
    let health_before: Vec<String> = ["app0", "app1", "app2"].iter().map(|id| health(&w, "slow", id)).collect();
    apps[2].kill();
    eprintln!("killed app2 at {:?}; health before: {health_before:?}", load.elapsed());
    let r = load.join();
    show("slow endpoints, one killed", &r, &w, "slow");
    let after: Vec<String> = ["app0", "app1", "app2"].iter().map(|id| health(&w, "slow", id)).collect();
    eprintln!("health after: {after:?}; requests seen by the live apps: {} {}", counts(ports[0])["requests"], counts(ports[1])["requests"]);
    assert!(r.total > 200, "too little traffic to prove anything: {}", r.total);
    assert_eq!(r.failed, 0, "requests failed: {:?} first: {:?}\n{}", r.errors, r.first_failures, w.log());
    assert_eq!(&after[..2], &["HEALTHY", "HEALTHY"], "live endpoints answering real traffic were taken out by checks that timed out");
    // The dead endpoint refuses: at most one probe per 2 s hold and the requests in flight at
    // the kill should have gone its way, not hundreds.
    let dead = stats_of(&w, "slow")["endpoints"].as_array().unwrap().iter().find(|e| e["id"] == "app2").cloned().unwrap_or(Value::Null);
    eprintln!("dead endpoint's figures: {dead}");
    assert!(dead["failures"].as_u64().unwrap_or(0) < 60, "the dead endpoint kept drawing tries: {dead}");
}

fn health(w: &Weft, svc: &str, id: &str) -> String {
    w.endpoints_of("default", svc)
        .into_iter()
        .find(|e| e["id"] == id)
        .and_then(|e| e["health"].as_str().map(|s| s.to_string()))
        .unwrap_or_else(|| "ABSENT".into())
}

/// Three plain `python3 -m http.server` backends (HTTP/1.0: a new connection per request, and a
/// listen backlog of 5), 20 clients, one SIGKILLed. A full backlog drops SYNs; with a 1 s connect
/// timeout (Linux resends a SYN after 1 s) each became a failed connect, tries never went back to
/// a live endpoint, and the third try of a request went to the dead one: 1–4 failures per
/// 10–20k requests. Now: none.
#[test]
fn plain_http_servers_one_killed_under_20_clients_lose_nothing() {
    let tmp = TempDir::new("httpserver-kill");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut servers: Vec<Bg> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dir = tmp.join(&format!("b{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.html"), format!("hello from b{i}\n")).unwrap();
            let mut c = Command::new("python3");
            c.args(["-m", "http.server", &p.to_string(), "--bind", "127.0.0.1", "--directory"]).arg(&dir);
            Bg::spawn(&format!("http.server b{i}"), &mut c, Some(tmp.join(&format!("b{i}.log"))))
        })
        .collect();
    for p in &ports {
        wait_tcp(&format!("127.0.0.1:{p}"), Duration::from_secs(10));
    }
    let eps: Vec<(String, u16)> = ports.iter().enumerate().map(|(i, p)| (format!("b{i}"), *p)).collect();
    let eps: Vec<(&str, u16)> = eps.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let w = Weft::start(WeftOpts::new(201).extra(&service_toml("files", "files.real", 8080, "", &eps)));
    let vip = ready(&w, "files.real", 8080, 3);
    let spec = Spec::new(&[&format!("{vip}:8080")]).workers(20).duration(Duration::from_secs(20)).path("/index.html").timeout(Duration::from_secs(20));
    let load = Load::start(spec);
    load.sleep_until(Duration::from_secs(6));
    servers[2].kill();
    let r = load.join();
    show("http.server, one killed", &r, &w, "files");
    assert!(r.total > 3_000, "too little traffic to prove anything: {}", r.total);
    // weft's own give-ups (a status with x-weft-error) must not happen. A response the dying
    // server had begun (http.server writes its head and its body separately) can only be cut:
    // the client has its head, and no proxy that streams can take it back. At most the one or two
    // responses in flight at the kill.
    let gave_up: u64 = r.errors.iter().filter(|(e, _)| e.starts_with("status")).map(|(_, n)| n).sum();
    let cut: u64 = r.errors.iter().filter(|(e, _)| e.starts_with("read")).map(|(_, n)| n).sum();
    assert_eq!(gave_up, 0, "weft gave up on requests: {:?} first: {:?}\n{}", r.errors, r.first_failures, w.log());
    assert!(cut <= 2 && r.failed == gave_up + cut, "failures other than responses cut by the kill: {:?} first: {:?}", r.errors, r.first_failures);
}

/// The lines of the shared "seen" log that start with `prefix`, counted.
fn seen(path: &std::path::Path, prefix: &str) -> std::collections::BTreeMap<String, u32> {
    let mut m = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| l.starts_with(prefix)) {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

/// A voting app counts a vote on `GET /api/vote/{name}` (as Yelb does), then renders for a while.
/// An endpoint is SIGKILLed with requests in flight: each had counted its vote without answering.
/// HTTP lets a proxy resend a GET, so without a rule weft does, and votes count twice (601 for 600
/// successes in the report); with `GET /api/vote/* idempotent = false` the app sees each request
/// at most once, and the client gets a 502 for each vote the kill interrupted — successes plus
/// failures account for every request. Both services run at once on the same two apps, so the
/// control proves the kill really interrupted counted votes.
#[test]
fn a_side_effecting_get_marked_not_idempotent_runs_at_most_once() {
    let tmp = TempDir::new("votes");
    let seen_log = tmp.join("seen.log");
    let seen_arg = seen_log.display().to_string();
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let mut apps: Vec<Bg> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| slow_app(&format!("vote{i}"), *p, &["--workers", "32", "--min-ms", "300", "--max-ms", "800", "--seen", &seen_arg], tmp.join(&format!("vote{i}.log"))))
        .collect();
    let eps = [("vote0", ports[0]), ("vote1", ports[1])];
    // Health checks off and ejection out of reach: only the replay rule decides what happens to
    // the requests the kill interrupts.
    let common = "lb = \"round-robin\"\n[service.health_check]\nkind = \"none\"\n[service.outlier]\nconsecutive_failures = 1000\n[service.retry]\nbudget_min_per_s = 1000\n";
    let ruled = format!("{common}[[service.rules]]\nmethods = [\"GET\"]\npath = \"/api/vote/*\"\nidempotent = false\n");
    let toml = [service_toml("votes", "votes.real", 4567, &ruled, &eps), service_toml("votes-plain", "plain.real", 4567, common, &eps)].concat();
    let w = Weft::start(WeftOpts { log_filter: Some("info,weft::proxy=debug".into()), ..WeftOpts::new(202).extra(&toml) });
    let (vip, vip_plain) = (ready(&w, "votes.real", 4567, 2), ready(&w, "plain.real", 4567, 2));
    let spec = |vip: &str, prefix: &str| {
        Spec::new(&[&format!("{vip}:4567")]).workers(20).duration(Duration::from_secs(8)).path("/api/vote/ihop").request_ids("x-req-id", prefix).timeout(Duration::from_secs(20))
    };
    let (load, plain) = (Load::start(spec(&vip, "ruled")), Load::start(spec(&vip_plain, "plain")));
    load.sleep_until(Duration::from_secs(3));
    apps[1].kill();
    let (r, rp) = (load.join(), plain.join());
    show("votes, idempotent = false", &r, &w, "votes");
    show("votes, no rule", &rp, &w, "votes-plain");
    let (ids, ids_plain) = (seen(&seen_log, "ruled-"), seen(&seen_log, "plain-"));
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    let twice_plain = ids_plain.values().filter(|n| **n > 1).count();
    eprintln!("ruled: {} requests, {} ok, {} failed, {} distinct ids seen, {} seen twice; plain: {} requests, {} failed, {} seen twice", r.total, r.total - r.failed, r.failed, ids.len(), twice.len(), rp.total, rp.failed, twice_plain);
    assert!(twice.is_empty(), "the app saw requests of a route marked idempotent = false twice: {twice:?}");
    assert!(twice_plain > 0, "no vote of the plain service was interrupted and resent: the kill proved nothing");
    assert_eq!(rp.failed, 0, "without the rule every GET is resent and succeeds: {:?}", rp.errors);
    assert!(r.failed > 0, "the kill interrupted votes of the plain service but none of the ruled one?");
    // Every success was seen by the app; a failure was seen at most once (it may have been counted).
    assert!(ids.len() as u64 >= r.total - r.failed && ids.len() as u64 <= r.total, "{} distinct ids for {} successes of {} requests", ids.len(), r.total - r.failed, r.total);
    assert!(r.errors.keys().all(|e| e.contains("502")), "interrupted votes end as weft's 502: {:?}", r.errors);
    let reasons = &stats_of(&w, "votes")["retry_reasons"];
    assert_eq!(reasons["reset"].as_u64().unwrap_or(0), 0, "a non-idempotent route retried after a reset: {reasons}");
    // The log and the counters name the same cause for each retried try of the plain service.
    let log = w.log();
    let plain_lines = |what: &str| log.lines().filter(|l| l.contains("default/votes-plain") && l.contains(what)).map(str::to_string).collect::<Vec<_>>();
    let (retrying, failed) = (plain_lines("retrying"), plain_lines("try failed"));
    let reasons = &stats_of(&w, "votes-plain")["retry_reasons"];
    for reason in ["reset", "connect-failed"] {
        let logged = retrying.iter().filter(|l| l.contains(&format!("reason=\"{reason}\""))).count() as u64;
        assert_eq!(logged, reasons[reason].as_u64().unwrap_or(0), "retries logged as {reason} against the counter {reasons}:\n{}", retrying.join("\n"));
        let tries = failed.iter().filter(|l| l.contains(&format!("cause=\"{reason}\""))).count() as u64;
        assert!(tries >= logged, "{logged} retries after {reason} but {tries} tries failed with that cause:\n{}", failed.join("\n"));
    }
}

/// Route rules through every way in: TOML (a bad one names file, line and field), the CLI (one
/// line per rule) and the admin API (the service's JSON), and what the API shows back.
#[test]
fn route_rules_through_toml_cli_and_api() {
    let tmp = TempDir::new("rules-in");
    let bad = tmp.join("bad.toml");
    std::fs::write(&bad, "[[service]]\nnamespace = \"default\"\nname = \"votes\"\n\n[[service.rules]]\nmethods = [\"GET\"]\npath = \"api/vote/*\"\nidempotent = false\n").unwrap();
    let out = weft_cmd(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(EX_CONFIG), "{}", out.both());
    assert!(out.both().contains("rules[0].path") && out.both().contains("bad.toml"), "the error names the file and the field: {}", out.both());

    let w = Weft::start(WeftOpts::new(203));
    w.cli(&["service", "create", "votes", "--alias", "votes.rules:4567", "--rule", "GET /api/vote/* idempotent=false", "--rule", "* prefix:/reports/ request_s=60 max_retries=0"]).expect_ok();
    let svc = w.get_json("/v1/services/default/votes");
    let rules = svc["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 2, "{svc}");
    assert_eq!((rules[0]["path"].as_str(), rules[0]["idempotent"].as_bool()), (Some("/api/vote/*"), Some(false)), "{svc}");
    assert_eq!((rules[1]["path_prefix"].as_str(), rules[1]["request_s"].as_u64(), rules[1]["retry"]["max_retries"].as_u64()), (Some("/reports/"), Some(60), Some(0)), "{svc}");
    let out = w.cli(&["service", "create", "other", "--rule", "GET /x retries=2"]);
    assert!(!out.ok() && out.both().contains("not a rule setting"), "{}", out.both());
    let r = w.request("POST", "/v1/services", Some(&json!({"namespace": "default", "name": "bad", "rules": [{"methods": ["get"], "path": "/x"}]}))).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("rules[0].methods"), "{}", r.text());
    let r = w.request("POST", "/v1/services", Some(&json!({"namespace": "default", "name": "tcpsvc", "protocol": "tcp", "rules": [{"path": "/x"}]}))).unwrap();
    assert!(r.status == 400 && r.text().contains("rules"), "{}", r.text());
}

/// A new endpoint that has never passed or failed its checks enough to be judged (UNKNOWN) gets no
/// traffic while a checked one exists — even when the checked one is UNHEALTHY (panic mode). Before,
/// both sat in the same last-resort tier and the new one took about half the requests.
#[test]
fn a_never_checked_endpoint_waits_while_a_checked_one_exists() {
    let (old, new) = (free_port(), free_port());
    // Both fail their checks throughout: `old` is judged UNHEALTHY after two, `new` stays UNKNOWN
    // for a whole interval after its first failure.
    let _o = counter_backend("old", old, &["--healthz-fail-s", "1000"], None);
    let _n = counter_backend("new", new, &["--healthz-fail-s", "1000"], None);
    let check = "[service.health_check]\nkind = \"http\"\npath = \"/healthz\"\ninterval_ms = 4000\n";
    let w = Weft::start(WeftOpts::new(204).extra(&service_toml("fresh", "fresh.real", 8080, check, &[("old", old)])));
    assert!(wait_until(Duration::from_secs(20), Duration::from_millis(100), || health(&w, "fresh", "old") == "UNHEALTHY"), "old never went UNHEALTHY");
    w.post_ok("/v1/endpoints", &json!({"namespace": "default", "service": "fresh", "id": "new", "address": format!("127.0.0.1:{new}")}));
    let vip = w.vip("fresh.real", 8080);
    // Its first check fails at once; it stays UNKNOWN until the second, 4 s later.
    assert!(wait_until(Duration::from_secs(3), Duration::from_millis(20), || backend_counts(new)["healthz"].as_u64().unwrap_or(0) >= 1), "new was never checked");
    let before = (backend_requests(old), backend_requests(new));
    for i in 0..20 {
        let r = http(&vip, 8080, "GET", &format!("/x/{i}"), None).expect("request through weft");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(health(&w, "fresh", "new"), "UNKNOWN", "the test ran too slowly: new was judged meanwhile");
    let after = (backend_requests(old), backend_requests(new));
    assert_eq!((after.0 - before.0, after.1 - before.1), (20, 0), "the never-checked endpoint got traffic while a checked one existed");
}

/// The slow-app case across two hosts: the apps run behind node `b`, every caller is on node `a`,
/// so `b` — which runs the checks — sees the traffic only as relayed bytes. Those count as the
/// endpoint answering: the checks that time out under load do not take the apps out, and one app
/// SIGKILLed loses nothing.
#[test]
fn slow_endpoints_behind_another_host_stay_in_service() {
    let tmp = TempDir::new("slow-mesh");
    let ca = MeshCa::new("slowmesh");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut apps: Vec<Bg> = ports.iter().enumerate().map(|(i, p)| slow_app(&format!("m{i}"), *p, &["--workers", "8"], tmp.join(&format!("m{i}.log")))).collect();
    let svc = "[[service]]\nnamespace = \"default\"\nname = \"slowm\"\nprotocol = \"http\"\naliases = [{ dns_name = \"slowm.real\", port = 4567 }]\n[service.health_check]\nkind = \"http\"\npath = \"/health\"\n";
    let a = Weft::start_mesh(&MeshNode::new("a", "combined", 205, "127.1.205.1", ca.issue("a")).extra(svc));
    let mut eps = String::new();
    for (i, p) in ports.iter().enumerate() {
        eps.push_str(&format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"slowm\"\nid = \"m{i}\"\naddress = \"127.0.0.1:{p}\"\n"));
    }
    let b = Weft::start_mesh(&MeshNode::new("b", "proxy", 206, "127.1.206.1", ca.issue("b")).join(&a.gossip_addr()).extra(&eps));
    let vip = ready(&a, "slowm.real", 4567, 3);
    let spec = Spec::new(&[&format!("{vip}:4567")]).workers(50).duration(Duration::from_secs(35)).path("/api/list").timeout(Duration::from_secs(30));
    let load = Load::start(spec);
    load.sleep_until(Duration::from_secs(13));
    let before: Vec<String> = ["m0", "m1", "m2"].iter().map(|id| health(&a, "slowm", id)).collect();
    apps[2].kill();
    let r = load.join();
    show("slow endpoints behind host b, one killed", &r, &a, "slowm");
    let after: Vec<String> = ["m0", "m1", "m2"].iter().map(|id| health(&a, "slowm", id)).collect();
    eprintln!("health before the kill {before:?}, after {after:?}");
    assert!(r.total > 150, "too little traffic to prove anything: {}", r.total);
    assert_eq!(r.failed, 0, "requests failed: {:?} first: {:?}\n{}\n{}", r.errors, r.first_failures, a.log(), b.log());
    assert_eq!(&before[..], &["HEALTHY", "HEALTHY", "HEALTHY"], "apps answering relayed traffic were taken out by checks that timed out");
    assert_eq!(&after[..2], &["HEALTHY", "HEALTHY"], "apps answering relayed traffic were taken out by checks that timed out");
}
