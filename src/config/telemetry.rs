//! `[telemetry]`: OTLP metrics export. Each setting may also come from the standard `OTEL_*`
//! variables; where both are set, the file wins. [`resolve`] merges them, and `weft validate`
//! runs it too, so a bad variable is reported before `weft run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// false turns export off whatever the variables say (`OTEL_SDK_DISABLED=true` does too).
    pub enabled: Option<bool>,
    /// The collector: `http://host:4317` for gRPC, `http://host:4318` for HTTP/protobuf (to
    /// which `/v1/metrics` is appended). Export is on when an endpoint is set here or in the
    /// variables.
    pub endpoint: Option<String>,
    /// The full metrics URL, used as given (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    pub metrics_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Option<String>,
    /// Sent with every export (API keys).
    pub headers: BTreeMap<String, String>,
    /// CA certificate (PEM) that the collector's certificate must chain to (https endpoints).
    pub ca_file: Option<PathBuf>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// `cumulative` (default) or `delta`.
    pub temporality: Option<String>,
    pub service_name: Option<String>,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// What the exporter runs with, once file and variables are merged.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// For gRPC the collector's address; for HTTP the full URL of the metrics path.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    pub delta: bool,
    pub service_name: String,
    pub resource: BTreeMap<String, String>,
}

/// Comma-separated `key=value` pairs, values percent-decoded (W3C baggage style, as the
/// OpenTelemetry specification defines the variables).
fn pairs(var: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{var}: `{item}` is not key=value"));
        };
        out.insert(k.trim().to_string(), percent_decode(v.trim()));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn protocol(name: &str, what: &str) -> Result<Protocol, String> {
    match name {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(format!("{what}: unknown protocol `{other}` (grpc or http/protobuf; http/json is not supported)")),
    }
}

/// Merges `[telemetry]` with the `OTEL_*` variables (`env` looks one up). `Ok(None)`: export is off.
pub fn resolve(t: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<ExportSettings>, String> {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if t.enabled == Some(false) || (disabled && t.enabled != Some(true)) {
        return Ok(None);
    }
    let proto = match (&t.protocol, env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))) {
        (Some(p), _) => protocol(p, "[telemetry] protocol")?,
        (None, Some(p)) => protocol(p.trim(), "OTEL_EXPORTER_OTLP_PROTOCOL")?,
        (None, None) => Protocol::HttpProtobuf,
    };
    let signal = t.metrics_endpoint.clone().or_else(|| if t.endpoint.is_some() { None } else { env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") });
    let base = t.endpoint.clone().or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let endpoint = match (signal, base) {
        (Some(s), _) => s,
        (None, Some(b)) if proto == Protocol::HttpProtobuf => format!("{}/v1/metrics", b.trim_end_matches('/')),
        (None, Some(b)) => b,
        (None, None) => return Ok(None),
    };
    let url = endpoint.trim();
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(format!("OTLP endpoint `{url}` must start with http:// or https://"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("OTLP endpoint `{url}` has no host"));
    }
    let mut headers = match env("OTEL_EXPORTER_OTLP_METRICS_HEADERS").or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS")) {
        Some(h) => pairs("OTEL_EXPORTER_OTLP_HEADERS", &h)?,
        None => BTreeMap::new(),
    };
    headers.extend(t.headers.clone());
    let ms = |file: Option<u64>, var: &str, default: u64| -> Result<Duration, String> {
        let v = match (file, env(var)) {
            (Some(v), _) => v,
            (None, Some(s)) => s.trim().parse().map_err(|_| format!("{var}: `{s}` is not a number of milliseconds"))?,
            (None, None) => default,
        };
        if v == 0 { Err(format!("{var}: must be more than 0 ms")) } else { Ok(Duration::from_millis(v)) }
    };
    let interval = ms(t.interval_ms, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)?;
    let timeout = ms(t.timeout_ms, "OTEL_METRIC_EXPORT_TIMEOUT", 10_000)?;
    let temporality = t.temporality.clone().or_else(|| env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")).unwrap_or_else(|| "cumulative".into());
    let delta = match temporality.trim().to_ascii_lowercase().as_str() {
        "cumulative" => false,
        "delta" => true,
        other => return Err(format!("temporality `{other}`: cumulative or delta")),
    };
    let mut resource = match env("OTEL_RESOURCE_ATTRIBUTES") {
        Some(r) => pairs("OTEL_RESOURCE_ATTRIBUTES", &r)?,
        None => BTreeMap::new(),
    };
    resource.extend(t.resource.clone());
    let service_name = t.service_name.clone().or_else(|| env("OTEL_SERVICE_NAME")).or_else(|| resource.remove("service.name")).unwrap_or_else(|| "weft".into());
    resource.remove("service.name");
    let ca_file = t.ca_file.clone().or_else(|| env("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE").or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE")).map(PathBuf::from));
    Ok(Some(ExportSettings { endpoint: url.to_string(), protocol: proto, headers, ca_file, interval, timeout, delta, service_name, resource }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn off_without_an_endpoint_and_when_disabled() {
        assert!(resolve(&TelemetryConfig::default(), &env(&[])).unwrap().is_none());
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")];
        assert!(resolve(&TelemetryConfig::default(), &env(&vars)).unwrap().is_none());
    }

    #[test]
    fn variables_fill_in_and_the_file_wins() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=fromattrs,deployment.environment=prod"),
            ("OTEL_SERVICE_NAME", "fromvar"),
        ];
        let s = resolve(&TelemetryConfig::default(), &env(&vars)).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.headers["api-key"], "a b");
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.service_name, "fromvar");
        assert_eq!(s.resource["deployment.environment"], "prod");
        let file = TelemetryConfig { endpoint: Some("http://f:4317".into()), protocol: Some("grpc".into()), interval_ms: Some(500), headers: [("x".into(), "2".into())].into(), ..Default::default() };
        let s = resolve(&file, &env(&vars)).unwrap().unwrap();
        assert_eq!((s.endpoint.as_str(), s.protocol, s.interval), ("http://f:4317", Protocol::Grpc, Duration::from_millis(500)));
        assert_eq!(s.headers["x"], "2");
    }

    #[test]
    fn bad_values_are_named() {
        let e = resolve(&TelemetryConfig::default(), &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let e = resolve(&TelemetryConfig::default(), &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRIC_EXPORT_INTERVAL", "soon")])).unwrap_err();
        assert!(e.contains("OTEL_METRIC_EXPORT_INTERVAL"), "{e}");
        let e = resolve(&TelemetryConfig::default(), &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")])).unwrap_err();
        assert!(e.contains("http://"), "{e}");
    }
}
