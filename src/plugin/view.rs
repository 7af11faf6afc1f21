//! What the admin API shows of a plugin (`GET /v1/plugins`, `weft plugin list`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use super::guard::{Hook, HookFigures};
use super::loaded::Loaded;
use super::{Fail, Origin, PluginSpec, hook_names};

#[derive(Debug, Serialize, Deserialize)]
pub struct PluginView {
    pub name: String,
    /// The file, or `mesh` for a plugin pushed to a registry.
    pub source: String,
    /// `active`, `suspended`, or `not loaded` (its last load was refused and no version serves).
    pub status: String,
    pub hash: Option<String>,
    pub size: Option<usize>,
    pub hooks: Vec<String>,
    pub wanted_headers: Vec<String>,
    pub fail: Fail,
    pub fuel: u64,
    pub memory_mb: u32,
    /// Seconds since the Unix epoch when the serving version was loaded.
    pub loaded_at: Option<u64>,
    /// Per hook: calls, failures, mean time per call.
    pub calls: BTreeMap<String, HookFiguresView>,
    /// Calls answered by the built-in hook while the plugin was suspended.
    pub skipped: u64,
    pub suspensions: u64,
    pub suspended_for_ms: Option<u64>,
    pub instances: u64,
    pub counters: BTreeMap<String, u64>,
    pub logs_dropped: u64,
    pub last_error: Option<String>,
    /// Why the last load (or reload) was refused; the serving version, if any, is older.
    pub last_refusal: Option<String>,
    /// Services using it (filled in by the admin API from the catalog).
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HookFiguresView {
    pub calls: u64,
    pub failures: u64,
    pub mean_ns: u64,
    /// Requests answered with a kept answer (`reuse = same-headers`), without a call.
    #[serde(default)]
    pub reused: u64,
}

impl From<HookFigures> for HookFiguresView {
    fn from(f: HookFigures) -> Self {
        HookFiguresView { calls: f.calls, failures: f.failures, mean_ns: f.mean_ns, reused: 0 }
    }
}

pub(super) fn of(name: &str, spec: &PluginSpec, origin: &Origin, refusal: Option<&str>, live: Option<&Loaded>) -> PluginView {
    let source = match origin {
        Origin::File(p) => p.display().to_string(),
        Origin::Mesh => "mesh".to_string(),
    };
    let mut v = PluginView {
        name: name.to_string(),
        source,
        status: "not loaded".into(),
        hash: None,
        size: None,
        hooks: Vec::new(),
        wanted_headers: Vec::new(),
        fail: spec.fail,
        fuel: spec.fuel,
        memory_mb: spec.memory_mb,
        loaded_at: None,
        calls: BTreeMap::new(),
        skipped: 0,
        suspensions: 0,
        suspended_for_ms: None,
        instances: 0,
        counters: BTreeMap::new(),
        logs_dropped: 0,
        last_error: None,
        last_refusal: refusal.map(str::to_string),
        services: Vec::new(),
    };
    let Some(l) = live else { return v };
    let g = &l.guard;
    let suspended = g.suspended_for();
    v.status = if suspended.is_some() { "suspended" } else { "active" }.into();
    v.hash = Some(l.hash.clone());
    v.size = Some(l.size);
    v.hooks = hook_names(l.hooks).into_iter().map(str::to_string).collect();
    v.wanted_headers = l.wanted.iter().map(|w| w.text.clone()).collect();
    v.loaded_at = l.loaded_at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs());
    for hook in Hook::ALL {
        let f = g.stats(hook).figures();
        if f.calls > 0 || hook_names(l.hooks).contains(&hook.name()) {
            let reused = match hook {
                Hook::Route => l.reused.route.load(Relaxed),
                Hook::Pick => l.reused.pick.load(Relaxed),
                Hook::Retry => 0,
            };
            v.calls.insert(hook.name().to_string(), HookFiguresView { reused, ..f.into() });
        }
    }
    v.skipped = g.skipped.load(Relaxed);
    v.suspensions = g.suspensions.load(Relaxed);
    v.suspended_for_ms = suspended.map(|d| d.as_millis() as u64);
    v.instances = g.instances.load(Relaxed);
    v.counters = l.shared.counters();
    v.logs_dropped = l.shared.logs_dropped.load(Relaxed);
    v.last_error = g.last_error();
    v
}

/// The WIT of one hook interface, for `weft plugin check`.
pub fn hook_wit(hook: &str) -> Option<&'static str> {
    const WIT: &str = include_str!("../../wit/policy.wit");
    let start = WIT.find(&format!("interface {hook} {{"))?;
    let end = WIT[start..].find("\n}")? + start + 2;
    Some(&WIT[start..end])
}
