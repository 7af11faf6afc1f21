//! HTTP proxying through an `http` alias: load spreading over 3 real backends, client keep-alive,
//! retry when a backend is down, and 503 + `x-weft-error` when a service has no endpoints.
mod common;
use common::*;
use std::time::Duration;

fn http_service(name: &str, alias: &str, port: u16, backends: &[(&str, u16)]) -> String {
    let mut t = format!(
        "[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{alias}\", port = {port} }}]\n\n"
    );
    for (id, p) in backends {
        t.push_str(&format!(
            "[[endpoint]]\nnamespace = \"default\"\nservice = \"{name}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{p}\"\n\n"
        ));
    }
    t
}

fn get_backend(vip: &str, port: u16, path: &str) -> (u16, Option<String>, Resp) {
    let r = http(vip, port, "GET", path, None).unwrap_or_else(|e| panic!("GET http://{vip}:{port}{path}: {e}"));
    let name = backend_name(&r.text());
    (r.status, name, r)
}

#[test]
fn spreads_over_three_backends_and_keeps_client_connections_alive() {
    let ports = [free_port(), free_port(), free_port()];
    let _b: Vec<Bg> = ports.iter().enumerate().map(|(i, p)| http_backend(None, &format!("b{}", i + 1), *p)).collect();
    // Round robin, so "roughly equal" is a fair expectation; the default (P2C over latency)
    // spreads by speed instead.
    let toml = http_service("web", "web.test", 8080, &[("b1", ports[0]), ("b2", ports[1]), ("b3", ports[2])]);
    let w = Weft::start(WeftOpts::new(70).extra(&toml.replace("protocol = \"http\"\n", "protocol = \"http\"\nlb = \"round-robin\"\n")));
    let vip = w.vip("web.test", 8080);
    let route = w.wait_route("web.test", 8080, Duration::from_secs(5));
    assert_eq!(route["endpoints"].as_u64(), Some(3), "route should count 3 endpoints: {route}");
    assert_eq!(route["protocol"].as_str(), Some("http"), "{route}");

    // wait for the listener to answer at all, then measure
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    let n = 90;
    let mut names = Vec::new();
    for i in 0..n {
        let (status, name, r) = get_backend(&vip, 8080, &format!("/req/{i}"));
        assert_eq!(status, 200, "request {i} through the alias: {} {}", r.status, r.text());
        assert!(r.text().contains(&format!("path=/req/{i}")), "path must reach the backend unchanged: {}", r.text());
        names.push(name.expect("backend name in body"));
    }
    let t = tally(names);
    eprintln!("distribution over {n} requests: {t:?}");
    assert_eq!(t.len(), 3, "all 3 backends must receive traffic: {t:?}");
    for (b, c) in &t {
        // "roughly equal": every backend gets at least half its fair share
        assert!(*c >= n / 6, "backend {b} got only {c} of {n} requests: {t:?}");
    }

    // Client keep-alive: one curl invocation, several URLs, one TCP connection to the VIP.
    let resolve = format!("web.test:8080:{vip}");
    let urls: Vec<String> = (0..5).map(|i| format!("http://web.test:8080/ka/{i}")).collect();
    let mut args = vec!["--resolve", resolve.as_str(), "-w", "\nRESULT %{http_code} %{num_connects}\n"];
    for u in &urls {
        args.push(u.as_str());
    }
    let out = curl(None, &args);
    out.expect_ok();
    let results: Vec<(u16, u32)> = out
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(results.len(), 5, "curl output: {}", out.both());
    assert!(results.iter().all(|(c, _)| *c == 200), "all keep-alive requests 200: {results:?}");
    let connects: u32 = results.iter().map(|(_, n)| n).sum();
    assert_eq!(connects, 1, "5 requests in one curl run should share one connection (num_connects): {results:?}");
    for i in 0..5 {
        assert!(out.stdout().contains(&format!("path=/ka/{i}")), "response for /ka/{i} missing: {}", out.stdout());
    }
}

#[test]
fn retries_on_another_endpoint_when_one_backend_is_down() {
    let ports = [free_port(), free_port(), free_port()];
    let mut b: Vec<Bg> =
        ports.iter().enumerate().map(|(i, p)| http_backend(None, &format!("r{}", i + 1), *p)).collect();
    // Round robin, so the share of the two live backends is the balancer's promise: p2c with only
    // two candidates left compares the same pair on every request, and at this low load a warm-up
    // response that happened to be slow can keep one of them out for seconds.
    let toml = http_service("retry", "retry.test", 8081, &[("r1", ports[0]), ("r2", ports[1]), ("r3", ports[2])]).replacen("protocol = \"http\"\n", "protocol = \"http\"\nlb = \"round-robin\"\n", 1);
    let w = Weft::start(WeftOpts::new(71).extra(&toml));
    let vip = w.vip("retry.test", 8081);
    wait_tcp(&format!("{vip}:8081"), Duration::from_secs(5));
    for i in 0..6 {
        assert_eq!(get_backend(&vip, 8081, &format!("/warm/{i}")).0, 200);
    }

    // stop r2: its port now refuses connections
    b[1].kill();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        std::net::TcpStream::connect(("127.0.0.1", ports[1])).is_err()
    });

    let n = 40;
    let mut names = Vec::new();
    for i in 0..n {
        let (status, name, r) = get_backend(&vip, 8081, &format!("/after/{i}"));
        assert_eq!(status, 200, "request {i} after r2 stopped must be retried elsewhere: {} {:?} {}", r.status, r.headers, r.text());
        names.push(name.unwrap());
    }
    let t = tally(names);
    eprintln!("after stopping r2: {t:?}");
    assert!(!t.contains_key("r2"), "r2 is down and cannot answer: {t:?}");
    assert_eq!(t.len(), 2, "the two live backends keep serving: {t:?}");
}

#[test]
fn service_without_endpoints_answers_503_with_x_weft_error() {
    let w = Weft::start(WeftOpts::new(72).extra(&http_service("empty", "empty.test", 8082, &[])));
    let vip = w.vip("empty.test", 8082);
    wait_tcp(&format!("{vip}:8082"), Duration::from_secs(5));
    let r = http(&vip, 8082, "GET", "/", None).expect("GET through alias of a service without endpoints");
    assert_eq!(r.status, 503, "no endpoints -> 503, got {} {:?} {}", r.status, r.headers, r.text());
    let e = r.header("x-weft-error");
    assert!(e.is_some_and(|v| !v.is_empty()), "503 must carry a non-empty x-weft-error header: {:?}", r.headers);

    // and through curl by alias name, the same answer
    let resolve = format!("empty.test:8082:{vip}");
    let out = curl(None, &["--resolve", &resolve, "-D", "-", "-o", "/dev/null", "http://empty.test:8082/x"]);
    let head = out.stdout().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "curl saw: {head}");
    assert!(head.contains("x-weft-error:"), "curl saw no x-weft-error: {head}");
}

#[test]
fn bodies_statuses_and_framing_pass_through_intact() {
    let port = free_port();
    let _b = http_backend(None, "body", port);
    // On one CPU, so the single-threaded runtime weft then picks carries this whole test.
    let w = Weft::start(WeftOpts { one_cpu: true, ..WeftOpts::new(73) }.extra(&http_service("bodies", "bodies.test", 8083, &[("body", port)])));
    let vip = w.vip("bodies.test", 8083);
    wait_tcp(&format!("{vip}:8083"), Duration::from_secs(5));
    let resolve = format!("bodies.test:8083:{vip}");
    let base = "http://bodies.test:8083";
    let tmp = TempDir::new("bodies");

    // 1 MiB request body, content-length framed and chunked
    let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let sum: u32 = payload.iter().fold(0u32, |a, b| a.wrapping_add(*b as u32));
    let file = tmp.join("payload.bin");
    std::fs::write(&file, &payload).unwrap();
    let at = format!("@{}", file.display());
    let want = format!("method=POST len={} sum={sum}", payload.len());
    let out = curl(None, &["--resolve", &resolve, "-H", "content-type: application/octet-stream", "--data-binary", &at, &format!("{base}/upload")]);
    out.expect_ok();
    assert!(out.stdout().contains(&want), "content-length upload: got {} want {want}", out.stdout());
    let out = curl(
        None,
        &["--resolve", &resolve, "-H", "transfer-encoding: chunked", "--data-binary", &at, &format!("{base}/upload-chunked")],
    );
    out.expect_ok();
    assert!(out.stdout().contains(&want), "chunked upload: got {} want {want}", out.stdout());

    // chunked response with many chunks
    let out = curl(None, &["--resolve", &resolve, &format!("{base}/chunked?n=200")]);
    out.expect_ok();
    let body = out.stdout();
    let chunks: Vec<&str> = body.lines().filter(|l| l.starts_with("chunk-")).collect();
    assert_eq!(chunks.len(), 200, "all 200 chunks must arrive in order: {}", &body[..body.len().min(300)]);
    assert_eq!(chunks[199], "chunk-199");
    let r = http(&vip, 8083, "GET", "/chunked?n=5", None).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("chunk-4\n"), "{}", r.text());

    // a 3 MB response body
    let out = curl(None, &["--resolve", &resolve, "-o", "/dev/null", "-w", "%{http_code} %{size_download}", &format!("{base}/big?n=3000000")]);
    assert_eq!(out.stdout().trim(), "200 3000000", "{}", out.both());

    // statuses from the backend pass through unchanged; query strings and methods are kept
    for code in [201u16, 404, 500] {
        let (status, body, _) = curl_get(None, &format!("http://{vip}:8083/status/{code}?a=1&b=two"));
        assert_eq!(status, code, "backend status {code} must reach the client: {body}");
        assert!(body.contains(&format!("path=/status/{code}?a=1&b=two")), "{body}");
    }
    for method in ["PUT", "DELETE"] {
        let out = curl(None, &["--resolve", &resolve, "-X", method, &format!("{base}/m")]);
        assert!(out.stdout().contains(&format!("method={method}")), "{}", out.both());
    }
    let out = curl(None, &["--resolve", &resolve, "-I", &format!("{base}/head")]);
    assert!(out.stdout().to_ascii_lowercase().starts_with("http/1.1 200"), "HEAD: {}", out.both());
    assert!(out.stdout().to_ascii_lowercase().contains("x-backend: body"), "response headers pass through: {}", out.stdout());
}
