//! version-picker: when a request names a version (header `x-version: v2`), prefers the candidate
//! endpoints whose attribute `version` has that value. See README.md for the configuration.

use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "balancer-plugin", additional_derives: [PartialEq] });

use exports::weft::policy::balancer::{Attribute, EndpointInfo, Guest as Balancer, Pick, PickDecision, RequestInfo};
use exports::weft::policy::manifest::Guest as Manifest;
use weft::policy::host::{self, Level};
use weft::policy::types::Reuse;

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
    /// Which endpoints may serve the request, not which one: the host's balancer chooses among
    /// them by health and load. That answer depends only on the header and the endpoints'
    /// attributes, so the host keeps it (`same-headers`) and calls again only for a new value
    /// of the header, a change of the service's endpoints or a reload.
    fn pick_endpoint(_req: RequestInfo, candidates: Vec<EndpointInfo>, attributes: Vec<Attribute>) -> PickDecision {
        let r = ready();
        // The wanted version as a text id: a value no endpoint has (no id) matches none.
        let wanted = host::header_id(&r.cfg.header).map(|value| Some((r.attribute?, value?)));
        let (pick, choice) = choose(wanted, &candidates, &attributes);
        PickDecision { pick, count: Some(r.counters[choice as usize]), reuse: Reuse::SameHeaders }
    }
}

/// What `pick-endpoint` decided, counted (by the host, for each request it decides).
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

/// The candidates whose attribute (name, value) is the wanted one. `any` leaves the choice to
/// the built-in balancer over all: no version asked for (`wanted` none), or no endpoint has it
/// (`wanted` some(none): a value no endpoint has). Health is the host's to weigh: among the
/// matches it prefers healthy ones, and takes all candidates when no match can serve.
fn choose(wanted: Option<Option<(u32, u32)>>, candidates: &[EndpointInfo], attributes: &[Attribute]) -> (Pick, Choice) {
    let Some(wanted) = wanted else {
        return (Pick::Any, Choice::NoHeader);
    };
    let matches = wanted.map(|w| matching(candidates, attributes, w)).unwrap_or_default();
    if matches.is_empty() { (Pick::Any, Choice::NoMatch) } else { (Pick::Among(matches), Choice::Matched) }
}

/// The ids of the candidates with the attribute. One pass: the host lists `attributes` grouped
/// by endpoint, in the candidates' order.
fn matching(candidates: &[EndpointInfo], attributes: &[Attribute], (name, value): (u32, u32)) -> Vec<u32> {
    let mut rest = attributes;
    let mut ids = Vec::new();
    for c in candidates {
        let (mine, tail) = rest.split_at(rest.iter().take_while(|a| a.endpoint == c.id).count());
        rest = tail;
        if mine.iter().any(|a| a.name == name && a.value == value) {
            ids.push(c.id);
        }
    }
    ids
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
    fn lists_the_endpoints_of_the_wanted_version() {
        let candidates = [endpoint(1, 0), endpoint(2, 0), endpoint(3, 0), endpoint(4, 0)];
        let attributes = versions(&[(1, V1), (2, V2), (3, V2), (4, V1)]);
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &attributes), (Pick::Among(vec![2, 3]), Choice::Matched));
    }

    #[test]
    fn health_and_load_are_left_to_the_host() {
        let mut ejected = endpoint(1, 0);
        ejected.ejected = true;
        let mut down = endpoint(2, 0);
        down.healthy = false;
        let candidates = [ejected, down, endpoint(3, 5), endpoint(4, 1), endpoint(5, 0)];
        let attributes = versions(&[(1, V2), (2, V2), (3, V2), (4, V2), (5, V1)]);
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &attributes), (Pick::Among(vec![1, 2, 3, 4]), Choice::Matched));
    }

    #[test]
    fn leaves_the_choice_to_the_host_without_header_or_match() {
        let candidates = [endpoint(1, 0)];
        let attributes = versions(&[(1, V1)]);
        assert_eq!(choose(None, &candidates, &attributes), (Pick::Any, Choice::NoHeader));
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &attributes), (Pick::Any, Choice::NoMatch));
        assert_eq!(choose(Some(None), &candidates, &attributes), (Pick::Any, Choice::NoMatch), "a value no endpoint has");
        let other_name = [Attribute { endpoint: 1, name: VERSION + 1, value: V2 }];
        assert_eq!(choose(Some(Some((VERSION, V2))), &candidates, &other_name), (Pick::Any, Choice::NoMatch));
    }
}
