//! The retry budget of a service: retries may add at most `percent` of the requests seen in the
//! last 10 s, plus `min_per_s` per second of that window, so a failing service gets a bounded
//! amount of extra load instead of a retry storm (Finagle's and Linkerd's scheme).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::catalog::RetryConfig;
use crate::telemetry::now_us;

const WINDOW_S: u64 = 10;

#[derive(Debug, Default)]
struct Slot {
    /// The second this slot counts; other seconds are stale.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Lock-free: one slot per second of the window; a slot from an older second is reset by the
/// first writer that notices (a race there loses a count or two, never more).
#[derive(Debug)]
pub struct RetryBudget {
    slots: [Slot; WINDOW_S as usize],
    /// When the budget began, so a new service's reserve grows one second at a time.
    born_s: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget { slots: Default::default(), born_s: now_us() / 1_000_000 }
    }
}

impl RetryBudget {
    fn slot(&self, second: u64) -> &Slot {
        let s = &self.slots[(second % WINDOW_S) as usize];
        let seen = s.second.load(Relaxed);
        if seen != second && s.second.compare_exchange(seen, second, Relaxed, Relaxed).is_ok() {
            s.requests.store(0, Relaxed);
            s.retries.store(0, Relaxed);
        }
        s
    }

    /// Counts one request (not its retries) toward the budget.
    /// A request at `now_us` ([`now_us`]).
    pub fn request(&self, now_us: u64) {
        self.slot(now_us / 1_000_000).requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self, cfg: &RetryConfig) -> bool {
        let now = now_us() / 1_000_000;
        let current = self.slot(now);
        let (mut requests, mut retries) = (0, 0);
        for s in &self.slots {
            if now.saturating_sub(s.second.load(Relaxed)) < WINDOW_S {
                requests += s.requests.load(Relaxed);
                retries += s.retries.load(Relaxed);
            }
        }
        let seconds = (now.saturating_sub(self.born_s) + 1).min(WINDOW_S);
        let allowed = requests * u64::from(cfg.budget_percent) / 100 + u64::from(cfg.budget_min_per_s) * seconds;
        if retries >= allowed {
            return false;
        }
        current.retries.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_share_of_requests_plus_a_reserve() {
        let b = RetryBudget::default();
        let cfg = RetryConfig::default();
        for _ in 0..100 {
            b.request(now_us());
        }
        let granted = (0..100).filter(|_| b.try_retry(&cfg)).count();
        // 20 % of 100, plus 3 per second for the one or two seconds this test spans.
        assert!((23..=26).contains(&granted), "granted {granted}");
        let none = RetryConfig { budget_percent: 0, budget_min_per_s: 0, ..cfg };
        assert!(!RetryBudget::default().try_retry(&none));
    }
}
