//! What a plugin's instances share with the host: its name and configuration, the counters it
//! bumps (`host.counter-add`), and the rate limit on its log lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::wasm::weft::policy::host::Level;

/// Log lines a plugin may write per second; the rest are counted, not written. A plugin that logs
/// on every request would otherwise put weft's log (and its disk) on the request path.
const LOG_LINES_PER_S: u32 = 20;
/// Longest log line kept from a plugin, in bytes.
const LOG_LINE_MAX: usize = 1024;
/// Distinct counter names a plugin may create; more are ignored (bounded memory).
const COUNTERS_MAX: usize = 64;

pub struct Shared {
    pub name: String,
    pub config: String,
    /// The plugin's counters; with a registry, the registry's own (exported with weft's metrics,
    /// and continuous across versions of the plugin).
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    registry: Option<Arc<crate::telemetry::Registry>>,
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

    pub fn counter_add(&self, name: &str, delta: u64) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = c.get(name) {
            v.fetch_add(delta, Relaxed);
        } else if c.len() < COUNTERS_MAX && name.len() <= 64 {
            let v = match &self.registry {
                Some(r) => r.plugin_counter(&self.name, name, &[]),
                None => Arc::default(),
            };
            v.fetch_add(delta, Relaxed);
            c.insert(name.to_string(), v);
        }
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.load(Relaxed))).collect()
    }
}
