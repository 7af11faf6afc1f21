//! `/v1/plugins`: the plugins this node runs, and reloading one from its file.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiError;
use super::handlers::{ApiResult, St, to_json};
use crate::plugin::PluginError;

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
