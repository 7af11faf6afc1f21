//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a counter in the low 16, so
//! versions follow real time closely yet never go backwards or repeat on one writer.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    pub fn new(last: u64) -> Self {
        Hlc { last }
    }

    pub fn now(&mut self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.last = (wall << 16).max(self.last + 1);
        self.last
    }

    /// Moves the clock past a version seen from elsewhere, so our next write orders after it.
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen);
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
        c.observe(u64::MAX - 10);
        assert_eq!(c.now(), u64::MAX - 9);
    }
}
