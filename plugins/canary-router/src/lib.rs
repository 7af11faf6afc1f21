//! canary-router: sends requests that carry a header (`x-canary: 1`), or a share of all requests,
//! to another service of the same namespace. See README.md for the configuration.

use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "router-plugin" });

use exports::weft::policy::manifest::Guest as Manifest;
use exports::weft::policy::router::{Guest as Router, RequestInfo, RouteDecision};
use weft::policy::host::{self, Level};
use weft::policy::types::Reuse;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// where canary requests go: a service of the same namespace
    service: String,
    /// share of all requests sent there, 0–100 (decimals allowed: 0.5)
    #[serde(default)]
    percent: f64,
    /// requests with this header set to `value` always go there
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_value")]
    value: String,
}

fn default_header() -> String {
    "x-canary".into()
}
fn default_value() -> String {
    "1".into()
}

/// The configuration, parsed once per instance, with the ids the hook compares with and the
/// handles of its counters. A bad configuration is a panic, i.e. a trap: the host calls
/// `wanted-headers` when it loads the plugin, so the load fails with the log line below.
struct Ready {
    cfg: Config,
    /// the canary service's and the header value's text ids (none only if the host's table is
    /// full for this plugin)
    service: Option<u32>,
    value: Option<u32>,
    canary: u32,
    stable: u32,
}

fn ready() -> &'static Ready {
    static READY: OnceLock<Ready> = OnceLock::new();
    READY.get_or_init(|| {
        let text = host::config();
        let cfg: Config = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                host::log(Level::Error, &format!("canary-router: bad config {text:?}: {e}"));
                panic!("bad config");
            }
        };
        if !(0.0..=100.0).contains(&cfg.percent) {
            host::log(Level::Error, &format!("canary-router: percent must be 0–100, not {}", cfg.percent));
            panic!("bad config");
        }
        host::log(Level::Info, &format!("canary-router: {}% and {}: {} → {}", cfg.percent, cfg.header, cfg.value, cfg.service));
        Ready { service: host::intern(&cfg.service), value: host::intern(&cfg.value), canary: host::counter("canary"), stable: host::counter("stable"), cfg }
    })
}

struct Plugin;

impl Manifest for Plugin {
    fn wanted_headers() -> Vec<String> {
        vec![ready().cfg.header.clone()]
    }
}

impl Router for Plugin {
    /// One answer per value of the header: the host keeps it (`same-headers`) and calls again
    /// only when the header's value is new, the service's endpoints change or the plugin is
    /// reloaded. The host draws the percentage for each request and bumps the counters.
    fn route(req: RequestInfo) -> RouteDecision {
        let r = ready();
        let cfg = &r.cfg;
        let already = match r.service {
            Some(id) => req.service == id,
            None => host::text(req.service) == cfg.service,
        };
        // The header's value compared by text id: nothing is copied into the plugin.
        let flagged = match r.value {
            Some(id) => host::header_id(&cfg.header) == Some(Some(id)),
            None => flagged(cfg, host::header(&cfg.header).as_deref()),
        };
        if already {
            // Already the canary (the plugin may serve both services): left alone, not counted.
            return RouteDecision { to: None, share: 0, count_to: None, count_kept: None, reuse: Reuse::SameHeaders };
        }
        RouteDecision { to: r.service, share: share(cfg, flagged), count_to: Some(r.canary), count_kept: Some(r.stable), reuse: Reuse::SameHeaders }
    }
}

/// Whether the request's header (its value, if it has one) asks for the canary.
fn flagged(cfg: &Config, value: Option<&str>) -> bool {
    value == Some(cfg.value.as_str())
}

/// The share of requests sent to the canary, in hundredths of a percent: all of those flagged by
/// the header, `percent` of the others.
fn share(cfg: &Config, flagged: bool) -> u16 {
    if flagged { 10_000 } else { (cfg.percent * 100.0).round() as u16 }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: f64) -> Config {
        Config { service: "api-v2".into(), percent, header: default_header(), value: default_value() }
    }

    #[test]
    fn the_percentage_is_in_hundredths() {
        assert_eq!(share(&config(10.0), false), 1_000);
        assert_eq!(share(&config(0.5), false), 50);
        assert_eq!(share(&config(0.0), false), 0);
        assert_eq!(share(&config(100.0), false), 10_000);
    }

    #[test]
    fn the_header_always_goes_to_the_canary() {
        let cfg = config(0.0);
        assert_eq!(share(&cfg, flagged(&cfg, Some("1"))), 10_000);
        assert_eq!(share(&cfg, flagged(&cfg, Some("0"))), 0);
        assert_eq!(share(&cfg, flagged(&cfg, None)), 0);
    }
}
