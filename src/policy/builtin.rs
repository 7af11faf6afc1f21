//! The built-in policy: what every service gets unless a plugin replaces a hook.
//!
//! Endpoint choice goes to the best [`Rank`] present — available, then healthy ones whose connect
//! timed out for this request, then unhealthy ones (panic mode: detection may be wrong; Cloud
//! Map's HEALTHY_OR_ELSE_ALL), then never-checked ones, then ejected ones, and endpoints that
//! refuse connections last of all — and inside it prefers the caller's zone while enough of that
//! zone is available. Then the service's balancer picks. An endpoint that refuses or is ejected
//! is therefore never chosen while any other endpoint is possible, whatever the mode.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Candidates, GRPC_UNAVAILABLE, Outcome, Policy, Rank, RequestInfo, RetryDecision};
use crate::catalog::LbKind;

#[derive(Debug, Clone, Default)]
pub struct Builtin;

/// The caller's zone keeps all traffic while at least this share of its endpoints is available
/// (Envoy's overprovisioning factor 1.4 → 1/1.4 ≈ 72 %); below it, every zone shares the load.
const ZONE_AVAILABLE_PERCENT: usize = 72;

impl Policy for Builtin {
    fn pick_endpoint(&self, req: &RequestInfo<'_>, c: &Candidates<'_>) -> Option<u32> {
        let n = c.targets.len();
        // One endpoint: nothing to choose, only whether it may be tried.
        if n == 1 {
            return c.rank(0).map(|_| c.targets[0].index);
        }
        // Each candidate ranked once (the choice below looks at them several times).
        let mut small = [None; 16];
        let mut large = Vec::new();
        let ranks: &mut [Option<Rank>] = if n <= small.len() {
            &mut small[..n]
        } else {
            large.resize(n, None);
            &mut large
        };
        for (i, r) in ranks.iter_mut().enumerate() {
            *r = c.rank(i);
        }
        let best = ranks.iter().flatten().min().copied()?;
        let tier = |i: usize| ranks[i] == Some(best);
        let zone = req.source_zone;
        let local = |i: usize| c.targets[i].zone == zone;
        let in_zone = |i: usize| tier(i) && local(i);
        let pick = if !zone.is_empty() && zone_has_enough(c, zone, c.now_us) && (0..n).any(in_zone) {
            choose(c, &in_zone)
        } else {
            choose(c, &tier)
        };
        pick.map(|i| c.targets[i].index)
    }

    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, _elapsed: Duration) -> RetryDecision {
        let cfg = req.retry;
        if req.attempt > cfg.max_retries {
            return RetryDecision::GiveUp;
        }
        let safe = match outcome {
            Outcome::ConnectFailed | Outcome::Refused => true,
            // gRPC calls are all POSTs; UNAVAILABLE is the server's own "try elsewhere".
            Outcome::GrpcStatus(GRPC_UNAVAILABLE) => true,
            Outcome::Status(503) | Outcome::Reset | Outcome::Timeout => req.idempotent || cfg.non_idempotent,
            _ => false,
        };
        if !safe {
            return RetryDecision::GiveUp;
        }
        // Nothing reached the failed endpoint and the next try goes elsewhere: no reason to wait.
        if !outcome.may_have_reached_app() {
            return RetryDecision::Retry { backoff_ms: 0 };
        }
        // Exponential with "equal jitter": half fixed, half random, so synchronized failures
        // do not come back in step.
        let ceiling = (cfg.backoff_base_ms.saturating_mul(1 << req.attempt.saturating_sub(1).min(16))).min(cfg.backoff_max_ms);
        let half = ceiling / 2;
        let backoff_ms = half + if ceiling > half { rand::random_range(0..=ceiling - half) } else { 0 };
        RetryDecision::Retry { backoff_ms }
    }
}

fn zone_has_enough(c: &Candidates<'_>, zone: &str, now: u64) -> bool {
    let (mut total, mut available) = (0, 0);
    for t in c.targets.iter().filter(|t| t.zone == zone) {
        total += 1;
        if t.healthy && !t.ejected(now) && !t.refusing(now) {
            available += 1;
        }
    }
    available > 0 && available * 100 >= total * ZONE_AVAILABLE_PERCENT
}

fn choose(c: &Candidates<'_>, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    let n = c.targets.len();
    let count = (0..n).filter(|&i| ok(i)).count();
    let nth = |k: usize| (0..n).filter(|&i| ok(i)).nth(k);
    if count == 0 {
        return None;
    }
    // Only the rotating kinds touch the shared cursor: a write per request to one cache line
    // that every core's requests share is not free.
    let start = || c.cursor.fetch_add(1, Relaxed);
    match c.lb {
        // The cursor counts over the available endpoints, so one taken out does not hand its
        // turn (and double load) to the endpoint after it.
        LbKind::RoundRobin => nth(start() % count),
        LbKind::LeastRequest => {
            let start = start();
            (0..count).filter_map(|k| nth((start + k) % count)).min_by_key(|&i| c.targets[i].in_flight())
        }
        LbKind::P2c => p2c(c, count, &nth),
    }
}

/// Costs closer than this ratio count as equal: at low load every endpoint has nothing in flight
/// and latency estimates differ by noise, and ranking on noise would give the lowest estimate
/// all its pairs and the highest none (a starved endpoint gets no new observations either).
const SAME_COST: f64 = 1.25;

/// Power of two choices: two distinct random candidates, the cheaper wins. The cost is the
/// latency estimate × (requests in flight + 1); an endpoint with no estimate yet is priced like
/// the one it is compared with, so a new one gets its fair share rather than all or nothing. Near
/// ties go to the one with fewer requests in flight, then to the first drawn (random).
fn p2c(c: &Candidates<'_>, count: usize, nth: &dyn Fn(usize) -> Option<usize>) -> Option<usize> {
    if count == 1 {
        return nth(0);
    }
    let a = rand::random_range(0..count);
    let b = (a + 1 + rand::random_range(0..count - 1)) % count;
    let (a, b) = (nth(a)?, nth(b)?);
    let (la, lb) = (c.targets[a].latency_us_at(c.now_us), c.targets[b].latency_us_at(c.now_us));
    let default = match (la, lb) {
        (Some(x), Some(y)) => (x + y) / 2.0,
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => 1_000.0,
    };
    let cost = |l: Option<f64>, i: usize| l.unwrap_or(default) * (c.targets[i].in_flight() as f64 + 1.0);
    let (ca, cb) = (cost(la, a), cost(lb, b));
    Some(if ca > cb * SAME_COST {
        b
    } else if cb > ca * SAME_COST {
        a
    } else if c.targets[b].in_flight() < c.targets[a].in_flight() {
        b
    } else {
        a
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::catalog::RetryConfig;
    use crate::policy::{Headers, Target};
    use crate::telemetry::{EjectionRule, now_us};

    fn target(i: u32, healthy: bool, zone: &str) -> Arc<Target> {
        Arc::new(Target {
            index: i,
            id: format!("e{i}"),
            node: "n".into(),
            zone: zone.into(),
            address: "127.0.0.1:1".parse().unwrap(),
            via: None,
            attributes: BTreeMap::new(),
            healthy,
            unchecked: false,
            stats: Default::default(),
            texts: Default::default(),
        })
    }

    static RETRY: std::sync::LazyLock<RetryConfig> = std::sync::LazyLock::new(RetryConfig::default);

    fn req(attempt: u32, idempotent: bool, zone: &'static str) -> RequestInfo<'static> {
        RequestInfo { namespace: "n", service: "s", method: "GET", authority: "a".into(), path: "/".into(), headers: Headers::None, attempt, idempotent, source_zone: zone, retry: &RETRY }
    }

    fn picks(targets: &[Arc<Target>], lb: LbKind, zone: &'static str, n: usize) -> Vec<u32> {
        let cursor = AtomicUsize::new(0);
        (0..n).map(|_| Builtin.pick_endpoint(&req(1, true, zone), &Candidates { targets, excluded: &[], timed_out: &[], cursor: &cursor, lb, now_us: now_us() }).unwrap()).collect()
    }

    #[test]
    fn round_robin_skips_unhealthy_and_tried() {
        let targets = vec![target(0, true, ""), target(1, false, ""), target(2, true, "")];
        assert_eq!(picks(&targets, LbKind::RoundRobin, "", 4), vec![0, 2, 0, 2]);
        let cursor = AtomicUsize::new(0);
        let only = Candidates { targets: &targets, excluded: &[0, 2], timed_out: &[], cursor: &cursor, lb: LbKind::RoundRobin, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(2, true, ""), &only), Some(1), "an unhealthy endpoint beats none");
        let none = Candidates { targets: &targets, excluded: &[0, 1, 2], timed_out: &[], cursor: &cursor, lb: LbKind::RoundRobin, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(3, true, ""), &none), None);
    }

    #[test]
    fn p2c_avoids_the_slow_and_the_busy() {
        let targets = vec![target(0, true, ""), target(1, true, ""), target(2, true, "")];
        targets[0].stats.load.observe(Duration::from_millis(50));
        targets[1].stats.load.observe(Duration::from_millis(1));
        targets[2].stats.load.observe(Duration::from_millis(1));
        targets[2].stats.in_flight.store(100, Relaxed);
        let got = picks(&targets, LbKind::P2c, "", 300);
        let ones = got.iter().filter(|&&i| i == 1).count();
        // Endpoint 1 wins every pair it is in (2 of 3 pairs); the other pair goes to 2 or 0.
        assert!(ones > 150, "fast idle endpoint got {ones} of 300");
        assert!(got.iter().filter(|&&i| i == 0).count() < 30 + 100, "slow endpoint wins only against the busy one");
    }

    /// The issue-12 failover: three slow endpoints, all marked unhealthy by checks that timed out
    /// under load, one of them dead. The dead one fails fast, so its latency × in-flight looked
    /// cheapest (≈ 9 s × 1 against ≈ 1.9 s × 25) and took most picks; refusing, it takes none.
    #[test]
    fn a_refusing_endpoint_is_never_chosen_while_another_is_possible() {
        let now = now_us();
        let targets = vec![target(0, false, ""), target(1, false, ""), target(2, false, "")];
        for t in &targets[..2] {
            t.stats.load.observe(Duration::from_millis(1_900));
            t.stats.in_flight.store(25, Relaxed);
        }
        targets[2].stats.load.observe(Duration::from_secs(9));
        targets[2].stats.liveness.refused(now);
        for lb in [LbKind::P2c, LbKind::RoundRobin, LbKind::LeastRequest] {
            assert!(picks(&targets, lb, "", 200).iter().all(|&i| i != 2), "{lb:?} chose the refusing endpoint");
        }
        // Ejected (panic mode) still comes before refusing; refusing is the very last resort.
        let rule = EjectionRule { consecutive_failures: 1, base: Duration::from_secs(30), max: Duration::from_secs(300) };
        assert!(targets[0].stats.ejection.failure(&rule, || true));
        let cursor = AtomicUsize::new(0);
        let c = Candidates { targets: &targets, excluded: &[1], timed_out: &[], cursor: &cursor, lb: LbKind::P2c, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(2, true, ""), &c), Some(0), "ejected beats refusing");
        let c = Candidates { targets: &targets, excluded: &[0, 1], timed_out: &[], cursor: &cursor, lb: LbKind::P2c, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(3, true, ""), &c), Some(2), "refusing beats nothing");
    }

    #[test]
    fn never_checked_endpoints_wait_for_checked_ones() {
        let targets = [target(0, false, ""), target(1, false, "")];
        let fresh = Arc::new(Target { unchecked: true, ..Arc::try_unwrap(target(2, false, "")).unwrap() });
        let targets = vec![targets[0].clone(), targets[1].clone(), fresh];
        assert!(picks(&targets, LbKind::RoundRobin, "", 30).iter().all(|&i| i != 2), "an unchecked endpoint got traffic while checked ones exist");
        let cursor = AtomicUsize::new(0);
        let c = Candidates { targets: &targets, excluded: &[0, 1], timed_out: &[], cursor: &cursor, lb: LbKind::P2c, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(3, true, ""), &c), Some(2), "but it beats nothing");
    }

    /// A connect that timed out sent nothing; the endpoint may be live behind a full backlog, so a
    /// later try may go back to it — after untried healthy ones, before unhealthy ones.
    #[test]
    fn a_timed_out_connect_may_be_tried_again() {
        let targets = vec![target(0, true, ""), target(1, true, ""), target(2, false, "")];
        let cursor = AtomicUsize::new(0);
        let c = Candidates { targets: &targets, excluded: &[], timed_out: &[0], cursor: &cursor, lb: LbKind::P2c, now_us: now_us() };
        assert_eq!(Builtin.pick_endpoint(&req(2, true, ""), &c), Some(1));
        let c = Candidates { targets: &targets, excluded: &[], timed_out: &[0, 1], cursor: &cursor, lb: LbKind::P2c, now_us: now_us() };
        assert!(matches!(Builtin.pick_endpoint(&req(3, true, ""), &c), Some(0 | 1)), "a live endpoint again, not the unhealthy one");
    }

    #[test]
    fn round_robin_shares_a_missing_endpoints_turn() {
        let targets = vec![target(0, true, ""), target(1, false, ""), target(2, true, ""), target(3, true, "")];
        let got = picks(&targets, LbKind::RoundRobin, "", 300);
        for i in [0, 2, 3] {
            assert_eq!(got.iter().filter(|&&p| p == i).count(), 100, "endpoint {i}: {got:?}");
        }
    }

    #[test]
    fn p2c_does_not_rank_on_noise() {
        let targets = vec![target(0, true, ""), target(1, true, ""), target(2, true, "")];
        for (t, us) in targets.iter().zip([3870, 3949, 3875]) {
            t.stats.load.observe(Duration::from_micros(us));
        }
        let got = picks(&targets, LbKind::P2c, "", 3000);
        for i in 0..3 {
            let n = got.iter().filter(|&&p| p == i).count();
            assert!((800..=1200).contains(&n), "endpoint {i} got {n} of 3000 with near-equal estimates");
        }
    }

    #[test]
    fn least_request_and_ejection() {
        let targets = vec![target(0, true, ""), target(1, true, "")];
        targets[0].stats.in_flight.store(3, Relaxed);
        assert!(picks(&targets, LbKind::LeastRequest, "", 10).iter().all(|&i| i == 1));
        let rule = EjectionRule { consecutive_failures: 1, base: Duration::from_secs(30), max: Duration::from_secs(300) };
        assert!(targets[1].stats.ejection.failure(&rule, || true));
        assert!(picks(&targets, LbKind::LeastRequest, "", 10).iter().all(|&i| i == 0), "ejected endpoint is skipped");
        assert!(targets[0].stats.ejection.failure(&rule, || true));
        assert_eq!(picks(&targets, LbKind::RoundRobin, "", 4).len(), 4, "all ejected: panic mode still picks");
    }

    #[test]
    fn prefers_own_zone_while_enough_is_available() {
        let targets = vec![target(0, true, "a"), target(1, true, "a"), target(2, true, "b"), target(3, true, "b")];
        assert!(picks(&targets, LbKind::RoundRobin, "a", 20).iter().all(|&i| i < 2));
        let half_down = vec![target(0, true, "a"), target(1, false, "a"), target(2, true, "b"), target(3, true, "b")];
        let got = picks(&half_down, LbKind::RoundRobin, "a", 20);
        assert!(got.contains(&2) && got.contains(&0), "zone a at 50 % spills over: {got:?}");
        assert!(picks(&targets, LbKind::RoundRobin, "", 20).contains(&3), "no zone, no preference");
    }

    #[test]
    fn retries_only_what_is_safe() {
        let p = Builtin;
        let retry = |attempt, idem, o| p.should_retry(&req(attempt, idem, ""), o, Duration::ZERO);
        assert_eq!(retry(1, false, Outcome::ConnectFailed), RetryDecision::Retry { backoff_ms: 0 });
        assert_eq!(retry(3, true, Outcome::ConnectFailed), RetryDecision::GiveUp, "two retries at most");
        assert!(matches!(retry(1, true, Outcome::Status(503)), RetryDecision::Retry { backoff_ms } if (12..=25).contains(&backoff_ms)));
        assert!(matches!(retry(2, true, Outcome::Reset), RetryDecision::Retry { backoff_ms } if (25..=50).contains(&backoff_ms)));
        assert_eq!(retry(1, false, Outcome::Status(503)), RetryDecision::GiveUp, "a POST that may have run is not repeated");
        assert_eq!(retry(1, false, Outcome::Reset), RetryDecision::GiveUp);
        assert!(matches!(retry(1, false, Outcome::GrpcStatus(14)), RetryDecision::Retry { .. }));
        assert!(matches!(retry(1, false, Outcome::Refused), RetryDecision::Retry { .. }));
        assert_eq!(retry(1, true, Outcome::Status(500)), RetryDecision::GiveUp);
        let lenient = RetryConfig { non_idempotent: true, ..RetryConfig::default() };
        let post = RequestInfo { retry: &lenient, ..req(1, false, "") };
        assert!(matches!(p.should_retry(&post, Outcome::Status(503), Duration::ZERO), RetryDecision::Retry { .. }));
    }
}
