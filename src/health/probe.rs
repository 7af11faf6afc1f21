//! One check of one endpoint: a TCP connect, an HTTP GET, or the gRPC health protocol. Errors are
//! strings for the log: a check's only outcome is pass or fail.

use std::net::SocketAddr;

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::catalog::{CheckKind, HealthCheck, Protocol};

pub async fn probe(c: &HealthCheck, protocol: Protocol, addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    match c.kind {
        CheckKind::Tcp | CheckKind::None => Ok(()),
        CheckKind::Http if protocol.is_h2() => http_h2(c, stream, addr).await,
        CheckKind::Http => http_h1(c, stream, addr).await,
        CheckKind::Grpc => grpc(c, stream, addr).await,
    }
}

fn status_ok(c: &HealthCheck, status: u16) -> Result<(), String> {
    let ok = match c.expect_status {
        Some(want) => status == want,
        None => (200..300).contains(&status),
    };
    if ok {
        return Ok(());
    }
    Err(match c.expect_status {
        Some(want) => format!("GET {} answered {status}, expected {want}", c.path),
        None => format!("GET {} answered {status}, expected 2xx", c.path),
    })
}

/// HTTP/1.1 by hand: one request, `Connection: close`, and only the status line matters.
async fn http_h1(c: &HealthCheck, mut s: TcpStream, addr: SocketAddr) -> Result<(), String> {
    let req = format!("GET {} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: weft-health-check\r\nconnection: close\r\n\r\n", c.path);
    s.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    while !buf.contains(&b'\n') {
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a status line".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4096 {
            return Err("no status line in the first 4 KiB".into());
        }
    }
    let line = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len())]).into_owned();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {}", line.trim_end()))?;
    status_ok(c, status)
}

async fn h2_request(stream: TcpStream, req: Request<Full<Bytes>>) -> Result<(http::response::Parts, Bytes, Option<http::HeaderMap>), String> {
    let (mut send, conn) = http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = send.send_request(req).await.map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| format!("response body: {e}"))?;
        let trailers = collected.trailers().cloned();
        Ok((parts, collected.to_bytes(), trailers))
    }
    .await;
    driver.abort();
    result
}

async fn http_h2(c: &HealthCheck, stream: TcpStream, addr: SocketAddr) -> Result<(), String> {
    let uri = format!("http://{addr}{}", c.path);
    let req = Request::get(uri).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let (parts, _, _) = h2_request(stream, req).await?;
    status_ok(c, parts.status.as_u16())
}

/// `grpc.health.v1.Health/Check`: passes when the status is OK and the answer is SERVING (1).
async fn grpc(c: &HealthCheck, stream: TcpStream, addr: SocketAddr) -> Result<(), String> {
    // HealthCheckRequest { string service = 1; } in one length-prefixed gRPC message.
    let name = c.grpc_service.as_bytes();
    let mut msg = vec![0x0a, name.len() as u8];
    msg.extend_from_slice(name);
    if name.is_empty() {
        msg.clear();
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let req = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let (parts, mut bytes, trailers) = h2_request(stream, req).await?;
    if parts.status != StatusCode::OK {
        return Err(format!("gRPC health check answered HTTP {}", parts.status));
    }
    let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).or_else(|| parts.headers.get("grpc-status"));
    let status = status.and_then(|v| v.to_str().ok()).unwrap_or("missing");
    if status != "0" {
        return Err(format!("gRPC health check failed with grpc-status {status}"));
    }
    // HealthCheckResponse { ServingStatus status = 1; }: field 1 varint; SERVING = 1.
    if bytes.len() < 5 {
        return Err("gRPC health check answered no message".into());
    }
    bytes.advance(5);
    match bytes.as_ref() {
        [0x08, 1, ..] => Ok(()),
        [0x08, s, ..] => Err(format!("gRPC health status is {s}, not SERVING")),
        _ => Err("gRPC health status is UNKNOWN".into()),
    }
}
