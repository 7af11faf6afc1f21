//! Issue 16, item 3: authorization between services, across hosts, in all three protocols.
//!
//! Four weft hosts on loopback (like tests/relay_deadline.rs): registry `r` (its certificate
//! names no namespace: every one), proxy `t` holding the endpoints of namespace `pay` (certificate
//! `--namespace pay`), and two callers whose certificates both name `pay`: `good` also has group
//! `billing`, `bad` has none. Namespace `pay` has an HTTP/1.1, a gRPC and a TCP service, each
//! `allow = { groups = ["billing"] }`: only billing nodes may call them. `good` gets answers;
//! `bad` gets 403 with `x-weft-error: denied`, gRPC PERMISSION_DENIED and a TCP reset, and every
//! refusal is counted. A fifth caller, `rogue`, skips its own check (as a tampered node would:
//! `WEFT_TEST_SKIP_CALLER_AUTHZ`) and is refused by `t`, the endpoints' node. `t`, whose certificate names only `pay`, cannot register an endpoint in
//! another namespace (403 naming the namespace). VIP nets 238, 239, 242, 243, 244.
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

const SERVICES: &str = r#"
[[namespace]]
name = "pay"

[[service]]
namespace = "pay"
name = "ledger"
protocol = "http"
aliases = [{ dns_name = "ledger.pay", port = 8080 }]
allow = { groups = ["billing"] }

[[service]]
namespace = "pay"
name = "rpc"
protocol = "grpc"
aliases = [{ dns_name = "rpc.pay", port = 50051 }]
allow = { groups = ["billing"] }

[[service]]
namespace = "pay"
name = "echo"
protocol = "tcp"
aliases = [{ dns_name = "echo.pay", port = 9000 }]
allow = { groups = ["billing"] }
"#;

fn endpoint(service: &str, id: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"pay\"\nservice = \"{service}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n")
}

/// One unary gRPC call with grpcio: "OK <reply>" or the status code's name.
fn grpc_call(target: &str) -> String {
    let script = r#"
import sys, grpc
with grpc.insecure_channel(sys.argv[1]) as ch:
    try:
        print("OK " + ch.unary_unary("/weft.test.Echo/Echo")(b"hi", timeout=10).decode())
    except grpc.RpcError as e:
        print(e.code().name + " " + (e.details() or ""))
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script, target]).env_remove("http_proxy").env_remove("https_proxy").env_remove("grpc_proxy");
    let out = run_cmd(&mut c, None, Duration::from_secs(30));
    out.expect_ok();
    out.stdout().trim().to_string()
}

/// One line through the TCP echo: Ok(answer), or the error the socket gave.
fn tcp_line(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 128];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// A node the services do not admit gets 403 + `x-weft-error: denied` (naming who refused), gRPC
/// PERMISSION_DENIED, and a reset TCP connection.
fn refused_everywhere(node: &Weft, by: &str) {
    let resp = http(&node.vip("ledger.pay", 8080), 8080, "GET", "/x", None).expect("GET");
    let header = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-weft-error")).map(|(_, v)| v.as_str());
    assert_eq!((resp.status, header), (403, Some("denied")), "{}", resp.text());
    assert!(resp.text().contains(&format!("refused by {by}")), "{}", resp.text());
    let grpc = grpc_call(&format!("{}:50051", node.vip("rpc.pay", 50051)));
    assert!(grpc.starts_with("PERMISSION_DENIED"), "{grpc}");
    match tcp_line(&format!("{}:9000", node.vip("echo.pay", 9000))) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(line) => panic!("the TCP connection was answered: {line:?}"),
    }
}

fn failures(node: &Weft, svc: &str) -> u64 {
    node.get_json("/v1/stats")[format!("pay/{svc}")]["denied"].as_u64().unwrap_or(0)
}

#[test]
fn only_admitted_callers_reach_a_service_in_all_three_protocols() {
    if !require_program("authz", "python3") {
        return;
    }
    let tmp = TempDir::new("authz");
    let ca = MeshCa::new("authz");
    let (http_port, grpc_port, tcp_port) = (free_port(), free_port(), free_port());
    let _http = http_backend(None, "ledger-1", http_port);
    let mut sc = Command::new("python3");
    sc.arg(support_path("grpc/server.py")).arg(grpc_port.to_string());
    let _grpc = Bg::spawn("grpc server", &mut sc, Some(tmp.join("grpc.log")));
    let mut ec = Command::new("python3");
    ec.arg(support_path("support/chaos_echo.py")).args(["echo-1", &tcp_port.to_string(), tmp.join("echo-arrivals.log").to_str().unwrap()]);
    let _echo = Bg::spawn("tcp echo", &mut ec, Some(tmp.join("echo.log")));
    for p in [http_port, grpc_port, tcp_port] {
        wait_tcp(&format!("127.0.0.1:{p}"), Duration::from_secs(20));
    }

    let r = Weft::start_mesh(&MeshNode::new("r", "combined", 238, &ip(238), ca.issue("r")).extra(SERVICES));
    let endpoints = [endpoint("ledger", "ledger-1", http_port), endpoint("rpc", "rpc-1", grpc_port), endpoint("echo", "echo-1", tcp_port)].concat();
    let t = Weft::start_mesh(&MeshNode::new("t", "proxy", 239, &ip(239), ca.issue_with("t", &["--namespace", "pay"])).join(&r.gossip_addr()).extra(&endpoints));
    let good = Weft::start_mesh(&MeshNode::new("good", "proxy", 242, &ip(242), ca.issue_with("good", &["--namespace", "pay", "--group", "billing"])).join(&r.gossip_addr()));
    let bad = Weft::start_mesh(&MeshNode::new("bad", "proxy", 243, &ip(243), ca.issue_with("bad", &["--namespace", "pay"])).join(&r.gossip_addr()));
    for node in [&good, &bad] {
        for (alias, port) in [("ledger.pay", 8080), ("rpc.pay", 50051), ("echo.pay", 9000)] {
            let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || node.healthy_endpoints(alias, port) == Some(1));
            assert!(ok, "{alias} never routable on a caller: {:?}", node.route_now(alias, port));
        }
    }

    // Admitted: answers in all three protocols, relayed to t.
    let vip = good.vip("ledger.pay", 8080);
    let resp = http(&vip, 8080, "GET", "/x", None).expect("GET through good");
    assert_eq!((resp.status, backend_name(&resp.text()).as_deref()), (200, Some("ledger-1")), "{}", resp.text());
    assert_eq!(grpc_call(&format!("{}:50051", good.vip("rpc.pay", 50051))), "OK echo:hi");
    assert_eq!(tcp_line(&format!("{}:9000", good.vip("echo.pay", 9000))).expect("TCP through good"), "echo-1 ping");

    // Refused at the caller's node: 403 + x-weft-error: denied, PERMISSION_DENIED, a reset.
    refused_everywhere(&bad, "node bad, the caller's node");
    for svc in ["ledger", "rpc", "echo"] {
        assert_eq!((failures(&bad, svc), failures(&good, svc)), (1, 0), "denials of pay/{svc} on bad / good");
    }
    // A tampered caller that skips its own check is refused by the endpoint's node.
    let rogue = Weft::start_mesh(
        &MeshNode::new("rogue", "proxy", 244, &ip(244), ca.issue_with("rogue", &["--namespace", "pay"])).join(&r.gossip_addr()).env("WEFT_TEST_SKIP_CALLER_AUTHZ", "1"),
    );
    for (alias, port) in [("ledger.pay", 8080), ("rpc.pay", 50051), ("echo.pay", 9000)] {
        let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || rogue.healthy_endpoints(alias, port) == Some(1));
        assert!(ok, "{alias} never routable on rogue");
    }
    refused_everywhere(&rogue, "node t");
    for (svc, id) in [("ledger", "ledger-1"), ("rpc", "rpc-1"), ("echo", "echo-1")] {
        assert_eq!(t.endpoint_stat("pay", svc, id, "relay_denied"), 1, "t refused rogue's relayed connection to {svc} once");
    }
    let served = std::fs::read_to_string(tmp.join("echo-arrivals.log")).unwrap_or_default();
    assert_eq!(served.lines().count(), 1, "only good's line reached the echo: {served}");

    // t's certificate names only pay: it cannot register in another namespace.
    r.post_ok("/v1/namespaces", &json!({"name": "shop"}));
    r.post_ok("/v1/services", &json!({"namespace": "shop", "name": "web", "protocol": "http"}));
    holds_for("nodes whose certificates name only pay never learn shop/web", Duration::from_secs(4), || {
        for node in [&t, &good] {
            let status = node.get("/v1/services/shop/web").map(|x| x.status).unwrap_or(0);
            if status != 404 {
                return Err(format!("GET /v1/services/shop/web answered {status}"));
            }
        }
        Ok(())
    });
    let refused = t.post("/v1/endpoints", &json!({"namespace": "shop", "service": "web", "id": "w1", "address": "127.0.0.1:9"}));
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("does not name namespace `shop`"), "{}", refused.text());
    for node in [&r, &t, &good, &bad, &rogue] {
        let log = node.log();
        assert!(!log.contains("panicked"), "{log}");
    }
}
