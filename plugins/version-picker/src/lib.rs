//! version-picker: when a request names a version (header `x-version: v2`), prefers the candidate
//! endpoints whose attribute `version` has that value. See README.md for the configuration.

use std::cell::Cell;
use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "balancer-plugin" });

use exports::weft::policy::balancer::{EndpointInfo, Guest as Balancer, RequestInfo};
use exports::weft::policy::manifest::Guest as Manifest;
use weft::policy::host::{self, Level};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// the request header naming the wanted version
    header: String,
    /// the endpoint attribute compared with it
    attribute: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { header: "x-version".into(), attribute: "version".into() }
    }
}

/// The configuration, parsed once per instance; an empty string means the defaults. A bad
/// configuration is a panic, i.e. a trap: the host calls `wanted-headers` when it loads the
/// plugin, so the load fails with the log line below.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = host::config();
        let parsed = if text.trim().is_empty() { Ok(Config::default()) } else { serde_json::from_str::<Config>(&text) };
        let cfg = match parsed {
            Ok(c) => c,
            Err(e) => {
                host::log(Level::Error, &format!("version-picker: bad config {text:?}: {e}"));
                panic!("bad config");
            }
        };
        host::log(Level::Info, &format!("version-picker: header {} selects endpoints by attribute {}", cfg.header, cfg.attribute));
        cfg
    })
}

struct Plugin;

impl Manifest for Plugin {
    /// Only the headers named here reach `pick-endpoint`.
    fn wanted_headers() -> Vec<String> {
        vec![config().header.clone()]
    }
}

impl Balancer for Plugin {
    fn pick_endpoint(req: RequestInfo, candidates: Vec<EndpointInfo>) -> Option<u32> {
        let (picked, counter) = choose(config(), &req, &candidates);
        host::counter_add(counter, 1);
        picked
    }
}

/// The choice and the counter it bumps. None leaves the choice to the built-in balancer: no
/// version asked for, or no healthy endpoint has it.
fn choose(cfg: &Config, req: &RequestInfo, candidates: &[EndpointInfo]) -> (Option<u32>, &'static str) {
    let Some(wanted) = header(req, &cfg.header) else {
        return (None, "no-header");
    };
    let picked = least_busy(candidates.iter().filter(|c| c.healthy && !c.ejected && attribute(c, &cfg.attribute) == Some(wanted)));
    (picked, if picked.is_some() { "matched" } else { "no-match" })
}

fn header<'a>(req: &'a RequestInfo, name: &str) -> Option<&'a str> {
    req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn attribute<'a>(endpoint: &'a EndpointInfo, name: &str) -> Option<&'a str> {
    endpoint.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The matching endpoint with the fewest requests in flight. The scan starts at a rotating
/// position, so equally busy endpoints (e.g. all idle) take turns instead of the first one
/// getting everything.
fn least_busy<'a>(matches: impl Iterator<Item = &'a EndpointInfo>) -> Option<u32> {
    let matches: Vec<&EndpointInfo> = matches.collect();
    if matches.is_empty() {
        return None;
    }
    let start = TURN.with(|t| {
        let n = t.get();
        t.set(n.wrapping_add(1));
        n as usize % matches.len()
    });
    let rotated = matches[start..].iter().chain(&matches[..start]);
    rotated.min_by_key(|c| c.in_flight).map(|c| c.id)
}

thread_local! {
    // Instance state survives between calls: the host keeps warm instances.
    static TURN: Cell<u32> = const { Cell::new(0) };
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestInfo {
        RequestInfo {
            service: "api".into(),
            namespace: "default".into(),
            method: "GET".into(),
            authority: "api.internal".into(),
            path: "/".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            attempt: 1,
            idempotent: true,
            source_zone: "a".into(),
        }
    }

    fn endpoint(id: u32, version: &str, in_flight: u32) -> EndpointInfo {
        EndpointInfo {
            id,
            node: "n1".into(),
            zone: "a".into(),
            healthy: true,
            ejected: false,
            in_flight,
            ewma_latency_us: 0,
            attributes: vec![("version".into(), version.into())],
        }
    }

    #[test]
    fn picks_only_the_wanted_version_and_shares_ties() {
        let cfg = Config::default();
        let candidates = [endpoint(1, "v1", 0), endpoint(2, "v2", 0), endpoint(3, "v2", 0), endpoint(4, "v1", 0)];
        let req = request(&[("x-version", "v2")]);
        let picks: Vec<_> = (0..4).map(|_| choose(&cfg, &req, &candidates).0.unwrap()).collect();
        assert!(picks.iter().all(|&id| id == 2 || id == 3), "{picks:?}");
        assert!(picks.contains(&2) && picks.contains(&3), "idle endpoints take turns: {picks:?}");
    }

    #[test]
    fn prefers_the_least_busy_healthy_match() {
        let cfg = Config::default();
        let mut ejected = endpoint(1, "v2", 0);
        ejected.ejected = true;
        let mut down = endpoint(2, "v2", 0);
        down.healthy = false;
        let candidates = [ejected, down, endpoint(3, "v2", 5), endpoint(4, "v2", 1), endpoint(5, "v1", 0)];
        for _ in 0..3 {
            assert_eq!(choose(&cfg, &request(&[("X-Version", "v2")]), &candidates), (Some(4), "matched"));
        }
    }

    #[test]
    fn leaves_the_choice_to_the_host_without_header_or_match() {
        let cfg = Config::default();
        let candidates = [endpoint(1, "v1", 0)];
        assert_eq!(choose(&cfg, &request(&[]), &candidates), (None, "no-header"));
        assert_eq!(choose(&cfg, &request(&[("x-version", "v3")]), &candidates), (None, "no-match"));
    }
}
