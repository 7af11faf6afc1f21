//! Edge cases of weft's own HTTP/1.1 forwarding (src/proxy/h1), with raw sockets on the client
//! side and a raw-socket Python backend: pipelining, `Expect: 100-continue`, protocol upgrades,
//! smuggling-shaped framing, and pooled connections the endpoint closed behind our back.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The backend binds a port of its own choosing and reports it through a file, so tests running
/// in parallel can never be handed the same port.
fn edge_backend(mode: &str, tmp: &TempDir) -> (Bg, u16) {
    let portfile = tmp.join(&format!("{mode}.port"));
    let mut c = Command::new("python3");
    c.arg(support_path("support/h1_edge_backend.py")).arg(mode).arg(&portfile);
    let bg = Bg::spawn(&format!("edge backend {mode}"), &mut c, Some(tmp.join(&format!("{mode}.log"))));
    let port: u16 = wait_for("edge backend port file", Duration::from_secs(10), || std::fs::read_to_string(&portfile).ok()?.parse().ok());
    wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
    (bg, port)
}

fn connect(vip: &str, port: u16) -> TcpStream {
    let s = TcpStream::connect((vip, port)).expect("connect to alias");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until `n` complete responses with content-length bodies have arrived.
fn read_responses(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut out = Vec::new();
    while out.len() < n {
        let got = s.read(&mut buf).expect("read response");
        assert!(got > 0, "connection closed after {} responses: {:?}", out.len(), String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..got]);
        loop {
            let text = String::from_utf8_lossy(&raw).to_string();
            let Some(end) = text.find("\r\n\r\n") else { break };
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if raw.len() < end + 4 + len {
                break;
            }
            out.push(String::from_utf8_lossy(&raw[..end + 4 + len]).to_string());
            raw.drain(..end + 4 + len);
        }
    }
    out
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let tmp = TempDir::new("h1-pipeline");
    let (_b, port) = edge_backend("continue", &tmp);
    let (_weft, vip) = Weft::start_one_service(90, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"POST /a HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nabcde").unwrap();
    let r = read_responses(&mut s, 2);
    assert!(r[0].ends_with("got 3"), "{r:?}");
    assert!(r[1].ends_with("got 5"), "{r:?}");
}

#[test]
fn expect_100_continue_reaches_the_client_before_the_body() {
    let tmp = TempDir::new("h1-continue");
    let (_b, port) = edge_backend("continue", &tmp);
    let (_weft, vip) = Weft::start_one_service(91, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"POST /up HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n").unwrap();
    // The client holds the body back until the interim answer arrives, as curl does.
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("weft must relay 100 Continue while the body is held back");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue\r\n"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(b"body").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].starts_with("HTTP/1.1 200") && r[0].ends_with("got 4"), "{r:?}");
}

#[test]
fn upgrade_turns_the_connection_into_a_tunnel() {
    let tmp = TempDir::new("h1-upgrade");
    let (_b, port) = edge_backend("upgrade", &tmp);
    let (_weft, vip) = Weft::start_one_service(92, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: edge.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101") && head.to_ascii_lowercase().contains("upgrade: echo"), "{head}");
    for word in ["hello", "tunnel"] {
        s.write_all(word.as_bytes()).unwrap();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], word.to_uppercase().as_bytes());
    }
}

#[test]
fn ambiguous_framing_is_refused_and_never_reaches_the_endpoint() {
    let tmp = TempDir::new("h1-smuggle");
    let (_b, port) = edge_backend("continue", &tmp);
    let (_weft, vip) = Weft::start_one_service(93, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 400") && text.contains("x-weft-error: bad-request"), "{text}");
    let count = http("127.0.0.1", port, "GET", "/count", None).unwrap().text();
    assert_eq!(count, "0", "the endpoint must see no request at all");
}

#[test]
fn pooled_connection_closed_by_the_endpoint_is_replaced_transparently() {
    let tmp = TempDir::new("h1-stale");
    let (_b, port) = edge_backend("oneshot", &tmp);
    let (_weft, vip) = Weft::start_one_service(94, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    // Every upstream connection dies after one exchange although its response said nothing about
    // closing; each following request finds a dead socket in the pool.
    let mut s = connect(&vip, 8080);
    for i in 0..20 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
        let r = read_responses(&mut s, 1);
        assert!(r[0].starts_with("HTTP/1.1 200") && r[0].ends_with("hello"), "request {i}: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let count = http("127.0.0.1", port, "GET", "/count", None).unwrap().text();
    assert_eq!(count, "20", "each request reached the endpoint exactly once");
}

fn start_with_timeouts(vip_net: u8, port: u16, timeouts: &str) -> (Weft, String) {
    let w = Weft::start(WeftOpts::new(vip_net).extra(&format!(
        r#"
[[service]]
namespace = "default"
name = "edge"
protocol = "http"
aliases = [{{ dns_name = "edge.test", port = 8080 }}]
timeouts = {{ {timeouts} }}

[[endpoint]]
namespace = "default"
service = "edge"
id = "edge-1"
address = "127.0.0.1:{port}"
"#
    )));
    let vip = w.vip("edge.test", 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    (w, vip)
}

#[test]
fn a_stalled_upload_is_cut_by_the_request_timeout() {
    let tmp = TempDir::new("h1-stall-up");
    let (_b, port) = edge_backend("continue", &tmp);
    let (_w, vip) = start_with_timeouts(97, port, "request_s = 1, idle_s = 1");
    let mut s = connect(&vip, 8080);
    // A body that never completes, so no response can come either.
    s.write_all(b"POST /up HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 100\r\n\r\nabc").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = String::new();
    let r = s.read_to_string(&mut rest);
    assert!(r.is_ok(), "weft must end the exchange (got {r:?} after the read timeout)");
    // A small body is read whole before an endpoint is chosen (so the request can be retried):
    // the client's stall is then the client's, 408.
    assert!(rest.starts_with("HTTP/1.1 408") && rest.contains("x-weft-error: request-timeout"), "{rest}");
}

#[test]
fn a_stalled_response_body_is_cut_by_the_idle_timeout() {
    let tmp = TempDir::new("h1-stall-down");
    let (_b, port) = edge_backend("stall", &tmp);
    let (_w, vip) = start_with_timeouts(98, port, "idle_s = 1");
    let mut s = connect(&vip, 8080);
    s.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(r.is_ok(), "weft must close a connection whose response stalled (got {r:?})");
    assert!(String::from_utf8_lossy(&got).ends_with("\r\n\r\nabc"), "{:?}", String::from_utf8_lossy(&got));
}

fn stats_requests(w: &Weft) -> u64 {
    w.get_json("/v1/stats")["default/edge"]["requests"].as_u64().unwrap_or(0)
}

#[test]
fn a_dead_endpoint_gets_one_error_per_request_not_a_loop() {
    // Nothing in the tests binds 127.0.0.3, so this port stays dead whatever runs beside us.
    let dead = free_port();
    let (w, vip) = Weft::start_one_service(99, "edge", "http", "edge.test", 8080, &format!("127.0.0.3:{dead}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].starts_with("HTTP/1.1 502") && r[0].contains("x-weft-error: connect-failed"), "{r:?}");
    // The same connection serves the next request, and each request counts once.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].starts_with("HTTP/1.1 502"), "{r:?}");
    assert_eq!(stats_requests(&w), 2);
}

#[test]
fn a_status_line_without_reason_phrase_is_forwarded() {
    let tmp = TempDir::new("h1-noreason");
    let (_b, port) = edge_backend("noreason", &tmp);
    let (_w, vip) = Weft::start_one_service(100, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    for _ in 0..2 {
        let mut s = connect(&vip, 8080);
        s.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
        let r = read_responses(&mut s, 1);
        assert!(r[0].starts_with("HTTP/1.1 200") && r[0].ends_with("ok"), "{r:?}");
    }
}

#[test]
fn connection_cannot_strip_the_framing_headers() {
    let tmp = TempDir::new("h1-conn-cl");
    let (_b, port) = edge_backend("continue", &tmp);
    let (_w, vip) = Weft::start_one_service(101, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"POST /a HTTP/1.1\r\nHost: edge.test\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\nabc").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].ends_with("got 3"), "the endpoint must see the body as a body: {r:?}");
    assert_eq!(http("127.0.0.1", port, "GET", "/count", None).unwrap().text(), "1");
}

#[test]
fn a_post_is_not_resent_when_a_pooled_connection_dies_under_it() {
    let tmp = TempDir::new("h1-post-once");
    let (_b, port) = edge_backend("drop2", &tmp);
    let (_w, vip) = Weft::start_one_service(102, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"GET /warm HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].starts_with("HTTP/1.1 200"), "{r:?}");
    // Goes out on the pooled socket; the endpoint reads it and closes without answering.
    s.write_all(b"POST /charge HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0\r\n\r\n").unwrap();
    let r = read_responses(&mut s, 1);
    assert!(r[0].starts_with("HTTP/1.1 502"), "{r:?}");
    assert_eq!(http("127.0.0.1", port, "GET", "/count", None).unwrap().text(), "2", "the POST reached the endpoint once");
}

#[test]
fn an_http_1_0_client_never_gets_chunked_framing() {
    let tmp = TempDir::new("h1-10");
    let (_b, port) = edge_backend("chunky", &tmp);
    let (_w, vip) = Weft::start_one_service(103, "edge", "http", "edge.test", 8080, &format!("127.0.0.1:{port}"));
    let mut s = connect(&vip, 8080);
    s.write_all(b"GET / HTTP/1.0\r\nHost: edge.test\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.") && text.ends_with("hello") && !text.to_ascii_lowercase().contains("chunked"), "{text:?}");
}
