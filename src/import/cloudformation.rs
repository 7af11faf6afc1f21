//! CloudFormation templates for `weft import ecs`, in JSON or YAML (short-form tags such as
//! `!Ref`, `!GetAtt`, `!Sub` and `!Join` become their long forms first).
//!
//! A template says where each ECS service is reachable in one of three ways, and each becomes
//! the same thing — a service-connect configuration the ECS importer renders:
//! - `ServiceConnectConfiguration` with `Enabled: true`: taken as it is;
//! - `ServiceRegistries` → an `AWS::ServiceDiscovery::Service` in a private DNS namespace: the old
//!   name `<service>.<namespace>` becomes a client alias on the container port;
//! - `LoadBalancers` → a target group → an internal load balancer's listener, named by a Route 53
//!   alias record: the record's name on the listener's port becomes a client alias.
//!
//! Parameters are replaced by their defaults, so `Name: !Ref YelbDbServiceDiscoveryName` reads as
//! the name the stack would get. Resources with no weft equivalent (VPCs, IAM, security groups …)
//! are listed in one warning per type rather than dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ImportError, Warning};

/// What a template holds for the ECS importer.
#[derive(Default)]
pub struct Extracted {
    /// Task definitions in the API's shape (camelCase), every port mapping named.
    pub task_definitions: Vec<Map<String, Value>>,
    /// (JSON path, service-connect configuration, ECS service name).
    pub configs: Vec<(String, Map<String, Value>, String)>,
    pub warnings: Vec<Warning>,
}

/// A YAML document as JSON, intrinsic functions in their long form (`!Ref X` → `{"Ref": "X"}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`); file:line:col on a
/// syntax error.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Value, ImportError> {
    let v: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.to_string().replacen(&format!(" at line {line} column {column}"), "", 1);
        ImportError::Yaml { path: path.to_path_buf(), line, column, message }
    })?;
    Ok(yaml_to_json(v))
}

fn yaml_to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = yaml_to_json(t.value);
            match (name, value) {
                ("Ref" | "Condition", v) => json!({ name: v }),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').unwrap_or((s.as_str(), ""));
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (_, v) => json!({ format!("Fn::{name}"): v }),
            }
        }
    }
}

/// One template, parameters resolved to their defaults.
pub struct Template<'a> {
    file: &'a Path,
    resources: Map<String, Value>,
    used: BTreeSet<String>,
    out: Extracted,
}

impl<'a> Template<'a> {
    pub fn new(file: &'a Path, doc: &Map<String, Value>) -> Template<'a> {
        let params: BTreeMap<String, Value> = doc
            .get("Parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, p)| Some((k.clone(), p.get("Default")?.clone())))
            .collect();
        let resources = doc.get("Resources").map(|r| resolve(r, &params)).and_then(|r| r.as_object().cloned()).unwrap_or_default();
        Template { file, resources, used: BTreeSet::new(), out: Extracted::default() }
    }

    pub fn extract(mut self) -> Extracted {
        let ids: Vec<String> = self.resources.keys().cloned().collect();
        for id in &ids {
            if self.kind(id) == Some("AWS::ECS::Service") {
                self.service(id);
            }
        }
        for id in &ids {
            if self.kind(id) == Some("AWS::ECS::TaskDefinition") {
                self.used.insert(id.clone());
                let td = self.task_definition(id);
                self.out.task_definitions.push(td);
            }
        }
        self.unused();
        self.out
    }

    fn kind(&self, id: &str) -> Option<&str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    fn props(&self, id: &str) -> Value {
        self.resources.get(id).and_then(|r| r.get("Properties")).map(camel).unwrap_or(Value::Null)
    }

    fn warn(&mut self, at: String, message: impl Into<String>) {
        self.out.warnings.push(Warning { file: self.file.to_path_buf(), at, message: message.into() });
    }

    /// A task definition in the API's shape; a port mapping without a `name` gets
    /// `<family>-<containerPort>`, so every port can be named by a service.
    fn task_definition(&self, id: &str) -> Map<String, Value> {
        let mut td = self.props(id).as_object().cloned().unwrap_or_default();
        let family = td.get("family").and_then(Value::as_str).unwrap_or(id).to_string();
        td.insert("family".into(), Value::String(family.clone()));
        for c in td.get_mut("containerDefinitions").and_then(Value::as_array_mut).into_iter().flatten() {
            for pm in c.get_mut("portMappings").and_then(Value::as_array_mut).into_iter().flatten() {
                let port = pm.get("containerPort").and_then(as_u64);
                if let (Some(o), Some(port)) = (pm.as_object_mut(), port) {
                    o.insert("containerPort".into(), json!(port));
                    o.entry("name").or_insert_with(|| Value::String(format!("{family}-{port}")));
                }
            }
        }
        td
    }

    /// A namespace resource's DNS name.
    fn namespace_name(&self, v: Option<&Value>) -> Option<String> {
        let id = reference(v?)?;
        self.kind(&id).filter(|k| k.starts_with("AWS::ServiceDiscovery::") && k.ends_with("Namespace"))?;
        self.props(&id).get("name")?.as_str().map(str::to_string)
    }

    fn first_namespace(&self) -> Option<String> {
        let id = self.resources.keys().find(|id| self.kind(id).is_some_and(|k| k.starts_with("AWS::ServiceDiscovery::") && k.ends_with("Namespace")))?;
        self.props(id).get("name")?.as_str().map(str::to_string)
    }

    fn service(&mut self, id: &str) {
        self.used.insert(id.to_string());
        let props = self.props(id);
        let at = format!("$.Resources.{id}.Properties");
        if let Some(mut sc) = props.get("serviceConnectConfiguration").and_then(Value::as_object).cloned()
            && truthy(sc.get("enabled"))
        {
            // `Namespace: !Ref TheNamespace` (or GetAtt …Arn) names a resource of the template.
            if let Some(ns) = self.namespace_name(sc.get("namespace")) {
                sc.insert("namespace".into(), Value::String(ns));
            }
            let name = props.get("serviceName").and_then(Value::as_str).unwrap_or(id).to_string();
            self.out.configs.push((format!("{at}.ServiceConnectConfiguration"), sc, name));
            return;
        }
        let td_id = props.get("taskDefinition").and_then(reference).filter(|t| self.kind(t) == Some("AWS::ECS::TaskDefinition"));
        let td = td_id.as_deref().map(|t| self.task_definition(t)).unwrap_or_default();
        let mut names: Vec<(String, u64, Option<String>)> = Vec::new(); // (dns name, alias port, discovery name)
        let mut ports: Vec<u64> = Vec::new();
        for (j, reg) in props.get("serviceRegistries").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
            let Some((name, ns)) = self.registry(reg.get("registryArn")) else {
                self.warn(format!("{at}.ServiceRegistries[{j}]"), "its RegistryArn names no AWS::ServiceDiscovery::Service of this template (with a Name and a namespace): not imported");
                continue;
            };
            let Some(port) = reg.get("containerPort").or(reg.get("port")).and_then(as_u64).or_else(|| first_port(&td, reg.get("containerName"))) else {
                self.warn(format!("{at}.ServiceRegistries[{j}]"), "no container port: neither the registry entry nor the task definition names one");
                continue;
            };
            names.push((format!("{name}.{ns}"), port, Some(name)));
            ports.push(port);
        }
        for (j, lb) in props.get("loadBalancers").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
            let here = format!("{at}.LoadBalancers[{j}]");
            let container = lb.get("containerPort").and_then(as_u64).or_else(|| first_port(&td, lb.get("containerName")));
            for (dns, port) in self.load_balancer_names(&here, lb.get("targetGroupArn")) {
                let Some(container) = container else { continue };
                names.push((dns, port, None));
                ports.push(container);
            }
        }
        let service = props.get("serviceName").and_then(Value::as_str).map(str::to_string);
        let Some(td_id) = td_id else {
            if !names.is_empty() {
                self.warn(format!("{at}.TaskDefinition"), "names no AWS::ECS::TaskDefinition of this template: pass the task definition JSON too");
            }
            return;
        };
        self.used.insert(td_id.clone());
        let family = td.get("family").and_then(Value::as_str).unwrap_or(&td_id).to_string();
        if names.is_empty() {
            // A client: it calls others by their names and has none of its own.
            match self.first_namespace() {
                Some(ns) => self.out.configs.push((at, Map::from_iter([("enabled".into(), json!(true)), ("namespace".into(), json!(ns))]), service.unwrap_or(family))),
                None => self.warn(at, "no service-connect configuration, Cloud Map registry or internal load balancer: nothing to import for it"),
            }
            return;
        }
        let Some(ns) = self.first_namespace().or_else(|| names[0].0.split_once('.').map(|(_, d)| d.to_string())) else { return };
        let discovery = names.iter().find_map(|n| n.2.clone()).or(service.clone()).unwrap_or(family.clone());
        // One weft service per container port, its old names as client aliases.
        let mut services = Vec::new();
        for port in ports.iter().copied().collect::<BTreeSet<u64>>() {
            let aliases: Vec<Value> = names.iter().zip(&ports).filter(|(_, p)| **p == port).map(|((dns, alias_port, _), _)| json!({ "dnsName": dns, "port": alias_port })).collect();
            let name = if services.is_empty() { discovery.clone() } else { format!("{discovery}-{port}") };
            services.push(json!({ "portName": port_name(&td, port), "discoveryName": name, "clientAliases": aliases }));
        }
        let sc = Map::from_iter([("enabled".into(), json!(true)), ("namespace".into(), json!(ns)), ("services".into(), Value::Array(services))]);
        self.out.configs.push((at, sc, service.unwrap_or(discovery)));
    }

    /// A Cloud Map service: (its name, its namespace's name).
    fn registry(&mut self, arn: Option<&Value>) -> Option<(String, String)> {
        let id = reference(arn?)?;
        (self.kind(&id)? == "AWS::ServiceDiscovery::Service").then_some(())?;
        let p = self.props(&id);
        let name = p.get("name")?.as_str()?.to_string();
        let ns = self.namespace_name(p.get("namespaceId").or(p.pointer("/dnsConfig/namespaceId")))?;
        self.used.insert(id);
        self.used.extend(reference(p.get("namespaceId").or(p.pointer("/dnsConfig/namespaceId")).unwrap_or(&Value::Null)));
        Some((name, ns))
    }

    /// The names callers used for a target group: each internal load balancer listener that
    /// forwards to it, named by a Route 53 alias record → (record name, listener port).
    fn load_balancer_names(&mut self, at: &str, tg: Option<&Value>) -> Vec<(String, u64)> {
        let Some(tg) = tg.and_then(reference) else { return Vec::new() };
        self.used.insert(tg.clone());
        let mut out = Vec::new();
        let listeners: Vec<String> = self.resources.keys().filter(|l| self.kind(l) == Some("AWS::ElasticLoadBalancingV2::Listener")).cloned().collect();
        for l in listeners {
            let lp = self.props(&l);
            let forwards = lp.get("defaultActions").and_then(Value::as_array).into_iter().flatten().any(|a| {
                a.get("targetGroupArn").and_then(reference).as_deref() == Some(tg.as_str())
                    || a.pointer("/forwardConfig/targetGroups").and_then(Value::as_array).into_iter().flatten().any(|t| t.get("targetGroupArn").and_then(reference).as_deref() == Some(tg.as_str()))
            });
            let (Some(lb), Some(port)) = (lp.get("loadBalancerArn").and_then(reference), lp.get("port").and_then(as_u64)) else { continue };
            if !forwards {
                continue;
            }
            self.used.extend([l.clone(), lb.clone()]);
            if self.props(&lb).get("scheme").and_then(Value::as_str) != Some("internal") {
                self.warn(at.to_string(), format!("load balancer {lb} faces the internet: it stays in front of this service (weft carries traffic between services, not from outside)"));
                continue;
            }
            let records = self.alias_records(&lb);
            if records.is_empty() {
                self.warn(at.to_string(), format!("internal load balancer {lb} has no Route 53 alias record in this template: callers use its AWS DNS name, which weft cannot take over; add the alias to the service by hand"));
            }
            out.extend(records.into_iter().map(|r| (r, port)));
        }
        out
    }

    /// Route 53 records whose alias target is `lb`'s DNS name.
    fn alias_records(&mut self, lb: &str) -> Vec<String> {
        let ids: Vec<String> = self.resources.keys().filter(|r| self.kind(r) == Some("AWS::Route53::RecordSet")).cloned().collect();
        let mut names = Vec::new();
        for r in ids {
            let p = self.props(&r);
            if p.pointer("/aliasTarget/dNSName").and_then(reference).as_deref() != Some(lb) {
                continue;
            }
            if let Some(name) = p.get("name").and_then(Value::as_str) {
                names.push(name.trim_end_matches('.').to_string());
                self.used.insert(r);
                self.used.extend(p.get("hostedZoneId").and_then(reference));
            }
        }
        names
    }

    /// One warning per resource type nothing was imported from.
    fn unused(&mut self) {
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, r) in &self.resources {
            if self.used.contains(id) || r.get("Type").and_then(Value::as_str).is_some_and(|t| t.starts_with("AWS::ServiceDiscovery::") && t.ends_with("Namespace")) {
                continue;
            }
            let t = r.get("Type").and_then(Value::as_str).unwrap_or("(no Type)").to_string();
            by_type.entry(t).or_default().push(id.clone());
        }
        for (t, ids) in by_type {
            self.warn(format!("$.Resources.{{{}}}", ids.join(",")), format!("{t}: no weft equivalent; not imported"));
        }
    }
}

/// `Enabled: true` (YAML or JSON, or the string CloudFormation also accepts).
fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || v.and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// A number, or a string holding one (`ContainerPort: "5432"`).
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// The first container port of the named container (or of the first container).
fn first_port(td: &Map<String, Value>, container: Option<&Value>) -> Option<u64> {
    let containers = td.get("containerDefinitions")?.as_array()?;
    let c = match container.and_then(Value::as_str) {
        Some(n) => containers.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(n))?,
        None => containers.first()?,
    };
    c.get("portMappings")?.as_array()?.first()?.get("containerPort").and_then(as_u64)
}

/// The name of the port mapping on `port` (every mapping has one after `task_definition`).
fn port_name(td: &Map<String, Value>, port: u64) -> Option<String> {
    td.get("containerDefinitions")?
        .as_array()?
        .iter()
        .flat_map(|c| c.get("portMappings").and_then(Value::as_array).into_iter().flatten())
        .find(|pm| pm.get("containerPort").and_then(as_u64) == Some(port))?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// Parameters replaced by their defaults; `Fn::Sub` and `Fn::Join` evaluated where every part is
/// known. References to resources stay as they are.
fn resolve(v: &Value, params: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (k, arg) = o.iter().next().expect("one entry");
            let arg = resolve(arg, params);
            match (k.as_str(), &arg) {
                ("Ref", Value::String(p)) if params.contains_key(p) => params[p].clone(),
                ("Fn::Sub", Value::String(s)) => substitute(s, params, &Map::new()).map(Value::String).unwrap_or_else(|| json!({ k: arg })),
                ("Fn::Sub", Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
                    (Value::String(s), Value::Object(vars)) => substitute(s, params, vars).map(Value::String).unwrap_or_else(|| json!({ k: arg })),
                    _ => json!({ k: arg }),
                },
                ("Fn::Join", Value::Array(a)) if a.len() == 2 => {
                    let parts: Option<Vec<&str>> = a[1].as_array().and_then(|p| p.iter().map(Value::as_str).collect());
                    match (a[0].as_str(), parts) {
                        (Some(sep), Some(parts)) => Value::String(parts.join(sep)),
                        _ => json!({ k: arg }),
                    }
                }
                _ => json!({ k: arg }),
            }
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), resolve(v, params))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(v, params)).collect()),
        other => other.clone(),
    }
}

/// `${Name}` replaced from `vars` or the parameters; None when one is unknown (`${AWS::Region}`).
fn substitute(s: &str, params: &BTreeMap<String, Value>, vars: &Map<String, Value>) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 2..end];
        let value = vars.get(name).or(params.get(name))?;
        out.push_str(value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string()).as_str());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The resource a `{"Ref": X}` or `{"Fn::GetAtt": [X, …]}` points at.
pub fn reference(v: &Value) -> Option<String> {
    if let Some(r) = v.get("Ref").and_then(Value::as_str) {
        return Some(r.to_string());
    }
    v.get("Fn::GetAtt").and_then(|a| a.get(0)).and_then(Value::as_str).map(str::to_string)
}

/// CloudFormation's PascalCase keys as the API's camelCase (`PortName` → `portName`, `DnsName` →
/// `dnsName`), leaving intrinsic functions (`Ref`, `Fn::…`) alone.
fn camel(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = if k == "Ref" || k.starts_with("Fn::") {
                        k.clone()
                    } else {
                        let mut c = k.chars();
                        c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
                    };
                    (key, camel(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}
