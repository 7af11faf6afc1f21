//! One request's tries: endpoint choice through the policy, the outcome of each try fed to outlier
//! detection and the latency estimate, and the decision to try again — which needs the policy's
//! yes, a request that can be sent again as it was, and a retry budget that is not spent.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ProxyError;
use super::table::ServiceRoute;
use super::Shared;
use crate::policy::{Candidates, Headers, Outcome, RequestInfo, RetryDecision, Target};
use crate::telemetry::{RETRY_REASONS, us_at};

pub struct Attempts<'a> {
    route: &'a ServiceRoute,
    pub info: RequestInfo<'a>,
    /// Endpoints this request will not go to again: it may have reached them, or they refused.
    excluded: Vec<u32>,
    /// Endpoints whose connect timed out for this request: it may go back to them after the rest.
    timed_out: Vec<u32>,
    /// The last try failed connecting within the connect timeout (not outright).
    last_timed_out: bool,
    /// When the request began: the clock reading the first try's bookkeeping uses.
    start: Instant,
    start_us: u64,
    /// The last try's error, reported when no endpoint is left to try.
    last: Option<ProxyError>,
}

impl<'a> Attempts<'a> {
    /// `start`: when the request began, a clock reading the caller has already made.
    pub fn new(route: &'a ServiceRoute, info: RequestInfo<'a>, start: Instant) -> Attempts<'a> {
        let start_us = us_at(start.into_std());
        route.budget.request(start_us);
        Attempts { route, info, excluded: Vec::new(), timed_out: Vec::new(), last_timed_out: false, start, start_us, last: None }
    }

    /// The time for a try's bookkeeping (pool ages, ejection and latency clocks): the request's
    /// start for the first try, whose work follows it within microseconds, and the clock for
    /// later tries, which come after a failure and maybe a backoff.
    pub fn now(&self) -> Instant {
        if self.info.attempt == 1 { self.start } else { Instant::now() }
    }

    /// The service the request goes to.
    pub fn route(&self) -> &'a ServiceRoute {
        self.route
    }

    /// The endpoint for the next try.
    pub fn pick(&mut self) -> Result<Arc<Target>, ProxyError> {
        let route = self.route;
        let now_us = if self.info.attempt == 1 { self.start_us } else { us_at(Instant::now().into_std()) };
        let c = Candidates { targets: &route.targets, excluded: &self.excluded, timed_out: &self.timed_out, cursor: &route.cursor, lb: route.lb, now_us };
        let picked = route.policy.pick_endpoint(&self.info, &c).map_err(|e| ProxyError::Policy(e.to_string()))?;
        match picked.and_then(|i| route.targets.get(i as usize)) {
            Some(t) => {
                t.stats.liveness.claim_probe(now_us);
                Ok(t.clone())
            }
            None => Err(self.last.take().unwrap_or_else(|| ProxyError::NoEndpoint(route.label()))),
        }
    }

    /// A try that failed with an error: counted, logged with its cause, and remembered in case it
    /// is the last.
    pub fn failed(&mut self, target: &Target, e: ProxyError) {
        tracing::debug!(service = %self.route.label(), endpoint = %target.id, node = %target.node, attempt = self.info.attempt, cause = cause(&e), error = %e, "try failed");
        self.route.stats.failure(e.kind());
        self.last_timed_out = matches!(e, ProxyError::ConnectTimeout { .. });
        judge(self.route, target, &e);
        self.last = Some(e);
    }

    /// Whether to try again after `outcome`, having waited the backoff. `replayable`: the request
    /// can be sent again exactly as it was (its body is kept, or none of it was sent).
    pub async fn again(&mut self, target: &Target, outcome: Outcome, replayable: bool) -> bool {
        let soft = outcome == Outcome::ConnectFailed && std::mem::take(&mut self.last_timed_out);
        if soft {
            if !self.timed_out.contains(&target.index) {
                self.timed_out.push(target.index);
            }
        } else {
            self.excluded.push(target.index);
        }
        let route = self.route;
        // With every endpoint ruled out, the last answer stands.
        if !replayable || route.targets.iter().all(|t| self.excluded.contains(&t.index)) {
            return false;
        }
        let decision = match route.policy.should_retry(&self.info, outcome, self.start.elapsed()) {
            Ok(d) => d,
            Err(e) => {
                self.last = Some(ProxyError::Policy(e.to_string()));
                return false;
            }
        };
        let RetryDecision::Retry { backoff_ms } = decision else {
            tracing::debug!(service = %route.label(), endpoint = %target.id, reason = RETRY_REASONS[reason(outcome)], idempotent = self.info.idempotent, "not retrying");
            return false;
        };
        if !route.budget.try_retry(&route.retry) {
            route.stats.retry_budget_exhausted.fetch_add(1, Relaxed);
            tracing::debug!(service = %route.label(), "retry budget spent; not retrying");
            return false;
        }
        route.stats.retries.fetch_add(1, Relaxed);
        let reason = reason(outcome);
        route.stats.retry_reasons[reason].fetch_add(1, Relaxed);
        tracing::debug!(service = %route.label(), endpoint = %target.id, reason = RETRY_REASONS[reason], backoff_ms, "retrying");
        self.info.attempt += 1;
        if backoff_ms > 0 {
            tokio::time::sleep(Duration::from_millis(backoff_ms.into())).await;
        }
        true
    }

    /// The error the client hears about once trying stops: the last try's.
    pub fn error(&mut self) -> ProxyError {
        self.last.take().unwrap_or_else(|| ProxyError::NoEndpoint(self.route.label()))
    }
}

/// The route phase: the service a request goes to, as its listener's service's policy says —
/// `Some` when that is another service of the namespace (a canary), `None` to keep it. A
/// destination this node does not know keeps the request where it is. `headers` and `describe`:
/// as [`crate::policy::ServicePolicy::route`] takes them.
pub fn routed<'a>(shared: &Shared, route: &ServiceRoute, headers: &Headers<'a>, describe: impl Fn() -> RequestInfo<'a>) -> Result<Option<Arc<ServiceRoute>>, ProxyError> {
    let alt = route.policy.route(headers, describe).map_err(|e| ProxyError::Policy(e.to_string()))?;
    let Some(alt) = alt else { return Ok(None) };
    let found = shared.table.load().service(&route.namespace, &alt).cloned();
    if found.is_none() {
        tracing::debug!(service = %route.label(), to = %alt, "the route hook named a service this node does not know; the request stays");
    }
    Ok(found)
}

/// The index in [`RETRY_REASONS`] of an outcome: what the retry counters and the log call it.
fn reason(outcome: Outcome) -> usize {
    match outcome {
        Outcome::ConnectFailed => 0,
        Outcome::Refused => 1,
        Outcome::Reset => 2,
        Outcome::Timeout => 3,
        Outcome::Status(_) => 4,
        Outcome::GrpcStatus(_) => 5,
    }
}

/// What the log calls a failed try's error: the same words as the retry counters.
fn cause(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => RETRY_REASONS[0],
        ProxyError::RequestTimeout { .. } => RETRY_REASONS[3],
        _ => RETRY_REASONS[2],
    }
}

/// What a failed try says about the endpoint. A connect that failed outright (refused, unreachable, gone from its
/// node): it refuses until it answers again, and it is an outlier strike. Timed out: a strike only
/// if it has not answered anyone since this connect began — a live endpoint whose listen backlog
/// is full drops SYNs, and Linux resends the first one only after 1 s, so a dropped SYN is not a
/// dead endpoint. Anything else: an outlier strike.
pub fn judge(route: &ServiceRoute, t: &Target, e: &ProxyError) {
    match e {
        ProxyError::Connect { .. } => {
            t.stats.liveness.refused(crate::telemetry::now_us());
            record(route, t, false, None);
        }
        ProxyError::ConnectTimeout { after, .. } => {
            let began = crate::telemetry::now_us().saturating_sub(after.as_micros() as u64);
            if t.stats.liveness.alive_since(began) {
                t.stats.failures.fetch_add(1, Relaxed);
            } else {
                record(route, t, false, None);
            }
        }
        _ => record(route, t, false, None),
    }
}

/// A resend to the same endpoint over a new connection (its old one went away under the request)
/// could not connect: the try's cause stays what happened to the old connection, and the failed
/// connect only tells whether the endpoint is gone.
pub fn resend_failed(route: &ServiceRoute, t: &Target, e: &ProxyError) {
    tracing::debug!(service = %route.label(), endpoint = %t.id, error = %e, "resend over a new connection could not connect");
    if matches!(e, ProxyError::Connect { .. }) {
        t.stats.liveness.refused(crate::telemetry::now_us());
    }
}

/// Feeds a try's result to the latency estimate and outlier detection. A failure is a connect
/// failure, a broken exchange, a 5xx or gRPC UNAVAILABLE. `timing`: how long the try took to its
/// response head, and when that head came.
pub fn record(route: &ServiceRoute, t: &Target, ok: bool, timing: Option<(Duration, Instant)>) {
    let s = &t.stats;
    if ok {
        let at = match timing {
            Some((took, at)) => {
                let at = us_at(at.into_std());
                s.load.observe_at(took, at);
                at
            }
            None => crate::telemetry::now_us(),
        };
        s.liveness.alive(at);
        s.ejection.success(&route.ejection);
        return;
    }
    s.failures.fetch_add(1, Relaxed);
    s.load.penalize();
    if s.ejection.failure(&route.ejection, || route.may_eject()) {
        // Its estimate is all failures now; when it is back it gets a fair share to prove itself.
        s.load.clear();
        route.stats.ejections.fetch_add(1, Relaxed);
        s.ejections.fetch_add(1, Relaxed);
        tracing::warn!(service = %route.label(), endpoint = %t.id, node = %t.node, times = s.ejection.times(), "endpoint ejected after consecutive failures");
    }
}
