//! How a plugin's calls went: per-hook counts and time, and the failure rule that suspends a
//! plugin which keeps failing (so a broken plugin costs one failed call per backoff period, not
//! one per request).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Failures within `WINDOW` that suspend a plugin.
const FAILURES_TO_SUSPEND: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);
/// The first suspension; each one that follows within `CALM` doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const CALM: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Route,
    Pick,
    Retry,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Route, Hook::Pick, Hook::Retry];
    pub fn name(self) -> &'static str {
        match self {
            Hook::Route => "route",
            Hook::Pick => "pick-endpoint",
            Hook::Retry => "should-retry",
        }
    }
}

/// Counts of one hook. Atomics: read by `weft plugin list` while workers call.
#[derive(Default)]
pub struct HookStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub nanos: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct HookFigures {
    pub calls: u64,
    pub failures: u64,
    /// Mean time per call (successful or not), in nanoseconds.
    pub mean_ns: u64,
}

impl HookStats {
    pub fn figures(&self) -> HookFigures {
        let calls = self.calls.load(Relaxed);
        HookFigures { calls, failures: self.failures.load(Relaxed), mean_ns: self.nanos.load(Relaxed).checked_div(calls).unwrap_or(0) }
    }
}

#[derive(Default)]
struct Window {
    /// Start of the current window and failures in it.
    since: Option<Instant>,
    failures: u32,
    backoff: Duration,
    last_suspension: Option<Instant>,
}

/// The instant `Guard::suspended_until` counts from.
struct Epoch(Instant);

impl Default for Epoch {
    fn default() -> Self {
        Epoch(Instant::now())
    }
}

impl Epoch {
    /// Nanoseconds from the epoch to `t` (at least 1, so that 0 can mean "none").
    fn nanos(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.0).as_nanos() as u64).max(1)
    }
}

/// The failure rule of one loaded version of a plugin, and its counts.
#[derive(Default)]
pub struct Guard {
    pub route: HookStats,
    pub pick: HookStats,
    pub retry: HookStats,
    /// Calls answered by the built-in hook because the plugin was suspended.
    pub skipped: AtomicU64,
    pub suspensions: AtomicU64,
    /// Instances created (the first, and one after each failed call).
    pub instances: AtomicU64,
    /// The end of the current suspension, in nanoseconds after `epoch` (0: none). An atomic: every
    /// call reads it, so it must not take a lock.
    suspended_until: AtomicU64,
    epoch: Epoch,
    window: Mutex<Window>,
    last_error: Mutex<Option<String>>,
}

impl Guard {
    pub fn stats(&self, hook: Hook) -> &HookStats {
        match hook {
            Hook::Route => &self.route,
            Hook::Pick => &self.pick,
            Hook::Retry => &self.retry,
        }
    }

    /// Whether calls are suspended now.
    pub fn suspended(&self, now: Instant) -> bool {
        let until = self.suspended_until.load(Relaxed);
        until != 0 && self.epoch.nanos(now) < until
    }

    /// The time left in a suspension, if any.
    pub fn suspended_for(&self) -> Option<Duration> {
        let until = self.suspended_until.load(Relaxed);
        let now = self.epoch.nanos(Instant::now());
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    pub fn record(&self, hook: Hook, started: Instant, ok: bool) {
        let s = self.stats(hook);
        s.calls.fetch_add(1, Relaxed);
        s.nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        if !ok {
            s.failures.fetch_add(1, Relaxed);
        }
    }

    /// Notes a failed call; returns the suspension it starts, if this one tips the plugin over.
    pub fn failed(&self, error: &str, now: Instant) -> Option<Duration> {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        match w.since {
            Some(t) if now.duration_since(t) < WINDOW => w.failures += 1,
            _ => {
                w.since = Some(now);
                w.failures = 1;
            }
        }
        if w.failures < FAILURES_TO_SUSPEND {
            return None;
        }
        let calm = w.last_suspension.is_none_or(|t| now.duration_since(t) > CALM);
        w.backoff = if calm || w.backoff.is_zero() { FIRST_BACKOFF } else { (w.backoff * 2).min(MAX_BACKOFF) };
        self.suspended_until.store(self.epoch.nanos(now + w.backoff), Relaxed);
        w.last_suspension = Some(now);
        w.since = None;
        w.failures = 0;
        self.suspensions.fetch_add(1, Relaxed);
        Some(w.backoff)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_ten_seconds_suspend_with_a_growing_backoff() {
        let g = Guard::default();
        let t0 = Instant::now();
        for i in 0..9 {
            assert_eq!(g.failed("trap", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(g.failed("trap", t0 + Duration::from_millis(9)), Some(FIRST_BACKOFF));
        assert!(g.suspended(t0 + Duration::from_millis(500)));
        assert!(!g.suspended(t0 + Duration::from_millis(1100)));
        let t1 = t0 + Duration::from_secs(2);
        let tipped: Vec<_> = (0..10).filter_map(|i| g.failed("trap", t1 + Duration::from_millis(i))).collect();
        assert_eq!(tipped, vec![FIRST_BACKOFF * 2]);
        assert_eq!(g.suspensions.load(Relaxed), 2);
    }

    #[test]
    fn failures_spread_out_never_suspend() {
        let g = Guard::default();
        let t0 = Instant::now();
        for i in 0..50 {
            assert_eq!(g.failed("trap", t0 + Duration::from_secs(2 * i)), None);
        }
    }
}
