//! Prometheus exposition of the registry (`GET /metrics` on the admin listener), encoded by
//! `prometheus-client` from the same families the OTLP exporter publishes: dots in names and
//! attribute keys become underscores, counters get `_total`, units become suffixes.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::families::{self, FAMILIES, Kind, Point, Value};
use super::{HistogramSnapshot, Snapshot};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Points(std::collections::BTreeMap<&'static str, Vec<Point>>);

fn prom_name(name: &str) -> String {
    name.replace(['.', '-'], "_")
}

fn unit(u: &str) -> Option<Unit> {
    match u {
        "s" => Some(Unit::Seconds),
        "By" => Some(Unit::Bytes),
        _ => None,
    }
}

fn labels(p: &Point) -> Vec<(String, String)> {
    p.attributes.iter().map(|(k, v)| (prom_name(k), v.clone())).collect()
}

/// Cumulative `(upper bound in s, count)` pairs, the last one `+Inf`.
fn buckets(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    let bounds = HistogramSnapshot::bounds_s();
    let mut seen = 0;
    h.counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            seen += c;
            (bounds.get(i).copied().unwrap_or(f64::INFINITY), seen)
        })
        .collect()
}

impl prometheus_client::collector::Collector for Points {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in FAMILIES {
            let Some(points) = self.0.get(f.name) else { continue };
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::UpDown | Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let name = prom_name(f.name);
            let unit = unit(f.unit);
            let mut family = encoder.encode_descriptor(&name, f.help, unit.as_ref(), kind)?;
            for p in points {
                let labels = labels(p);
                let mut m = family.encode_family(&labels)?;
                match &p.value {
                    Value::U64(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                    Value::I64(v) => m.encode_gauge(v)?,
                    Value::F64(v) => m.encode_gauge(v)?,
                    Value::Histogram(h) => m.encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, h.count(), &buckets(h), None)?,
                }
            }
        }
        Ok(())
    }
}

/// The text Prometheus scrapes, for one snapshot.
pub fn render(snap: &Snapshot) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Points(families::collect(snap))));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let r = super::super::Registry::default();
        let s = r.service("ns", "api");
        s.requests.fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..5 {
            s.finish(0, 200, std::time::Duration::from_micros(400));
        }
        let text = render(&r.snapshot());
        assert!(text.contains("weft_requests_total{weft_namespace=\"ns\",weft_service=\"api\"} 5"), "{text}");
        assert!(text.contains("http_server_request_duration_seconds_count{weft_namespace=\"ns\",weft_service=\"api\",http_request_method=\"GET\",http_response_status_class=\"2xx\"} 5"), "{text}");
        assert!(text.contains("le=\"+Inf\""));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
