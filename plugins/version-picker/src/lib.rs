//! version-picker: when a request names a version (header `x-version: v2`), prefers the candidate
//! endpoints whose attribute `version` has that value. See README.md for the configuration.

use std::cell::Cell;
use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "balancer-plugin" });

use exports::weft::policy::balancer::{Attribute, EndpointInfo, Guest as Balancer, RequestInfo};
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

/// The configuration, parsed once per instance (an empty string means the defaults), with the
/// attribute name's text id and the counters' handles. A bad configuration is a panic, i.e. a
/// trap: the host calls `wanted-headers` when it loads the plugin, so the load fails with the log
/// line below.
struct Ready {
    cfg: Config,
    /// the attribute's name as a text id (none only if the host's table is full for this plugin)
    attribute: Option<u32>,
    counters: [u32; 3],
}

fn ready() -> &'static Ready {
    static READY: OnceLock<Ready> = OnceLock::new();
    READY.get_or_init(|| {
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
        let counters = [Choice::NoHeader, Choice::Matched, Choice::NoMatch].map(|c| host::counter(c.counter()));
        Ready { attribute: host::intern(&cfg.attribute), counters, cfg }
    })
}

struct Plugin;

impl Manifest for Plugin {
    /// Only the headers named here are readable by `host::header`.
    fn wanted_headers() -> Vec<String> {
        vec![ready().cfg.header.clone()]
    }
}

impl Balancer for Plugin {
    fn pick_endpoint(_req: RequestInfo, candidates: Vec<EndpointInfo>, attributes: Vec<Attribute>) -> Option<u32> {
        let r = ready();
        // The wanted version as a text id: a value no endpoint has (no id) matches none.
        let wanted = host::header_id(&r.cfg.header).map(|value| Some((r.attribute?, value?)));
        let (picked, choice) = choose(wanted, &candidates, &attributes);
        host::counter_add(r.counters[choice as usize], 1);
        picked
    }
}

/// What `pick-endpoint` did, counted.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Choice {
    NoHeader,
    Matched,
    NoMatch,
}

impl Choice {
    fn counter(self) -> &'static str {
        match self {
            Choice::NoHeader => "no-header",
            Choice::Matched => "matched",
            Choice::NoMatch => "no-match",
        }
    }
}

/// The choice: among healthy candidates whose attribute (name, value) is the wanted one. None
/// leaves the choice to the built-in balancer: no version asked for (`wanted` none), or no
/// healthy endpoint has it (`wanted` some(none): a value no endpoint has).
fn choose(wanted: Option<Option<(u32, u32)>>, candidates: &[EndpointInfo], attributes: &[Attribute]) -> (Option<u32>, Choice) {
    let Some(wanted) = wanted else {
        return (None, Choice::NoHeader);
    };
    let turn = TURN.with(|t| {
        let n = t.get();
        t.set(n.wrapping_add(1));
        n as usize
    });
    let picked = wanted.and_then(|(name, value)| least_busy(candidates, attributes, (name, value), turn));
    (picked, if picked.is_some() { Choice::Matched } else { Choice::NoMatch })
}

/// The healthy candidate with the attribute and the fewest requests in flight. Ties go to the
/// first at or after a rotating position (`turn`), so equally busy endpoints (e.g. all idle) take
/// turns instead of the first one getting everything. One pass, no allocation: the host lists
/// `attributes` grouped by endpoint, in the candidates' order.
fn least_busy(candidates: &[EndpointInfo], attributes: &[Attribute], (name, value): (u32, u32), turn: usize) -> Option<u32> {
    let len = candidates.len();
    let start = turn % len.max(1);
    let mut rest = attributes;
    // (in flight, distance from the rotating start, id)
    let mut best: Option<(u32, usize, u32)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let (mine, tail) = rest.split_at(rest.iter().take_while(|a| a.endpoint == c.id).count());
        rest = tail;
        if !c.healthy || c.ejected || !mine.iter().any(|a| a.name == name && a.value == value) {
            continue;
        }
        let key = (c.in_flight, (i + len - start) % len);
        if best.is_none_or(|(f, d, _)| key < (f, d)) {
            best = Some((key.0, key.1, c.id));
        }
    }
    best.map(|(_, _, id)| id)
}

thread_local! {
    // Instance state survives between calls: the host keeps warm instances.
    static TURN: Cell<u32> = const { Cell::new(0) };
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    // Text ids as the host would give them: the attribute name, and two versions.
    const VERSION: u32 = 7;
    const V1: u32 = 11;
    const V2: u32 = 12;

    fn endpoint(id: u32, in_flight: u32) -> EndpointInfo {
        EndpointInfo { id, node: 1, zone: 2, healthy: true, ejected: false, in_flight, ewma_latency_us: 0 }
    }

    fn versions(of: &[(u32, u32)]) -> Vec<Attribute> {
        of.iter().map(|&(endpoint, value)| Attribute { endpoint, name: VERSION, value }).collect()
    }

    #[test]
    fn picks_only_the_wanted_version_and_shares_ties() {
        let candidates = [endpoint(1, 0), endpoint(2, 0), endpoint(3, 0), endpoint(4, 0)];
        let attributes = versions(&[(1, V1), (2, V2), (3, V2), (4, V1)]);
        let picks: Vec<_> = (0..4).map(|_| choose(Some(Some((VERSION, V2))), &candidates, &attributes).0.unwrap()).collect();
        assert!(picks.iter().all(|&id| id == 2 || id == 3), "{picks:?}");
        assert!(picks.contains(&2) && picks.contains(&3), "idle endpoints take turns: {picks:?}");
    }

    #[test]
    fn prefers_the_least_busy_healthy_match() {
        let mut ejected = endpoint(1, 0);
        ejected.ejected = true;
        let mut down = endpoint(2, 0);
        down.healthy = false;
        let candidates = [ejected, down, endpoint(3, 5), endpoint(4, 1), endpoint(5, 0)];
        let attributes = versions(&[(1, V2), (2, V2), (3, V2), (4, V2), (5, V1)]);
        for _ in 0..3 {
            assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &attributes), (Some(4), Choice::Matched));
        }
    }

    #[test]
    fn leaves_the_choice_to_the_host_without_header_or_match() {
        let candidates = [endpoint(1, 0)];
        let attributes = versions(&[(1, V1)]);
        assert_eq!(choose(None, &candidates, &attributes), (None, Choice::NoHeader));
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &attributes), (None, Choice::NoMatch));
        assert_eq!(choose(Some(None), &candidates, &attributes), (None, Choice::NoMatch), "a value no endpoint has");
        let other_name = [Attribute { endpoint: 1, name: VERSION + 1, value: V2 }];
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &other_name), (None, Choice::NoMatch));
    }
}
