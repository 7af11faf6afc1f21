//! The node's side of telemetry: the OTLP exporter's start and stop, and dropping the series of
//! services and endpoints the catalog no longer has.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Snapshot};
use crate::config::Config;
use crate::telemetry::Registry;
use crate::telemetry::otlp::{Exporter, NodeIdentity};

/// How long shutdown waits for the final flush to the collector.
pub(super) const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

/// Starts OTLP export when `[telemetry]` or the `OTEL_*` variables ask for it.
pub(super) fn start_export(config: &Config, catalog: &Arc<Catalog>, stats: &Arc<Registry>) -> Result<Option<Exporter>, super::NodeError> {
    let settings = crate::config::resolve_telemetry(&config.telemetry, &|k| std::env::var(k).ok()).map_err(super::NodeError::Telemetry)?;
    let Some(settings) = settings else { return Ok(None) };
    let who = NodeIdentity { node: config.node.name.clone(), mode: config.node.mode.as_str().to_string(), zone: config.node.zone.clone() };
    let (c, s) = (catalog.clone(), stats.clone());
    let source = Arc::new(move || crate::admin::telemetry_snapshot(&s, &c));
    crate::telemetry::otlp::start(settings, who, source, stats.clone()).map(Some).map_err(|e| super::NodeError::Telemetry(e.to_string()))
}

/// Flushes once and stops the exporter, from a blocking thread (the SDK's shutdown blocks, and
/// would deadlock a current-thread runtime), never longer than [`FLUSH_DEADLINE`].
pub(super) async fn stop_export(exporter: Option<Exporter>) {
    let Some(e) = exporter else { return };
    match tokio::task::spawn_blocking(move || e.shutdown(FLUSH_DEADLINE)).await {
        Ok(true) => tracing::info!("OTLP exporter stopped (its final flush, if it failed, is logged above)"),
        _ => tracing::warn!(deadline_ms = FLUSH_DEADLINE.as_millis() as u64, "OTLP exporter did not stop within its deadline; left behind"),
    }
}

/// How often, at most, the series of deleted services and endpoints are dropped.
const RETAIN_EVERY: Duration = Duration::from_secs(1);

/// Drops the figures of deleted services and endpoints when the catalog changes, at most once
/// per [`RETAIN_EVERY`], on a blocking thread: it walks every series and every record of the
/// snapshot, which on the runtime thread of a one-CPU node took 1–2.5 ms per snapshot with 5,000
/// records, ten times a second during a burst of catalog writes (`benches/catalog_writes.sh`,
/// `perf sched timehist`: the runtime's longest runs, and the burst's slowest requests).
pub(super) async fn retain_series(catalog: Arc<Catalog>, stats: Arc<Registry>, shutdown: CancellationToken) {
    let mut rx = catalog.subscribe();
    loop {
        let snap = rx.borrow_and_update().clone();
        let stats = stats.clone();
        if tokio::task::spawn_blocking(move || retain(&stats, &snap)).await.is_err() {
            tracing::warn!("dropping the figures of deleted services failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETAIN_EVERY) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

fn retain(stats: &Registry, snap: &Snapshot) {
    let services = snap.services.keys().map(|(ns, svc)| (ns.as_str(), svc.as_str()));
    let mut endpoints: Vec<(&str, &str, &str)> = snap.endpoints.values().flatten().map(|e| (e.namespace.as_str(), e.service.as_str(), e.id.as_str())).collect();
    endpoints.sort_unstable();
    stats.retain(services, endpoints.into_iter());
}
