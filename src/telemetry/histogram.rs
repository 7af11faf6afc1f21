//! Latency histograms: log-linear buckets kept as relaxed atomics, so recording is a few dozen
//! instructions, takes no lock and allocates nothing.
//!
//! Bucket layout (HdrHistogram's): below 16 µs one bucket per microsecond; above, every power of
//! two is cut into [`SUB_BUCKETS`] equal parts. A bucket is thus never wider than 1/8 of its lower
//! bound (≤ 12.5 %): 1 ms sits in a bucket 64 µs wide, 1.4 s in one 131 ms wide, 9 s in one
//! 1.05 s wide. Quantiles interpolate within the bucket, as Prometheus does, so samples spread
//! over a bucket are read back close to their true value. 241 buckets of 8 bytes make ~1.9 KB per
//! histogram (one per service and one per endpoint a node routes to: ~2 MB for 1,000 endpoints).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 3;

/// Buckets per power of two.
pub const SUB_BUCKETS: usize = 1 << SUB_BITS;

/// Durations from 2^32 µs (~71.6 min) up share the last bucket.
const TOP_BITS: u32 = 32;

/// Number of buckets, the open-ended last one included.
pub const BUCKETS: usize = (TOP_BITS - SUB_BITS + 1) as usize * SUB_BUCKETS + 1;

/// Lower bound in µs of each bucket: bucket `i` holds durations in `[BOUNDS_US[i], BOUNDS_US[i + 1])`
/// µs (the last one has no upper bound). An exporter of explicit-bucket histograms (OTLP,
/// Prometheus) takes `BOUNDS_US[1..]` as its bucket boundaries.
pub const BOUNDS_US: [u64; BUCKETS] = bounds();

const fn lower_bound(i: usize) -> u64 {
    if i < 2 * SUB_BUCKETS {
        return i as u64;
    }
    let exp = (i / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    ((SUB_BUCKETS + i % SUB_BUCKETS) as u64) << (exp - SUB_BITS)
}

const fn bounds() -> [u64; BUCKETS] {
    let mut b = [0; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        b[i] = lower_bound(i);
        i += 1;
    }
    b
}

/// The bucket a duration of `us` microseconds falls in: the power of two from the position of its
/// highest bit, the part within it from the next [`SUB_BITS`] bits (no search).
#[inline]
pub fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    let i = (exp - SUB_BITS + 1) as usize * SUB_BUCKETS + ((us >> (exp - SUB_BITS)) as usize & (SUB_BUCKETS - 1));
    i.min(BUCKETS - 1)
}

#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_us: AtomicU64::new(0) }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The counts as they are now (each read on its own: a sample recorded meanwhile may be in
    /// one figure and not another, which a report tolerates).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(), sum_us: self.sum_us.load(Relaxed) }
    }

    /// Shorthand for one quantile of a [`snapshot`](Self::snapshot).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        self.snapshot().quantile_us(q)
    }
}

/// A histogram allocated on its first sample: a service keeps one per request method and status
/// class, most of which never see a request (a histogram is ~2 KB).
#[derive(Debug, Default)]
pub struct LazyHistogram(std::sync::OnceLock<Box<Histogram>>);

impl LazyHistogram {
    #[inline]
    pub fn record(&self, d: Duration) {
        self.0.get_or_init(Box::default).record(d);
    }

    /// `None` until the first sample.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.0.get().map(|h| h.snapshot())
    }
}

/// A histogram's counts at one moment, for reports and exporters.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// One count per bucket of [`BOUNDS_US`].
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot { counts: vec![0; BUCKETS], sum_us: 0 }
    }
}

impl Snapshot {
    /// Adds another histogram's counts to these.
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Bucket boundaries in seconds, for exporters of explicit-bucket histograms: the upper
    /// bound of every bucket but the open-ended last one (`BOUNDS_US[1..]`).
    pub fn bounds_s() -> Vec<f64> {
        BOUNDS_US[1..].iter().map(|&b| b as f64 / 1e6).collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The duration under which a fraction `q` of the samples fall, interpolated linearly within
    /// its bucket; the open-ended last bucket answers its lower bound. `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 || ((seen + c) as f64) < rank {
                seen += c;
                continue;
            }
            let lo = BOUNDS_US[i];
            let Some(&hi) = BOUNDS_US.get(i + 1) else { return Some(lo) };
            let within = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
            return Some((lo as f64 + within * (hi - lo) as f64).round() as u64);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_each_value_lands_in_its_own() {
        assert_eq!(BOUNDS_US[0], 0);
        assert_eq!(BOUNDS_US[BUCKETS - 1], 1 << TOP_BITS);
        for i in 1..BUCKETS {
            assert!(BOUNDS_US[i] > BOUNDS_US[i - 1], "bounds rise at {i}");
            assert_eq!(bucket_of(BOUNDS_US[i]), i, "lower bound of {i}");
            assert_eq!(bucket_of(BOUNDS_US[i] - 1), i - 1, "just below bucket {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn buckets_are_narrow_enough_for_a_mesh() {
        for i in 2 * SUB_BUCKETS..BUCKETS - 1 {
            let (lo, hi) = (BOUNDS_US[i], BOUNDS_US[i + 1]);
            assert!((hi - lo) * SUB_BUCKETS as u64 <= lo, "bucket {i} [{lo}, {hi}) wider than 1/8 of its bound");
        }
        let width = |us: u64| BOUNDS_US[bucket_of(us) + 1] - BOUNDS_US[bucket_of(us)];
        assert!(width(900) <= 64, "sub-millisecond resolution below 1 ms");
        assert!(width(1_400_000) <= 131_072 && width(9_000_000) <= 1_048_576, "fine steps across 1-10 s");
    }

    #[test]
    fn empty_histogram_has_no_quantile() {
        assert_eq!(Histogram::default().quantile_us(0.5), None);
    }

    #[test]
    fn one_repeated_value_reads_back_within_its_bucket() {
        for us in [3u64, 250, 1_000, 47_000, 1_400_000, 5_000_000, 9_999_999] {
            let h = Histogram::default();
            for _ in 0..100 {
                h.record(Duration::from_micros(us));
            }
            for q in [0.5, 0.99] {
                let got = h.quantile_us(q).unwrap() as f64;
                assert!((got - us as f64).abs() <= (us as f64 / 8.0).max(1.0), "q{q} of {us} µs read as {got}");
            }
        }
    }

    #[test]
    fn interpolates_spread_samples_closely() {
        // 1,000 samples evenly over 1.0-2.0 s: the true p50 is 1.5 s, p99 1.99 s. The top bucket
        // ([1.966, 2.097) s) is only partly filled, and interpolation takes it as evenly filled:
        // the p99 reads 2.057 s, 3.4 % high, still far inside its bucket.
        let h = Histogram::default();
        for i in 0..1_000u64 {
            h.record(Duration::from_micros(1_000_000 + i * 1_000));
        }
        let p50 = h.quantile_us(0.5).unwrap() as f64;
        let p99 = h.quantile_us(0.99).unwrap() as f64;
        assert!((p50 - 1_500_000.0).abs() < 15_000.0, "p50 {p50}");
        assert!((p99 - 1_990_000.0).abs() < 80_000.0, "p99 {p99}");
        assert_eq!(h.snapshot().count(), 1_000);
        assert_eq!(h.snapshot().sum_us, (0..1_000u64).map(|i| 1_000_000 + i * 1_000).sum::<u64>());
    }

    #[test]
    fn quantiles_follow_the_ranks_across_buckets() {
        // 99 fast samples and one slow: p50 is fast, p99 at the top of the fast ones, p100 slow.
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(30));
        let s = h.snapshot();
        let (p50, p99, p100) = (s.quantile_us(0.5).unwrap(), s.quantile_us(0.99).unwrap(), s.quantile_us(1.0).unwrap());
        assert!((96..=104).contains(&p50), "p50 {p50}");
        assert!((96..=104).contains(&p99), "p99 {p99}");
        assert!((28_672..=30_720).contains(&p100), "p100 {p100}");
        assert_eq!(s.quantile_us(0.0), Some(96), "q0 is the lowest bucket's bound");
    }

    #[test]
    fn overflow_bucket_answers_its_lower_bound() {
        let h = Histogram::default();
        h.record(Duration::from_secs(3 * 3600));
        assert_eq!(h.quantile_us(0.5), Some(1 << TOP_BITS));
    }
}
