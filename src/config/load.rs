//! Reading and merging files. Each file is parsed on its own (so errors carry its name and
//! positions); `[node] [admin] [dns] [tls] [gossip]` tables are deep-merged key by key in lexical file order, and
//! `[[namespace]] [[service]] [[endpoint]] [[client]] [[plugin]]` entries are concatenated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::locate::{key_at, line_col};
use super::{AdminConfig, Checked, ClientConfig, Config, ConfigError, DnsConfig, EndpointConfig, GossipConfig, TlsConfig, Located, NodeConfig, Origin, Problem};
use crate::catalog::{Namespace, Service};

/// The shape of one file; single sections are checked here and merged as raw tables below.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    node: Option<NodeConfig>,
    #[serde(default)]
    admin: Option<AdminConfig>,
    #[serde(default)]
    dns: Option<DnsConfig>,
    #[serde(default)]
    tls: Option<TlsConfig>,
    #[serde(default)]
    gossip: Option<GossipConfig>,
    #[serde(default)]
    telemetry: Option<super::TelemetryConfig>,
    #[serde(default)]
    access_log: Option<crate::telemetry::access::AccessLogConfig>,
    #[serde(default)]
    namespace: Vec<Spanned<Namespace>>,
    #[serde(default)]
    service: Vec<Spanned<Service>>,
    #[serde(default)]
    endpoint: Vec<Spanned<EndpointConfig>>,
    #[serde(default)]
    client: Vec<Spanned<ClientConfig>>,
    #[serde(default)]
    plugin: Vec<Spanned<crate::plugin::PluginSpec>>,
}

/// A file as read: its text is kept for locating semantic errors later.
pub(super) struct Source {
    pub path: Arc<PathBuf>,
    pub text: String,
}

impl Source {
    pub fn origin(&self, offset: usize) -> Origin {
        let (line, col) = line_col(&self.text, offset);
        Origin { path: self.path.clone(), line, col }
    }
}

fn files_of(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read_err)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::EmptyDir { path: path.to_path_buf() });
    }
    Ok(files)
}

fn parse_error(src: &Source, e: toml::de::Error) -> Problem {
    let offset = e.span().map(|s| s.start).unwrap_or(0);
    let message = e.message().trim().to_string();
    let message = match key_at(&src.text, offset) {
        Some(key) if !message.contains(&format!("`{key}`")) => format!("`{key}`: {message}"),
        _ => message,
    };
    Problem { at: src.origin(offset), message }
}

fn locate<T>(src: &Source, items: Vec<Spanned<T>>) -> Vec<Located<T>> {
    items.into_iter().map(|s| Located { at: src.origin(s.span().start), value: s.into_inner() }).collect()
}

/// Later files override earlier ones key by key; nested tables merge the same way.
fn deep_merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => deep_merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn section<T: DeserializeOwned + Default>(merged: &toml::Table, name: &str) -> Result<T, String> {
    match merged.get(name) {
        None => Ok(T::default()),
        Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| e.message().to_string()),
    }
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_sources(path).map(|(config, _)| config)
}

/// What `weft validate` checks beyond [`load`]: what `weft run` would refuse only when it starts
/// (the TLS files: read and parsed as the node does, which a client command reading the config for
/// its admin address must not need), and warnings that do not stop a node.
pub fn check(path: &Path) -> Result<Checked, ConfigError> {
    let (config, sources) = load_sources(path)?;
    let mut problems = super::validate::check_tls_files(&config, &sources);
    problems.extend(super::validate::check_plugin_files(&config, &sources));
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let warnings = super::validate::warnings(&config, &sources);
    Ok(Checked { config, warnings })
}

fn load_sources(path: &Path) -> Result<(Config, Vec<Source>), ConfigError> {
    let mut texts = Vec::new();
    for file in files_of(path)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        texts.push((file, text));
    }
    merge_texts(texts)
}

/// Files already read (name and text, in merge order) to a config, as [`load`] does it: the
/// fuzz targets (`crate::fuzzing`) load configurations from memory through this.
pub(crate) fn load_texts(texts: Vec<(PathBuf, String)>) -> Result<Config, ConfigError> {
    merge_texts(texts).map(|(config, _)| config)
}

fn merge_texts(texts: Vec<(PathBuf, String)>) -> Result<(Config, Vec<Source>), ConfigError> {
    let mut config = Config::default();
    let mut problems = Vec::new();
    let mut merged = toml::Table::new();
    let mut sources = Vec::new();
    for (file, text) in texts {
        let src = Source { path: Arc::new(file.clone()), text };
        match toml::from_str::<FileConfig>(&src.text) {
            Err(e) => problems.push(parse_error(&src, e)),
            Ok(parsed) => {
                let raw: toml::Table = toml::from_str(&src.text).unwrap_or_default();
                for name in ["node", "admin", "dns", "tls", "gossip", "telemetry", "access_log"] {
                    if let Some(toml::Value::Table(t)) = raw.get(name) {
                        let mut wrapped = toml::Table::new();
                        wrapped.insert(name.to_string(), toml::Value::Table(t.clone()));
                        deep_merge(&mut merged, wrapped);
                    }
                }
                config.gossip_set |= parsed.gossip.is_some();
                let _ = (parsed.node, parsed.admin, parsed.dns, parsed.tls, parsed.telemetry, parsed.access_log);
                config.namespaces.extend(locate(&src, parsed.namespace));
                config.services.extend(locate(&src, parsed.service));
                config.endpoints.extend(locate(&src, parsed.endpoint));
                config.clients.extend(locate(&src, parsed.client));
                // A plugin's path is relative to the file that names it.
                let dir = file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
                config.plugins.extend(locate(&src, parsed.plugin).into_iter().map(|mut p| {
                    if p.value.path.is_relative() {
                        p.value.path = dir.join(&p.value.path);
                    }
                    p
                }));
            }
        }
        config.files.push(file);
        sources.push(src);
    }
    if problems.is_empty() {
        // Each file's sections were already checked, so a merge of them can only fail in ways that
        // are reported against the last file that set the section.
        let last = sources.last().map(|s| s.origin(0));
        let mut merge_err = |name: &str, e: String| {
            if let Some(at) = &last {
                problems.push(Problem { at: at.clone(), message: format!("[{name}]: {e}") });
            }
        };
        match section(&merged, "node") {
            Ok(v) => config.node = v,
            Err(e) => merge_err("node", e),
        }
        match section(&merged, "admin") {
            Ok(v) => config.admin = v,
            Err(e) => merge_err("admin", e),
        }
        match section(&merged, "dns") {
            Ok(v) => config.dns = v,
            Err(e) => merge_err("dns", e),
        }
        match section(&merged, "tls") {
            Ok(v) => config.tls = v,
            Err(e) => merge_err("tls", e),
        }
        match section(&merged, "gossip") {
            Ok(v) => config.gossip = v,
            Err(e) => merge_err("gossip", e),
        }
        match section(&merged, "telemetry") {
            Ok(v) => config.telemetry = v,
            Err(e) => merge_err("telemetry", e),
        }
        match section(&merged, "access_log") {
            Ok(v) => config.access_log = v,
            Err(e) => merge_err("access_log", e),
        }
        if let Some(p) = config.access_log.problem() {
            merge_err("access_log", p);
        }
    }
    if problems.is_empty() {
        problems.extend(super::validate::check(&config, &sources));
    }
    if problems.is_empty() { Ok((config, sources)) } else { Err(ConfigError::Invalid(problems)) }
}
