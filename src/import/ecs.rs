//! `weft import ecs`: ECS Service Connect configuration → weft TOML.
//!
//! Reads, in any mix: the `--service-connect-configuration` JSON of `aws ecs create-service` (bare,
//! or inside the whole create-service input), task definitions (the registration JSON or
//! `describe-task-definition` output), `describe-services` output, and CloudFormation templates
//! in JSON or YAML (what they hold: [`super::cloudformation`]).
//! A service's `portName` is resolved through the task definitions to its container port and
//! `appProtocol` (http / http2 / grpc; absent = tcp). A service with no `services` is a client
//! of its namespace: it needs nothing in weft (every node resolves every alias).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{ImportError, Warning, quote};

/// A container port as a task definition names it.
#[derive(Debug, Clone)]
struct Port {
    container_port: u16,
    app_protocol: Option<String>,
}

/// One service-connect configuration found in a file, and where.
struct Found {
    file: PathBuf,
    at: String,
    config: Map<String, Value>,
    /// The ECS service's name, when the file says (for endpoint ids and messages).
    service: Option<String>,
}

#[derive(Default)]
struct Inputs {
    configs: Vec<Found>,
    ports: BTreeMap<String, Vec<(String, Port)>>,
    warnings: Vec<Warning>,
}

/// The result: TOML text and what was not carried over.
pub struct Imported {
    pub toml: String,
    pub warnings: Vec<Warning>,
}

pub fn import(files: &[PathBuf]) -> Result<Imported, ImportError> {
    let mut inputs = Inputs::default();
    for f in files {
        let v = super::read_document(f)?;
        if !inputs.read(f, &v) {
            return Err(ImportError::Unknown(f.clone()));
        }
    }
    if inputs.configs.is_empty() {
        return Err(ImportError::Nothing);
    }
    inputs.render()
}

fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

impl Inputs {
    /// Finds what `v` holds; false when it is none of the known shapes.
    fn read(&mut self, file: &Path, v: &Value) -> bool {
        let Some(o) = obj(v) else { return false };
        if o.get("Resources").and_then(obj).is_some() {
            self.cloudformation(file, o);
            return true;
        }
        if let Some(td) = o.get("taskDefinition").and_then(obj) {
            self.task_definition(td);
            return true;
        }
        if o.contains_key("containerDefinitions") {
            self.task_definition(o);
            return true;
        }
        if let Some(sc) = o.get("serviceConnectConfiguration").and_then(obj) {
            let service = o.get("serviceName").and_then(Value::as_str).map(str::to_string);
            let other: Vec<&str> = o.keys().map(String::as_str).filter(|k| !["serviceConnectConfiguration", "serviceName"].contains(k)).collect();
            if !other.is_empty() {
                self.warn(file, "$".into(), format!("ECS scheduling fields not carried over (weft runs no tasks): {}", other.join(", ")));
            }
            self.configs.push(Found { file: file.into(), at: "$.serviceConnectConfiguration".into(), config: sc.clone(), service });
            return true;
        }
        if let Some(list) = o.get("services").and_then(Value::as_array).filter(|l| l.iter().any(|s| s.get("serviceName").is_some())) {
            for (i, s) in list.iter().enumerate() {
                let deployments = s.get("deployments").and_then(Value::as_array).cloned().unwrap_or_default();
                let primary = deployments.iter().position(|d| d.get("status").and_then(Value::as_str) == Some("PRIMARY")).unwrap_or(0);
                if let Some(sc) = deployments.get(primary).and_then(|d| d.get("serviceConnectConfiguration")).and_then(obj) {
                    let service = s.get("serviceName").and_then(Value::as_str).map(str::to_string);
                    self.configs.push(Found { file: file.into(), at: format!("$.services[{i}].deployments[{primary}].serviceConnectConfiguration"), config: sc.clone(), service });
                }
            }
            return true;
        }
        if o.contains_key("enabled") {
            self.configs.push(Found { file: file.into(), at: "$".into(), config: o.clone(), service: None });
            return true;
        }
        false
    }

    fn task_definition(&mut self, td: &Map<String, Value>) {
        let family = td.get("family").and_then(Value::as_str).unwrap_or("").to_string();
        for c in td.get("containerDefinitions").and_then(Value::as_array).into_iter().flatten() {
            for pm in c.get("portMappings").and_then(Value::as_array).into_iter().flatten() {
                let (Some(name), Some(port)) = (pm.get("name").and_then(Value::as_str), pm.get("containerPort").and_then(Value::as_u64)) else { continue };
                let port = Port { container_port: port as u16, app_protocol: pm.get("appProtocol").and_then(Value::as_str).map(str::to_string) };
                self.ports.entry(name.to_string()).or_default().push((family.clone(), port));
            }
        }
    }

    /// A CloudFormation template: its services' names, whichever way it gives them.
    fn cloudformation(&mut self, file: &Path, doc: &Map<String, Value>) {
        let found = super::cloudformation::Template::new(file, doc).extract();
        for td in &found.task_definitions {
            self.task_definition(td);
        }
        for (at, config, service) in found.configs {
            self.configs.push(Found { file: file.into(), at, config, service: Some(service) });
        }
        self.warnings.extend(found.warnings);
    }

    fn warn(&mut self, file: &Path, at: String, message: impl Into<String>) {
        self.warnings.push(Warning { file: file.to_path_buf(), at, message: message.into() });
    }

    fn render(mut self) -> Result<Imported, ImportError> {
        let mut namespaces: Vec<String> = Vec::new();
        let mut out = String::new();
        let configs = std::mem::take(&mut self.configs);
        for f in &configs {
            out.push_str(&self.one(f, &mut namespaces)?);
        }
        let mut head = String::from("# Written by `weft import ecs`. Endpoints assume each task's container listens on this host\n# (127.0.0.1:containerPort); on many hosts, register each where it runs.\n\n");
        for ns in &namespaces {
            head.push_str(&format!("[[namespace]]\nname = {}\n\n", quote(ns)));
        }
        Ok(Imported { toml: head + &out, warnings: self.warnings })
    }

    /// The TOML of one service-connect configuration.
    fn one(&mut self, f: &Found, namespaces: &mut Vec<String>) -> Result<String, ImportError> {
        let invalid = |at: &str, message: String| ImportError::Invalid { file: f.file.clone(), path_in_file: at.to_string(), message };
        let c = &f.config;
        for k in c.keys().filter(|k| !["enabled", "namespace", "services", "logConfiguration", "accessLogConfiguration"].contains(&k.as_str())) {
            self.warn(&f.file, format!("{}.{k}", f.at), "not a service-connect field; ignored");
        }
        if c.get("enabled").and_then(Value::as_bool) != Some(true) {
            self.warn(&f.file, format!("{}.enabled", f.at), "service connect is not enabled here: nothing imported from it");
            return Ok(String::new());
        }
        if c.contains_key("logConfiguration") {
            self.warn(&f.file, format!("{}.logConfiguration", f.at), "the proxy's own log driver has no weft equivalent: weft logs to stderr (journald under systemd)");
        }
        let ns = match c.get("namespace").and_then(Value::as_str) {
            Some(n) if n.starts_with("arn:") => {
                self.warn(&f.file, format!("{}.namespace", f.at), format!("an ARN ({n}) names the namespace by id; its last part is used as the name — rename it to the namespace's DNS name"));
                n.rsplit('/').next().unwrap_or(n).to_string()
            }
            Some(n) => n.to_string(),
            None => return Err(invalid(&format!("{}.namespace", f.at), "missing: weft needs the namespace (ECS would take the cluster's default)".into())),
        };
        if !namespaces.contains(&ns) {
            namespaces.push(ns.clone());
        }
        let access = c.get("accessLogConfiguration").is_some();
        let services = c.get("services").and_then(Value::as_array).cloned().unwrap_or_default();
        if services.is_empty() {
            return Ok(format!("# {}: a client of namespace {ns} (every weft node resolves its aliases)\n\n", f.service.as_deref().unwrap_or("client-only service")));
        }
        let mut out = String::new();
        for (i, s) in services.iter().enumerate() {
            out.push_str(&self.service(f, &format!("{}.services[{i}]", f.at), s, &ns, access)?);
        }
        Ok(out)
    }

    fn service(&mut self, f: &Found, at: &str, s: &Value, ns: &str, access: bool) -> Result<String, ImportError> {
        let invalid = |message: String| ImportError::Invalid { file: f.file.clone(), path_in_file: at.to_string(), message };
        let known = ["portName", "discoveryName", "clientAliases", "ingressPortOverride", "timeout", "tls"];
        for k in s.as_object().into_iter().flat_map(|o| o.keys()).filter(|k| !known.contains(&k.as_str())) {
            self.warn(&f.file, format!("{at}.{k}"), "unknown field; ignored");
        }
        let port_name = s.get("portName").and_then(Value::as_str).ok_or_else(|| invalid("`portName` is missing".into()))?;
        let name = s.get("discoveryName").and_then(Value::as_str).unwrap_or(port_name);
        let port = self.port_of(f, at, port_name)?;
        let protocol = match port.app_protocol.as_deref() {
            None => "tcp",
            Some("http") => "http",
            Some("http2") => "http2",
            Some("grpc") => "grpc",
            Some(other) => return Err(invalid(format!("appProtocol `{other}` of port `{port_name}`: http, http2 or grpc"))),
        };
        let mut t = format!("[[service]]\nnamespace = {}\nname = {}\nprotocol = \"{protocol}\"\n", quote(ns), quote(name));
        let aliases = s.get("clientAliases").and_then(Value::as_array).cloned().unwrap_or_default();
        let alias: Vec<String> = if aliases.is_empty() {
            vec![format!("{{ dns_name = {}, port = {} }}", quote(&format!("{name}.{ns}")), port.container_port)]
        } else {
            aliases
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    let p = a.get("port").and_then(Value::as_u64).ok_or_else(|| invalid(format!("clientAliases[{j}].port is missing")))?;
                    let dns = a.get("dnsName").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{name}.{ns}"));
                    if a.get("testTrafficRules").is_some() {
                        self.warn(&f.file, format!("{at}.clientAliases[{j}].testTrafficRules"), "blue/green test traffic: use a route rule with a header match (`[[service.rules]] header = …, to = …`)");
                    }
                    Ok(format!("{{ dns_name = {}, port = {p} }}", quote(&dns)))
                })
                .collect::<Result<_, ImportError>>()?
        };
        t.push_str(&format!("aliases = [{}]\n", alias.join(", ")));
        let timeouts = self.timeouts(f, at, s.get("timeout"), protocol);
        if !timeouts.is_empty() {
            t.push_str(&format!("timeouts = {{ {} }}\n", timeouts.join(", ")));
        }
        if access {
            t.push_str("access_log = true\n");
        }
        if s.get("ingressPortOverride").is_some() {
            self.warn(&f.file, format!("{at}.ingressPortOverride"), "weft does not intercept a task's inbound port: callers reach the endpoint's own address, so there is nothing to override");
        }
        if s.get("tls").is_some() {
            self.warn(&f.file, format!("{at}.tls"), "traffic between weft hosts is always mutual TLS with the cluster CA (`weft ca`); the AWS Private CA settings are not carried over");
        }
        let id = f.service.clone().unwrap_or_else(|| name.to_string());
        t.push_str(&format!(
            "\n[[endpoint]]\nnamespace = {}\nservice = {}\nid = {}\naddress = \"127.0.0.1:{}\"\n\n",
            quote(ns),
            quote(name),
            quote(&format!("{id}-1")),
            port.container_port
        ));
        Ok(t)
    }

    fn port_of(&mut self, f: &Found, at: &str, port_name: &str) -> Result<Port, ImportError> {
        let found = self.ports.get(port_name).cloned().unwrap_or_default();
        match found.as_slice() {
            [] => Err(ImportError::Invalid {
                file: f.file.clone(),
                path_in_file: format!("{at}.portName"),
                message: format!("no task definition given names a port `{port_name}` (pass the task definition JSON too)"),
            }),
            [(_, p)] => Ok(p.clone()),
            [(family, p), ..] => {
                self.warn(&f.file, format!("{at}.portName"), format!("several task definitions name a port `{port_name}`; used the one of family `{family}`"));
                Ok(p.clone())
            }
        }
    }

    fn timeouts(&mut self, f: &Found, at: &str, t: Option<&Value>, protocol: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Some(t) = t else { return out };
        if let Some(idle) = t.get("idleTimeoutSeconds").and_then(Value::as_u64) {
            out.push(format!("idle_s = {idle}"));
        }
        if let Some(req) = t.get("perRequestTimeoutSeconds").and_then(Value::as_u64) {
            if protocol == "tcp" {
                self.warn(&f.file, format!("{at}.timeout.perRequestTimeoutSeconds"), "not allowed for TCP services (as in ECS); ignored");
            } else {
                out.push(format!("request_s = {req}"));
            }
        }
        out
    }
}
