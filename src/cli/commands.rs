//! Client commands: each turns its arguments into one admin API call and prints the answer.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::client::{Client, ClientError};
use super::output::{Format, cell, describe, rows, say, stats_tables, table};
use super::{Cli, Command, EndpointCmd, NamespaceCmd, PluginCmd, ServiceCmd, ServiceSpec};
use crate::catalog::{Alias, HealthFilter, Protocol};
use crate::config::{self, DEFAULT_ADMIN};

/// The admin address: --admin, else the config's [admin] listen, else the default.
fn admin_addr(cli: &Cli) -> Result<std::net::SocketAddr, String> {
    if let Some(a) = cli.admin {
        return Ok(a);
    }
    match &cli.config {
        Some(path) => config::load(path).map(|c| c.admin.listen).map_err(|e| format!("{e}")),
        None => Ok(DEFAULT_ADMIN.parse().expect("valid default")),
    }
}

/// The bearer token to send: --token-file / WEFT_ADMIN_TOKEN_FILE, else the config's.
fn admin_token(cli: &Cli) -> Result<Option<String>, String> {
    let path = match (&cli.token_file, &cli.config) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(c)) => config::load(c).ok().and_then(|c| c.admin.token_file),
        (None, None) => None,
    };
    path.map(|p| config::read_admin_token(&p)).transpose()
}

/// The node's own [tls] files from the config, as the CLI's client certificate for an admin API
/// beyond loopback.
fn admin_tls(cli: &Cli) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    let Some(files) = cli.config.as_ref().and_then(|c| config::load(c).ok()).and_then(|c| c.tls_files()) else { return Ok(None) };
    crate::transport::tls::admin_client(&files).map(|c| Some(std::sync::Arc::new(c))).map_err(|e| format!("the config's [tls] files: {e}"))
}

fn pairs(items: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{flag} `{kv}`: expected KEY=VALUE")))
        .collect()
}

fn aliases(items: &[String]) -> Result<Vec<Alias>, String> {
    items
        .iter()
        .map(|a| {
            let (name, port) = a.rsplit_once(':').ok_or_else(|| format!("--alias `{a}`: expected DNS_NAME:PORT"))?;
            let port = port.parse().map_err(|_| format!("--alias `{a}`: `{port}` is not a port (1-65535)"))?;
            Ok(Alias { dns_name: name.to_string(), port })
        })
        .collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The settings given on the command line, as a partial service definition: what `create`
/// sends (the API fills in the defaults) and what `update` merges into the current definition.
fn service_fields(spec: &ServiceSpec) -> Result<Value, String> {
    let mut v = json!({});
    let mut put = |path: &str, value: Value| set_path(&mut v, path, value);
    if let Some(p) = spec.protocol {
        put("protocol", json!(Protocol::from(p)));
    }
    if !spec.aliases.is_empty() {
        put("aliases", json!(aliases(&spec.aliases)?));
    }
    let given = [
        ("timeouts.connect_ms", spec.connect_timeout_ms.map(|x| json!(x))),
        ("timeouts.request_s", spec.request_timeout.map(|x| json!(x))),
        ("timeouts.idle_s", spec.idle_timeout.map(|x| json!(x))),
        ("lb", spec.lb.map(|x| json!(x))),
        ("access_log", spec.access_log.map(|x| json!(x))),
        ("health_check.kind", spec.check.map(|x| json!(x))),
        ("health_check.path", spec.check_path.as_ref().map(|x| json!(x))),
        ("health_check.interval_ms", spec.check_interval_ms.map(|x| json!(x))),
        ("retry.max_retries", spec.retries.map(|x| json!(x))),
        ("retry.non_idempotent", spec.retry_non_idempotent.map(|x| json!(x))),
        ("policy", spec.policy.as_ref().map(|x| json!(x))),
    ];
    for (path, value) in given {
        if let Some(value) = value {
            put(path, value);
        }
    }
    if !(spec.allow_namespaces.is_empty() && spec.allow_nodes.is_empty() && spec.allow_groups.is_empty()) {
        let allow = crate::authz::Allow { namespaces: spec.allow_namespaces.clone(), nodes: spec.allow_nodes.clone(), groups: spec.allow_groups.clone() };
        put("allow", json!(allow));
    }
    if !spec.rules.is_empty() {
        let rules = spec.rules.iter().map(|r| crate::catalog::rules::parse(r)).collect::<Result<Vec<_>, _>>()?;
        put("rules", json!(rules));
    }
    for kv in &spec.set {
        let (k, raw) = kv.split_once('=').ok_or_else(|| format!("--set `{kv}`: expected KEY=VALUE (e.g. outlier.consecutive_failures=3)"))?;
        if k.is_empty() || k.split('.').any(str::is_empty) {
            return Err(format!("--set `{kv}`: `{k}` is not a setting name (dotted, e.g. health_check.timeout_ms)"));
        }
        put(k, serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())));
    }
    Ok(v)
}

/// Sets `a.b.c` in a JSON object, making the objects on the way.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut at = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = json!({});
        }
        let Value::Object(m) = at else { return };
        if parts.peek().is_none() {
            m.insert(part.to_string(), value);
            return;
        }
        at = m.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

enum Shown {
    /// A list printed as a table with these columns (header, JSON pointer).
    Table(&'static [(&'static str, &'static str)]),
    Describe,
    Message(String),
}

pub fn client_command(cli: &Cli) -> ExitCode {
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

const NS_COLS: &[(&str, &str)] = &[("NAME", "/name"), ("DESCRIPTION", "/description")];
const SVC_COLS: &[(&str, &str)] = &[("NAMESPACE", "/namespace"), ("NAME", "/name"), ("PROTOCOL", "/protocol"), ("ALIASES", "/aliases"), ("HEALTHY", "/healthy_endpoints"), ("ENDPOINTS", "/endpoints")];
const EP_COLS: &[(&str, &str)] = &[("NAMESPACE", "/namespace"), ("SERVICE", "/service"), ("ID", "/id"), ("ADDRESS", "/address"), ("ZONE", "/zone"), ("HEALTH", "/health"), ("DRAINING", "/draining"), ("NODE", "/node"), ("ATTRIBUTES", "/attributes")];
const ROUTE_COLS: &[(&str, &str)] = &[("ALIAS", "/dns_name"), ("VIP", "/vip"), ("PORT", "/port"), ("NAMESPACE", "/namespace"), ("SERVICE", "/service"), ("PROTOCOL", "/protocol"), ("HEALTHY", "/healthy_endpoints"), ("ENDPOINTS", "/endpoints"), ("LISTENING", "/listening")];
const MEMBER_COLS: &[(&str, &str)] = &[("NAME", "/name"), ("STATE", "/state"), ("ADDRESS", "/address"), ("ADMIN", "/admin"), ("GENERATION", "/generation"), ("ROLE", "/role"), ("RTT_MS", "/rtt_ms")];
const DISCOVER_COLS: &[(&str, &str)] = &[("ID", "/id"), ("ADDRESS", "/address"), ("ZONE", "/zone"), ("HEALTH", "/health"), ("ATTRIBUTES", "/attributes")];

fn execute(cli: &Cli) -> Result<(), String> {
    let client = Client { addr: admin_addr(cli)?, token: admin_token(cli)?, tls: admin_tls(cli)? };
    let call = |method: &str, path: &str, body: Option<Value>| client.request(method, path, body.as_ref()).map_err(|e: ClientError| e.to_string());
    let (value, shown) = match &cli.command {
        Command::Status => {
            let v = call("GET", "/v1/status", None)?;
            if let Some(w) = v.pointer("/mesh/certificate/warning").and_then(Value::as_str) {
                eprintln!("warning: this node's mesh certificate {w}");
            }
            for c in v.get("alias_conflicts").and_then(Value::as_array).into_iter().flatten() {
                eprintln!("warning: alias {} is claimed by more than one service: served for {}, not for {}", c["alias"].as_str().unwrap_or("?"), c["owner"].as_str().unwrap_or("?"), c["refused"]);
            }
            (v, Shown::Describe)
        }
        Command::Routes => (call("GET", "/v1/routes", None)?, Shown::Table(ROUTE_COLS)),
        Command::Members => (call("GET", "/v1/members", None)?, Shown::Table(MEMBER_COLS)),
        Command::Top { interval_ms, sort, iterations } => {
            return super::top::run(&client, std::time::Duration::from_millis((*interval_ms).max(100)), *sort, *iterations);
        }
        Command::Stats => {
            let v = call("GET", "/v1/stats", None)?;
            if cli.output == Format::Table {
                stats_tables(&v);
                return Ok(());
            }
            (v, Shown::Describe)
        }
        Command::Namespace(cmd) => match cmd {
            NamespaceCmd::Create { name, description } => {
                let v = call("POST", "/v1/namespaces?create_only=true", Some(json!({ "name": name, "description": description })))?;
                (v, Shown::Message(format!("namespace {name} created")))
            }
            NamespaceCmd::Delete { name } => (call("DELETE", &format!("/v1/namespaces/{}", enc(name)), None)?, Shown::Message(format!("namespace {name} deleted"))),
            NamespaceCmd::List => (call("GET", "/v1/namespaces", None)?, Shown::Table(NS_COLS)),
            NamespaceCmd::Describe { name } => (call("GET", &format!("/v1/namespaces/{}", enc(name)), None)?, Shown::Describe),
        },
        Command::Service(cmd) => match cmd {
            ServiceCmd::Create(spec) | ServiceCmd::Update(spec) => {
                let create = matches!(cmd, ServiceCmd::Create(_));
                let fields = service_fields(spec)?;
                let (ns, name) = (&spec.ns.namespace, &spec.name);
                let v = if create {
                    let mut body = fields;
                    body["namespace"] = json!(ns);
                    body["name"] = json!(name);
                    call("POST", "/v1/services?create_only=true", Some(body))
                        .map_err(|e| if e.contains("already exists") { format!("{e}; change it with `weft service update`") } else { e })?
                } else {
                    if fields.as_object().is_none_or(|m| m.is_empty()) {
                        return Err(format!("service update {name}: nothing to change; give the settings to change (see `weft service update --help`)"));
                    }
                    call("PATCH", &format!("/v1/services/{}/{}", enc(ns), enc(name)), Some(fields))
                        .map_err(|e| if e.contains("does not exist") { format!("{e}; create it with `weft service create`") } else { e })?
                };
                let names: Vec<String> = v["aliases"]
                    .as_array()
                    .map(|l| l.iter().map(|a| format!("{}:{} -> {}:{}", cell(&a["dns_name"]), a["port"], cell(&a["vip"]), a["port"])).collect())
                    .unwrap_or_default();
                let verb = if create { "created" } else { "updated" };
                let aliases = if names.is_empty() { " (no aliases)".to_string() } else { format!(" ({})", names.join(", ")) };
                let msg = format!("service {ns}/{name} {verb}{aliases}");
                (v, Shown::Message(msg))
            }
            ServiceCmd::Delete { name, ns } => (
                call("DELETE", &format!("/v1/services/{}/{}", enc(&ns.namespace), enc(name)), None)?,
                Shown::Message(format!("service {}/{name} deleted", ns.namespace)),
            ),
            ServiceCmd::List { namespace } => {
                let q = namespace.as_ref().map(|n| format!("?namespace={}", enc(n))).unwrap_or_default();
                let mut v = call("GET", &format!("/v1/services{q}"), None)?;
                // Aliases as `name:port` in the table.
                if cli.output == Format::Table {
                    for s in v.as_array_mut().into_iter().flatten() {
                        let list: Vec<String> = s["aliases"].as_array().into_iter().flatten().map(|a| format!("{}:{}", cell(&a["dns_name"]), a["port"])).collect();
                        s["aliases"] = Value::String(list.join(","));
                    }
                }
                (v, Shown::Table(SVC_COLS))
            }
            ServiceCmd::Describe { name, ns } => (call("GET", &format!("/v1/services/{}/{}", enc(&ns.namespace), enc(name)), None)?, Shown::Describe),
        },
        Command::Endpoint(cmd) => match cmd {
            EndpointCmd::Create { id, service, ns, address, zone, attributes, health } => {
                let mut body = json!({ "namespace": ns.namespace, "service": service, "id": id, "address": address, "zone": zone, "attributes": pairs(attributes, "--attr")? });
                if let Some(h) = health {
                    body["health"] = serde_json::to_value(crate::catalog::Health::from(*h)).unwrap_or(Value::Null);
                }
                let path = format!("/v1/endpoints/{}/{}/{}", enc(&ns.namespace), enc(service), enc(id));
                let before = call("GET", &path, None).ok();
                let v = call("POST", "/v1/endpoints", Some(body))?;
                let was = before.map(|b| format!(" (updated; was {})", cell(&b["address"]))).unwrap_or_default();
                let at = cell(&v["address"]);
                let named = if at == address.to_string() { String::new() } else { format!(" ({address})") };
                (v, Shown::Message(format!("endpoint {}/{service}/{id} registered at {at}{named}{was}", ns.namespace)))
            }
            EndpointCmd::Drain { id, service, ns } | EndpointCmd::Undrain { id, service, ns } => {
                let (verb, done) = if matches!(cmd, EndpointCmd::Drain { .. }) { ("drain", "draining: no new requests") } else { ("undrain", "back in service") };
                let path = format!("/v1/endpoints/{}/{}/{}/{verb}", enc(&ns.namespace), enc(service), enc(id));
                (call("POST", &path, None)?, Shown::Message(format!("endpoint {}/{service}/{id} {done}", ns.namespace)))
            }
            EndpointCmd::Delete { id, service, ns } => (
                call("DELETE", &format!("/v1/endpoints/{}/{}/{}", enc(&ns.namespace), enc(service), enc(id)), None)?,
                Shown::Message(format!("endpoint {}/{service}/{id} deregistered", ns.namespace)),
            ),
            EndpointCmd::List { namespace, service } => {
                let mut q: Vec<String> = Vec::new();
                if let Some(n) = namespace {
                    q.push(format!("namespace={}", enc(n)));
                }
                if let Some(s) = service {
                    q.push(format!("service={}", enc(s)));
                }
                let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
                (call("GET", &format!("/v1/endpoints{q}"), None)?, Shown::Table(EP_COLS))
            }
            EndpointCmd::Describe { id, service, ns } => {
                (call("GET", &format!("/v1/endpoints/{}/{}/{}", enc(&ns.namespace), enc(service), enc(id)), None)?, Shown::Describe)
            }
        },
        Command::Discover(d) => {
            let mut body = json!({
                "namespace": d.ns.namespace, "service": d.service,
                "query_parameters": pairs(&d.query, "--query")?, "optional_parameters": pairs(&d.optional, "--optional")?,
                "health_status": HealthFilter::from(d.health),
            });
            if let Some(m) = d.max {
                body["max_results"] = json!(m);
            }
            let v = call("POST", "/v1/discover", Some(body))?;
            if cli.output == Format::Table {
                let r = rows(&v["instances"], &DISCOVER_COLS.iter().map(|c| c.1).collect::<Vec<_>>());
                table(&DISCOVER_COLS.iter().map(|c| c.0).collect::<Vec<_>>(), &r);
                say(format!("instances revision {}", v["instances_revision"]));
                return Ok(());
            }
            (v, Shown::Describe)
        }
        Command::Plugin(PluginCmd::List) => {
            let v = call("GET", "/v1/plugins", None)?;
            if cli.output == Format::Table {
                super::plugin::list_table(&v);
                return Ok(());
            }
            (v, Shown::Describe)
        }
        Command::Plugin(PluginCmd::Reload { name }) => {
            let v = call("POST", &format!("/v1/plugins/{}/reload", enc(name)), None)?;
            let hash = v.get("hash").and_then(Value::as_str).map(|h| &h[..h.len().min(12)]).unwrap_or("-").to_string();
            (v, Shown::Message(format!("plugin {name} reloaded (sha256 {hash}…)")))
        }
        Command::Plugin(PluginCmd::Push(p)) => {
            let v = call("PUT", &format!("/v1/plugins/{}", enc(&p.name)), Some(super::plugin::push_body(p)?))?;
            let hash = v.get("sha256").and_then(Value::as_str).map(|h| &h[..h.len().min(12)]).unwrap_or("-").to_string();
            (v.clone(), Shown::Message(format!("plugin {} pushed to the mesh (sha256 {hash}…, {} bytes, hooks {})", p.name, v["size"], v["hooks"])))
        }
        Command::Plugin(PluginCmd::Rm { name }) => (call("DELETE", &format!("/v1/plugins/{}", enc(name)), None)?, Shown::Message(format!("plugin {name} deleted from the mesh"))),
        Command::Run(_) | Command::Validate { .. } | Command::Ca(_) | Command::Import(_) | Command::Man | Command::Completions { .. } | Command::Plugin(PluginCmd::Check { .. }) => unreachable!("handled by cli::main"),
    };
    if cli.output == Format::Json {
        say(serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    match shown {
        Shown::Table(cols) => table(&cols.iter().map(|c| c.0).collect::<Vec<_>>(), &rows(&value, &cols.iter().map(|c| c.1).collect::<Vec<_>>())),
        Shown::Describe => describe(&value),
        Shown::Message(m) => say(m),
    }
    Ok(())
}
