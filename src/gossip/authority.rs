//! Who may write what: checked on every record from a peer before it reaches the replica.
//!
//! Roles come from SWIM identities, which nodes declare themselves; this stops a misconfigured
//! proxy from overwriting definitions, not a hostile node holding a valid certificate.

use super::Role;
use crate::catalog::{Body, Key, Record};

/// Whether the core lets `r` through to [`super::Replica::merge`]. `role_of` is the writer's
/// role if membership knows it.
///
/// - An endpoint is written only by the node that owns it (`version.writer == endpoint.node`).
/// - Namespaces, services, plugins and tombstones need a writer whose role writes definitions. An
///   unknown role is refused now; anti-entropy offers the record again once membership knows it.
/// - Exception: an endpoint tombstone from any writer is let through; the replica accepts it only
///   if it replaces a record of the same writer (only the replica knows that record).
/// - A body stored under another record's key is refused (it would dodge the checks above).
pub fn admit(r: &Record, role_of: &dyn Fn(&str) -> Option<Role>) -> bool {
    let writer = r.version.writer.as_str();
    if writer.is_empty() {
        return false;
    }
    match &r.body {
        Some(body) if body.key() != r.key => false,
        Some(Body::Endpoint(ep)) => ep.node == writer,
        Some(Body::Namespace(_) | Body::Service(_)) => role_of(writer).is_some_and(Role::writes_definitions),
        // Its bytes are checked against their hash by the core's merge, which counts a mismatch.
        Some(Body::Plugin(_)) => role_of(writer).is_some_and(Role::writes_definitions),
        None => matches!(r.key, Key::Endpoint(..)) || role_of(writer).is_some_and(Role::writes_definitions),
    }
}

/// The replica's half of [`admit`], for a record that passed it: may `r` replace `current`? An
/// endpoint tombstone from a writer that does not write definitions only removes a record of its
/// own (or lands where there is none yet, so a late joiner still converges); a registry may
/// remove any endpoint (its node stayed down past the grace period).
pub fn may_replace(r: &Record, current: Option<&Record>, role_of: &dyn Fn(&str) -> Option<Role>) -> bool {
    let endpoint_tombstone = r.body.is_none() && matches!(r.key, Key::Endpoint(..));
    !endpoint_tombstone
        || current.is_none_or(|c| c.version.writer == r.version.writer)
        || role_of(&r.version.writer).is_some_and(Role::writes_definitions)
}
