//! The node's side of telemetry: the OTLP exporter's start and stop, and dropping the series of
//! services and endpoints the catalog no longer has.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
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

/// Drops the figures of deleted services and endpoints whenever the catalog changes.
pub(super) async fn retain_series(catalog: Arc<Catalog>, stats: Arc<Registry>, shutdown: CancellationToken) {
    let mut rx = catalog.subscribe();
    loop {
        {
            let snap = rx.borrow_and_update().clone();
            stats.retain(
                |ns, svc| snap.services.contains_key(&(ns.to_string(), svc.to_string())),
                |ns, svc, id| snap.endpoints_of(ns, svc).iter().any(|e| e.id == id),
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}
