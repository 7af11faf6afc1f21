//! Checks across entries and files (duplicates, references, ranges), each reported where it is.

use std::collections::{HashMap, HashSet};

use super::load::Source;
use super::locate::{find_in, find_key};
use super::{Config, DEFAULT_NAMESPACE, Mode, Origin, Problem};
use std::net::SocketAddr;

use crate::catalog::{CatalogError, EndpointAddress, VipRange, validate as fields};

fn problem(at: &Origin, message: String) -> Problem {
    Problem { at: at.clone(), message }
}

/// Where `needle` first appears inside an entry (from its position up to the next table header),
/// or the entry itself.
fn point_into(sources: &[Source], at: &Origin, needle: &str) -> Origin {
    let Some(src) = sources.iter().find(|s| s.path == at.path) else { return at.clone() };
    let start: usize = src.text.split_inclusive('\n').take(at.line - 1).map(str::len).sum();
    let end = src.text[start..]
        .split_inclusive('\n')
        .scan(start, |pos, line| {
            let here = *pos;
            *pos += line.len();
            Some((here, line))
        })
        .skip(1)
        .find(|(_, line)| line.trim_start().starts_with('['))
        .map(|(here, _)| here)
        .unwrap_or(src.text.len());
    match find_in(&src.text, start..end, needle) {
        Some(offset) => src.origin(offset),
        None => at.clone(),
    }
}

/// The place of the key a field error names (`timeouts.request_s` → `request_s`).
fn point_at_field(sources: &[Source], at: &Origin, err: &CatalogError) -> Origin {
    match err {
        CatalogError::Invalid { field, .. } => {
            let key = field.rsplit('.').next().unwrap_or(field);
            let key = key.split('[').next().unwrap_or(key);
            point_into(sources, at, key)
        }
        _ => at.clone(),
    }
}

/// Where `[section] key` was last set, for errors in merged single sections.
fn section_key(sources: &[Source], section: &str, key: &str) -> Option<Origin> {
    sources.iter().rev().find_map(|s| find_key(&s.text, section, key).map(|o| s.origin(o)))
}

pub(super) fn check(config: &Config, sources: &[Source]) -> Vec<Problem> {
    let mut out = check_sections(config, sources);
    if let Err(e) = super::resolve_telemetry(&config.telemetry, &|k| std::env::var(k).ok()) {
        let at = sources.iter().rev().find_map(|s| super::locate::find_section(&s.text, "telemetry").map(|o| s.origin(o))).or_else(|| sources.first().map(|s| s.origin(0)));
        if let Some(at) = at {
            out.push(problem(&at, format!("[telemetry] / OTEL_* variables: {e}")));
        }
    }
    out
}

fn check_sections(config: &Config, sources: &[Source]) -> Vec<Problem> {
    let mut out = Vec::new();
    let file_start = || sources.first().map(|s| s.origin(0));
    if let Err(e) = VipRange::parse(&config.dns.vip_cidr)
        && let Some(at) = section_key(sources, "dns", "vip_cidr").or_else(file_start) {
            out.push(problem(&at, format!("`vip_cidr`: {e}")));
        }
    if config.dns.enabled && config.dns.listen == config.admin.listen
        && let Some(at) = section_key(sources, "dns", "listen").or_else(file_start) {
            out.push(problem(&at, format!("`listen`: DNS and admin both want {}", config.admin.listen)));
        }
    let admin_at = || section_key(sources, "admin", "listen").or_else(file_start);
    match &config.admin.token_file {
        None if !config.admin.listen.ip().is_loopback() && config.tls_files().is_none() => {
            if let Some(at) = admin_at() {
                out.push(problem(&at, format!("`listen`: {} is reachable from other hosts, so the admin API needs credentials: [tls] files (callers then show a certificate of the cluster CA over HTTPS) or `token_file` (a file with a bearer token every non-loopback request must carry)", config.admin.listen)));
            }
        }
        Some(path) => {
            if let Err(e) = super::read_admin_token(path)
                && let Some(at) = section_key(sources, "admin", "token_file").or_else(admin_at) {
                    out.push(problem(&at, format!("`token_file`: {e}")));
                }
        }
        None => {}
    }
    let tls = &config.tls;
    let tls_keys = [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)];
    let set = tls_keys.iter().filter(|(_, v)| v.is_some()).count();
    if set > 0 && set < 3 {
        let missing: Vec<&str> = tls_keys.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| *k).collect();
        if let Some(at) = sources.iter().rev().find_map(|s| super::locate::find_section(&s.text, "tls").map(|o| s.origin(o))).or_else(file_start) {
            out.push(problem(&at, format!("[tls] needs `ca`, `cert` and `key` together; missing {}", missing.join(", "))));
        }
    }
    if config.gossip_set && set == 0
        && let Some(at) = sources.iter().rev().find_map(|s| super::locate::find_section(&s.text, "gossip").map(|o| s.origin(o))).or_else(file_start) {
            out.push(problem(&at, "[gossip] needs [tls] `ca`, `cert` and `key`: nodes talk only mutual TLS (make them with `weft ca init` and `weft ca issue --node NAME`)".into()));
        }
    for (i, seed) in config.gossip.join.iter().enumerate() {
        if let Err(e) = parse_seed(seed)
            && let Some(at) = section_key(sources, "gossip", "join").or_else(file_start) {
                out.push(problem(&at, format!("`join`[{i}] `{seed}`: {e}")));
            }
    }
    // Proxy nodes may name namespaces and services that a registry defines; elsewhere the config
    // is the authority and must be complete.
    // In a mesh, definitions may come from other registries.
    let check_refs = config.node.mode != Mode::Proxy && set == 0;

    // `default` always exists on registry and combined nodes (weft creates it), as in the CLI.
    let mut namespaces = HashSet::from([DEFAULT_NAMESPACE]);
    for ns in &config.namespaces {
        if let Err(e) = fields::namespace(&ns.value) {
            out.push(problem(&point_at_field(sources, &ns.at, &e), format!("namespace: {e}")));
        } else if !namespaces.insert(ns.value.name.as_str()) && ns.value.name != DEFAULT_NAMESPACE {
            out.push(problem(&ns.at, format!("namespace `{}` is defined twice", ns.value.name)));
        }
    }

    let mut services = HashSet::new();
    let mut aliases: HashMap<(&str, u16), String> = HashMap::new();
    for s in &config.services {
        let v = &s.value;
        let id = format!("{}/{}", v.namespace, v.name);
        if let Err(e) = fields::service(v) {
            out.push(problem(&point_at_field(sources, &s.at, &e), format!("service `{id}`: {e}")));
            continue;
        }
        if !services.insert((v.namespace.as_str(), v.name.as_str())) {
            out.push(problem(&s.at, format!("service `{id}` is defined twice")));
        }
        if check_refs && !namespaces.contains(v.namespace.as_str()) {
            out.push(problem(&s.at, format!("service `{id}`: `namespace` `{}` is not defined in the config", v.namespace)));
        }
        for a in &v.aliases {
            if let Some(owner) = aliases.insert((a.dns_name.as_str(), a.port), id.clone()) {
                let at = point_into(sources, &s.at, &format!("\"{}\"", a.dns_name));
                out.push(problem(&at, format!("duplicate alias `{}:{}`: already used by service `{owner}`", a.dns_name, a.port)));
            }
        }
    }

    let mut endpoints = HashSet::new();
    for e in &config.endpoints {
        let v = &e.value;
        let id = format!("{}/{}/{}", v.namespace, v.service, v.id);
        // A host name is resolved only when the node registers the endpoint (`weft validate` warns
        // when it does not resolve here); its other fields are checked with a stand-in address.
        let address = match &v.address {
            EndpointAddress::Ip(a) => *a,
            EndpointAddress::Host { port, .. } => SocketAddr::from(([127, 0, 0, 1], *port)),
        };
        if let Err(err) = fields::endpoint(&v.to_endpoint(&config.node, address)) {
            out.push(problem(&point_at_field(sources, &e.at, &err), format!("endpoint `{id}`: {err}")));
            continue;
        }
        if !endpoints.insert((v.namespace.as_str(), v.service.as_str(), v.id.as_str())) {
            out.push(problem(&e.at, format!("endpoint `{id}` is defined twice")));
        }
        if check_refs && !services.contains(&(v.namespace.as_str(), v.service.as_str())) {
            out.push(problem(&e.at, format!("endpoint `{id}`: service `{}/{}` is not defined in the config", v.namespace, v.service)));
        }
    }

    let mut plugins = HashSet::new();
    for p in &config.plugins {
        let v = &p.value;
        if let Err(e) = v.check() {
            out.push(problem(&p.at, format!("plugin `{}`: {e}", v.name)));
        } else if !plugins.insert(v.name.as_str()) {
            out.push(problem(&p.at, format!("plugin `{}` is defined twice", v.name)));
        }
    }

    for c in &config.clients {
        if check_refs && !namespaces.contains(c.value.namespace.as_str()) {
            out.push(problem(&c.at, format!("client: `namespace` `{}` is not defined in the config", c.value.namespace)));
        }
    }
    out
}

/// A seed address: `host:port` or `host` (port 7946); names are resolved when used.
pub fn parse_seed(seed: &str) -> Result<(String, u16), String> {
    if seed.is_empty() {
        return Err("is empty".into());
    }
    if let Ok(addr) = seed.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    match seed.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse::<u16>().map_err(|_| format!("port `{port}` is not a number from 0 to 65535"))?;
            Ok((host.to_string(), port))
        }
        _ => Ok((seed.to_string(), super::DEFAULT_GOSSIP_PORT)),
    }
}

/// The `[tls]` files as a starting node reads them; each problem at the key naming the file.
pub(super) fn check_tls_files(config: &Config, sources: &[Source]) -> Vec<Problem> {
    use crate::transport::TlsError;
    let Some(files) = config.tls_files() else { return Vec::new() };
    let keys = [("ca", &files.ca), ("cert", &files.cert), ("key", &files.key)];
    let tls_section = || sources.iter().rev().find_map(|s| super::locate::find_section(&s.text, "tls").map(|o| s.origin(o)));
    crate::transport::tls::problems(&files, &config.node.name)
        .into_iter()
        .filter_map(|e| {
            let key = match &e {
                TlsError::Read { path, .. } | TlsError::Pem { path, .. } => keys.iter().find(|(_, p)| *p == path).map(|(k, _)| *k),
                _ => None,
            };
            let at = key.and_then(|k| section_key(sources, "tls", k)).or_else(tls_section).or_else(|| sources.first().map(|s| s.origin(0)))?;
            let named = key.map(|k| format!(" `{k}`")).unwrap_or_default();
            Some(problem(&at, format!("[tls]{named}: {e}")))
        })
        .collect()
}

/// The `[[plugin]]` files as a starting node loads them: read, compiled and matched against the
/// WIT, each problem at the entry that names the file. Blocking (compiles): for `weft validate`.
pub(super) fn check_plugin_files(config: &Config, sources: &[Source]) -> Vec<Problem> {
    config
        .plugins
        .iter()
        .filter_map(|p| {
            let e = crate::plugin::PluginHost::check_file(&p.value.path, &p.value.config).err()?;
            Some(problem(&point_into(sources, &p.at, "path"), format!("plugin `{}`: {e}", p.value.name)))
        })
        .collect()
}

/// What does not stop a node but is almost certainly not what the operator meant. Blocking (it
/// resolves endpoint host names): for `weft validate` only.
pub(super) fn warnings(config: &Config, sources: &[Source]) -> Vec<Problem> {
    let mut out = Vec::new();
    for e in &config.endpoints {
        if let EndpointAddress::Host { host, port } = &e.value.address {
            use std::net::ToSocketAddrs;
            if let Err(err) = (host.as_str(), *port).to_socket_addrs() {
                let at = point_into(sources, &e.at, "address");
                out.push(problem(&at, format!("endpoint `{}`: `address`: host `{host}` does not resolve here ({err}); `weft run` refuses to start if it does not resolve where it runs", e.value.id)));
            }
        }
    }
    let plugins: HashSet<&str> = config.plugins.iter().map(|p| p.value.name.as_str()).collect();
    for s in &config.services {
        if let Some(name) = s.value.policy.as_deref().filter(|n| !plugins.contains(n)) {
            let at = point_into(sources, &s.at, "policy");
            out.push(problem(&at, format!("service `{}/{}`: `policy` `{name}` is not a [[plugin]] of this config; unless it is pushed to the mesh, the service runs with the built-in policy", s.value.namespace, s.value.name)));
        }
    }
    if config.node.mode != Mode::Proxy {
        return out;
    }
    let Some(at) = section_key(sources, "node", "mode").or_else(|| sources.first().map(|s| s.origin(0))) else { return out };
    if config.tls_files().is_none() {
        out.push(problem(&at, "`mode` = \"proxy\" without [tls] and [gossip]: a proxy node gets its namespaces and services from a registry over the mesh, and this one has no way to reach one, so it will route nothing (use mode = \"combined\" on a single host)".into()));
    } else if config.gossip.join.is_empty() {
        out.push(problem(&at, "`mode` = \"proxy\" with no [gossip] `join`: this node hears of a registry only if one lists it in its own `join`".into()));
    }
    out
}
