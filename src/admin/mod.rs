//! The admin HTTP API (JSON) and dashboard, on loopback by default. The CLI is a client of it, so
//! every operation an operator can type is also scriptable here.

mod auth;
mod error;
pub(crate) mod handlers;
mod listen;
mod plugins;
pub use listen::AdminTls;
pub use handlers::telemetry_snapshot;
pub(crate) mod services;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::catalog::Catalog;
use crate::config::Mode;
use crate::proxy::{ListenerErrors, RoutingTable};
use crate::telemetry::Stats;

#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub mode: Mode,
    pub generation: u64,
    pub zone: String,
    pub admin: SocketAddr,
    pub dns: Option<SocketAddr>,
    pub hosts_file: Option<PathBuf>,
    /// The gossip (QUIC) address other nodes reach this one at.
    pub gossip: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub version: &'static str,
}

pub struct AdminState {
    pub catalog: Arc<Catalog>,
    pub stats: Arc<Stats>,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub listener_errors: ListenerErrors,
    pub info: NodeInfo,
    pub started: std::time::Instant,
    /// The mesh as the gossip task last published it, when this node is part of one.
    pub mesh: Option<tokio::sync::watch::Receiver<MeshView>>,
    pub plugins: Arc<crate::plugin::PluginHost>,
    /// The bearer token non-loopback callers must send (`[admin] token_file`).
    pub token: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MeshView {
    pub members: Vec<MemberReport>,
    /// What was refused, dropped or merged, by reason (bad datagrams, rejected handshakes, ...).
    pub counters: std::collections::BTreeMap<&'static str, u64>,
    /// Nodes that are alive, this one included. Endpoints of any other node (suspect, down,
    /// left, or not a member) are shown UNHEALTHY, as routing treats them.
    #[serde(skip)]
    pub alive: std::collections::HashSet<String>,
    /// When this node's mesh certificate expires (Unix seconds).
    #[serde(skip)]
    pub cert_expires: Option<u64>,
}

/// A member as `weft members` and the admin API show it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberReport {
    pub name: String,
    pub state: &'static str,
    pub address: SocketAddr,
    /// Its admin API (`weft --admin`), when it announced one.
    pub admin: Option<SocketAddr>,
    pub generation: u64,
    pub role: &'static str,
    pub rtt_ms: Option<f64>,
    pub myself: bool,
}

pub fn router(state: Arc<AdminState>) -> Router {
    use handlers::*;
    Router::new()
        .route("/", get(dashboard))
        .route("/v1/status", get(status))
        .route("/v1/namespaces", get(list_namespaces).post(put_namespace))
        .route("/v1/namespaces/{name}", get(get_namespace).delete(delete_namespace))
        .route("/v1/services", get(list_services).post(put_service))
        .route("/v1/services/{ns}/{name}", get(get_service).patch(patch_service).delete(delete_service))
        .route("/v1/endpoints", get(list_endpoints).post(put_endpoint))
        .route("/v1/endpoints/{ns}/{svc}/{id}", get(get_endpoint).delete(delete_endpoint))
        .route("/v1/endpoints/{ns}/{svc}/{id}/drain", post(drain_endpoint))
        .route("/v1/endpoints/{ns}/{svc}/{id}/undrain", post(undrain_endpoint))
        .route("/v1/discover", post(discover))
        .route("/v1/routes", get(routes))
        .route("/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/v1/stats/access-log", get(handlers::access_log_stats))
        .route("/v1/members", get(members))
        .route("/v1/plugins", get(plugins::list))
        .route("/v1/plugins/{name}/reload", post(plugins::reload))
        .route("/v1/plugins/{name}", put(plugins::push).delete(plugins::delete).layer(DefaultBodyLimit::max(plugins::MAX_PUSH_BODY)))
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(auth::MAX_BODY))
        .with_state(state)
}

/// Binds now (so a taken port fails startup), serves until shutdown.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the API until shutdown: plain HTTP and HTTPS on one port (see [`listen`]), every
/// request through the guard (who may call, how big, how long).
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AdminState>, tls: Option<Arc<AdminTls>>, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = router(state.clone()).layer(axum::middleware::from_fn_with_state(state, auth::guard));
    listen::serve(listener, app, tls, shutdown).await
}
