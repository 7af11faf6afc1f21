//! The plugin host: WebAssembly components (wasmtime, the WIT world in `wit/policy.wit`) whose
//! hooks replace the built-in `route`, `pick-endpoint` and `should-retry` for the services that
//! name them (`policy = "NAME"`).
//!
//! Loading compiles off the runtime threads (or loads a cached artifact) and swaps the new version
//! in atomically; the routing table is then rebuilt (`changed`), so new requests see the new
//! version while requests in flight finish on the one they started with (they hold it). A file
//! that does not compile or does not match the WIT is refused with its name and the reason, and
//! the version already loaded keeps serving.

mod engine;
mod guard;
mod loaded;
pub mod mesh;
mod shared;
mod view;
mod wasm;
pub mod watch;

pub use engine::{MAX_COMPONENT_BYTES, content_hash};
pub use view::{PluginView, hook_wit};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::policy::{Hooks, Plugin, PluginSource};
use loaded::Loaded;

pub use crate::catalog::Fail;

pub const DEFAULT_FUEL: u64 = 1_000_000;
pub const DEFAULT_MEMORY_MB: u32 = 16;

/// `[[plugin]]`: a component and the limits it runs under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub name: String,
    /// The component file (relative paths are relative to the config file's directory).
    pub path: PathBuf,
    /// Handed to the plugin by `host.config()`: a string, or a table given to it as JSON.
    #[serde(default, deserialize_with = "config_text")]
    pub config: String,
    /// Fuel per call: bounds its CPU time (1 M ≈ 40 µs of a tight loop on this kind of machine).
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Memory cap per instance.
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    #[serde(default)]
    pub fail: Fail,
}

fn default_fuel() -> u64 {
    DEFAULT_FUEL
}
fn default_memory() -> u32 {
    DEFAULT_MEMORY_MB
}

fn config_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Str(String),
        Table(serde_json::Map<String, serde_json::Value>),
    }
    Ok(match Text::deserialize(d)? {
        Text::Str(s) => s,
        Text::Table(t) => serde_json::Value::Object(t).to_string(),
    })
}

impl PluginSpec {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize) << 20
    }

    /// The field that is out of range, if any.
    pub fn check(&self) -> Result<(), String> {
        crate::catalog::validate::plugin_name("name", &self.name).map_err(|e| e.to_string())?;
        crate::catalog::check_plugin_limits(self.fuel, self.memory_mb).map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {file} refused: {reason}")]
    Refused { file: String, reason: String },
    #[error("no plugin named `{0}` is configured")]
    Unknown(String),
    #[error("plugin `{name}`: {reason}")]
    Invalid { name: String, reason: String },
}

/// Where a plugin's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// Pushed to a registry and carried by the mesh (the catalog record's content hash).
    Mesh,
}

/// A configured plugin: what is live (if anything) and what the last attempt to load said.
struct Slot {
    spec: PluginSpec,
    origin: Origin,
    /// The file's (modified time, length) when last read, for the watcher.
    stamp: Option<(std::time::SystemTime, u64)>,
    last_refusal: Option<String>,
    /// A mesh plugin that no service on this node uses: kept in the catalog, not compiled here.
    idle: bool,
}

pub struct PluginHost {
    engine: wasmtime::Engine,
    cache: Option<PathBuf>,
    live: ArcSwap<HashMap<String, Arc<Loaded>>>,
    slots: Mutex<HashMap<String, Slot>>,
    /// Serialises loads so two reloads of one plugin cannot race each other's swap.
    loading: Mutex<()>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Where plugins' counters are exported (none in `weft plugin check`).
    registry: Option<Arc<crate::telemetry::Registry>>,
}

impl PluginSource for PluginHost {
    fn plugin(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        self.live.load().get(name).map(|l| l.clone() as Arc<dyn Plugin>)
    }
}

impl PluginHost {
    /// `data_dir`: compiled artifacts are cached under `<data_dir>/plugins/cache`.
    pub fn new(data_dir: Option<&Path>, registry: Option<Arc<crate::telemetry::Registry>>) -> Arc<PluginHost> {
        Arc::new(PluginHost {
            engine: engine::engine(),
            cache: data_dir.map(|d| d.join("plugins").join("cache")),
            live: ArcSwap::from_pointee(HashMap::new()),
            slots: Mutex::default(),
            loading: Mutex::new(()),
            changed: tokio::sync::watch::channel(0).0,
            registry,
        })
    }

    /// Bumped after every swap: the proxy rebuilds its routing table.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Takes the configured plugins (at start and on SIGHUP): new and changed ones are loaded,
    /// removed ones unloaded. Blocking: compiles. Returns the refusals; a refused plugin that was
    /// loaded before keeps serving its previous version.
    pub fn configure(&self, specs: &[PluginSpec]) -> Vec<PluginError> {
        let mut errors = Vec::new();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let removed: Vec<String> = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = slots.iter().filter(|(n, s)| s.origin != Origin::Mesh && !names.contains(&n.as_str())).map(|(n, _)| n.clone()).collect();
            for n in &gone {
                slots.remove(n);
            }
            gone
        };
        if !removed.is_empty() {
            self.swap(|m| m.retain(|n, _| !removed.contains(n)));
            for n in removed.iter().filter_map(|n| self.registry.as_ref().map(|r| (r, n))) {
                n.0.drop_plugin(n.1);
            }
        }
        for spec in specs {
            let unchanged = {
                let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots.get(&spec.name).is_some_and(|s| s.spec == *spec && s.last_refusal.is_none())
            };
            if unchanged && self.live.load().contains_key(&spec.name) {
                continue;
            }
            self.slots.lock().unwrap_or_else(|e| e.into_inner()).insert(
                spec.name.clone(),
                Slot { spec: spec.clone(), origin: Origin::File(spec.path.clone()), stamp: None, last_refusal: None, idle: false },
            );
            if let Err(e) = self.reload(&spec.name) {
                errors.push(e);
            }
        }
        errors
    }

    /// Reads the plugin's file again and swaps in the new version. Blocking: compiles.
    pub fn reload(&self, name: &str) -> Result<(), PluginError> {
        let (spec, path) = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.get(name).ok_or_else(|| PluginError::Unknown(name.to_string()))?;
            match &slot.origin {
                Origin::File(p) => (slot.spec.clone(), p.clone()),
                Origin::Mesh => return Err(PluginError::Invalid { name: name.into(), reason: "it is carried by the mesh: push a new version to a registry instead".into() }),
            }
        };
        let stamp = file_stamp(&path);
        let result = engine::read(&path).and_then(|bytes| self.install(spec, &bytes, &path.display().to_string()));
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(name) {
            slot.stamp = stamp;
            slot.last_refusal = result.as_ref().err().map(|e| e.to_string());
        }
        result
    }

    /// Compiles `bytes` as plugin `spec.name` and makes it live. `file` names it in errors.
    pub fn install(&self, spec: PluginSpec, bytes: &[u8], file: &str) -> Result<(), PluginError> {
        let _one_at_a_time = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if self.live.load().get(&spec.name).is_some_and(|l| l.hash == content_hash(bytes) && l.spec == spec) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let refused = |reason: String| PluginError::Refused { file: file.to_string(), reason };
        let (prepared, hash) = engine::compile(&self.engine, bytes, self.cache.as_deref()).map_err(refused)?;
        let name = spec.name.clone();
        let loaded = Loaded::new(spec, hash, bytes.len(), prepared, self.registry.clone()).map_err(refused)?;
        tracing::info!(plugin = %name, file, hash = %&loaded.hash[..12], hooks = %hook_names(loaded.hooks).join(","), ms = started.elapsed().as_millis() as u64, "plugin loaded");
        let loaded = Arc::new(loaded);
        self.swap(|m| {
            m.insert(name.clone(), loaded.clone());
        });
        Ok(())
    }

    fn swap(&self, edit: impl FnOnce(&mut HashMap<String, Arc<Loaded>>)) {
        let mut next = HashMap::clone(&self.live.load());
        edit(&mut next);
        self.live.store(Arc::new(next));
        self.changed.send_modify(|n| *n += 1);
    }

    /// The files of file-sourced plugins, with the stamp they had when last read.
    fn watched(&self) -> Vec<(String, PathBuf, Option<(std::time::SystemTime, u64)>)> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter_map(|(n, s)| match &s.origin {
                Origin::File(p) => Some((n.clone(), p.clone(), s.stamp)),
                Origin::Mesh => None,
            })
            .collect()
    }

    /// What `weft plugin list` and `GET /v1/plugins` show.
    pub fn views(&self) -> Vec<PluginView> {
        let live = self.live.load();
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PluginView> = slots
            .iter()
            .map(|(n, s)| {
                let mut v = view::of(n, &s.spec, &s.origin, s.last_refusal.as_deref(), live.get(n).map(|l| &**l));
                if s.idle {
                    v.status = "stored (no service this node proxies uses it)".into();
                }
                v
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Checks a file as `weft plugin check` does: compiled and matched against the WIT (no
    /// cache, no instance kept). Returns the hooks it exports and the headers it reads.
    pub fn check_file(path: &Path, config: &str) -> Result<(Hooks, Vec<String>, String), PluginError> {
        let bytes = engine::read(path)?;
        Self::check_bytes(&bytes, &path.display().to_string(), config)
    }

    /// [`Self::check_file`] for a component pushed to this node: compiled on this host's engine
    /// through its artifact cache (a push of the same bytes with a new configuration does not
    /// compile again, and a combined node then loads it from the cache).
    pub fn check_pushed(&self, bytes: &[u8], file: &str, config: &str) -> Result<(Hooks, Vec<String>, String), PluginError> {
        Self::check_with(&self.engine, self.cache.as_deref(), bytes, file, config)
    }

    fn check_bytes(bytes: &[u8], file: &str, config: &str) -> Result<(Hooks, Vec<String>, String), PluginError> {
        Self::check_with(&engine::engine(), None, bytes, file, config)
    }

    fn check_with(engine: &wasmtime::Engine, cache: Option<&Path>, bytes: &[u8], file: &str, config: &str) -> Result<(Hooks, Vec<String>, String), PluginError> {
        let refused = |reason: String| PluginError::Refused { file: file.to_string(), reason };
        let (prepared, hash) = engine::compile(engine, bytes, cache).map_err(refused)?;
        let spec = PluginSpec { name: "check".into(), path: PathBuf::new(), config: config.to_string(), fuel: DEFAULT_FUEL, memory_mb: DEFAULT_MEMORY_MB, fail: Fail::Open };
        let loaded = Loaded::new(spec, hash.clone(), bytes.len(), prepared, None).map_err(refused)?;
        Ok((loaded.hooks, loaded.wanted.iter().map(|w| w.text.clone()).collect(), hash))
    }
}

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub fn hook_names(h: Hooks) -> Vec<&'static str> {
    [(h.route, "route"), (h.pick, "pick-endpoint"), (h.retry, "should-retry")].into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect()
}
