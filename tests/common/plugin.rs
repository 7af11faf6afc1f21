//! Helpers of the plugin tests (tests/plugin_*.rs): where the plugin files are, a weft's RSS,
//! latency figures.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// `rel` under the repository root.
pub fn repo(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// A committed fixture, `plugins/fixtures/NAME.wasm`.
pub fn fixture(name: &str) -> String {
    repo(&format!("plugins/fixtures/{name}.wasm"))
}

/// An example plugin built by `plugins/build.sh` (`.ci/run` builds them before the tests).
pub fn example(name: &str) -> String {
    let p = repo(&format!("plugins/target/wasm32-wasip2/release/{name}.wasm"));
    assert!(Path::new(&p).exists(), "{p} is missing: run `bash plugins/build.sh` first (.ci/run does)");
    p
}

/// Resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The `p`-quantile (0..=1) of durations, sorted or not.
pub fn quantile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "p50 a ms, p99 b ms, max c ms".
pub fn latency_line(v: &[Duration]) -> String {
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", ms(quantile(v, 0.5)), ms(quantile(v, 0.99)), ms(quantile(v, 1.0)))
}

/// The `n` largest, in ms, slowest first: "38.5 33.3 …".
pub fn slowest(v: &[Duration], n: usize) -> String {
    let mut s = v.to_vec();
    s.sort();
    s.iter().rev().take(n).map(|d| format!("{:.1}", ms(*d))).collect::<Vec<_>>().join(" ")
}
