//! SIGHUP reloads the configuration, as it does for nginx, HAProxy and Consul agents. The files
//! are read again from the same path, with the same command-line overrides, and applied through
//! `apply_config`, the path startup uses. Config-owned namespaces, services and endpoints are
//! added, changed and removed through the catalog's one write path, and the `[[client]]`
//! namespaces move the listeners. A file that does not load is refused whole and the running
//! configuration stays.
//!
//! Settings tied to a bound socket, the store or the node's identity need a restart. On a reload
//! they keep their running value and the log names each one. Only the settings in
//! `LIVE_SETTINGS` change live, so a setting added later needs a restart unless it is listed
//! there.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Key};
use crate::config::{Config, ConfigError};

/// Loads the configuration again, as `weft run` did at startup (same files, same flags).
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// The `[section] key` settings a reload applies. `drain_timeout_s` is read when the drain
/// begins. Everything else in `[node] [admin] [dns] [tls] [gossip]` was used to bind a socket,
/// open the store, name the node or build the mesh, at startup. The certificate files themselves
/// are re-read whenever they change (`transport`), with no signal.
const LIVE_SETTINGS: &[&str] = &["node.drain_timeout_s"];

pub(super) struct Reloader {
    loader: Option<ConfigLoader>,
    /// The configuration in force: the last one applied, with the values of restart-only
    /// settings from startup.
    pub current: Config,
    clients: watch::Sender<HashSet<String>>,
    /// The task that registers config endpoints whose service has not replicated here yet.
    pending: Option<AbortHandle>,
    plugins: Arc<crate::plugin::PluginHost>,
}

/// The `[[client]]` namespaces of a configuration.
pub(super) fn clients_of(config: &Config) -> HashSet<String> {
    config.clients.iter().map(|c| c.value.namespace.clone()).collect()
}

impl Reloader {
    pub fn new(loader: Option<ConfigLoader>, current: Config, clients: watch::Sender<HashSet<String>>, plugins: Arc<crate::plugin::PluginHost>) -> Reloader {
        Reloader { loader, current, clients, pending: None, plugins }
    }

    /// Remembers the task that registers pending config endpoints. A reload replaces it, because
    /// the endpoints it waits for may have left the config.
    pub fn track_pending(&mut self, task: AbortHandle) {
        self.pending = Some(task);
    }

    /// Reads the configuration again and applies what changed. Errors are logged, not returned:
    /// the node keeps serving with what it has.
    pub async fn reload(&mut self, catalog: &Arc<Catalog>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let Some(loader) = self.loader.clone() else {
            tracing::warn!("SIGHUP: this node was started without a configuration file; there is nothing to reload");
            return;
        };
        tracing::info!("SIGHUP: reloading the configuration");
        let new = match tokio::task::spawn_blocking(move || loader()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!("configuration reload refused; the running configuration stays in force:\n{e}");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; the running configuration stays in force");
                return;
            }
        };
        let (effective, needs_restart) = effective(&self.current, new);
        for (setting, running, wanted) in &needs_restart {
            tracing::warn!(%setting, running = %running, configured = %wanted, "changed in the configuration but takes effect only after a restart (it is bound to a socket, the store or the node's identity); keeping the running value");
        }
        // Host names in endpoint addresses are resolved again: a reload is a registration.
        let addresses = match super::resolve_config_addresses(&effective).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("configuration reload refused; the running configuration stays in force:\n{e}");
                return;
            }
        };
        // Plugins first, so a service whose new `policy` names a new plugin finds it loaded. A
        // plugin that is refused keeps its previous version (if it had one).
        let (host, specs) = (self.plugins.clone(), effective.plugin_specs());
        for e in tokio::task::spawn_blocking(move || host.configure(&specs)).await.unwrap_or_default() {
            tracing::error!(error = %e, "plugin refused on reload; its previous version (if any) keeps serving");
        }
        let before = config_versions(catalog);
        // Catalog writes commit to the store: off the runtime's threads.
        let (c, e) = (catalog.clone(), effective.clone());
        let pending = match tokio::task::spawn_blocking(move || super::apply_config(&c, &e, &addresses)).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => {
                tracing::error!("configuration reload partly refused: the entries named below keep their previous state, nothing was removed, and the rest of the file was applied:\n{e}");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed while applying; some entries may have been applied");
                return;
            }
        };
        let after = config_versions(catalog);
        let added = after.keys().filter(|k| !before.contains_key(*k)).count();
        let changed = after.iter().filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v)).count();
        let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
        if let Some(task) = self.pending.take() {
            task.abort();
        }
        if !pending.is_empty() {
            self.pending = Some(tasks.spawn(super::register_pending(catalog.clone(), pending, shutdown.clone())));
        }
        let clients = clients_of(&effective);
        self.clients.send_if_modified(|c| std::mem::replace(c, clients.clone()) != clients);
        let files: Vec<String> = effective.files.iter().map(|f| f.display().to_string()).collect();
        tracing::info!(added, changed, removed, restart_needed = needs_restart.len(), "configuration reloaded from {}", files.join(", "));
        self.current = effective;
    }
}

/// The configuration to apply: `new`, with the running value of every setting that needs a
/// restart. Also returns those that differ, as (`section.key`, running, configured).
fn effective(running: &Config, new: Config) -> (Config, Vec<(String, String, String)>) {
    let mut diffs = Vec::new();
    diff("node", &running.node, &new.node, &mut diffs);
    diff("admin", &running.admin, &new.admin, &mut diffs);
    diff("dns", &running.dns, &new.dns, &mut diffs);
    diff("tls", &running.tls, &new.tls, &mut diffs);
    diff("gossip", &running.gossip, &new.gossip, &mut diffs);
    diff("access_log", &running.access_log, &new.access_log, &mut diffs);
    diffs.retain(|(setting, _, _)| !LIVE_SETTINGS.contains(&setting.as_str()));
    let mut out = new;
    let drain_timeout_s = out.node.drain_timeout_s;
    out.node = running.node.clone();
    out.node.drain_timeout_s = drain_timeout_s;
    out.admin = running.admin.clone();
    out.dns = running.dns.clone();
    out.tls = running.tls.clone();
    out.gossip = running.gossip.clone();
    out.access_log = running.access_log.clone();
    out.gossip_set = running.gossip_set;
    (out, diffs)
}

/// The keys of one section whose values differ, compared as they serialize.
fn diff<T: Serialize>(section: &str, running: &T, new: &T, out: &mut Vec<(String, String, String)>) {
    let as_map = |v: &T| match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().collect::<BTreeMap<_, _>>(),
        _ => BTreeMap::new(),
    };
    let (a, b) = (as_map(running), as_map(new));
    for (key, old) in &a {
        let now = b.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if *old != now {
            out.push((format!("{section}.{key}"), old.to_string(), now.to_string()));
        }
    }
}

/// The version of every live config-owned record, to count what a reload changed.
fn config_versions(catalog: &Catalog) -> BTreeMap<Key, u64> {
    catalog
        .config_owned()
        .into_iter()
        .filter_map(|k| catalog.record(&k).map(|r| (k, r.version.hlc)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_their_running_value() {
        let running = Config::default();
        let mut new = Config::default();
        new.node.name = "other".into();
        new.node.drain_timeout_s = 7;
        new.dns.ttl = 30;
        let (eff, diffs) = effective(&running, new);
        assert_eq!(eff.node.name, running.node.name);
        assert_eq!(eff.node.drain_timeout_s, 7);
        assert_eq!(eff.dns.ttl, running.dns.ttl);
        let names: Vec<&str> = diffs.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(names, ["node.name", "dns.ttl"]);
    }
}
