//! Request handlers. Writes run on the blocking pool: a store commit fsyncs, and the data plane's
//! worker threads must not wait for a disk.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::catalog::{Body, Catalog, CatalogError, DiscoverQuery, Endpoint, EndpointAddress, Health, Key, Namespace, Origin, discover as run_discover};

pub use super::services::{get_service, list_services, patch_service, put_service};

pub(super) type St = State<Arc<AdminState>>;
pub(super) type ApiResult = Result<Json<Value>, ApiError>;

/// Parses a JSON body, naming the offending field path on error (`aliases[0].port: ...`).
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{path}`: {inner}"))
        }
    })
}

pub(super) fn to_json<T: serde::Serialize>(v: T) -> ApiResult {
    Ok(Json(serde_json::to_value(v).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?))
}

pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("write task failed: {e}")))?
        .map_err(ApiError::from)
}

/// `?create_only=true` makes a create fail with 409 when the record exists (the CLI's `create`);
/// without it a POST creates or replaces, which keeps scripts idempotent.
#[derive(Deserialize, Default)]
pub struct WriteOpts {
    #[serde(default)]
    pub(super) create_only: bool,
}

pub(super) async fn write(s: &AdminState, body: Body, opts: &WriteOpts) -> ApiResult {
    let catalog: Arc<Catalog> = s.catalog.clone();
    let create_only = opts.create_only;
    to_json(blocking(move || if create_only { catalog.create(body, Origin::Api) } else { catalog.write(body, Origin::Api) }).await?)
}

pub(super) async fn remove(s: &AdminState, key: Key) -> ApiResult {
    let catalog = s.catalog.clone();
    let k = key.clone();
    blocking(move || catalog.delete(&k)).await?;
    Ok(Json(json!({ "deleted": key.to_string() })))
}

/// Namespaces and services are the registry's to define; a proxy node holds a read-only copy.
pub(super) fn not_found(key: Key) -> ApiError {
    ApiError::from(CatalogError::NotFound(key))
}

pub async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

pub async fn unknown_path() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such API path; see /v1/status, /v1/namespaces, /v1/services, /v1/endpoints, /v1/discover, /v1/routes, /v1/stats, /v1/stats/access-log, /v1/members, /v1/plugins, /metrics")
}

pub async fn status(State(s): St) -> ApiResult {
    let snap = s.catalog.snapshot();
    let endpoints: usize = snap.endpoints.values().map(Vec::len).sum();
    let table = s.table.load();
    Ok(Json(json!({
        "node": s.info,
        "uptime_s": s.started.elapsed().as_secs(),
        "catalog_seq": snap.seq,
        "namespaces": snap.namespaces.len(),
        "services": snap.services.len(),
        "endpoints": endpoints,
        "listeners": table.listeners.len(),
        "alias_conflicts": snap.alias_conflicts,
        "mesh": s.mesh.as_ref().map(|m| {
            let view = m.borrow();
            json!({ "address": s.info.gossip, "members": view.members.len(), "counters": view.counters, "certificate": certificate(view.cert_expires) })
        }),
    })))
}

/// This node's certificate in `/v1/status`: when it expires, and a warning within 30 days.
fn certificate(expires: Option<u64>) -> Value {
    let Some(at) = expires else { return Value::Null };
    let (days_left, warning) = crate::transport::cert_expiry(at);
    json!({ "expires_unix_s": at, "days_left": days_left, "warning": warning })
}

pub async fn members(State(s): St) -> ApiResult {
    match &s.mesh {
        Some(m) => to_json(m.borrow().members.clone()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "this node is not part of a mesh: set [tls] and [gossip] in its config")),
    }
}

pub async fn list_namespaces(State(s): St) -> ApiResult {
    to_json(s.catalog.snapshot().namespaces.values().collect::<Vec<_>>())
}

pub async fn put_namespace(State(s): St, Query(o): Query<WriteOpts>, body: Bytes) -> ApiResult {
    write(&s, Body::Namespace(parse::<Namespace>(&body)?), &o).await
}

pub async fn get_namespace(State(s): St, Path(name): Path<String>) -> ApiResult {
    let snap = s.catalog.snapshot();
    let ns = snap.namespaces.get(&name).ok_or_else(|| not_found(Key::Namespace(name.clone())))?;
    let services: Vec<&str> = snap.services.values().filter(|v| v.namespace == name).map(|v| v.name.as_str()).collect();
    Ok(Json(json!({ "name": ns.name, "description": ns.description, "services": services })))
}

pub async fn delete_namespace(State(s): St, Path(name): Path<String>) -> ApiResult {
    remove(&s, Key::Namespace(name)).await
}

#[derive(Deserialize)]
pub struct Filter {
    pub(super) namespace: Option<String>,
    service: Option<String>,
}

pub async fn delete_service(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    remove(&s, Key::Service(ns, name)).await
}

/// How this node's admin views show endpoints: with the record's health, unless this node
/// knows the endpoint's node is not alive (suspect, down, left, or no longer a member): then
/// UNHEALTHY, as routing treats it. A view, not a write: the owner cannot write while it is
/// gone, and a registry's tombstone comes only after `endpoint_grace_s`.
pub(super) struct Liveness(Option<HashSet<String>>);

impl Liveness {
    pub fn of(s: &AdminState) -> Liveness {
        Liveness(s.mesh.as_ref().map(|m| m.borrow().alive.clone()))
    }

    pub fn health(&self, e: &Endpoint) -> Health {
        match &self.0 {
            Some(alive) if !alive.contains(&e.node) => Health::Unhealthy,
            _ => e.health,
        }
    }

    pub fn show(&self, e: &Endpoint) -> Endpoint {
        Endpoint { health: self.health(e), ..e.clone() }
    }

    /// Would routing send it new requests (healthy, node alive, not draining)?
    pub fn routable(&self, e: &Endpoint) -> bool {
        !e.draining && self.health(e) == Health::Healthy
    }
}

pub async fn list_endpoints(State(s): St, Query(f): Query<Filter>) -> ApiResult {
    let snap = s.catalog.snapshot();
    let live = Liveness::of(&s);
    let list: Vec<Endpoint> = snap
        .endpoints
        .values()
        .flatten()
        .filter(|e| f.namespace.as_ref().is_none_or(|n| *n == e.namespace))
        .filter(|e| f.service.as_ref().is_none_or(|n| *n == e.service))
        .map(|e| live.show(e))
        .collect();
    to_json(list)
}

/// An endpoint from a request body. An `address` given as `HOST:PORT` is resolved here, once: the
/// record keeps the address (see `catalog::EndpointAddress`).
async fn parse_endpoint(body: &[u8]) -> Result<Endpoint, ApiError> {
    let mut v: Value = parse(body)?;
    if let Some(Value::String(text)) = v.get("address")
        && text.parse::<std::net::SocketAddr>().is_err()
    {
        let bad = |e: String| ApiError::bad_request(format!("field `address`: {e}"));
        let address: EndpointAddress = text.parse().map_err(bad)?;
        let resolved = address.resolve().await.map_err(|e| bad(e.to_string()))?;
        v["address"] = Value::String(resolved.to_string());
    }
    parse(&serde_json::to_vec(&v).unwrap_or_default())
}

pub async fn put_endpoint(State(s): St, Query(o): Query<WriteOpts>, body: Bytes) -> ApiResult {
    let mut ep = parse_endpoint(&body).await?;
    let me = s.catalog.node();
    if !ep.node.is_empty() && ep.node != me {
        return Err(ApiError::bad_request(format!(
            "field `node`: endpoints are written by the node that owns them; this is `{me}`, register it on `{}`",
            ep.node
        )));
    }
    ep.node = me.to_string();
    if ep.zone.is_empty() {
        ep.zone = s.info.zone.clone();
    }
    write(&s, Body::Endpoint(ep), &o).await
}

pub async fn get_endpoint(State(s): St, Path((ns, svc, id)): Path<(String, String, String)>) -> ApiResult {
    let snap = s.catalog.snapshot();
    let e = snap.endpoints_of(&ns, &svc).iter().find(|e| e.id == id).ok_or_else(|| not_found(Key::Endpoint(ns, svc, id)))?;
    to_json(Liveness::of(&s).show(e))
}

pub async fn delete_endpoint(State(s): St, Path((ns, svc, id)): Path<(String, String, String)>) -> ApiResult {
    remove(&s, Key::Endpoint(ns, svc, id)).await
}

/// Marks one of this node's endpoints draining (peers stop sending it new requests; requests in
/// flight finish) or back in service.
async fn set_draining(s: &AdminState, key: Key, draining: bool) -> ApiResult {
    let catalog = s.catalog.clone();
    to_json(blocking(move || catalog.update_endpoint(&key, |e| e.draining = draining)).await?)
}

pub async fn drain_endpoint(State(s): St, Path((ns, svc, id)): Path<(String, String, String)>) -> ApiResult {
    set_draining(&s, Key::Endpoint(ns, svc, id), true).await
}

pub async fn undrain_endpoint(State(s): St, Path((ns, svc, id)): Path<(String, String, String)>) -> ApiResult {
    set_draining(&s, Key::Endpoint(ns, svc, id), false).await
}

pub async fn discover(State(s): St, body: Bytes) -> ApiResult {
    let q: DiscoverQuery = parse(&body)?;
    let live = Liveness::of(&s);
    to_json(run_discover(&s.catalog.snapshot(), &q, &|e| live.health(e))?)
}

pub async fn routes(State(s): St) -> ApiResult {
    let table = s.table.load();
    let errors = s.listener_errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let list: Vec<Value> = table
        .listeners
        .iter()
        .map(|(addr, spec)| {
            let route = table.services.get(&spec.service);
            json!({
                "dns_name": spec.dns_name,
                "vip": addr.ip(),
                "port": addr.port(),
                "namespace": spec.service.0,
                "service": spec.service.1,
                "protocol": spec.protocol,
                "endpoints": route.map(|r| r.targets.len()).unwrap_or(0),
                "healthy_endpoints": route.map(|r| r.targets.iter().filter(|t| t.healthy).count()).unwrap_or(0),
                "listening": !errors.contains_key(addr),
                "error": errors.get(addr),
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// The access log's own figures: records written, dropped (queue full, destination failing),
/// left out by sampling.
pub async fn access_log_stats(State(s): St) -> ApiResult {
    to_json(s.stats.access.report())
}

/// One snapshot of the telemetry registry with each endpoint's node filled in from the catalog.
pub fn telemetry_snapshot(stats: &crate::telemetry::Registry, catalog: &crate::catalog::Catalog) -> crate::telemetry::Snapshot {
    let mut t = stats.snapshot();
    let snap = catalog.snapshot();
    for r in &mut t.services {
        let registered = snap.endpoints_of(&r.namespace, &r.service);
        for e in &mut r.endpoints {
            e.node = registered.iter().find(|x| x.id == e.id).map(|x| x.node.clone()).unwrap_or_default();
        }
    }
    t
}

pub async fn stats(State(s): St) -> ApiResult {
    let t = telemetry_snapshot(&s.stats, &s.catalog);
    let by_service: BTreeMap<String, &crate::telemetry::ServiceReport> =
        t.services.iter().map(|r| (format!("{}/{}", r.namespace, r.service), r)).collect();
    to_json(by_service)
}

/// Prometheus' scrape: the same registry, encoded by `telemetry::prom`.
pub async fn metrics(State(s): St) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = crate::telemetry::prom::render(&telemetry_snapshot(&s.stats, &s.catalog));
    ([(http::header::CONTENT_TYPE, crate::telemetry::prom::CONTENT_TYPE)], text).into_response()
}
