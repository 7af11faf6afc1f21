//! Cloud Map `DiscoverInstances` semantics over a catalog snapshot.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{CatalogError, Endpoint, Health, Key, Snapshot};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthFilter {
    #[default]
    Healthy,
    Unhealthy,
    All,
    HealthyOrElseAll,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverQuery {
    pub namespace: String,
    pub service: String,
    /// Every pair must match an attribute exactly (AND).
    #[serde(default)]
    pub query_parameters: BTreeMap<String, String>,
    /// Applied only if at least one instance matches them; otherwise ignored.
    #[serde(default)]
    pub optional_parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub health_status: HealthFilter,
    /// Default 100, at most 1000, as in Cloud Map.
    #[serde(default)]
    pub max_results: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiscoverResult {
    pub instances: Vec<Endpoint>,
    /// Changes when an instance registers, re-registers or deregisters; not on health changes.
    pub instances_revision: u64,
}

fn matches(e: &Endpoint, params: &BTreeMap<String, String>) -> bool {
    params.iter().all(|(k, v)| e.attributes.get(k) == Some(v))
}

/// `health_of` gives each endpoint's health as the caller sees it (the record's, or UNHEALTHY
/// when the caller knows its node is gone); filters and the answer use it.
pub fn discover(snap: &Snapshot, q: &DiscoverQuery, health_of: &dyn Fn(&Endpoint) -> Health) -> Result<DiscoverResult, CatalogError> {
    let max = q.max_results.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(CatalogError::Invalid { field: "max_results".into(), message: "must be between 1 and 1000".into() });
    }
    let key = (q.namespace.clone(), q.service.clone());
    if !snap.services.contains_key(&key) {
        return Err(CatalogError::NotFound(Key::Service(key.0, key.1)));
    }
    let all: Vec<Endpoint> = snap
        .endpoints
        .get(&key)
        .into_iter()
        .flatten()
        .filter(|e| matches(e, &q.query_parameters))
        .map(|e| Endpoint { health: health_of(e), ..e.clone() })
        .collect();
    let base: Vec<&Endpoint> = all.iter().collect();
    let healthy = |e: &&Endpoint| e.health == Health::Healthy;
    let mut found: Vec<&Endpoint> = match q.health_status {
        HealthFilter::Healthy => base.into_iter().filter(healthy).collect(),
        HealthFilter::Unhealthy => base.into_iter().filter(|e| e.health == Health::Unhealthy).collect(),
        HealthFilter::All => base,
        HealthFilter::HealthyOrElseAll => {
            let h: Vec<&Endpoint> = base.iter().copied().filter(healthy).collect();
            if h.is_empty() { base } else { h }
        }
    };
    if !q.optional_parameters.is_empty() {
        let narrowed: Vec<&Endpoint> = found.iter().copied().filter(|e| matches(e, &q.optional_parameters)).collect();
        if !narrowed.is_empty() {
            found = narrowed;
        }
    }
    found.shuffle(&mut rand::rng());
    found.truncate(max);
    Ok(DiscoverResult {
        instances: found.into_iter().cloned().collect(),
        instances_revision: snap.revisions.get(&key).copied().unwrap_or(0),
    })
}
