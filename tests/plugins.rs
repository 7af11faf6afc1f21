//! Issue 13: WebAssembly policy plugins loaded by the real binary from real component files.
//! The example plugins are built by `plugins/build.sh` (run by `.ci/run` before the tests); the
//! misbehaving fixtures are committed under `plugins/fixtures/`.
//!
//! VIP nets 220-229.
mod common;
use common::*;

use std::time::Duration;

fn repo(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> String {
    let p = repo(&format!("plugins/target/wasm32-wasip2/release/{name}.wasm"));
    assert!(std::path::Path::new(&p).exists(), "{p} is missing: run `bash plugins/build.sh` first (.ci/run does)");
    p
}

/// `api` with one endpoint (v1) using plugin `p`, `api-v2` with one (v2), and the plugin entry.
fn config(plugin_path: &str, plugin_config: &str, fail: &str, api: u16, v2: u16) -> String {
    format!(
        "[[service]]\nnamespace = \"default\"\nname = \"api\"\naliases = [{{ dns_name = \"api.plug\", port = 8080 }}]\npolicy = \"p\"\n\n\
         [[service]]\nnamespace = \"default\"\nname = \"api-v2\"\n\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"v1\"\naddress = \"127.0.0.1:{api}\"\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"api-v2\"\nid = \"v2\"\naddress = \"127.0.0.1:{v2}\"\n\n\
         [[plugin]]\nname = \"p\"\npath = \"{plugin_path}\"\nconfig = '{plugin_config}'\nfail = \"{fail}\"\n"
    )
}

fn ready(w: &Weft) -> String {
    for svc in ["api", "api-v2"] {
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || w.endpoints_of("default", svc).iter().any(|e| e["health"] == "HEALTHY"));
        assert!(ok, "{svc} never had a healthy endpoint");
    }
    let vip = w.vip("api.plug", 8080);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    vip
}

fn backend_of(r: &Resp) -> String {
    r.header("x-backend").unwrap_or("?").to_string()
}

/// canary-router on `api`: every request with `x-canary: 1` reaches api-v2, 1,000 others land
/// 10 ± 3 % there; `weft plugin list` shows the route calls and the service.
#[test]
fn canary_router_plugin_by_header_and_by_share() {
    let (api, v2) = (free_port(), free_port());
    let _a = counter_backend("v1", api, &[], None);
    let _b = counter_backend("v2", v2, &[], None);
    let w = Weft::start(WeftOpts::new(220).extra(&config(&example("canary_router"), r#"{"service":"api-v2","percent":10}"#, "open", api, v2)));
    let vip = ready(&w);
    for _ in 0..100 {
        let r = http_with(&vip, 8080, "GET", "/x", &[("x-canary", "1")], None).unwrap();
        assert_eq!((r.status, backend_of(&r)), (200, "v2".to_string()), "{}", r.text());
    }
    let v2_share = (0..1000).filter(|_| backend_of(&http(&vip, 8080, "GET", "/z", None).unwrap()) == "v2").count();
    eprintln!("canary plugin at 10 %: {v2_share} of 1,000 on api-v2");
    assert!((70..=130).contains(&v2_share), "{v2_share} of 1,000 requests went to api-v2 at 10 %");
    let list = w.cli(&["plugin", "list", "-o", "json"]).expect_ok().json();
    let p = &list[0];
    assert_eq!(p["name"], "p", "{list}");
    assert_eq!(p["services"][0], "default/api", "{list}");
    // One call per value of the header (absent, "1"); every other request is decided by the
    // answer the host kept (`reuse = same-headers`) — the plugin's counters say it governed all.
    let (calls, reused) = (p["calls"]["route"]["calls"].as_u64().unwrap_or(0), p["calls"]["route"]["reused"].as_u64().unwrap_or(0));
    assert!(calls >= 2 && calls + reused >= 1100, "{list}");
    let counted = p["counters"]["canary"].as_u64().unwrap_or(0) + p["counters"]["stable"].as_u64().unwrap_or(0);
    assert!(counted >= 1100, "the host counts each request on the plugin's counters: {list}");
    assert_eq!(p["counters"]["canary"].as_u64(), Some(100 + v2_share as u64), "{list}");
    assert_eq!(p["calls"]["route"]["failures"], 0, "{list}");
}

/// A plugin whose every hook traps: with `fail = "open"` every request still succeeds through the
/// built-in policy and the failures are counted (then the plugin is suspended); with
/// `fail = "closed"` the requests get 503 `x-weft-error: policy`.
#[test]
fn trapping_plugin_fails_open_or_closed() {
    for (net, fail) in [(221u8, "open"), (222, "closed")] {
        let (api, v2) = (free_port(), free_port());
        let _a = counter_backend("v1", api, &[], None);
        let _b = counter_backend("v2", v2, &[], None);
        let w = Weft::start(WeftOpts::new(net).extra(&config(&repo("plugins/fixtures/trap.wasm"), "", fail, api, v2)));
        let vip = ready(&w);
        for _ in 0..50 {
            let r = http(&vip, 8080, "GET", "/t", None).unwrap();
            if fail == "open" {
                assert_eq!((r.status, backend_of(&r)), (200, "v1".to_string()), "{}", r.text());
            } else {
                assert_eq!(r.status, 503, "{}", r.text());
                assert_eq!(r.header("x-weft-error"), Some("policy"), "{}", r.text());
            }
        }
        let list = w.cli(&["plugin", "list", "-o", "json"]).expect_ok().json();
        let p = &list[0];
        let failures: u64 = ["route", "pick-endpoint", "should-retry"].iter().map(|h| p["calls"][h]["failures"].as_u64().unwrap_or(0)).sum();
        assert!(failures >= 10, "{list}");
        assert!(p["skipped"].as_u64().unwrap_or(0) > 0, "calls while suspended go to the built-in hook: {list}");
        assert!(p["suspensions"].as_u64().unwrap_or(0) >= 1, "10 failures in 10 s must suspend it: {list}");
        assert!(p["last_error"].as_str().unwrap_or("").contains("trap"), "{list}");
    }
}

/// `weft plugin check`: a good plugin prints its hooks; a component of another world and a
/// corrupted file are refused, naming the file, with a non-zero exit.
#[test]
fn plugin_check_names_the_hooks_or_the_reason() {
    let w = Weft::start(WeftOpts::new(223));
    let good = w.cli(&["plugin", "check", &repo("plugins/fixtures/route-none.wasm")]);
    assert!(good.ok() && good.stdout().contains("hooks: route"), "{}", good.both());
    for (bad, reason) in [("wrong-world", "exports no hook"), ("corrupted", "offset"), ("not-wasm", "bad magic"), ("core-module", "not a component")] {
        let out = w.cli(&["plugin", "check", &repo(&format!("plugins/fixtures/{bad}.wasm"))]);
        assert!(!out.ok(), "{bad} was accepted: {}", out.both());
        assert!(out.stderr().contains(&format!("{bad}.wasm")) && out.stderr().contains(reason), "{bad}: {}", out.both());
    }
}

/// Hot reload: the plugin file replaced on disk switches behaviour within 2 s with no failed
/// request; a corrupted replacement is refused, naming the file, and the old version keeps serving.
#[test]
fn replaced_plugin_file_is_reloaded_and_a_corrupted_one_refused() {
    let (api, v2) = (free_port(), free_port());
    let _a = counter_backend("v1", api, &[], None);
    let _b = counter_backend("v2", v2, &[], None);
    let dir = TempDir::new("plugin-reload");
    let live = dir.join("p.wasm");
    std::fs::copy(repo("plugins/fixtures/route-none.wasm"), &live).unwrap();
    let w = Weft::start(WeftOpts::new(224).extra(&config(&live.display().to_string(), "api-v2", "open", api, v2)));
    let vip = ready(&w);
    let on = |want: &str| {
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            let r = http(&vip, 8080, "GET", "/r", None).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            backend_of(&r) == want
        })
    };
    assert!(on("v1"), "route-none keeps requests on api");
    // Written aside and renamed in, as a deploy does: the watcher sees a new file.
    let swap = |fixture: &str| {
        let tmp = dir.join("next.wasm");
        std::fs::copy(repo(&format!("plugins/fixtures/{fixture}.wasm")), &tmp).unwrap();
        std::fs::rename(&tmp, &live).unwrap();
    };
    swap("route-to-config");
    assert!(on("v2"), "route-to-config (config api-v2) was not live within 2 s");
    swap("route-none");
    assert!(on("v1"), "route-none was not live again within 2 s");
    swap("corrupted");
    let refused = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        w.cli(&["plugin", "list", "-o", "json"]).json()[0]["last_refusal"].as_str().is_some_and(|r| r.contains("p.wasm"))
    });
    assert!(refused, "{}", w.cli(&["plugin", "list", "-o", "json"]).stdout());
    for _ in 0..50 {
        let r = http(&vip, 8080, "GET", "/r", None).unwrap();
        assert_eq!((r.status, backend_of(&r)), (200, "v1".to_string()), "the previous version must keep serving");
    }
}

/// retry-policy (`statuses = [429]`) on `api`, whose endpoints are one that always answers 429
/// and one that answers 200: every GET gets 200 (retried on the other endpoint). Without a
/// policy plugin the built-in hook does not retry a 429, and the client sees it. Half the first
/// tries fail here, so the retry budget is opened wide (its default, 20 %, would refuse some).
#[test]
fn retry_plugin_retries_429_on_another_endpoint() {
    for (net, with_plugin) in [(225u8, true), (226, false)] {
        let (busy, ok) = (free_port(), free_port());
        let _a = counter_backend("busy", busy, &["--mode", "status-429"], None);
        let _b = counter_backend("ok", ok, &[], None);
        let policy = if with_plugin { "policy = \"retry\"\n" } else { "" };
        let plugin = if with_plugin { format!("[[plugin]]\nname = \"retry\"\npath = \"{}\"\nconfig = '{{\"statuses\":[429]}}'\n", example("retry_policy")) } else { String::new() };
        let toml = format!(
            "[[service]]\nnamespace = \"default\"\nname = \"api\"\naliases = [{{ dns_name = \"api.plug\", port = 8080 }}]\nlb = \"round-robin\"\nretry = {{ budget_percent = 100, budget_min_per_s = 100 }}\n{policy}\n\
             [[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"busy\"\naddress = \"127.0.0.1:{busy}\"\n\
             [[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"ok\"\naddress = \"127.0.0.1:{ok}\"\n\n{plugin}"
        );
        let w = Weft::start(WeftOpts::new(net).extra(&toml));
        let healthy = wait_until(Duration::from_secs(15), Duration::from_millis(50), || w.endpoints_of("default", "api").iter().filter(|e| e["health"] == "HEALTHY").count() == 2);
        assert!(healthy, "both endpoints must be healthy");
        let vip = w.vip("api.plug", 8080);
        wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
        let statuses: Vec<u16> = (0..40).map(|_| http(&vip, 8080, "GET", "/r", None).unwrap().status).collect();
        let too_many = statuses.iter().filter(|s| **s == 429).count();
        if with_plugin {
            assert_eq!(too_many, 0, "the retry plugin must retry every 429 on the other endpoint: {statuses:?}");
            let list = w.cli(&["plugin", "list", "-o", "json"]).expect_ok().json();
            assert!(list[0]["calls"]["should-retry"]["calls"].as_u64().unwrap_or(0) >= 10, "{list}");
        } else {
            assert!(too_many >= 10, "without the plugin a 429 goes back to the client: {statuses:?}");
        }
    }
}
