//! canary-router: sends requests that carry a header (`x-canary: 1`), or a share of all requests,
//! to another service of the same namespace. See README.md for the configuration.

use std::cell::RefCell;
use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "router-plugin" });

use exports::weft::policy::manifest::Guest as Manifest;
use exports::weft::policy::router::{Guest as Router, RequestInfo};
use weft::policy::host::{self, Level};

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
    fn route(req: RequestInfo) -> Option<String> {
        let r = ready();
        let cfg = &r.cfg;
        let already = match r.service {
            Some(id) => req.service == id,
            None => host::text(req.service) == cfg.service,
        };
        if already {
            return None; // already the canary
        }
        // The header's value compared by text id: nothing is copied into the plugin.
        let flagged = match r.value {
            Some(id) => host::header_id(&cfg.header) == Some(Some(id)),
            None => flagged(cfg, host::header(&cfg.header).as_deref()),
        };
        if SPLIT.with(|split| to_canary(cfg, flagged, &mut split.borrow_mut())) {
            host::counter_add(r.canary, 1);
            Some(cfg.service.clone())
        } else {
            host::counter_add(r.stable, 1);
            None
        }
    }
}

/// Whether the request's header (its value, if it has one) asks for the canary.
fn flagged(cfg: &Config, value: Option<&str>) -> bool {
    value == Some(cfg.value.as_str())
}

/// Flagged by the header, or drawn for the percentage (only unflagged requests draw).
fn to_canary(cfg: &Config, flagged: bool, split: &mut Split) -> bool {
    flagged || split.next(cfg.percent)
}

thread_local! {
    // Instance state survives between calls: the host keeps warm instances.
    static SPLIT: RefCell<Split> = const { RefCell::new(Split::new()) };
}

/// The percentage split. Requests are dealt in blocks of 1,000: each block sends exactly
/// round(percent × 10) of its requests to the canary, at positions drawn at random, so the share is
/// exact over any 1,000 requests of an instance yet follows no fixed pattern. No WASI random:
/// a small PRNG (splitmix64) kept in the instance.
struct Split {
    left: u32,
    hits_left: u32,
    rng: u64,
}

const BLOCK: u32 = 1000;

impl Split {
    const fn new() -> Split {
        Split { left: 0, hits_left: 0, rng: 0x9e37_79b9_7f4a_7c15 }
    }

    fn next(&mut self, percent: f64) -> bool {
        if self.left == 0 {
            self.left = BLOCK;
            self.hits_left = (percent * f64::from(BLOCK) / 100.0).round() as u32;
        }
        // draw without replacement: hit with probability hits_left / left
        let hit = (self.random() % u64::from(self.left)) < u64::from(self.hits_left);
        self.left -= 1;
        if hit {
            self.hits_left -= 1;
        }
        hit
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(percent: f64) -> Config {
        Config { service: "api-v2".into(), percent, header: default_header(), value: default_value() }
    }

    fn share(percent: f64, requests: usize) -> usize {
        let (cfg, mut split) = (config(percent), Split::new());
        (0..requests).filter(|_| to_canary(&cfg, false, &mut split)).count()
    }

    #[test]
    fn the_share_is_exact_over_each_block() {
        assert_eq!(share(10.0, 1000), 100);
        assert_eq!(share(10.0, 5000), 500);
        assert_eq!(share(0.5, 1000), 5);
        assert_eq!(share(0.0, 1000), 0);
        assert_eq!(share(100.0, 1000), 1000);
    }

    #[test]
    fn the_draw_follows_no_fixed_pattern() {
        let (cfg, mut split) = (config(50.0), Split::new());
        let picks: Vec<bool> = (0..1000).map(|_| to_canary(&cfg, false, &mut split)).collect();
        let alternating = picks.windows(2).filter(|w| w[0] != w[1]).count();
        assert!((350..650).contains(&alternating), "{alternating} changes in 1000");
    }

    #[test]
    fn the_header_always_goes_to_the_canary() {
        let (cfg, mut split) = (config(0.0), Split::new());
        assert!(to_canary(&cfg, flagged(&cfg, Some("1")), &mut split));
        assert!(!to_canary(&cfg, flagged(&cfg, Some("0")), &mut split));
        assert!(!to_canary(&cfg, flagged(&cfg, None), &mut split));
    }
}
