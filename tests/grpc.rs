//! gRPC through a `grpc` alias with real python grpcio peers (tests/grpc/server.py, client.py):
//! unary echo, server streaming, and an error status + message that must reach the client intact;
//! weft times each call with its gRPC status.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn python_has_grpc() -> bool {
    Command::new("python3").args(["-c", "import grpc"]).status().map(|s| s.success()).unwrap_or(false)
}

fn client(target: &str, n: u32) -> Value {
    let mut c = Command::new("python3");
    c.arg(support_path("grpc/client.py")).arg(target).arg(n.to_string());
    c.env_remove("http_proxy").env_remove("https_proxy").env_remove("grpc_proxy");
    let out = run_cmd(&mut c, None, Duration::from_secs(60));
    out.expect_ok();
    out.json()
}

#[test]
fn grpc_unary_streaming_and_status_through_alias() {
    if !require_program("grpc", "python3") {
        return;
    }
    if !python_has_grpc() {
        if ci() {
            panic!("grpc test needs python3 with grpcio (pip install -r tests/requirements.txt)");
        }
        loud("*** SKIP grpc: python3 module grpc (grpcio) missing (pip install -r tests/requirements.txt) ***");
        return;
    }
    let tmp = TempDir::new("grpc");
    let port = free_port();
    let mut sc = Command::new("python3");
    sc.arg(support_path("grpc/server.py")).arg(port.to_string());
    let mut server = Bg::spawn("grpc server", &mut sc, Some(tmp.join("server.log")));
    wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
    assert!(server.alive(), "grpc server died: {}", server.log_text());

    let (weft, vip) = Weft::start_one_service(30, "widgets", "grpc", "widgets.test", 50051, &format!("127.0.0.1:{port}"));

    let direct = client(&format!("127.0.0.1:{port}"), 7);
    let via = client(&format!("{vip}:50051"), 7);
    eprintln!("direct: {direct}\nvia weft: {via}");

    assert_eq!(via["unary"], "echo:hello weft", "unary echo through the alias");
    assert_eq!(via["unary_big_ok"], true, "1 MiB unary echo through the alias");
    assert_eq!(via["unary_trailers"]["x-server"], "weft-test", "trailing metadata must be forwarded");
    let items: Vec<String> = (0..7).map(|i| format!("item-{i}")).collect();
    assert_eq!(via["stream"], json!(items), "server streaming through the alias returns all 7 messages in order");
    assert_eq!(via["error"]["code"], "NOT_FOUND", "status code of an aborted call must reach the client");
    assert_eq!(via["error"]["details"], "no such widget", "status message must reach the client");
    assert_eq!(via["unimplemented"]["code"], "UNIMPLEMENTED");
    assert_eq!(via["many"], 50, "50 calls multiplexed on one channel");
    assert_eq!(via, direct, "everything seen through weft must equal direct access");

    // Each call's duration is recorded with its gRPC status (read from the trailers).
    let count = |code: &str| -> u64 {
        let text = weft.get("/metrics").unwrap().text();
        let line = text.lines().find(|l| l.starts_with("rpc_server_call_duration_seconds_count{") && l.contains(&format!("rpc_grpc_status_code=\"{code}\"")));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    };
    assert_eq!((count("5"), count("12")), (1, 1), "one NOT_FOUND and one UNIMPLEMENTED call:\n{}", weft.get("/metrics").unwrap().text());
    assert!(count("0") >= 50, "the OK calls: {}", count("0"));
}
