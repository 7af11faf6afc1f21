//! Who may use the admin API, with how big a request, for how long. Loopback callers may (the
//! node's own host: the CLI, systemd, a local agent); any other caller must prove itself: over
//! HTTPS with a certificate of the cluster CA (the CLI shows its node's), or with
//! `Authorization: Bearer <token>` and the token of `[admin] token_file`. A node whose admin API
//! listens beyond loopback has one of the two: the config refuses such a `listen` without.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::listen::CallerCert;
use super::{AdminState, ApiError};

/// A request body bigger than this is refused before it is read (plugin uploads have their own).
pub const MAX_BODY: usize = 1 << 20;
/// From a request's head to its answer: a client that trickles its body is cut off here.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn guard(State(s): State<Arc<AdminState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    if let Some(refusal) = refusal(&s, peer, &req) {
        return refusal;
    }
    if let Some(too_big) = oversize(&req) {
        return too_big;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("the request was not complete within {}s (its body arrived too slowly)", REQUEST_TIMEOUT.as_secs())).into_response(),
    }
}

/// Why this caller may not use the API, as the answer to send; None when it may.
fn refusal(s: &AdminState, peer: SocketAddr, req: &Request) -> Option<Response> {
    if is_loopback(peer) {
        return None;
    }
    if let Some(CallerCert(node)) = req.extensions().get::<CallerCert>() {
        tracing::debug!(%peer, certificate = %node, method = %req.method(), path = %req.uri().path(), "admin API: caller with a cluster certificate");
        return None;
    }
    let sent = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (&s.token, sent) {
        (Some(token), Some(sent)) if same(token.as_bytes(), sent.trim().as_bytes()) => None,
        (_, None) => Some(refuse(format!("the admin API needs credentials from {} (not loopback): HTTPS with a certificate of the cluster CA (the CLI uses its node's [tls] files), or `Authorization: Bearer <token>` with the token of [admin] token_file (the CLI sends it with --token-file or WEFT_ADMIN_TOKEN_FILE)", peer.ip()))),
        _ => Some(refuse("the bearer token does not match [admin] token_file".into())),
    }
}

/// A declared body over the limit of its route, answered with the limit before any byte of it is
/// read. (A chunked body over it is cut off by the extractor's own limit.)
fn oversize(req: &Request) -> Option<Response> {
    let limit = if req.uri().path().starts_with("/v1/plugins/") { super::plugins::MAX_PUSH_BODY } else { MAX_BODY };
    let declared: u64 = req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
    (declared > limit as u64).then(|| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is {declared} bytes; {} takes at most {limit}", req.uri().path())).into_response())
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
