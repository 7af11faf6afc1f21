//! Live per-endpoint state that endpoint choice reads: a peak-EWMA latency estimate and the
//! outlier-ejection record. Both live with the endpoint's figures, so they survive routing-table
//! rebuilds the way counters do.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call: a cheap monotonic clock that fits in an atomic.
pub fn now_us() -> u64 {
    us_at(Instant::now())
}

/// [`now_us`] for a time already read: the request path reads the clock once per step and
/// derives the rest (clock reads were a few percent of its CPU).
pub fn us_at(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH.get_or_init(Instant::now)).as_micros() as u64
}

/// How fast old latency observations fade (Finagle's and Linkerd's default decay is 10 s).
const DECAY_US: f64 = 10_000_000.0;

/// No estimate goes above 10 s, however many failures double it.
const MAX_ESTIMATE_US: f64 = 10_000_000.0;

/// Peak-EWMA latency: a slower observation replaces the estimate at once, faster ones pull it
/// down gradually, and without observations it decays. A choice made on it reacts to an endpoint
/// slowing down within one request, and recovers over seconds.
///
/// Two relaxed atomics rather than a lock: concurrent updates may lose one observation, which an
/// estimate tolerates, and the request path never waits.
#[derive(Debug, Default)]
pub struct PeakEwma {
    /// The estimate in µs as f64 bits; 0 = nothing observed yet.
    cost: AtomicU64,
    /// Time of the last update ([`now_us`]).
    at: AtomicU64,
}

fn decay(cost: f64, since_us: u64) -> f64 {
    cost * (-(since_us as f64) / DECAY_US).exp()
}

impl PeakEwma {
    pub fn observe(&self, rtt: Duration) {
        self.observe_at(rtt, now_us());
    }

    /// An observation made at `now` ([`now_us`]).
    pub fn observe_at(&self, rtt: Duration, now: u64) {
        self.observe_us(rtt.as_secs_f64() * 1e6, now);
    }

    fn observe_us(&self, rtt: f64, now: u64) {
        let rtt = rtt.clamp(1.0, MAX_ESTIMATE_US);
        let cost = f64::from_bits(self.cost.load(Relaxed));
        let since = now.saturating_sub(self.at.load(Relaxed));
        let decayed = decay(cost, since);
        let next = if cost == 0.0 || rtt > decayed {
            rtt
        } else {
            let w = decayed / cost;
            cost * w + rtt * (1.0 - w)
        };
        self.cost.store(next.max(1.0).to_bits(), Relaxed);
        self.at.store(now, Relaxed);
    }

    /// A failure counts as twice the current estimate (at least 1 ms, at most 10 s): an endpoint
    /// that fails fast must not look like the fastest one.
    pub fn penalize(&self) {
        let now = now_us();
        let cost = self.estimate_at(now).unwrap_or(0.0);
        self.observe_us((cost * 2.0).max(1_000.0), now);
    }

    /// Forgets the estimate: an endpoint coming back (from ejection, or healthy again) is then
    /// priced at the mean of the others, not at the failures that took it out.
    pub fn clear(&self) {
        self.cost.store(0, Relaxed);
    }

    /// The current estimate in µs, decayed since the last observation; `None` before the first.
    pub fn estimate_us(&self) -> Option<f64> {
        self.estimate_at(now_us())
    }

    /// The estimate as of `now` ([`now_us`]).
    pub fn estimate_at(&self, now: u64) -> Option<f64> {
        let cost = f64::from_bits(self.cost.load(Relaxed));
        (cost > 0.0).then(|| decay(cost, now.saturating_sub(self.at.load(Relaxed))).max(1.0))
    }
}

/// The passive outlier record of one endpoint, as one calling node sees it.
#[derive(Debug, Default)]
pub struct Ejection {
    consecutive: AtomicU32,
    /// Ejected until this time (µs, [`now_us`]); 0 = never ejected.
    until_us: AtomicU64,
    /// How many times it was ejected since it last proved healthy for a while.
    times: AtomicU32,
    /// Back after an ejection: the next outcome decides, a failure ejects it again at once.
    probation: AtomicBool,
}

/// What an ejection check needs from the service's settings.
#[derive(Clone, Copy, Debug)]
pub struct EjectionRule {
    pub consecutive_failures: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Ejection {
    pub fn ejected(&self, now_us: u64) -> bool {
        self.until_us.load(Relaxed) > now_us
    }

    pub fn times(&self) -> u32 {
        self.times.load(Relaxed)
    }

    /// Ends an ejection and its record early: the endpoint's own node found it healthy again
    /// (Envoy does the same on a passed active health check).
    pub fn clear(&self) {
        self.until_us.store(0, Relaxed);
        self.consecutive.store(0, Relaxed);
        self.probation.store(false, Relaxed);
        self.times.store(0, Relaxed);
    }

    /// A good outcome: the run of failures ends, and an endpoint on probation is back for good.
    /// The ejection count resets once it has stayed healthy for the longest ejection.
    pub fn success(&self, rule: &EjectionRule) {
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
        // Loads first: this runs on every good response, and a write to the shared line would
        // bounce it between cores.
        if self.probation.load(Relaxed) && self.probation.swap(false, Relaxed) {
            tracing::info!("endpoint re-admitted after its probe succeeded");
        }
        let until = self.until_us.load(Relaxed);
        if until != 0 && now_us() > until + rule.max.as_micros() as u64 {
            self.times.store(0, Relaxed);
            self.until_us.store(0, Relaxed);
        }
    }

    /// A failure. Returns true when it ejected the endpoint; `allowed` says whether the service
    /// may have one more endpoint ejected (the panic threshold).
    pub fn failure(&self, rule: &EjectionRule, allowed: impl FnOnce() -> bool) -> bool {
        if rule.consecutive_failures == 0 {
            return false;
        }
        let now = now_us();
        if self.ejected(now) {
            return false;
        }
        let on_probation = self.probation.load(Relaxed);
        let run = self.consecutive.fetch_add(1, Relaxed) + 1;
        if !(on_probation || run >= rule.consecutive_failures) || !allowed() {
            return false;
        }
        let n = self.times.fetch_add(1, Relaxed) + 1;
        let length = rule.base.saturating_mul(n).min(rule.max);
        self.until_us.store(now + length.as_micros() as u64, Relaxed);
        self.consecutive.store(0, Relaxed);
        self.probation.store(true, Relaxed);
        true
    }
}

/// How long an endpoint whose connect failed outright (refused, unreachable, gone from its node)
/// is held out of every choice that has another endpoint to offer. After it, one request probes
/// it again (`claim_probe`); a refusal renews the hold, a success ends it. A killed process
/// refuses in microseconds, so the probe costs one immediate retry per hold and per calling node,
/// while a process restarted between two health checks (which the checks never saw) is back in
/// rotation within the hold.
pub const REFUSAL_HOLD: Duration = Duration::from_secs(2);

/// Whether an endpoint answers, as this node sees it: when it last did, and whether its last
/// connect failed outright. Read by endpoint choice (a refusing endpoint comes last in every mode)
/// and by the owner's health checks (a check that merely timed out is not held against an
/// endpoint that answered real traffic meanwhile).
/// How fine `Liveness::alive_at` is kept.
const ALIVE_GRAIN_US: u64 = 10_000;

#[derive(Debug, Default)]
pub struct Liveness {
    /// When it last answered ([`now_us`]): a response through this node, a new connection, or
    /// bytes relayed back from it to another node. 0 = never seen.
    alive_at: AtomicU64,
    /// When its last connect failed outright; 0 = it connects.
    refused_at: AtomicU64,
}

impl Liveness {
    /// It answered at `now`: any refusal is over.
    pub fn alive(&self, now: u64) {
        // Loads first, and the time kept to 10 ms: this runs per response, and a write per
        // response would bounce the line between cores (health checks ask about seconds).
        if self.alive_at.load(Relaxed) + ALIVE_GRAIN_US <= now {
            self.alive_at.store(now, Relaxed);
        }
        if self.refused_at.load(Relaxed) != 0 {
            self.refused_at.store(0, Relaxed);
        }
    }

    /// A connect to it failed outright at `now`.
    pub fn refused(&self, now: u64) {
        self.refused_at.store(now.max(1), Relaxed);
    }

    /// Within the hold after a refusal: chosen only when nothing else is left.
    pub fn refusing(&self, now: u64) -> bool {
        let at = self.refused_at.load(Relaxed);
        at != 0 && now < at + REFUSAL_HOLD.as_micros() as u64
    }

    /// Called for the endpoint a request is about to try: when it refused before and its hold is
    /// over, this request is the probe, and the hold starts again so that the requests behind it
    /// do not all follow it to an endpoint that is probably still gone.
    pub fn claim_probe(&self, now: u64) {
        if self.refused_at.load(Relaxed) != 0 && !self.refusing(now) {
            self.refused_at.store(now.max(1), Relaxed);
        }
    }

    /// Whether it answered at or after `since` ([`now_us`]), to within 10 ms.
    pub fn alive_since(&self, since: u64) -> bool {
        self.alive_at.load(Relaxed) + ALIVE_GRAIN_US > since.max(1) && self.alive_at.load(Relaxed) != 0
    }

    /// When it last answered, 0 for never.
    pub fn alive_at(&self) -> u64 {
        self.alive_at.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: EjectionRule = EjectionRule { consecutive_failures: 3, base: Duration::from_millis(30), max: Duration::from_millis(70) };

    #[test]
    fn ejects_after_a_run_of_failures_and_lengthens_each_time() {
        let e = Ejection::default();
        assert!(!e.failure(&RULE, || true));
        assert!(!e.failure(&RULE, || true));
        e.success(&RULE);
        assert!(!e.failure(&RULE, || true), "a success ends the run");
        assert!(!e.failure(&RULE, || true));
        assert!(e.failure(&RULE, || true));
        assert!(e.ejected(now_us()));
        std::thread::sleep(Duration::from_millis(35));
        assert!(!e.ejected(now_us()), "back after 30 ms");
        assert!(e.failure(&RULE, || true), "on probation one failure ejects again");
        let until = e.until_us.load(Relaxed);
        assert!(until >= now_us() + 55_000, "second ejection lasts 60 ms");
    }

    #[test]
    fn respects_the_panic_threshold_and_probes_back_in() {
        let e = Ejection::default();
        for _ in 0..5 {
            assert!(!e.failure(&RULE, || false));
        }
        assert!(!e.ejected(now_us()));
        let e = Ejection::default();
        for _ in 0..3 {
            e.failure(&RULE, || true);
        }
        std::thread::sleep(Duration::from_millis(35));
        e.success(&RULE);
        assert!(!e.failure(&RULE, || true), "a passed probe ends probation");
    }

    #[test]
    fn a_refusal_holds_until_a_probe_or_a_success() {
        let l = Liveness::default();
        let t0 = 1_000_000;
        assert!(!l.refusing(t0) && !l.alive_since(t0));
        l.refused(t0);
        assert!(l.refusing(t0 + 1), "refusing right after the refusal");
        let after = t0 + REFUSAL_HOLD.as_micros() as u64 + 1;
        assert!(!l.refusing(after), "the hold ends: one request may probe it");
        l.claim_probe(after);
        assert!(l.refusing(after + 1), "the probe renews the hold for the requests behind it");
        l.alive(after + 2);
        assert!(!l.refusing(after + 3), "an answer ends the refusal");
        assert!(l.alive_since(after + 2) && !l.alive_since(after + 2 + ALIVE_GRAIN_US));
        l.claim_probe(after + 4);
        assert!(!l.refusing(after + 5), "claiming a probe on a live endpoint changes nothing");
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let p = PeakEwma::default();
        assert_eq!(p.estimate_us(), None);
        p.observe(Duration::from_micros(100));
        p.observe(Duration::from_micros(5_000));
        assert!(p.estimate_us().unwrap() > 4_900.0, "a slow response counts at once");
        for _ in 0..10 {
            p.observe(Duration::from_micros(100));
        }
        assert!(p.estimate_us().unwrap() > 1_000.0, "fast ones pull it down only gradually");
        p.penalize();
        assert!(p.estimate_us().unwrap() > 9_000.0);
        for _ in 0..2_000 {
            p.penalize();
        }
        assert!(p.estimate_us().unwrap() <= MAX_ESTIMATE_US, "a run of failures stays bounded");
    }
}
