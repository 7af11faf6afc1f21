//! One request's tries: endpoint choice through the policy, the outcome of each try fed to outlier
//! detection and the latency estimate, and the decision to try again — which needs the policy's
//! yes, a request that can be sent again as it was, and a retry budget that is not spent.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{ProxyError, Side};
use super::table::ServiceRoute;
use super::Shared;
use crate::policy::{Candidates, Outcome, RequestInfo, RetryDecision, Target};
use crate::telemetry::us_at;

pub struct Attempts<'a> {
    shared: &'a Shared,
    route: &'a ServiceRoute,
    pub info: RequestInfo<'a>,
    excluded: Vec<u32>,
    /// When the request began: the clock reading the first try's bookkeeping uses.
    start: Instant,
    start_us: u64,
    /// The last try's error, reported when no endpoint is left to try.
    last: Option<ProxyError>,
}

impl<'a> Attempts<'a> {
    /// `start`: when the request began, a clock reading the caller has already made.
    pub fn new(shared: &'a Shared, route: &'a ServiceRoute, info: RequestInfo<'a>, start: Instant) -> Attempts<'a> {
        let start_us = us_at(start.into_std());
        route.budget.request(start_us);
        Attempts { shared, route, info, excluded: Vec::new(), start, start_us, last: None }
    }

    /// The time for a try's bookkeeping (pool ages, ejection and latency clocks): the request's
    /// start for the first try, whose work follows it within microseconds, and the clock for
    /// later tries, which come after a failure and maybe a backoff.
    pub fn now(&self) -> Instant {
        if self.info.attempt == 1 { self.start } else { Instant::now() }
    }

    /// The endpoint for the next try.
    pub fn pick(&mut self) -> Result<Arc<Target>, ProxyError> {
        let route = self.route;
        let now_us = if self.info.attempt == 1 { self.start_us } else { us_at(Instant::now().into_std()) };
        let c = Candidates { targets: &route.targets, excluded: &self.excluded, cursor: &route.cursor, lb: route.lb, now_us };
        match self.shared.policy.pick_endpoint(&self.info, &c).and_then(|i| route.targets.get(i as usize)) {
            Some(t) => Ok(t.clone()),
            None => Err(self.last.take().unwrap_or_else(|| ProxyError::NoEndpoint(route.label()))),
        }
    }

    /// A try that failed with an error: counted, and remembered in case it is the last.
    pub fn failed(&mut self, target: &Target, e: ProxyError) {
        tracing::debug!(service = %self.route.label(), endpoint = %target.id, error = %e, "try failed");
        self.route.stats.failure(e.kind());
        record(self.route, target, false, None);
        self.last = Some(e);
    }

    /// Whether to try again after `outcome`, having waited the backoff. `replayable`: the request
    /// can be sent again exactly as it was (its body is kept, or none of it was sent).
    pub async fn again(&mut self, target: &Target, outcome: Outcome, replayable: bool) -> bool {
        self.excluded.push(target.index);
        let route = self.route;
        // Each try goes to an endpoint not tried yet; with none left, the last answer stands.
        if !replayable || route.targets.iter().all(|t| self.excluded.contains(&t.index)) {
            return false;
        }
        let RetryDecision::Retry { backoff_ms } = self.shared.policy.should_retry(&self.info, outcome, self.start.elapsed()) else {
            return false;
        };
        if !route.budget.try_retry(&route.retry) {
            route.stats.retry_budget_exhausted.fetch_add(1, Relaxed);
            tracing::debug!(service = %route.label(), "retry budget spent; not retrying");
            return false;
        }
        route.stats.retries.fetch_add(1, Relaxed);
        let reason = match outcome {
            Outcome::ConnectFailed => 0,
            Outcome::Refused => 1,
            Outcome::Reset => 2,
            Outcome::Timeout => 3,
            Outcome::Status(_) => 4,
            Outcome::GrpcStatus(_) => 5,
        };
        route.stats.retry_reasons[reason].fetch_add(1, Relaxed);
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

/// Feeds a try's result to the latency estimate and outlier detection. A failure is a connect
/// failure, a broken exchange, a 5xx or gRPC UNAVAILABLE. `timing`: how long the try took to its
/// response head, and when that head came.
pub fn record(route: &ServiceRoute, t: &Target, ok: bool, timing: Option<(Duration, Instant)>) {
    let s = &t.stats;
    if ok {
        if let Some((took, at)) = timing {
            s.load.observe_at(took, us_at(at.into_std()));
        }
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

/// Connects to an endpoint the policy picks, trying others while connecting fails (nothing was
/// sent, so that is always safe).
/// `connect` gets the target and the time of the try ([`Attempts::now`]).
pub async fn connect<C, F, Fut>(attempts: &mut Attempts<'_>, mut connect: F) -> Result<(Arc<Target>, C), ProxyError>
where
    F: FnMut(Arc<Target>, Instant) -> Fut,
    Fut: Future<Output = Result<C, ProxyError>>,
{
    loop {
        let target = attempts.pick()?;
        match connect(target.clone(), attempts.now()).await {
            Ok(c) => return Ok((target, c)),
            Err(e) if e.side() == Side::Upstream && e.retryable() => {
                attempts.failed(&target, e);
                if !attempts.again(&target, Outcome::ConnectFailed, true).await {
                    return Err(attempts.error());
                }
            }
            Err(e) => return Err(e),
        }
    }
}
