//! Active health checks. Each node checks only the endpoints it owns — it is next to them, and
//! it is the only writer of their records — and publishes each change of health through the
//! catalog, so every node in the mesh stops (or starts) routing to the endpoint.
//!
//! A new registration starts UNKNOWN and gets no traffic until its first check passes (one pass
//! at start, as in Envoy, so a fresh endpoint is not held back for two intervals); afterwards it
//! takes `unhealthy_threshold` failures in a row to go UNHEALTHY and `healthy_threshold` passes
//! to come back.

mod probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CheckKind, Health, HealthCheck, Key, Protocol, Snapshot};
use crate::telemetry::{Stats, now_us};

/// What one endpoint's check loop runs; a change restarts the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    address: SocketAddr,
    protocol: Protocol,
    check: HealthCheck,
}

fn own_checks(snap: &Snapshot, me: &str) -> HashMap<Key, Spec> {
    let mut out = HashMap::new();
    for ((ns, name), svc) in &snap.services {
        if svc.health_check.kind == CheckKind::None {
            continue;
        }
        for ep in snap.endpoints_of(ns, name).iter().filter(|e| e.node == me) {
            let spec = Spec { address: ep.address, protocol: svc.protocol, check: svc.health_check.clone() };
            out.insert(Key::Endpoint(ns.clone(), name.clone(), ep.id.clone()), spec);
        }
    }
    out
}

/// The check loops to stop and to start for a new snapshot.
#[derive(Default)]
struct Changes {
    stop: Vec<Key>,
    start: Vec<(Key, Spec)>,
}

/// The checks `snap` asks of node `me` and how they differ from `current` (a changed spec is
/// stopped and started again). O(catalog): run off the runtime.
fn diff(snap: &Snapshot, me: &str, current: &HashMap<Key, Spec>) -> (HashMap<Key, Spec>, Changes) {
    let want = own_checks(snap, me);
    let stop = current.iter().filter(|(k, s)| want.get(*k) != Some(*s)).map(|(k, _)| k.clone()).collect();
    let start = want.iter().filter(|(k, s)| current.get(*k) != Some(*s)).map(|(k, s)| (k.clone(), s.clone())).collect();
    (want, Changes { stop, start })
}

/// Keeps one check loop per own endpoint in step with the catalog, until shutdown.
///
/// Which loops change is worked out on a blocking thread: it walks the whole catalog, and with
/// 1,500 own endpoints it took 1–4 ms per snapshot on the runtime thread, ten times a second
/// during a burst of writes (the largest stall left in `benches/catalog_writes.sh`). The runtime
/// only stops and starts the loops that changed.
pub async fn run(catalog: Arc<Catalog>, stats: Arc<Stats>, shutdown: CancellationToken) {
    let mut rx = catalog.subscribe();
    let mut loops: HashMap<Key, JoinHandle<()>> = HashMap::new();
    let mut specs: HashMap<Key, Spec> = HashMap::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        // The old map goes with the work, so it is freed there too.
        let (me, current) = (catalog.node().to_string(), std::mem::take(&mut specs));
        match tokio::task::spawn_blocking(move || diff(&snap, &me, &current)).await {
            Ok((next, changes)) => {
                specs = next;
                for key in changes.stop {
                    if let Some(task) = loops.remove(&key) {
                        task.abort();
                    }
                }
                for (key, spec) in changes.start {
                    let task = tokio::spawn(check_loop(catalog.clone(), stats.clone(), key.clone(), spec));
                    if let Some(old) = loops.insert(key, task) {
                        old.abort();
                    }
                }
            }
            // The blocking pool is shutting down (or the diff panicked): start over from nothing
            // at the next snapshot.
            Err(e) => {
                tracing::warn!(error = %e, "cannot work out the health checks for the new catalog");
                loops.drain().for_each(|(_, t)| t.abort());
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
        }
    }
    // Waited for, so their catalog handles are gone when the node drops its last one (that
    // closes the store).
    for (_, task) in loops {
        task.abort();
        let _ = task.await;
    }
}

/// When a new loop makes its first check: after a delay spread over a tenth of the interval
/// (at most 250 ms) by the endpoint's key, so the loops that one snapshot starts — 50 of them
/// each 100 ms during a burst of registrations — do not all connect in the same turn of the
/// runtime (≈ 20 µs of kernel time each: 1 ms in one run, between two proxied requests), and
/// their later checks stay spread too.
fn first_check_delay(key: &Key, interval_ms: u64) -> Duration {
    use std::hash::{Hash, Hasher};
    let spread = (interval_ms / 10).clamp(1, 250);
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    Duration::from_millis(h.finish() % spread)
}

/// The health after one more check result, given the current health and the run of results.
fn next_health(current: Health, passes: u32, failures: u32, c: &HealthCheck) -> Health {
    match current {
        Health::Unknown if passes >= 1 => Health::Healthy,
        Health::Unhealthy if passes >= c.healthy_threshold => Health::Healthy,
        Health::Unknown | Health::Healthy if failures >= c.unhealthy_threshold => Health::Unhealthy,
        h => h,
    }
}

async fn check_loop(catalog: Arc<Catalog>, stats: Arc<Stats>, key: Key, spec: Spec) {
    let c = &spec.check;
    let first = tokio::time::Instant::now() + first_check_delay(&key, c.interval_ms);
    let mut tick = tokio::time::interval_at(first, Duration::from_millis(c.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut passes, mut failures) = (0u32, 0u32);
    let live = match &key {
        Key::Endpoint(ns, svc, id) => Some(stats.endpoint(ns, svc, id)),
        _ => None,
    };
    // The previous check's start: traffic answered since then counts against a timed-out check.
    let mut previous = now_us();
    loop {
        tick.tick().await;
        let started = now_us();
        let result = match tokio::time::timeout(Duration::from_millis(c.timeout_ms), probe::probe(&spec.check, spec.protocol, spec.address)).await {
            Ok(r) => r,
            // A check that merely timed out says the endpoint is slow, not that it is down; if
            // it answered real traffic since the last check, the traffic is the better witness.
            Err(_) if live.as_ref().is_some_and(|l| l.liveness.alive_since(previous)) => {
                tracing::debug!(endpoint = %key, address = %spec.address, "health check timed out, but the endpoint answered traffic meanwhile: not counted");
                previous = started;
                continue;
            }
            Err(_) => Err(format!("no answer within {} ms", c.timeout_ms)),
        };
        previous = started;
        match &result {
            Ok(()) => (passes, failures) = (passes.saturating_add(1), 0),
            Err(_) => (passes, failures) = (0, failures.saturating_add(1)),
        }
        let current = match catalog.record(&key) {
            Some(crate::catalog::Record { body: Some(crate::catalog::Body::Endpoint(ep)), .. }) => ep.health,
            // Deregistered: the supervisor stops this loop on the next snapshot.
            _ => continue,
        };
        let next = next_health(current, passes, failures, c);
        if next == current {
            continue;
        }
        match &result {
            Ok(()) => tracing::info!(endpoint = %key, address = %spec.address, "health check passed: now {}", next.as_str()),
            Err(why) => tracing::warn!(endpoint = %key, address = %spec.address, reason = %why, "health check failed {failures} times: now {}", next.as_str()),
        }
        if let Key::Endpoint(ns, svc, _) = &key {
            stats.service(ns, svc).health_transitions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = catalog.update_endpoint_background(&key, |ep| ep.health = next) {
            tracing::warn!(endpoint = %key, error = %e, "cannot record health");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_admits_a_new_endpoint_then_thresholds_apply() {
        let c = HealthCheck::default();
        assert_eq!(next_health(Health::Unknown, 1, 0, &c), Health::Healthy);
        assert_eq!(next_health(Health::Unknown, 0, 1, &c), Health::Unknown);
        assert_eq!(next_health(Health::Unknown, 0, 2, &c), Health::Unhealthy);
        assert_eq!(next_health(Health::Healthy, 0, 1, &c), Health::Healthy);
        assert_eq!(next_health(Health::Healthy, 0, 2, &c), Health::Unhealthy);
        assert_eq!(next_health(Health::Unhealthy, 1, 0, &c), Health::Unhealthy);
        assert_eq!(next_health(Health::Unhealthy, 2, 0, &c), Health::Healthy);
    }
}
