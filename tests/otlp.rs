//! Issue 14: weft observed through OTLP and Prometheus, checked by receivers weft did not write.
//! - A two-host mesh (a: combined, b: proxy that owns the endpoints) exports over gRPC to
//!   tests/support/otlp_receiver.py (PyPI opentelemetry-proto + grpcio). After exactly N GETs to
//!   `web` (200) and K to `bad` (503 from both endpoints, retried), a's data shows requests N and
//!   K, 5xx K, the retries weft counted, histogram counts N and K with the status class; b's
//!   shows the streams it relayed to its endpoints, their bytes, and its endpoints' answers by
//!   status class with their response time (target side).
//! - A single node configured only by `OTEL_*` variables exports HTTP/protobuf (header and
//!   resource checked); the collector stopped for 30 s and restarted: no request fails, RSS stays
//!   bounded, export resumes and the cumulative counter is continuous.
//! - A collector that accepts and never answers: requests unaffected, failed exports counted in
//!   weft's own metrics, and SIGTERM still stops weft promptly (shutdown flush has a deadline).
//! - `GET /metrics` (Prometheus text, prometheus-client) carries the same request count, and a
//!   real Prometheus (Debian's) that scrapes it returns that count from its query API.
//!
//! VIP nets 240-245 (gossip on 127.1.N.1).
mod common;
use common::*;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn require_receiver(test: &str) -> bool {
    let ok = Command::new("python3").args(["-c", "import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc"]).status().is_ok_and(|s| s.success());
    if !ok {
        if ci() {
            panic!("{test}: python3 with grpcio and opentelemetry-proto is required under CI (tests/requirements.txt)");
        }
        loud(&format!("{test}: SKIPPED: python3 lacks grpcio / opentelemetry-proto (pip install -r tests/requirements.txt)"));
    }
    ok
}

struct Receiver {
    _bg: Bg,
    out: std::path::PathBuf,
    port: u16,
}

fn receiver(mode: &str, port: u16, dir: &TempDir, tag: &str) -> Receiver {
    let out = dir.join(&format!("{tag}.jsonl"));
    let mut c = Command::new("python3");
    c.arg(support_path("support/otlp_receiver.py")).arg(mode).arg(port.to_string()).arg(&out);
    let log = dir.join(&format!("{tag}.log"));
    let bg = Bg::spawn(&format!("otlp receiver {mode}"), &mut c, Some(log.clone()));
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening")));
    assert!(ok, "receiver did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    Receiver { _bg: bg, out, port }
}

type Line = serde_json::Value;

impl Receiver {
    fn lines(&self) -> Vec<Line> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The latest data point of `name` from `node` whose attributes include `attrs`.
    fn latest(&self, node: &str, name: &str, attrs: &[(&str, &str)]) -> Option<Line> {
        self.lines().into_iter().rev().find(|l| {
            l["node"] == node && l["name"] == name && attrs.iter().all(|(k, v)| l["attrs"][*k].as_str() == Some(*v))
        })
    }

    fn value(&self, node: &str, name: &str, attrs: &[(&str, &str)]) -> Option<u64> {
        self.latest(node, name, attrs).and_then(|l| l["value"].as_u64().or_else(|| l["count"].as_u64()))
    }

    fn wait_value(&self, node: &str, name: &str, attrs: &[(&str, &str)], want: u64) -> Line {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || self.value(node, name, attrs) == Some(want));
        assert!(ok, "{node}: {name} {attrs:?} never reached {want}: latest {:?}", self.latest(node, name, attrs));
        self.latest(node, name, attrs).unwrap()
    }
}

fn telemetry_toml(endpoint: &str, protocol: &str) -> String {
    format!("\n[telemetry]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\ninterval_ms = 300\nheaders = {{ \"x-api-key\" = \"k1\" }}\n")
}

fn service(name: &str) -> String {
    format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{name}.otlp\", port = 8080 }}]\n[service.outlier]\nconsecutive_failures = 0\n[service.retry]\nbudget_min_per_s = 100\n")
}

fn wait_alias(w: &Weft, dns: &str, healthy: u64) -> String {
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || w.route_now(dns, 8080).is_some_and(|r| r["healthy_endpoints"].as_u64() == Some(healthy)));
    assert!(ok, "alias {dns} never had {healthy} healthy endpoints: {:?}", w.route_now(dns, 8080));
    let vip = w.vip(dns, 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    vip
}

#[test]
fn two_hosts_export_over_grpc_what_was_sent() {
    if !require_receiver("two_hosts_export_over_grpc_what_was_sent") {
        return;
    }
    let tmp = TempDir::new("otlp-grpc");
    let rx = receiver("grpc", free_port(), &tmp, "grpc");
    let collector = format!("http://127.0.0.1:{}", rx.port);
    let ca = MeshCa::new("otlp");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _backends = [
        counter_backend("w1", ports[0], &[], None),
        counter_backend("b1", ports[1], &["--mode", "status-503"], None),
        counter_backend("b2", ports[2], &["--mode", "status-503"], None),
    ];
    let tel = telemetry_toml(&collector, "grpc");
    let a = Weft::start_mesh(&MeshNode::new("a", "combined", 240, &ip(240), ca.issue("a")).extra(&format!("{tel}\n{}\n{}", service("web"), service("bad"))));
    let b = Weft::start_mesh(&MeshNode::new("b", "proxy", 241, &ip(241), ca.issue("b")).join(&a.gossip_addr()).extra(&tel));
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        a.sees_all_alive(&["a", "b"]) && b.sees_all_alive(&["a", "b"]) && ["default/web", "default/bad"].iter().all(|n| b.service_names().contains(&n.to_string()))
    });
    assert!(ok, "no mesh: {:?} {:?}", a.try_members(), b.try_members());
    for (svc, id, port) in [("web", "w1", ports[0]), ("bad", "b1", ports[1]), ("bad", "b2", ports[2])] {
        b.post_ok("/v1/endpoints", &serde_json::json!({"namespace": "default", "service": svc, "id": id, "address": format!("127.0.0.1:{port}")}));
    }
    let web = wait_alias(&a, "web.otlp", 1);
    let bad = wait_alias(&a, "bad.otlp", 2);
    const N: u64 = 40;
    const K: u64 = 12;
    for i in 0..N {
        let r = http(&web, 8080, "GET", &format!("/w/{i}"), None).expect("GET web");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for i in 0..K {
        let r = http(&bad, 8080, "GET", &format!("/b/{i}"), None).expect("GET bad");
        assert_eq!(r.status, 503, "{}", r.text());
    }
    let stats = a.get_json("/v1/stats");
    let retries = stats["default/bad"]["retries"].as_u64().unwrap();
    assert!(retries >= 1, "the 503s were retried: {stats}");

    let svc = |s: &'static str| [("weft.namespace", "default"), ("weft.service", s)];
    rx.wait_value("a", "weft.requests", &svc("web"), N);
    rx.wait_value("a", "weft.requests", &svc("bad"), K);
    let mut five = svc("bad").to_vec();
    five.push(("http.response.status_class", "5xx"));
    rx.wait_value("a", "weft.responses", &five, K);
    let mut two = svc("web").to_vec();
    two.push(("http.response.status_class", "2xx"));
    rx.wait_value("a", "weft.responses", &two, N);
    let h = rx.wait_value("a", "http.server.request.duration", &two, N);
    assert_eq!(h["kind"], "histogram");
    assert_eq!(h["unit"], "s");
    assert_eq!(h["temporality"], 2, "cumulative by default");
    assert_eq!(h["attrs"]["http.request.method"], "GET", "by method: {h}");
    assert!(h["first_bound"].as_f64().unwrap() <= 0.000_001 + 1e-12, "sub-millisecond bounds: {h}");
    assert!(h["sum"].as_f64().unwrap() > 0.0);
    rx.wait_value("a", "http.server.request.duration", &five, K);
    let reason = rx.latest("a", "weft.retries", &[("weft.service", "bad"), ("weft.retry.reason", "status")]).map(|l| l["value"].as_u64().unwrap());
    assert_eq!(reason, Some(retries), "retries by reason as weft counted them");
    let targets = rx.value("a", "weft.target.requests", &[("weft.service", "bad"), ("weft.endpoint", "b1")]).unwrap_or(0)
        + rx.value("a", "weft.target.requests", &[("weft.service", "bad"), ("weft.endpoint", "b2")]).unwrap_or(0);
    assert_eq!(targets, K + retries, "every try reached an endpoint");
    let ep = rx.latest("a", "weft.target.requests", &[("weft.endpoint", "w1")]).unwrap();
    assert_eq!(ep["attrs"]["weft.endpoint.node"], "b");
    let res = &h["resource"];
    assert_eq!((res["service.name"].as_str(), res["weft.mode"].as_str()), (Some("weft"), Some("combined")), "{res}");
    assert!(res["host.name"].is_string() && res["service.instance.id"].is_string() && res["weft.zone"].is_string(), "{res}");
    assert_eq!(h["headers"]["x-api-key"], "k1");

    // The target node: the streams and bytes it relayed to its endpoints.
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        rx.value("b", "weft.target.relayed_streams", &[("weft.endpoint", "w1")]).is_some_and(|v| v >= 1)
            && rx.value("b", "weft.target.bytes", &[("weft.endpoint", "w1"), ("network.io.direction", "transmit")]).is_some_and(|v| v > 0)
    });
    assert!(ok, "b never exported relayed figures: {:?}", rx.latest("b", "weft.target.relayed_streams", &[]));
    // ... and what its endpoints answered: every request and every try, by status class, with
    // their response time, counted where the endpoints run.
    rx.wait_value("b", "weft.target.served", &[("weft.endpoint", "w1"), ("http.response.status_class", "2xx")], N);
    let bad_5xx = |id: &str| rx.value("b", "weft.target.served", &[("weft.endpoint", id), ("http.response.status_class", "5xx")]).unwrap_or(0);
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || bad_5xx("b1") + bad_5xx("b2") == K + retries);
    assert!(ok, "b counted {} + {} 5xx answers of its endpoints; a sent {K} requests and {retries} retries", bad_5xx("b1"), bad_5xx("b2"));
    let served = rx.wait_value("b", "weft.target.served.duration", &[("weft.endpoint", "w1")], N);
    assert_eq!((served["kind"].as_str(), served["attrs"]["weft.endpoint.node"].as_str()), (Some("histogram"), Some("b")), "{served}");
    let members = rx.latest("b", "weft.gossip.members", &[("weft.member.state", "alive")]).unwrap();
    assert_eq!(members["value"].as_f64(), Some(2.0), "{members}");
    assert!(rx.latest("a", "weft.quic.rtt", &[("weft.peer", "b")]).is_some(), "QUIC RTT per peer");
    wait_until(Duration::from_secs(10), Duration::from_millis(100), || rx.latest("b", "weft.gossip.replication.lag", &[]).is_some());
    let lag = rx.latest("b", "weft.gossip.replication.lag", &[]).unwrap_or_else(|| panic!("b merged a's records: a replication lag; b's /metrics:\n{}", b.get("/metrics").unwrap().text()));
    assert!(lag["value"].as_f64().is_some_and(|v| (0.0..60.0).contains(&v)), "{lag}");

    // Prometheus' text from the same registry.
    let text = a.get("/metrics").unwrap().text();
    assert!(text.contains(&format!("weft_requests_total{{weft_namespace=\"default\",weft_service=\"web\"}} {N}")), "{text}");
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A combined node configured for export only through the environment.
/// `one_cpu` runs it under `taskset -c 0`, where weft picks its current-thread runtime (the one
/// the SDK's blocking shutdown deadlocks on).
fn env_node(tmp: &TempDir, vip_net: u8, backend: u16, env: &[(&str, String)], one_cpu: bool) -> (Bg, String) {
    let admin = free_port();
    let config = tmp.join("weft.toml");
    let toml = format!(
        "[node]\nname = \"solo\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nenabled = false\nvip_cidr = \"{}\"\n{}",
        tmp.join("data").display(),
        vip_cidr(vip_net),
        one_service_toml("web", "http", "web.env", 8080, &format!("127.0.0.1:{backend}"))
    );
    std::fs::write(&config, toml).unwrap();
    let mut c = if one_cpu {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", env!("CARGO_BIN_EXE_weft")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_weft"))
    };
    c.arg("run").arg("-c").arg(&config).env("WEFT_LOG", "info").env("XDG_STATE_HOME", tmp.join("xdg"));
    for (k, v) in env {
        c.env(k, v);
    }
    let bg = Bg::spawn("weft (env)", &mut c, Some(tmp.join("weft.log")));
    let admin = format!("127.0.0.1:{admin}");
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || http("127.0.0.1", admin.split(':').nth(1).unwrap().parse().unwrap(), "GET", "/v1/routes", None).is_ok_and(|r| r.text().contains("web.env")));
    assert!(ok, "weft did not start: {}", bg.log_text());
    (bg, admin)
}

fn route_vip(admin: &str) -> String {
    let port: u16 = admin.split(':').nth(1).unwrap().parse().unwrap();
    let v: serde_json::Value = wait_for("route", Duration::from_secs(10), || {
        let r = http("127.0.0.1", port, "GET", "/v1/routes", None).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        as_list(&v).into_iter().find(|r| r["dns_name"] == "web.env" && r["healthy_endpoints"].as_u64() == Some(1))
    });
    let vip = v["vip"].as_str().unwrap().split(':').next().unwrap().to_string();
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    vip
}

#[test]
fn env_configured_http_export_survives_a_collector_outage() {
    if !require_receiver("env_configured_http_export_survives_a_collector_outage") {
        return;
    }
    let tmp = TempDir::new("otlp-http");
    let port = free_port();
    let rx = receiver("http", port, &tmp, "http1");
    let backend = free_port();
    let _b = counter_backend("e", backend, &[], None);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from%20env".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_string()),
        ("OTEL_SERVICE_NAME", "weft-ci".to_string()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci".to_string()),
    ];
    let (mut weft, admin) = env_node(&tmp, 242, backend, &env, false);
    let vip = route_vip(&admin);
    let get = |i: u64| {
        let r = http(&vip, 8080, "GET", &format!("/x/{i}"), None).expect("GET through weft");
        assert_eq!(r.status, 200, "request {i} failed during the outage test: {}", r.text());
    };
    let mut sent = 0;
    for _ in 0..25 {
        get(sent);
        sent += 1;
    }
    let svc = [("weft.service", "web")];
    let l = rx.wait_value("solo", "weft.requests", &svc, sent);
    assert_eq!(l["service_name"], "weft-ci");
    assert_eq!(l["resource"]["deployment.environment"], "ci");
    assert_eq!(l["headers"]["x-api-key"], "from env");
    assert_eq!(l["headers"]["content-type"], "application/x-protobuf");

    // Collector down for 30 s: requests keep succeeding, memory stays put.
    drop(rx);
    let rss_before = rss_kb(weft.pid());
    let until = Instant::now() + Duration::from_secs(30);
    let mut max_rss = rss_before;
    while Instant::now() < until {
        get(sent);
        sent += 1;
        max_rss = max_rss.max(rss_kb(weft.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(weft.alive(), "weft died: {}", weft.log_text());
    assert!(max_rss < rss_before + 8 * 1024, "RSS grew from {rss_before} kB to {max_rss} kB while the collector was down");
    let rx = receiver("http", port, &tmp, "http2");
    for _ in 0..5 {
        get(sent);
        sent += 1;
    }
    // Cumulative: the first value after the outage already counts everything sent before it.
    rx.wait_value("solo", "weft.requests", &svc, sent);
    let metrics = http("127.0.0.1", admin.split(':').nth(1).unwrap().parse().unwrap(), "GET", "/metrics", None).unwrap().text();
    let failed = metrics.lines().find(|l| l.starts_with("weft_telemetry_exports_total{outcome=\"failed\"}")).and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(failed.is_some_and(|f| f >= 10), "failed exports during 30 s at 300 ms are counted: {failed:?}\n{metrics}");
    weft.kill();
}

#[test]
fn a_stalled_collector_costs_requests_nothing_and_shutdown_keeps_its_deadline() {
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stall.local_addr().unwrap().port();
    // Accept and hold every connection, never answering.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in stall.incoming().flatten() {
            h2.lock().unwrap().push(s);
        }
    });
    let tmp = TempDir::new("otlp-stall");
    let backend = free_port();
    let _b = counter_backend("e", backend, &[], None);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
        ("OTEL_METRIC_EXPORT_TIMEOUT", "500".to_string()),
    ];
    let (mut weft, admin) = env_node(&tmp, 243, backend, &env, true);
    let vip = route_vip(&admin);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let r = http(&vip, 8080, "GET", &format!("/s/{i}"), None).expect("GET");
        assert_eq!(r.status, 200);
        slowest = slowest.max(t.elapsed());
        i += 1;
    }
    assert!(slowest < Duration::from_millis(500), "a request took {slowest:?} with the collector stalled");
    assert!(!held.lock().unwrap().is_empty(), "the exporter connected to the stalled collector");
    let aport: u16 = admin.split(':').nth(1).unwrap().parse().unwrap();
    let metrics = http("127.0.0.1", aport, "GET", "/metrics", None).unwrap().text();
    let failed = metrics.lines().find(|l| l.starts_with("weft_telemetry_exports_total{outcome=\"failed\"}")).and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(failed.is_some_and(|f| f >= 2), "exports that timed out are counted: {failed:?}");
    // SIGTERM: drain plus a flush bounded by its deadline (3 s), not a hang.
    let t = Instant::now();
    let _ = Command::new("kill").arg("-TERM").arg(weft.pid().to_string()).status();
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(50), || !weft.alive());
    assert!(ok, "weft did not stop after SIGTERM with a stalled collector: {}", weft.log_text());
    assert!(t.elapsed() < Duration::from_secs(25), "stop took {:?}", t.elapsed());
    let log = weft.log_text();
    assert!(log.contains("weft stopped") && log.contains("OTLP exporter"), "the exporter's stop is logged and weft finished: {log}");
}

#[test]
fn validate_checks_the_otel_variables_and_the_telemetry_table() {
    let tmp = TempDir::new("otlp-validate");
    let config = tmp.join("weft.toml");
    std::fs::write(&config, "[telemetry]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\n").unwrap();
    let run = |env: &[(&str, &str)], cfg: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
        c.arg("validate").arg(cfg);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let ok = run(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], &config);
    assert!(ok.status.success(), "the file's protocol wins over the variable: {}", String::from_utf8_lossy(&ok.stderr));
    let bad = run(&[("OTEL_METRIC_EXPORT_INTERVAL", "soon")], &config);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("OTEL_METRIC_EXPORT_INTERVAL") && err.contains("weft.toml:1"), "{err}");
    std::fs::write(&config, "[telemetry]\nprotocol = \"carrier-pigeon\"\n").unwrap();
    let bad = run(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], &config);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("carrier-pigeon"), "{err}");
}

/// Debian's Prometheus scrapes weft's `/metrics`; its query API returns the request count sent.
#[test]
fn prometheus_scrapes_the_request_count() {
    if !require_program("prometheus_scrapes_the_request_count", "prometheus") {
        return;
    }
    let tmp = TempDir::new("otlp-prom");
    let backend = free_port();
    let _b = counter_backend("e", backend, &[], None);
    let (mut weft, admin) = env_node(&tmp, 244, backend, &[], false);
    let vip = route_vip(&admin);
    const N: u64 = 17;
    for i in 0..N {
        assert_eq!(http(&vip, 8080, "GET", &format!("/p/{i}"), None).unwrap().status, 200);
    }
    let prom_port = free_port();
    let cfg = tmp.join("prometheus.yml");
    std::fs::write(&cfg, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weft\n    static_configs:\n      - targets: ['{admin}']\n")).unwrap();
    let mut c = Command::new("prometheus");
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tmp.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let _p = Bg::spawn("prometheus", &mut c, Some(tmp.join("prometheus.log")));
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(40), Duration::from_millis(500), || {
        let q = "/api/v1/query?query=weft_requests_total%7Bweft_service%3D%22web%22%7D";
        let Ok(r) = http("127.0.0.1", prom_port, "GET", q, None) else { return false };
        last = r.text();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        v["data"]["result"][0]["value"][1].as_str() == Some(&N.to_string())
    });
    assert!(ok, "Prometheus never returned {N}: {last}");
    weft.kill();
}


/// A CA and a certificate for 127.0.0.1 made with openssl, for a collector that serves TLS.
/// Returns (ca.pem, cert.pem, key.pem).
fn collector_cert(tmp: &TempDir) -> (String, String, String) {
    let d = tmp.path().display().to_string();
    let script = format!(
        "set -e; cd {d}; ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; \
         openssl req -x509 $ec -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=weft-test-collector-ca; \
         openssl req $ec -keyout key.pem -out csr.pem -subj /CN=127.0.0.1; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf"
    );
    run_cmd(Command::new("sh").args(["-c", &script]), None, Duration::from_secs(30)).expect_ok();
    (format!("{d}/ca.pem"), format!("{d}/cert.pem"), format!("{d}/key.pem"))
}

/// The collector serves TLS: weft trusts it through a CA file (`OTEL_EXPORTER_OTLP_CERTIFICATE`
/// for gRPC, `[telemetry] ca_file` for HTTP/protobuf), and with delta temporality the points
/// it sends add up to the requests made. VIP nets 246-247.
#[test]
fn tls_to_the_collector_on_both_transports_with_delta_temporality() {
    if !require_receiver("tls_to_the_collector_on_both_transports_with_delta_temporality") {
        return;
    }
    let tmp = TempDir::new("otlp-tls");
    let (ca, cert, key) = collector_cert(&tmp);
    for (net, proto) in [(246u8, "grpc"), (247, "http/protobuf")] {
        let tag = if proto == "grpc" { "grpc" } else { "http" };
        let port = free_port();
        let out = tmp.join(&format!("{tag}.jsonl"));
        let mut c = Command::new("python3");
        c.arg(support_path("support/otlp_receiver.py")).args([tag, &port.to_string()]).arg(&out).args([&cert, &key]);
        let log = tmp.join(&format!("{tag}.log"));
        let _rx = Bg::spawn(&format!("otlp receiver {tag} (tls)"), &mut c, Some(log.clone()));
        assert!(wait_until(Duration::from_secs(15), Duration::from_millis(50), || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening"))), "receiver: {}", std::fs::read_to_string(&log).unwrap_or_default());
        let rx = Receiver { _bg: _rx, out, port };
        let ca_line = if proto == "grpc" { String::new() } else { format!("ca_file = \"{ca}\"\n") };
        let tel = format!("\n[telemetry]\nendpoint = \"https://127.0.0.1:{port}\"\nprotocol = \"{proto}\"\ninterval_ms = 300\ntemporality = \"delta\"\n{ca_line}");
        let backend = free_port();
        let _b = http_backend(None, "b", backend);
        let mut opts = WeftOpts::new(net).extra(&format!("{tel}\n{}", one_service_toml("web", "http", "web.tls", 8080, &format!("127.0.0.1:{backend}"))));
        if proto == "grpc" {
            opts = opts.env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca);
        }
        let w = Weft::start(opts);
        let vip = w.vip("web.tls", 8080);
        wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
        const N: u64 = 25;
        for i in 0..N {
            assert_eq!(http(&vip, 8080, "GET", &format!("/t/{i}"), None).expect("GET").status, 200);
        }
        // Delta: each export carries what happened since the last one, so the points add up.
        let total = || rx.lines().iter().filter(|l| l["name"] == "weft.requests" && l["attrs"]["weft.service"] == "web").map(|l| l["value"].as_u64().unwrap_or(0)).sum::<u64>();
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || total() == N);
        assert!(ok, "{proto} over TLS: the delta points of weft.requests add up to {} (want {N}); weft log:\n{}", total(), w.log());
        let points: Vec<Line> = rx.lines().into_iter().filter(|l| l["name"] == "weft.requests").collect();
        assert!(points.iter().all(|l| l["temporality"] == 1), "delta temporality (1): {points:?}");
        assert!(points.len() >= 2, "several exports: {points:?}");
    }
}
