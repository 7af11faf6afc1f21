//! Service handlers: create or replace (POST), change only what is given (PATCH), and the view
//! that `weft service describe` prints, with every setting, defaults included.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::handlers::{ApiResult, Filter, Liveness, St, WriteOpts, blocking, not_found, parse, write};
use crate::catalog::{Body, CatalogError, HealthCheck, Key, LbKind, OutlierConfig, RetryConfig, Service, Snapshot};

pub async fn list_services(State(s): St, Query(f): Query<Filter>) -> ApiResult {
    let snap = s.catalog.snapshot();
    let live = Liveness::of(&s);
    let list: Vec<Value> = snap
        .services
        .values()
        .filter(|v| f.namespace.as_ref().is_none_or(|n| *n == v.namespace))
        .map(|v| service_view(&snap, v, &live))
        .collect();
    Ok(Json(Value::Array(list)))
}

/// The whole definition: every field the record has, settings left at their defaults filled
/// in (the record omits them), timeouts as they apply to the protocol, VIPs and endpoint counts.
fn service_view(snap: &Snapshot, v: &Service, live: &Liveness) -> Value {
    let mut out = match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // Fields a record leaves out when they hold their defaults. `rules` is per-service route
    // rules (an empty list when there are none).
    let defaults = [
        ("lb", json!(LbKind::default())),
        ("health_check", json!(HealthCheck::default())),
        ("retry", json!(RetryConfig::default())),
        ("outlier", json!(OutlierConfig::default())),
        ("rules", json!([])),
        ("policy", Value::Null),
    ];
    for (k, d) in defaults {
        out.entry(k).or_insert(d);
    }
    let aliases: Vec<Value> = v
        .aliases
        .iter()
        .map(|a| json!({ "dns_name": a.dns_name, "port": a.port, "vip": snap.vips.get(&a.dns_name) }))
        .collect();
    out.insert("aliases".into(), Value::Array(aliases));
    out.insert(
        "timeouts".into(),
        json!({
            "connect_ms": v.timeouts.connect_ms(),
            "request_s": v.timeouts.request_s(v.protocol),
            "idle_s": v.timeouts.idle_s(v.protocol),
        }),
    );
    let eps = snap.endpoints_of(&v.namespace, &v.name);
    out.insert("endpoints".into(), json!(eps.len()));
    out.insert("healthy_endpoints".into(), json!(eps.iter().filter(|e| live.routable(e)).count()));
    Value::Object(out)
}

pub async fn put_service(State(s): St, Query(o): Query<WriteOpts>, body: Bytes) -> ApiResult {
    let svc: Service = parse(&body)?;
    let _ = write(&s, Body::Service(svc.clone()), &o).await?;
    Ok(Json(service_view(&s.catalog.snapshot(), &svc, &Liveness::of(&s))))
}

pub async fn get_service(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let snap = s.catalog.snapshot();
    let v = snap.services.get(&(ns.clone(), name.clone())).ok_or_else(|| not_found(Key::Service(ns, name)))?;
    Ok(Json(service_view(&snap, v, &Liveness::of(&s))))
}

/// `PATCH /v1/services/{ns}/{name}`: a JSON merge patch (RFC 7386) of the definition. Only the
/// fields given change; `null` puts a field back to its default; lists (aliases, rules) are
/// replaced whole. Works on the definition as JSON, so every field — present or added later —
/// is covered, and the result is checked like any write.
pub async fn patch_service(State(s): St, Path((ns, name)): Path<(String, String)>, body: Bytes) -> ApiResult {
    let patch: Value = parse(&body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("send a JSON object with the fields to change, e.g. {\"timeouts\": {\"connect_ms\": 500}}"));
    }
    let catalog = s.catalog.clone();
    let svc = blocking(move || {
        catalog.update_service(&ns, &name, |current| {
            let mut v = serde_json::to_value(current).map_err(|e| CatalogError::Invalid { field: "service".into(), message: e.to_string() })?;
            merge_patch(&mut v, &patch);
            serde_path_to_error::deserialize::<_, Service>(v).map_err(|e| {
                let path = e.path().to_string();
                let field = if path.is_empty() || path == "." { "service".to_string() } else { path };
                CatalogError::Invalid { field, message: e.into_inner().to_string() }
            })
        })
    })
    .await?;
    Ok(Json(service_view(&s.catalog.snapshot(), &svc, &Liveness::of(&s))))
}

/// RFC 7386: objects merge key by key, `null` removes the key, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else { return };
    for (k, v) in changes {
        if v.is_null() {
            fields.remove(k);
        } else {
            merge_patch(fields.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_changes_only_what_is_given() {
        let mut v = json!({"protocol": "grpc", "aliases": [{"dns_name": "a", "port": 1}], "timeouts": {"connect_ms": 100, "idle_s": 5}});
        merge_patch(&mut v, &json!({"timeouts": {"connect_ms": 250, "idle_s": null}, "lb": "round-robin"}));
        assert_eq!(v, json!({"protocol": "grpc", "aliases": [{"dns_name": "a", "port": 1}], "timeouts": {"connect_ms": 250}, "lb": "round-robin"}));
        merge_patch(&mut v, &json!({"aliases": []}));
        assert_eq!(v["aliases"], json!([]), "lists are replaced whole");
    }
}
