//! Issue 16, "a protected admin API":
//! - a node whose admin API listens beyond loopback must have credentials (`[admin] token_file` or
//!   `[tls]`; validate and run refuse it without), answers a request without the token or with a
//!   wrong one 401 naming what is missing, serves one with it, and the CLI sends it (`--token-file`);
//! - with `[tls]`, the same port speaks HTTPS: no certificate → 401, a certificate of another CA →
//!   the handshake is refused, the node's own certificate (curl, and the CLI with the node's
//!   config) → served;
//! - bodies over the limit are refused before they are read, and slow clients are cut off.
//!
//! The nodes run in network namespaces with a veth interface (10.77.0.1, 10.78.0.1), so the
//! caller's address is not loopback. Those tests need root.
mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f21";

/// A namespace with `ip` on a veth interface, up.
fn veth_ns(tag: &str, ip: &str) -> Netns {
    let ns = Netns::new(tag);
    let cidr = format!("{ip}/24");
    for args in [&["ip", "link", "add", "a0", "type", "veth", "peer", "name", "a1"][..], &["ip", "addr", "add", &cidr, "dev", "a0"], &["ip", "link", "set", "a0", "up"], &["ip", "link", "set", "a1", "up"], &["ip", "link", "set", "lo", "up"]] {
        in_ns(&ns, args).expect_ok();
    }
    ns
}

fn in_ns(ns: &Netns, args: &[&str]) -> CmdOut {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name]).args(args).env_remove("WEFT_ADMIN").env_remove("WEFT_CONFIG");
    run_cmd(&mut c, None, Duration::from_secs(30))
}

/// `curl` in the namespace: the status code.
fn status(ns: &Netns, extra: &[&str]) -> String {
    let mut args = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"];
    args.extend(extra);
    args.push("http://10.77.0.1:9901/v1/status");
    in_ns(ns, &args).stdout()
}

#[test]
fn a_non_loopback_admin_api_needs_its_token() {
    let test = "a_non_loopback_admin_api_needs_its_token";
    if !require_root(test) || !require_program(test, "curl") {
        return;
    }
    let ns = veth_ns("adm", "10.77.0.1");
    let tmp = TempDir::new("admin-auth");
    let token = tmp.join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let base = format!("[node]\nname = \"adm\"\ndata_dir = \"{}\"\n\n[dns]\nenabled = false\n\n[admin]\nlisten = \"10.77.0.1:9901\"\n", tmp.join("data").display());

    // Without a token file the config is refused, by validate and by run.
    let open = tmp.join("open.toml");
    std::fs::write(&open, &base).unwrap();
    let r = weft_cmd(&["validate", open.to_str().unwrap()]);
    assert!(!r.ok() && r.stderr().contains("admin API needs credentials") && r.stderr().contains("`token_file`"), "{}", r.both());
    let r = in_ns(&ns, &[WEFT, "run", "-c", open.to_str().unwrap()]);
    assert!(!r.ok() && r.both().contains("admin API needs credentials"), "{}", r.both());
    // A token too short to be one is refused too.
    let short = tmp.join("short-token");
    std::fs::write(&short, "abc\n").unwrap();
    let weak = tmp.join("weak.toml");
    std::fs::write(&weak, format!("{base}token_file = \"{}\"\n", short.display())).unwrap();
    let r = weft_cmd(&["validate", weak.to_str().unwrap()]);
    assert!(!r.ok() && r.stderr().contains("`token_file`") && r.stderr().contains("at least 16"), "{}", r.both());

    let conf = tmp.join("weft.toml");
    std::fs::write(&conf, format!("{base}token_file = \"{}\"\n", token.display())).unwrap();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, WEFT, "run", "-c", conf.to_str().unwrap()]);
    let _node = Bg::spawn("weft", &mut c, Some(tmp.join("weft.log")));
    let up = wait_until(Duration::from_secs(15), Duration::from_millis(100), || status(&ns, &[]) == "401");
    assert!(up, "the node never answered 401 without a token: {}", std::fs::read_to_string(tmp.join("weft.log")).unwrap_or_default());

    assert_eq!(status(&ns, &["-H", "Authorization: Bearer wrong-token-wrong-token"]), "401");
    assert_eq!(status(&ns, &["-H", &format!("Authorization: Bearer {TOKEN}")]), "200");
    let body = in_ns(&ns, &["curl", "-s", "http://10.77.0.1:9901/v1/services"]).stdout();
    assert!(body.contains("Authorization: Bearer") && body.contains("token_file"), "the refusal says what is missing: {body}");

    // The CLI: refused without the token, works with it.
    let r = in_ns(&ns, &[WEFT, "--admin", "10.77.0.1:9901", "status"]);
    assert!(!r.ok() && r.stderr().contains("Bearer"), "{}", r.both());
    let r = in_ns(&ns, &[WEFT, "--admin", "10.77.0.1:9901", "--token-file", token.to_str().unwrap(), "service", "create", "web", "--alias", "web.auth:8080"]);
    r.expect_ok();
    let r = in_ns(&ns, &[WEFT, "-c", conf.to_str().unwrap(), "service", "list", "-o", "json"]);
    assert!(r.ok() && r.stdout().contains("\"web\""), "the CLI takes the token from the config's token_file: {}", r.both());
    let log = std::fs::read_to_string(tmp.join("weft.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// curl over HTTPS to the node in `ns` (its certificate names `node`): the status code, "000"
/// when the handshake failed, and curl's stderr.
fn https_status(ns: &Netns, node: &str, ip: &str, ca: &std::path::Path, client: Option<&NodeTls>) -> (String, String) {
    let resolve = format!("{node}:9901:{ip}");
    let url = format!("https://{node}:9901/v1/status");
    let mut args = vec!["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
    let (cert, key);
    if let Some(t) = client {
        (cert, key) = (t.cert.to_str().unwrap().to_string(), t.key.to_str().unwrap().to_string());
        args.extend(["--cert", &cert, "--key", &key]);
    }
    args.push(&url);
    let r = in_ns(ns, &args);
    (r.stdout(), r.stderr())
}

#[test]
fn a_non_loopback_admin_api_takes_a_cluster_certificate() {
    let test = "a_non_loopback_admin_api_takes_a_cluster_certificate";
    if !require_root(test) || !require_program(test, "curl") {
        return;
    }
    let ns = veth_ns("admtls", "10.78.0.1");
    let tmp = TempDir::new("admin-mtls");
    let (ca, stranger) = (MeshCa::new("admin-mtls"), MeshCa::new("elsewhere"));
    let own = ca.issue("adm2");
    let foreign = stranger.issue("adm2");
    let tls_toml = |t: &NodeTls| format!("[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n", t.ca.display(), t.cert.display(), t.key.display());
    let conf = tmp.join("weft.toml");
    std::fs::write(
        &conf,
        format!("[node]\nname = \"adm2\"\ndata_dir = \"{}\"\n\n[dns]\nenabled = false\n\n[admin]\nlisten = \"10.78.0.1:9901\"\n\n[gossip]\nlisten = \"10.78.0.1:0\"\n\n{}", tmp.join("data").display(), tls_toml(&own)),
    )
    .unwrap();
    // [tls] is a credential: no token file is needed for a non-loopback listen.
    weft_cmd(&["validate", conf.to_str().unwrap()]).expect_ok();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, WEFT, "run", "-c", conf.to_str().unwrap()]);
    let log = tmp.join("weft.log");
    let _node = Bg::spawn("weft", &mut c, Some(log.clone()));
    let up = wait_until(Duration::from_secs(15), Duration::from_millis(100), || https_status(&ns, "adm2", "10.78.0.1", &own.ca, None).0 == "401");
    assert!(up, "the node never answered 401 over HTTPS without a certificate: {}", std::fs::read_to_string(&log).unwrap_or_default());

    // Plain HTTP on the same port: no credentials, 401.
    let plain = in_ns(&ns, &["curl", "-s", "--max-time", "5", "http://10.78.0.1:9901/v1/services"]).stdout();
    assert!(plain.contains("certificate of the cluster CA") && plain.contains("token_file"), "the refusal names both ways in: {plain}");
    // The node's own certificate: served.
    assert_eq!(https_status(&ns, "adm2", "10.78.0.1", &own.ca, Some(&own)).0, "200");
    // A certificate of another CA: the handshake itself is refused.
    let (code, err) = https_status(&ns, "adm2", "10.78.0.1", &own.ca, Some(&foreign));
    assert_eq!(code, "000", "a foreign certificate got an HTTP answer: {err}");
    let refused = wait_until(Duration::from_secs(3), Duration::from_millis(100), || std::fs::read_to_string(&log).unwrap_or_default().contains("TLS handshake refused"));
    assert!(refused, "the node did not log the refused handshake: {}", std::fs::read_to_string(&log).unwrap_or_default());

    // The CLI with the node's config shows the node's certificate and is served.
    let r = in_ns(&ns, &[WEFT, "-c", conf.to_str().unwrap(), "service", "create", "web", "--alias", "web.mtls:8080"]);
    r.expect_ok();
    let r = in_ns(&ns, &[WEFT, "-c", conf.to_str().unwrap(), "service", "list", "-o", "json"]);
    assert!(r.ok() && r.stdout().contains("\"web\""), "{}", r.both());
    // With the foreign CA's files, the CLI's handshake is refused and it says so.
    let other = tmp.join("other.toml");
    std::fs::write(&other, format!("[node]\nname = \"adm2\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"10.78.0.1:9901\"\n{}", tmp.join("other-data").display(), tls_toml(&foreign))).unwrap();
    let r = in_ns(&ns, &[WEFT, "-c", other.to_str().unwrap(), "status"]);
    assert!(!r.ok() && r.stderr().contains("TLS handshake"), "{}", r.both());
    // Without any credentials, the CLI gets the 401 and its reason.
    let r = in_ns(&ns, &[WEFT, "--admin", "10.78.0.1:9901", "status"]);
    assert!(!r.ok() && r.stderr().contains("certificate of the cluster CA"), "{}", r.both());
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// Oversized bodies are refused before they are read; a client that stops in the middle of its
/// head or body is cut off (head: 10 s, whole request: 30 s) instead of holding its connection.
#[test]
fn admin_api_limits_body_size_and_slow_clients() {
    use std::io::{Read, Write};
    let w = Weft::start(WeftOpts::new(235));
    let addr = w.admin.clone();
    let big = format!("POST /v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{", 4 << 20);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(big.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("at most 1048576"), "{answer}");

    // Both slow clients at once, each timed from its last byte.
    let slow = |request: &'static str, timeout: Duration| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let sent = std::time::Instant::now();
            s.set_read_timeout(Some(timeout + Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            let r = s.read_to_end(&mut got);
            (r.is_ok(), sent.elapsed(), String::from_utf8_lossy(&got).to_string())
        })
    };
    let head = slow("GET /v1/status HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10));
    let body = slow("POST /v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", Duration::from_secs(30));
    let (closed, after, _) = head.join().unwrap();
    assert!(closed && after < Duration::from_secs(15), "a half-sent head held its connection for {after:?}");
    let (closed, after, answer) = body.join().unwrap();
    assert!(closed && after < Duration::from_secs(35) && answer.starts_with("HTTP/1.1 408") && answer.contains("too slowly"), "a trickled body: {after:?} {answer}");
    // The node still serves.
    let r = weft_cmd(&["--admin", &addr, "status"]);
    r.expect_ok();
}
