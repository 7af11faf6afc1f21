//! `/v1/plugins`: the plugins this node runs, reloading one from its file, and pushing one to the
//! mesh (a registry stores it as a catalog record; every node that proxies a service using it
//! loads it).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::handlers::{ApiResult, St, blocking, parse, remove, to_json};
use crate::catalog::{Body, Fail, Key, Origin, PluginRecord, base64_component};
use crate::plugin::{DEFAULT_FUEL, DEFAULT_MEMORY_MB, PluginError, hook_names};

/// Largest push body: the component's cap in base64, plus the settings.
pub const MAX_PUSH_BODY: usize = 12 << 20;

/// `PUT /v1/plugins/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Push {
    /// The component file, base64.
    #[serde(with = "base64_component")]
    component: bytes::Bytes,
    #[serde(default)]
    config: String,
    fuel: Option<u64>,
    memory_mb: Option<u32>,
    #[serde(default)]
    fail: Fail,
}

/// Each plugin with its figures and the services of the catalog that name it.
pub async fn list(State(s): St) -> ApiResult {
    let snap = s.catalog.snapshot();
    let mut views = s.plugins.views();
    for v in &mut views {
        v.services = snap.services.values().filter(|svc| svc.policy.as_deref() == Some(v.name.as_str())).map(|svc| format!("{}/{}", svc.namespace, svc.name)).collect();
    }
    to_json(views)
}

/// Reads the plugin's file again; a refused version answers 422 with the reason and the
/// previous version keeps serving.
pub async fn reload(State(s): St, Path(name): Path<String>) -> ApiResult {
    let host = s.plugins.clone();
    let n = name.clone();
    let result = tokio::task::spawn_blocking(move || host.reload(&n)).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match result {
        Ok(()) => to_json(s.plugins.views().into_iter().find(|v| v.name == name)),
        Err(e @ PluginError::Unknown(_)) => Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ PluginError::Invalid { .. }) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

/// Stores a component as the mesh plugin `name` (a registry or combined node only): it is
/// compiled and matched against the WIT here first, so a bad file is refused at the push, not on
/// every node; then it replicates like a service definition.
pub async fn push(State(s): St, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let req: Push = parse(&body)?;
    s.catalog.check_writable(&Key::Plugin(name.clone()))?;
    let (host, bytes, config, what) = (s.plugins.clone(), req.component.clone(), req.config.clone(), format!("pushed component `{name}`"));
    let checked = tokio::task::spawn_blocking(move || host.check_pushed(&bytes, &what, &config)).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (hooks, wanted, sha256) = checked.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let record = PluginRecord {
        name: name.clone(),
        sha256: sha256.clone(),
        size: req.component.len() as u64,
        config: req.config,
        fuel: req.fuel.unwrap_or(DEFAULT_FUEL),
        memory_mb: req.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        fail: req.fail,
        component: req.component,
    };
    let size = record.size;
    let catalog = s.catalog.clone();
    blocking(move || catalog.write(Body::Plugin(record), Origin::Api)).await?;
    Ok(Json(json!({ "name": name, "sha256": sha256, "size": size, "hooks": hook_names(hooks), "wanted_headers": wanted })))
}

/// Deletes a mesh plugin (refused while a service names it).
pub async fn delete(State(s): St, Path(name): Path<String>) -> ApiResult {
    remove(&s, Key::Plugin(name)).await
}
