//! Issue 4 acceptance points for retries, health and outliers, each proven by counts taken at the
//! backends themselves (tests/support/counter_backend.py, tests/grpc/flaky_server.py), on one
//! combined weft node:
//! - a POST that reached the app is not replayed (502 + x-weft-error, one attempt in all) unless
//!   `[service.retry] non_idempotent = true` (200, two attempts); a GET is replayed;
//! - slow start: a new endpoint gets no request before its first passing health check;
//! - the retry budget bounds upstream attempts when every endpoint answers 503, and the 503 is
//!   passed through unchanged;
//! - gRPC on one multiplexed HTTP/2 connection: UNAVAILABLE is retried on the other endpoint and
//!   the failing endpoint is ejected after `consecutive_failures` calls;
//! - weft's own answers: 504 `request-timeout`, 503 `no-healthy-endpoint`;
//! - an HTTP/2 endpoint's GOAWAY loses no request; the HTTP (over h2c) and gRPC health checks;
//!   zone preference with spill-over.
//!
//! VIP nets 146-154.
mod common;
use common::load::{Load, Spec};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn service(name: &str, protocol: &str, dns: &str, port: u16, body: &str) -> String {
    format!(
        "[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"{protocol}\"\naliases = [{{ dns_name = \"{dns}\", port = {port} }}]\n{body}\n"
    )
}

fn endpoint(svc: &str, id: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n")
}

/// One service figure from GET /v1/stats (0 when absent).
fn service_stat(w: &Weft, svc: &str, field: &str) -> u64 {
    w.get_json("/v1/stats")[format!("default/{svc}")][field].as_u64().unwrap_or(0)
}

/// The endpoint entry of GET /v1/stats.
fn endpoint_stats(w: &Weft, svc: &str, id: &str) -> Value {
    let s = w.get_json("/v1/stats");
    s[format!("default/{svc}")]["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

fn health_of(w: &Weft, svc: &str, id: &str) -> String {
    w.endpoints_of("default", svc)
        .into_iter()
        .find(|e| e["id"] == id)
        .and_then(|e| e["health"].as_str().map(|s| s.to_string()))
        .unwrap_or_else(|| "ABSENT".into())
}

/// Waits until the alias has `n` healthy endpoints on `w`, then until it accepts connections;
/// returns its VIP.
fn ready_alias(w: &Weft, dns: &str, port: u16, n: u64) -> String {
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || w.healthy_endpoints(dns, port) == Some(n));
    assert!(ok, "alias {dns}:{port} never had {n} healthy endpoint(s): {:?}", w.route_now(dns, port));
    let vip = w.vip(dns, port);
    wait_tcp(&format!("{vip}:{port}"), Duration::from_secs(5));
    vip
}

/// One request, and which backend(s) counted it: (status, x-weft-error, good delta, dying delta).
fn one_request(vip: &str, port: u16, method: &str, path: &str, good: u16, dying: u16) -> (u16, Option<String>, u64, u64, String) {
    let (g0, d0) = (backend_requests(good), backend_requests(dying));
    let body = if method == "POST" { Some(&b"{\"order\": 1}"[..]) } else { None };
    let r = http(vip, port, method, path, body).unwrap_or_else(|e| panic!("{method} {path} via weft: {e}"));
    // the backends count before they answer (or vanish), so the figures are final here
    let (g1, d1) = (backend_requests(good), backend_requests(dying));
    (r.status, r.header("x-weft-error").map(|s| s.to_string()), g1 - g0, d1 - d0, r.text())
}

/// A POST that reached the app (the endpoint read it whole, then vanished) is not sent again by
/// default; with `non_idempotent = true` it is. A GET is always sent again.
#[test]
fn non_idempotent_requests_are_not_replayed() {
    let tmp = TempDir::new("res-post");
    let (good, dying) = (free_port(), free_port());
    let _g = counter_backend("good", good, &[], Some(tmp.join("good.log")));
    let _d = counter_backend("dying", dying, &["--mode", "die-after-read"], Some(tmp.join("dying.log")));
    // Round robin makes every other request land on `dying`; health checks off (kind none: the
    // endpoints stay HEALTHY), outlier ejection out of reach, and a retry budget that a dozen
    // requests cannot spend (the default reserve of a service a second old is 3 retries), so only
    // the replay rule decides.
    let common = "lb = \"round-robin\"\n[service.health_check]\nkind = \"none\"\n[service.outlier]\nconsecutive_failures = 1000\n";
    let toml = [
        service("ctr", "http", "ctr.res", 8080, &format!("{common}[service.retry]\nbudget_min_per_s = 100\n")),
        endpoint("ctr", "good", good),
        endpoint("ctr", "dying", dying),
        service("ctrni", "http", "ctrni.res", 8080, &format!("{common}[service.retry]\nnon_idempotent = true\nbudget_min_per_s = 100\n")),
        endpoint("ctrni", "good", good),
        endpoint("ctrni", "dying", dying),
    ]
    .concat();
    let w = Weft::start(WeftOpts::new(146).extra(&toml));
    let vip = ready_alias(&w, "ctr.res", 8080, 2);
    let vip_ni = ready_alias(&w, "ctrni.res", 8080, 2);

    // default: POSTs
    let mut landed_on_dying = 0;
    for i in 0..4 {
        let (status, err, dg, dd, text) = one_request(&vip, 8080, "POST", &format!("/order/{i}"), good, dying);
        eprintln!("default POST {i}: status {status} x-weft-error {err:?} attempts: good +{dg}, dying +{dd}");
        if dd > 0 {
            landed_on_dying += 1;
            assert_eq!((status, dg, dd), (502, 0, 1), "a POST that reached `dying` must not be replayed: {status} {err:?} {text}");
            assert!(err.is_some(), "weft's own 502 must carry x-weft-error: {text}");
        } else {
            assert_eq!((status, dg, dd), (200, 1, 0), "a POST on `good` is answered once: {status} {err:?} {text}");
        }
    }
    assert!(landed_on_dying >= 1, "round robin never sent a POST to the dying endpoint: the test proved nothing");

    // default: GETs are replayed on the other endpoint
    let mut retried_gets = 0;
    for i in 0..4 {
        let (status, err, dg, dd, text) = one_request(&vip, 8080, "GET", &format!("/item/{i}"), good, dying);
        eprintln!("default GET {i}: status {status} x-weft-error {err:?} attempts: good +{dg}, dying +{dd}");
        assert_eq!((status, dg), (200, 1), "every GET is answered by `good` (after a replay when it hit `dying`): {status} {err:?} {text}");
        assert!(dd <= 1, "{dd} attempts on dying for one GET");
        retried_gets += dd;
    }
    assert!(retried_gets >= 1, "round robin never sent a GET to the dying endpoint: the test proved nothing");

    // non_idempotent = true: POSTs are replayed too
    let mut replayed = 0;
    for i in 0..4 {
        let (status, err, dg, dd, text) = one_request(&vip_ni, 8080, "POST", &format!("/order/{i}"), good, dying);
        eprintln!("non_idempotent POST {i}: status {status} x-weft-error {err:?} attempts: good +{dg}, dying +{dd}");
        assert_eq!((status, dg), (200, 1), "with non_idempotent = true every POST ends on `good`: {status} {err:?} {text}");
        if dd > 0 {
            assert_eq!(dd, 1, "one attempt on dying, then the replay");
            replayed += 1;
        }
    }
    assert!(replayed >= 1, "round robin never sent a POST to the dying endpoint: the test proved nothing");
    eprintln!(
        "figures: default POSTs on dying {landed_on_dying} (1 attempt each, 502), GETs replayed {retried_gets}, non_idempotent POSTs replayed {replayed} (2 attempts each, 200); retries ctr={} ctrni={}",
        service_stat(&w, "ctr", "retries"),
        service_stat(&w, "ctrni", "retries")
    );
}

/// Slow start: an endpoint registered while its health check fails gets no request until the
/// check passes, while another endpoint carries steady traffic; afterwards it gets its share.
#[test]
fn new_endpoint_gets_no_traffic_before_its_first_passing_check() {
    let tmp = TempDir::new("res-slow");
    let (steady, late) = (free_port(), free_port());
    let _s = counter_backend("steady", steady, &[], Some(tmp.join("steady.log")));
    let hc = "[service.health_check]\nkind = \"http\"\npath = \"/healthz\"\ninterval_ms = 200\n";
    let toml = [service("slow", "http", "slow.res", 8080, hc), endpoint("slow", "steady", steady)].concat();
    let w = Weft::start(WeftOpts::new(147).extra(&toml));
    let vip = ready_alias(&w, "slow.res", 8080, 1);

    let target = format!("{vip}:8080");
    let load = Load::start(Spec::new(&[target.as_str()]).workers(10).rate(300.0).duration(Duration::from_secs(30)).tally("x-backend"));
    assert!(load.wait_total(100, Duration::from_secs(10)), "steady traffic did not start");

    // `late` fails /healthz for its first 5 s (counted from its own start, which is after
    // `started`); it is registered right away
    let started = Instant::now();
    let _l = counter_backend("late", late, &["--healthz-fail-s", "5"], Some(tmp.join("late.log")));
    w.post_ok("/v1/endpoints", &json!({"namespace": "default", "service": "slow", "id": "late", "address": format!("127.0.0.1:{late}")}));
    let mut seen: Vec<(f64, String)> = Vec::new();
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        let h = health_of(&w, "slow", "late");
        if seen.last().map(|(_, s)| s != &h).unwrap_or(true) {
            seen.push((started.elapsed().as_secs_f64(), h));
        }
        backend_requests(late) >= 30
    });
    load.stop();
    let r = load.join();
    let counts = backend_counts(late);
    eprintln!("late's health as weft showed it (seconds after its start): {seen:?}");
    eprintln!("late's own counts: {counts}");
    r.print("slow start: steady traffic while `late` comes up");
    assert!(ok, "late never got 30 requests within 15 s of registering: counts {counts}; health seen {seen:?}");
    assert_eq!(
        counts["requests_while_healthz_failing"], 0,
        "late got requests while its health check was failing: {counts}"
    );
    assert!(counts["healthz"].as_u64().unwrap_or(0) >= 2, "late's /healthz was not polled: {counts}");
    assert!(
        !seen.iter().any(|(t, h)| h == "HEALTHY" && *t < 5.0),
        "weft showed late HEALTHY before its check could pass (5 s): {seen:?}"
    );
    assert_eq!(r.failed, 0, "requests failed while late came up: {}", r.summary("slow start"));
    assert!(r.tally.get("steady").copied().unwrap_or(0) > 0 && r.tally.get("late").copied().unwrap_or(0) > 0, "{:?}", r.tally);
}

/// Every endpoint answers 503: retries are bounded by the budget (20 % of requests + 3/s), not
/// by max_retries (which would be 3 attempts per request), and the client gets the 503 itself.
#[test]
fn retry_budget_bounds_attempts_when_everything_fails() {
    let tmp = TempDir::new("res-budget");
    let (b1, b2) = (free_port(), free_port());
    let _b1 = counter_backend("busy1", b1, &["--mode", "status-503"], Some(tmp.join("b1.log")));
    let _b2 = counter_backend("busy2", b2, &["--mode", "status-503"], Some(tmp.join("b2.log")));
    // no health checks, outlier ejection out of reach: only the budget limits retries
    let body = "[service.health_check]\nkind = \"none\"\n[service.outlier]\nconsecutive_failures = 1000000\n";
    let toml = [service("busy", "http", "busy.res", 8080, body), endpoint("busy", "busy1", b1), endpoint("busy", "busy2", b2)].concat();
    let w = Weft::start(WeftOpts::new(148).extra(&toml));
    let vip = ready_alias(&w, "busy.res", 8080, 2);

    // the 503 reaches the client as the endpoint sent it
    let one = http(&vip, 8080, "GET", "/one", None).expect("GET via weft");
    assert_eq!(one.status, 503, "{}", one.text());
    assert!(one.text().starts_with("backend=busy"), "the endpoint's own 503 body: {:?}", one.text());
    assert_eq!(one.header("x-weft-error"), None, "an upstream 503 is passed through, not replaced by weft's: {:?}", one.headers);

    let (a1, a2) = (backend_requests(b1), backend_requests(b2));
    let (retries0, exhausted0) = (service_stat(&w, "busy", "retries"), service_stat(&w, "busy", "retry_budget_exhausted"));
    let target = format!("{vip}:8080");
    let r = common::load::run(Spec::new(&[target.as_str()]).workers(100).duration(Duration::from_secs(5)).accept(&[503]));
    let attempts = backend_requests(b1) - a1 + backend_requests(b2) - a2;
    let (retries, exhausted) = (service_stat(&w, "busy", "retries") - retries0, service_stat(&w, "busy", "retry_budget_exhausted") - exhausted0);
    r.print("retry budget: all endpoints 503");
    let n = r.total;
    let t = r.elapsed.as_secs_f64();
    // 20 % of the requests (and of the single GET above), plus the reserve of 3 per second of the
    // budget's 10 s window (at most 30), plus 20 for the lock-free counters' lost updates
    let bound = n + (0.2 * (n + 1) as f64).ceil() as u64 + 3 * 10 + 20;
    eprintln!(
        "retry budget: N={n} requests in {t:.1} s, upstream attempts={attempts} (ratio {:.3}), bound {bound}, unbounded would be {}; weft retries={retries} retry_budget_exhausted={exhausted}",
        attempts as f64 / n.max(1) as f64,
        3 * n
    );
    assert_eq!(r.failed, 0, "every answer must be the endpoints' 503: {}", r.summary("budget"));
    assert!(n >= 200, "only {n} requests in 5 s");
    assert!(attempts >= n, "fewer attempts ({attempts}) than requests ({n})?");
    assert!(attempts <= bound, "retry budget not enforced: {attempts} upstream attempts for {n} requests in {t:.1} s (bound {bound})");
    assert!((attempts as f64) < 1.5 * n as f64, "{attempts} attempts for {n} requests is not well below 3N");
    assert!(retries > 0, "no retries at all: the budget's own allowance (3/s) was not used");
    assert!(exhausted > 0, "retry_budget_exhausted stays 0 although retries were refused");
}

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).status().map(|s| s.success()).unwrap_or(false)
}

/// python3 with grpcio, or a loud skip (a failure under CI=true).
fn python_grpc(test: &str) -> bool {
    if !require_program(test, "python3") {
        return false;
    }
    if !python_has("grpc") {
        if ci() {
            panic!("{test} needs python3 with grpcio (pip install -r tests/requirements.txt)");
        }
        loud(&format!("*** SKIP {test}: python3 module grpc missing ***"));
        return false;
    }
    true
}

fn flaky(args: &[&str]) -> CmdOut {
    let mut c = Command::new("python3");
    c.arg(support_path("grpc/flaky_server.py")).args(args);
    c.env_remove("http_proxy").env_remove("https_proxy").env_remove("grpc_proxy");
    let out = run_cmd(&mut c, None, Duration::from_secs(120));
    out.expect_ok();
    out
}

fn grpc_calls(port: u16) -> u64 {
    let out = flaky(&["calls", &format!("127.0.0.1:{port}")]);
    out.stdout().trim().parse().unwrap_or_else(|_| panic!("calls: {}", out.both()))
}

/// tests/grpc/flaky_server.py serving on 127.0.0.1:`port` in `mode` (good | flaky), once it listens.
fn grpc_server(tmp: &TempDir, name: &str, port: u16, mode: &str) -> Bg {
    let mut c = Command::new("python3");
    c.arg(support_path("grpc/flaky_server.py")).args(["serve", &port.to_string(), mode]);
    let mut bg = Bg::spawn(name, &mut c, Some(tmp.join(&format!("{name}.log"))));
    wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
    assert!(bg.alive(), "{name} died: {}", bg.log_text());
    bg
}

/// gRPC: one channel (one HTTP/2 connection to weft) makes 60 unary calls; one endpoint answers
/// every call UNAVAILABLE. Every call succeeds (retried on the good endpoint, per request, on a
/// multiplexed connection), and the flaky endpoint is ejected after consecutive_failures (5).
#[test]
fn grpc_unavailable_is_retried_and_the_endpoint_ejected() {
    if !python_grpc("grpc_unavailable_is_retried_and_the_endpoint_ejected") {
        return;
    }
    let tmp = TempDir::new("res-grpc");
    let (gp, fp) = (free_port(), free_port());
    let _good = grpc_server(&tmp, "grpc-good", gp, "good");
    let _flaky = grpc_server(&tmp, "grpc-flaky", fp, "flaky");
    // Round robin: the flaky endpoint gets every other call until it is ejected. The retry
    // budget gets a reserve the 5 retries fit in: by default a service a second old may retry 3
    // times plus 20 % of its requests, and the 60 calls take well under a second.
    let body = "lb = \"round-robin\"\n[service.health_check]\nkind = \"tcp\"\ninterval_ms = 200\n\
                [service.outlier]\nconsecutive_failures = 5\n[service.retry]\nbudget_min_per_s = 100\n";
    let toml = [service("g", "grpc", "g.res", 50051, body), endpoint("g", "good", gp), endpoint("g", "flaky", fp)].concat();
    let w = Weft::start(WeftOpts::new(149).extra(&toml));
    let vip = ready_alias(&w, "g.res", 50051, 2);

    let out = flaky(&["call", &format!("{vip}:50051"), "60"]).json();
    let (good_calls, flaky_calls) = (grpc_calls(gp), grpc_calls(fp));
    let retries = service_stat(&w, "g", "retries");
    let ejections = service_stat(&w, "g", "ejections");
    let fstats = endpoint_stats(&w, "g", "flaky");
    eprintln!(
        "grpc: client {out}; Echo calls at good={good_calls} flaky={flaky_calls}; weft retries={retries} ejections={ejections}; flaky endpoint stats {fstats}"
    );
    assert_eq!(out["ok"], 60, "every call must succeed through weft: {out}");
    assert!(flaky_calls >= 1, "round robin never sent a call to the flaky endpoint: the test proved nothing");
    assert!(flaky_calls <= 5 + 1, "the flaky endpoint got {flaky_calls} calls: not ejected after consecutive_failures = 5");
    assert_eq!(good_calls, 60, "the good endpoint answers every call once (60), retries included");
    assert!(retries >= flaky_calls, "weft counted {retries} retries for {flaky_calls} UNAVAILABLE answers");
    assert!(ejections >= 1, "no ejection counted");
    assert_eq!(fstats["ejected"], true, "flaky is ejected now: {fstats}");
}

/// weft's own answers: a request the endpoint does not answer within `request_s` gets 504
/// request-timeout; a service without endpoints gets 503 no-healthy-endpoint.
#[test]
fn timeouts_and_empty_services_map_to_statuses() {
    let tmp = TempDir::new("res-timeout");
    let sleepy = free_port();
    let _s = counter_backend("sleepy", sleepy, &["--mode", "sleep", "--sleep-ms", "4000"], Some(tmp.join("sleepy.log")));
    let body = "timeouts = { request_s = 1 }\n[service.health_check]\nkind = \"none\"\n";
    let toml = [
        service("sleepy", "http", "sleepy.res", 8080, body),
        endpoint("sleepy", "sleepy", sleepy),
        service("empty", "http", "empty.res", 8080, ""),
    ]
    .concat();
    let w = Weft::start(WeftOpts::new(150).extra(&toml));
    let vip = ready_alias(&w, "sleepy.res", 8080, 1);

    let t0 = Instant::now();
    let r = http(&vip, 8080, "GET", "/slow", None).expect("GET via weft");
    let took = t0.elapsed();
    eprintln!("sleepy: {} x-weft-error {:?} after {took:?}", r.status, r.header("x-weft-error"));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.header("x-weft-error"), Some("request-timeout"), "{:?}", r.headers);
    assert!(took < Duration::from_millis(3500), "weft answered after {took:?}: the 1 s request timeout did not cut the 4 s endpoint");

    let evip = w.vip("empty.res", 8080);
    wait_tcp(&format!("{evip}:8080"), Duration::from_secs(5));
    let r = http(&evip, 8080, "GET", "/", None).expect("GET via weft");
    eprintln!("empty: {} x-weft-error {:?}", r.status, r.header("x-weft-error"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-weft-error"), Some("no-healthy-endpoint"), "{:?}", r.headers);
}

/// An HTTP/2 endpoint that closes its connection every 50 requests (nginx's
/// `keepalive_requests`, default 1000, sends GOAWAY) loses no request: streams the GOAWAY cut off
/// were not processed, so weft sends them again over a new connection — here to the only
/// endpoint there is.
#[test]
fn http2_goaway_from_the_endpoint_loses_no_request() {
    if !require_program("http2_goaway_from_the_endpoint_loses_no_request", "h2load") {
        return;
    }
    let tmp = TempDir::new("h2-goaway");
    let port = free_port();
    let server = format!("server {{ listen 127.0.0.1:{port} http2; location / {{ return 200 \"ok\\n\"; }} }}");
    let Some(_nginx) = nginx("http2_goaway_from_the_endpoint_loses_no_request", &tmp, "  keepalive_requests 50;\n  http2_max_concurrent_streams 128;", &server, &[port]) else { return };
    // The health check is an HTTP GET over h2c (prior knowledge), as the service speaks.
    let toml = service("h2g", "http2", "h2g.res", 8080, "[service.health_check]\nkind = \"http\"\ninterval_ms = 200\n") + &endpoint("h2g", "n1", port);
    let w = Weft::start(WeftOpts::new(151).extra(&toml));
    let vip = ready_alias(&w, "h2g.res", 8080, 1);
    let out = run_cmd(Command::new("h2load").args(["-n", "3000", "-c", "4", "-m", "10", &format!("http://{vip}:8080/")]), None, Duration::from_secs(60));
    let text = out.stdout();
    eprintln!("{}", text.lines().filter(|l| l.starts_with("requests:") || l.starts_with("status codes:")).collect::<Vec<_>>().join("\n"));
    assert!(
        text.contains("3000 succeeded, 0 failed, 0 errored"),
        "h2load through weft: {text}\nweft's figures: {}\nweft's log:\n{}",
        w.get_json("/v1/stats")["default/h2g"],
        w.log()
    );
    assert!(text.contains("status codes: 3000 2xx"), "every request answered 2xx: {text}");
    assert_eq!(service_stat(&w, "h2g", "upstream_errors"), 0, "no endpoint error counted: {}", w.get_json("/v1/stats"));
}

/// An HTTP/2 client connection that goes quiet is told GOAWAY after the service's idle timeout
/// (1 s here, 300 s by default): the watchdog on that connection is only polled when its timer
/// fires, so this proves it still fires.
#[test]
fn idle_http2_client_gets_goaway() {
    use std::io::{Read, Write};
    let toml = service("h2i", "http2", "h2i.res", 8080, "timeouts = { idle_s = 1 }");
    let w = Weft::start(WeftOpts::new(154).extra(&toml));
    let vip = ready_alias(&w, "h2i.res", 8080, 0);
    let mut s = std::net::TcpStream::connect(format!("{vip}:8080")).unwrap();
    // The client preface and an empty SETTINGS frame, then nothing.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t0 = Instant::now();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let goaway = loop {
        // Frames: 3-byte length, type, flags, 4-byte stream id, payload.
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            frames.push(buf[3]);
            buf.drain(..9 + len);
        }
        if frames.contains(&7) {
            break true;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    eprintln!("frame types from weft: {frames:?} after {:?}", t0.elapsed());
    assert!(goaway, "no GOAWAY on an idle HTTP/2 connection (idle_s = 1) within 30 s; frame types seen: {frames:?}");
}

/// The gRPC health protocol as the active check: an endpoint whose server says NOT_SERVING goes
/// UNHEALTHY and gets no calls; back to SERVING, it is HEALTHY again and gets calls.
#[test]
fn grpc_health_check_follows_the_servers_answer() {
    if !python_grpc("grpc_health_check_follows_the_servers_answer") {
        return;
    }
    let tmp = TempDir::new("res-grpc-health");
    let (ap, bp) = (free_port(), free_port());
    let _servers = [grpc_server(&tmp, "a", ap, "good"), grpc_server(&tmp, "b", bp, "good")];
    let body = "[service.health_check]\nkind = \"grpc\"\ninterval_ms = 200\n";
    let toml = [service("gh", "grpc", "gh.res", 50051, body), endpoint("gh", "a", ap), endpoint("gh", "b", bp)].concat();
    let w = Weft::start(WeftOpts::new(152).extra(&toml));
    let vip = ready_alias(&w, "gh.res", 50051, 2);
    assert_eq!((health_of(&w, "gh", "a").as_str(), health_of(&w, "gh", "b").as_str()), ("HEALTHY", "HEALTHY"));

    flaky(&["set-health", &format!("127.0.0.1:{bp}"), "NOT_SERVING"]);
    let t0 = Instant::now();
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || health_of(&w, "gh", "b") == "UNHEALTHY");
    assert!(ok, "b says NOT_SERVING but weft still has it {}", health_of(&w, "gh", "b"));
    eprintln!("b UNHEALTHY {:?} after NOT_SERVING", t0.elapsed());
    let before = grpc_calls(bp);
    let out = flaky(&["call", &format!("{vip}:50051"), "20"]).json();
    assert_eq!(out["ok"], 20, "{out}");
    assert_eq!(grpc_calls(bp), before, "an UNHEALTHY endpoint got calls");

    flaky(&["set-health", &format!("127.0.0.1:{bp}"), "SERVING"]);
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || health_of(&w, "gh", "b") == "HEALTHY");
    assert!(ok, "b serves again but weft has it {}", health_of(&w, "gh", "b"));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        flaky(&["call", &format!("{vip}:50051"), "10"]);
        grpc_calls(bp) > before
    });
    assert!(ok, "b is HEALTHY again but gets no calls");
}

/// Zone preference: a node in zone a sends everything to zone-a endpoints while enough of them are
/// available, and spills over to zone b when half of zone a is drained.
#[test]
fn own_zone_first_while_enough_of_it_is_available() {
    let tmp = TempDir::new("res-zone");
    let ports = [free_port(), free_port(), free_port()];
    let _b: Vec<Bg> = ["a1", "a2", "b1"].iter().zip(ports).map(|(n, p)| counter_backend(n, p, &[], Some(tmp.join(&format!("{n}.log"))))).collect();
    let mut toml = service("z", "http", "z.res", 8080, "[service.health_check]\ninterval_ms = 200\n");
    for ((id, zone), port) in [("a1", "a"), ("a2", "a"), ("b1", "b")].iter().zip(ports) {
        toml += &format!("{}zone = \"{zone}\"\n", endpoint("z", id, port));
    }
    let mut opts = WeftOpts::new(153).extra(&toml);
    opts.node_extra = "zone = \"a\"\n".into();
    let w = Weft::start(opts);
    let vip = ready_alias(&w, "z.res", 8080, 3);
    let send = |n: usize| {
        for i in 0..n {
            let r = http(&vip, 8080, "GET", &format!("/z/{i}"), None).expect("GET through weft");
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    send(60);
    let counts = || ports.map(backend_requests);
    let first = counts();
    eprintln!("zone a healthy: a1={} a2={} b1={}", first[0], first[1], first[2]);
    assert_eq!(first[2], 0, "zone b got traffic while zone a was fully available");
    assert_eq!(first[0] + first[1], 60);

    w.cli(&["endpoint", "drain", "a2", "-s", "z"]).expect_ok();
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || w.healthy_endpoints("z.res", 8080) == Some(2));
    send(60);
    let after = counts();
    eprintln!("a2 drained: a1={} a2={} b1={}", after[0] - first[0], after[1] - first[1], after[2] - first[2]);
    assert_eq!(after[1], first[1], "a drained endpoint got new requests");
    assert!(after[2] > first[2], "with half of zone a out, zone b must take a share");
}
