//! Who may use the admin API. Loopback callers may (the node's own host: the CLI, systemd, a
//! local agent), as before; any other caller must send `Authorization: Bearer <token>` with the
//! token of `[admin] token_file`. A node whose admin API listens beyond loopback has one: the
//! config refuses such a `listen` without it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, ApiError};

pub async fn guard(State(s): State<Arc<AdminState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    if is_loopback(peer) {
        return next.run(req).await;
    }
    let sent = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (&s.token, sent) {
        (Some(token), Some(sent)) if same(token.as_bytes(), sent.trim().as_bytes()) => next.run(req).await,
        (_, None) => refuse(format!("the admin API needs `Authorization: Bearer <token>` from {} (not loopback): the token of [admin] token_file; the CLI sends it with --token-file or WEFT_ADMIN_TOKEN_FILE", peer.ip())),
        _ => refuse("the bearer token does not match [admin] token_file".into()),
    }
}

fn refuse(message: String) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Compares in time that depends on the lengths only, not on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
