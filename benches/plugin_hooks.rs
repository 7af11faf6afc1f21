//! The cost of one plugin hook call, in-process: the example plugins loaded by weft's plugin host
//! as a node loads them, each hook called in a loop on a warm instance; the built-in hook beside
//! it for scale. Run by benches/plugin.sh (or alone):
//!
//!     bash plugins/build.sh
//!     cargo bench --profile quick-release --bench plugin_hooks
//!
//! Prints ns per call for `route` (canary-router), `should-retry` (retry-policy) and
//! `pick-endpoint` over 8 candidates with two attributes each (version-picker), and what a
//! request costs when the answer of route or pick-endpoint is kept (`reuse = same-headers`).
//!
//! For instruction counts under callgrind: `CALLS=20000 ROUNDS=1 ONLY=route valgrind
//! --tool=callgrind target/quick-release/deps/plugin_hooks-*` (ONLY: a word of the row's name).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use weft::catalog::{LbKind, RetryConfig};
use weft::plugin::{Fail, PluginHost, PluginSpec};
use weft::policy::{Builtin, Candidates, Headers, Outcome, Plugin, PluginSource, Policy, RequestInfo, ServicePolicy, Target};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spec(name: &str, file: &str, config: &str) -> PluginSpec {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/target/wasm32-wasip2/release").join(file);
    PluginSpec { name: name.into(), path, config: config.into(), fuel: 1_000_000, memory_mb: 16, fail: Fail::Open }
}

fn per_call<T>(name: &str, mut f: impl FnMut() -> T) -> f64 {
    if std::env::var("ONLY").is_ok_and(|w| !name.contains(&w)) {
        return f64::NAN;
    }
    let (calls, rounds) = (env_or("CALLS", 200_000), env_or("ROUNDS", 5));
    for _ in 0..1_000 {
        std::hint::black_box(f());
    }
    // Best of five rounds: the machine is shared, the minimum is the cost.
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(f());
            }
            t.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .fold(f64::MAX, f64::min)
}

fn targets() -> Vec<Arc<Target>> {
    (0..8u32)
        .map(|i| {
            let attributes = BTreeMap::from([("version".to_string(), format!("v{}", i % 3)), ("team".to_string(), "checkout".to_string())]);
            Arc::new(Target {
                index: i,
                id: format!("ep-{i}"),
                node: format!("node-{}", i % 2),
                zone: "a".into(),
                address: ([127, 0, 0, 1], 9000 + i as u16).into(),
                via: None,
                attributes,
                healthy: true,
                unchecked: false,
                stats: Default::default(),
                texts: Default::default(),
            })
        })
        .collect()
}

fn main() {
    let host = PluginHost::new(None, None);
    let refused = host.configure(&[
        spec("canary", "canary_router.wasm", r#"{"service":"api-v2","percent":10}"#),
        spec("retry", "retry_policy.wasm", r#"{"statuses":[429,503]}"#),
        spec("picker", "version_picker.wasm", ""),
    ]);
    if !refused.is_empty() {
        for e in refused {
            eprintln!("{e}");
        }
        eprintln!("build the example plugins first: bash plugins/build.sh");
        std::process::exit(1);
    }
    let plugin = |n: &str| -> Arc<dyn Plugin> { host.plugin(n).expect("loaded") };
    let (canary, retry, picker) = (plugin("canary"), plugin("retry"), plugin("picker"));

    let mut headers = http::HeaderMap::new();
    headers.insert("x-version", "v2".parse().unwrap());
    headers.insert("x-canary", "0".parse().unwrap());
    headers.insert("user-agent", "bench".parse().unwrap());
    let retry_cfg = RetryConfig::default();
    let req = RequestInfo {
        namespace: "shop",
        service: "api",
        method: "GET",
        authority: "api:8080".into(),
        path: "/v1/items".into(),
        headers: Headers::Map(&headers),
        attempt: 1,
        idempotent: true,
        source_zone: "a",
        retry: &retry_cfg,
    };
    let targets = targets();
    let cursor = AtomicUsize::new(0);
    let candidates = Candidates { targets: &targets, excluded: &[], timed_out: &[], cursor: &cursor, lb: LbKind::P2c, now_us: weft::telemetry::now_us() };

    const ROUTE: &str = "route (canary-router)";
    const RETRY: &str = "should-retry (retry-policy)";
    const PICK: &str = "pick-endpoint, 8 candidates (version-picker)";
    const BUILTIN_PICK: &str = "built-in pick-endpoint, 8 candidates";
    const KEPT_ROUTE: &str = "route, answer kept (canary-router)";
    const KEPT_PICK: &str = "pick-endpoint, answer kept (version-picker)";
    // What a request pays when the plugin's answer is kept (`reuse = same-headers`): the
    // service's policy finds it by the wanted header's value and applies it (draw, balancer
    // over the listed endpoints, counters), no call.
    let (canary_policy, picker_policy) = (ServicePolicy::new(&[], Some(canary.clone())), ServicePolicy::new(&[], Some(picker.clone())));
    const BUILTIN_RETRY: &str = "built-in should-retry";
    let rows = [
        (ROUTE, per_call(ROUTE, || canary.route(&req).unwrap()), 500.0),
        (RETRY, per_call(RETRY, || retry.should_retry(&req, Outcome::Status(503), Duration::from_millis(3)).unwrap()), 500.0),
        (PICK, per_call(PICK, || picker.pick_endpoint(&req, &candidates).unwrap()), 1000.0),
        (BUILTIN_PICK, per_call(BUILTIN_PICK, || Builtin.pick_endpoint(&req, &candidates)), f64::NAN),
        (KEPT_ROUTE, per_call(KEPT_ROUTE, || canary_policy.route(&req.headers, || req).unwrap()), f64::NAN),
        (KEPT_PICK, per_call(KEPT_PICK, || picker_policy.pick_endpoint(&req, &candidates).unwrap()), f64::NAN),
        (BUILTIN_RETRY, per_call(BUILTIN_RETRY, || Builtin.should_retry(&req, Outcome::Status(503), Duration::from_millis(3))), f64::NAN),
    ];
    println!("{:<48} {:>10} {:>8} {}", "hook", "ns/call", "goal", "");
    for (name, ns, goal) in rows.into_iter().filter(|r| !r.1.is_nan()) {
        let verdict = if goal.is_nan() { "" } else if ns <= goal { "met" } else { "not met" };
        let goal = if goal.is_nan() { "-".to_string() } else { format!("{goal:.0}") };
        println!("{name:<48} {ns:>10.0} {goal:>8} {verdict}");
    }
}
