//! Field checks shared by every writer (config file, admin API, CLI), so each path rejects the same
//! input with the same message naming the field.

use super::settings::CheckKind;
use super::types::{Endpoint, Namespace, Protocol, Service};
use super::{Body, CatalogError, Record};

/// Cloud Map's limits for instance attributes.
pub const MAX_ATTRIBUTES: usize = 30;
pub const MAX_ATTRIBUTE_KEY: usize = 255;
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;

fn invalid(field: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid { field: field.to_string(), message: message.into() }
}

fn check_name(field: &str, value: &str, max: usize, extra: &[char]) -> Result<(), CatalogError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("is {} characters long; the limit is {max}", value.len())));
    }
    if value.starts_with(['-', '.']) {
        return Err(invalid(field, format!("`{value}` must not start with '-' or '.'")));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || extra.contains(c))) {
        return Err(invalid(field, format!("`{value}` contains '{c}'; allowed are letters, digits, '-', '_' {}", extra.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(" "))));
    }
    Ok(())
}

/// A plugin's name (`[[plugin]] name`, a service's `policy`).
pub fn plugin_name(field: &str, name: &str) -> Result<(), CatalogError> {
    check_name(field, name, 63, &[])
}

/// A service's `allow`: names as elsewhere (a node glob may hold `*`), and not too many.
fn allow(a: &crate::authz::Allow) -> Result<(), CatalogError> {
    let total = a.namespaces.len() + a.nodes.len() + a.groups.len();
    if total > crate::authz::MAX_ALLOW_ENTRIES {
        return Err(invalid("allow", format!("has {total} entries; the limit is {}", crate::authz::MAX_ALLOW_ENTRIES)));
    }
    for (i, ns) in a.namespaces.iter().enumerate() {
        check_name(&format!("allow.namespaces[{i}]"), ns, 253, &['.'])?;
    }
    for (i, n) in a.nodes.iter().enumerate() {
        check_name(&format!("allow.nodes[{i}]"), n, 64, &['.', '*'])?;
    }
    for (i, g) in a.groups.iter().enumerate() {
        check_name(&format!("allow.groups[{i}]"), g, 64, &['.'])?;
    }
    Ok(())
}

pub fn namespace(ns: &Namespace) -> Result<(), CatalogError> {
    check_name("name", &ns.name, 253, &['.'])?;
    if ns.description.len() > 1024 {
        return Err(invalid("description", "is longer than 1024 characters"));
    }
    Ok(())
}

pub fn service(s: &Service) -> Result<(), CatalogError> {
    check_name("namespace", &s.namespace, 253, &['.'])?;
    check_name("name", &s.name, 127, &['.'])?;
    if let Some(p) = &s.policy {
        plugin_name("policy", p)?;
    }
    for (i, a) in s.aliases.iter().enumerate() {
        let field = format!("aliases[{i}].dns_name");
        check_name(&field, &a.dns_name, 127, &['.'])?;
        if a.dns_name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(&field, format!("`{}` must be lowercase (DNS names match case-insensitively)", a.dns_name)));
        }
        if a.port == 0 {
            return Err(invalid(&format!("aliases[{i}].port"), "must be between 1 and 65535"));
        }
        if s.aliases[..i].contains(a) {
            return Err(invalid(&field, format!("alias {}:{} is listed twice", a.dns_name, a.port)));
        }
    }
    if s.protocol == Protocol::Tcp && s.timeouts.request_s.is_some() {
        return Err(invalid("timeouts.request_s", "is not allowed for tcp services (there are no requests to time)"));
    }
    if s.timeouts.connect_ms == Some(0) {
        return Err(invalid("timeouts.connect_ms", "must be at least 1"));
    }
    if s.protocol == Protocol::Tcp && !s.rules.is_empty() {
        return Err(invalid("rules", "are not allowed for tcp services (there are no methods or paths to match)"));
    }
    super::rules::validate(&s.rules)?;
    if let Some(a) = &s.allow {
        allow(a)?;
    }
    if let Some(p) = &s.policy {
        check_name("policy", p, 127, &['.'])?;
    }
    traffic(s)
}

fn at_least(field: &str, value: u64, min: u64) -> Result<(), CatalogError> {
    if value < min {
        return Err(invalid(field, format!("is {value}; the minimum is {min}")));
    }
    Ok(())
}

fn traffic(s: &Service) -> Result<(), CatalogError> {
    let h = &s.health_check;
    at_least("health_check.interval_ms", h.interval_ms, 10)?;
    at_least("health_check.timeout_ms", h.timeout_ms, 1)?;
    at_least("health_check.healthy_threshold", h.healthy_threshold.into(), 1)?;
    at_least("health_check.unhealthy_threshold", h.unhealthy_threshold.into(), 1)?;
    if h.kind == CheckKind::Http && !h.path.starts_with('/') {
        return Err(invalid("health_check.path", format!("`{}` must start with '/'", h.path)));
    }
    // HealthCheckRequest's `service` is written with a one-byte length (the probe's whole message
    // is hand-encoded): a longer name would be mis-encoded, so it is refused here.
    if h.grpc_service.len() > 127 {
        return Err(invalid("health_check.grpc_service", format!("is {} bytes long; the limit is 127", h.grpc_service.len())));
    }
    if let Some(code) = h.expect_status
        && !(100..=599).contains(&code) {
            return Err(invalid("health_check.expect_status", format!("{code} is not an HTTP status")));
        }
    let r = &s.retry;
    if r.max_retries > 10 {
        return Err(invalid("retry.max_retries", format!("is {}; the maximum is 10", r.max_retries)));
    }
    if r.backoff_base_ms > r.backoff_max_ms {
        return Err(invalid("retry.backoff_base_ms", format!("({}) is above retry.backoff_max_ms ({})", r.backoff_base_ms, r.backoff_max_ms)));
    }
    let o = &s.outlier;
    if o.max_ejected_percent > 100 {
        return Err(invalid("outlier.max_ejected_percent", format!("is {}; it is a percentage (0 to 100)", o.max_ejected_percent)));
    }
    if o.consecutive_failures > 0 {
        at_least("outlier.base_ejection_s", o.base_ejection_s, 1)?;
        at_least("outlier.max_ejection_s", o.max_ejection_s, o.base_ejection_s)?;
    }
    Ok(())
}

pub fn endpoint(e: &Endpoint) -> Result<(), CatalogError> {
    check_name("namespace", &e.namespace, 253, &['.'])?;
    check_name("service", &e.service, 127, &['.'])?;
    check_name("id", &e.id, 64, &['.', ':'])?;
    if e.address.port() == 0 {
        return Err(invalid("address", "needs a port between 1 and 65535"));
    }
    if e.address.ip().is_unspecified() {
        return Err(invalid("address", format!("{} is unspecified; give the address the endpoint listens on", e.address.ip())));
    }
    if e.attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid("attributes", format!("has {} entries; the limit is {MAX_ATTRIBUTES}", e.attributes.len())));
    }
    for (k, v) in &e.attributes {
        if k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY {
            return Err(invalid("attributes", format!("key `{k}` must be 1 to {MAX_ATTRIBUTE_KEY} bytes")));
        }
        if v.len() > MAX_ATTRIBUTE_VALUE {
            return Err(invalid(&format!("attributes.{k}"), format!("value is {} bytes; the limit is {MAX_ATTRIBUTE_VALUE}", v.len())));
        }
    }
    Ok(())
}

/// A record from a peer, held to the rules of a local write: its body is valid and is the body
/// of its key (a record for `svc/a/b` cannot carry service `c/d`). Alias uniqueness is not a
/// property of one record; the snapshot settles it (`Snapshot::build`).
pub fn record(r: &Record) -> Result<(), CatalogError> {
    let Some(body) = &r.body else { return Ok(()) };
    if body.key() != r.key {
        return Err(invalid("key", format!("`{}` does not match its body, which is {}", r.key, body.key())));
    }
    match body {
        Body::Namespace(n) => namespace(n),
        Body::Service(s) => service(s),
        Body::Endpoint(e) => endpoint(e),
        Body::Plugin(p) => super::plugin::check(p),
    }
}
