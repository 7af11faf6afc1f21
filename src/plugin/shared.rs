//! What a plugin's instances share with the host: its name and configuration, the headers it
//! reads, the counters it bumps (`host.counter` / `host.counter-add`), the texts it added
//! (`host.intern`), and the rate limit on its log lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::wasm::weft::policy::host::Level;
use crate::policy::WantedHeader;

/// Log lines a plugin may write per second; the rest are counted, not written. A plugin that logs
/// on every request would otherwise put weft's log (and its disk) on the request path.
const LOG_LINES_PER_S: u32 = 20;
/// Longest log line kept from a plugin, in bytes.
const LOG_LINE_MAX: usize = 1024;
/// Distinct counter names a plugin may create; more are ignored (bounded memory).
const COUNTERS_MAX: usize = 64;
/// New texts a plugin may add to the host's table (`host.intern`), and the longest one.
const INTERNS_MAX: u32 = 1024;
const INTERN_LEN_MAX: usize = 256;

/// The plugin's counters: by name (for the admin API), and by handle (`host.counter-add`).
#[derive(Default)]
struct Counters {
    by_name: BTreeMap<String, u32>,
    handles: Vec<Arc<AtomicU64>>,
}

pub struct Shared {
    pub name: String,
    pub config: String,
    /// The plugin's counters; with a registry, the registry's own (exported with weft's metrics,
    /// and continuous across versions of the plugin).
    counters: Mutex<Counters>,
    registry: Option<Arc<crate::telemetry::Registry>>,
    /// Lower-case request headers the manifest asked for (set once, when the plugin is loaded).
    wanted: OnceLock<Vec<WantedHeader>>,
    interned: AtomicU32,
    log_window: Mutex<(Instant, u32)>,
    pub logs_dropped: AtomicU64,
}

impl Shared {
    pub fn new(name: &str, config: &str, registry: Option<Arc<crate::telemetry::Registry>>) -> Shared {
        Shared {
            name: name.to_string(),
            config: config.to_string(),
            counters: Mutex::default(),
            registry,
            wanted: OnceLock::new(),
            interned: AtomicU32::new(0),
            log_window: Mutex::new((Instant::now(), 0)),
            logs_dropped: AtomicU64::new(0),
        }
    }

    pub fn log(&self, level: Level, message: &str) {
        {
            let mut w = self.log_window.lock().unwrap_or_else(|e| e.into_inner());
            if w.0.elapsed().as_secs() >= 1 {
                *w = (Instant::now(), 0);
            }
            w.1 += 1;
            if w.1 > LOG_LINES_PER_S {
                self.logs_dropped.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut end = message.len().min(LOG_LINE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let (plugin, message) = (self.name.as_str(), &message[..end]);
        match level {
            Level::Error => tracing::error!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
        }
    }

    /// The handle of a counter (made on first use); past `COUNTERS_MAX` names, one that counts
    /// nothing.
    pub fn counter(&self, name: &str) -> u32 {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&h) = c.by_name.get(name) {
            return h;
        }
        if c.handles.len() >= COUNTERS_MAX || name.len() > 64 {
            return u32::MAX;
        }
        let v = match &self.registry {
            Some(r) => r.plugin_counter(&self.name, name, &[]),
            None => Arc::default(),
        };
        let h = c.handles.len() as u32;
        c.handles.push(v);
        c.by_name.insert(name.to_string(), h);
        h
    }

    /// Every counter, by handle (an instance keeps a copy, so `counter-add` takes no lock).
    pub fn counter_handles(&self) -> Vec<Arc<AtomicU64>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).handles.clone()
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.by_name.iter().map(|(k, &h)| (k.clone(), c.handles[h as usize].load(Relaxed))).collect()
    }

    /// `host.intern`: the text's id, adding it within the plugin's allowance.
    pub fn intern(&self, name: &str) -> Option<u32> {
        use crate::policy::texts;
        if let Some(id) = texts::find(name) {
            return Some(id);
        }
        if name.len() > INTERN_LEN_MAX || self.interned.fetch_add(1, Relaxed) >= INTERNS_MAX {
            return None;
        }
        Some(texts::intern(name))
    }

    pub fn set_wanted(&self, names: Vec<WantedHeader>) {
        let _ = self.wanted.set(names);
    }

    pub fn wanted(&self) -> &[WantedHeader] {
        self.wanted.get().map_or(&[], Vec::as_slice)
    }
}
