//! A tiny blocking HTTP/1.1 client for the admin API: the CLI sends one request per run, so a
//! plain socket beats pulling an async client into every command.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the weft admin API at {addr}: {source} (is `weft run` running? point at it with -c CONFIG or --admin ADDR)")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("admin API at {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("admin API at {addr} sent a malformed response: {detail}")]
    Malformed { addr: SocketAddr, detail: String },
    #[error("admin API at {addr}: TLS handshake: {source} (does the node have the same cluster CA in [tls]?)")]
    Tls { addr: SocketAddr, source: std::io::Error },
    #[error("{message}")]
    Api { status: u16, message: String },
}

pub struct Client {
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer …` (a node's admin API beyond loopback requires it).
    pub token: Option<String>,
    /// The node's own certificate, shown over HTTPS to an admin API beyond loopback; it proves
    /// the CLI to any node of the cluster CA, as the token does.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Sends one request and reads the answer to the end (`Connection: close`).
fn exchange<S: Read + Write>(s: &mut S, head: &str, payload: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(head.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS server that closes without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

impl Client {
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let addr = self.addr;
        let io = |source| ClientError::Io { addr, source };
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|source| ClientError::Connect { addr, source })?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = self.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            payload.len()
        );
        let raw = match &self.tls {
            // Loopback (and 0.0.0.0, which is this host) is served in plain HTTP to any caller.
            Some(tls) if !addr.ip().is_loopback() && !addr.ip().is_unspecified() => {
                let name = rustls::pki_types::ServerName::try_from(crate::transport::tls::ANY_NODE).expect("a valid DNS name");
                let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| ClientError::Tls { addr, source: std::io::Error::other(e) })?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock).map_err(|source| ClientError::Tls { addr, source })?;
                }
                exchange(&mut tls, &head, &payload).map_err(io)?
            }
            _ => exchange(&mut s, &head, &payload).map_err(io)?,
        };
        let malformed = |detail: &str| ClientError::Malformed { addr, detail: detail.to_string() };
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| malformed("no header end"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| malformed("no status"))?;
        let mut body = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body).ok_or_else(|| malformed("bad chunked body"))?;
        }
        let value: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).map_err(|e| malformed(&e.to_string()))? };
        if status >= 400 {
            let message = value.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
            return Err(ClientError::Api { status, message });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(super::dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(super::dechunk(b"zz\r\n").is_none());
    }
}
