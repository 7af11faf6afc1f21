//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a counter in the low 16, so
//! versions follow real time closely yet never go backwards or repeat on one writer.

use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of this host's clock a peer's version may be.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    pub fn new(last: u64) -> Self {
        Hlc { last }
    }

    fn wall() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    pub fn now(&mut self) -> u64 {
        self.last = (Self::wall() << 16).max(self.last.saturating_add(1));
        self.last
    }

    /// Moves the clock past a version seen from elsewhere, so our next write orders after it.
    /// A version further ahead of our wall clock than `MAX_SKEW_MS` is refused (false): one bad
    /// peer must not drag every clock in the mesh into the far future.
    pub fn observe(&mut self, seen: u64) -> bool {
        if seen >> 16 > Self::wall().saturating_add(MAX_SKEW_MS) {
            return false;
        }
        self.last = self.last.max(seen);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_past_observed() {
        let mut c = Hlc::new(0);
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        assert!(!c.observe(u64::MAX - 10), "a version from the far future is refused");
        let ahead = c.now() + (60_000 << 16);
        assert!(c.observe(ahead));
        assert_eq!(c.now(), ahead + 1);
    }
}
