//! Field checks shared by every writer (config file, admin API, CLI), so each path rejects the same
//! input with the same message naming the field.

use super::types::{Endpoint, Namespace, Protocol, Service};
use super::CatalogError;

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
