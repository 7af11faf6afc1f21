//! retry-policy: retries on configured HTTP statuses and gRPC codes with exponential backoff and
//! jitter, and never sends a non-idempotent request again once it may have reached the
//! application. See README.md for the configuration.

use std::cell::Cell;
use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "retrier-plugin" });

use exports::weft::policy::manifest::Guest as Manifest;
use exports::weft::policy::retrier::{Guest as Retrier, Outcome, RequestInfo, RetryDecision};
#[cfg(test)]
use weft::policy::types::Method;
use weft::policy::host::{self, Level};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// HTTP statuses worth another try
    statuses: Vec<u16>,
    /// gRPC status codes worth another try (14 = UNAVAILABLE)
    grpc_codes: Vec<u32>,
    /// tries in all, the first one included
    max_attempts: u32,
    /// backoff before the second try; doubles each try, up to `max_backoff_ms`
    base_ms: u32,
    max_backoff_ms: u32,
    /// no retry that would start later than this after the first try began
    budget_ms: u32,
    /// retry a connection that broke after the request went out (idempotent requests only)
    on_reset: bool,
    /// retry a try that timed out (idempotent requests only)
    on_timeout: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            statuses: vec![429, 502, 503, 504],
            grpc_codes: vec![14],
            max_attempts: 3,
            base_ms: 25,
            max_backoff_ms: 1000,
            budget_ms: 10_000,
            on_reset: true,
            on_timeout: false,
        }
    }
}

/// The configuration, parsed once per instance (an empty string means the defaults), and the
/// handles of the counters. A bad configuration is a panic, i.e. a trap: the host calls
/// `wanted-headers` when it loads the plugin, so the load fails with the log line below.
struct Ready {
    cfg: Config,
    give_up: u32,
    retry: u32,
}

fn ready() -> &'static Ready {
    static READY: OnceLock<Ready> = OnceLock::new();
    READY.get_or_init(|| {
        let text = host::config();
        let parsed = if text.trim().is_empty() { Ok(Config::default()) } else { serde_json::from_str::<Config>(&text) };
        let cfg = match parsed {
            Ok(c) if c.max_attempts >= 1 => c,
            Ok(_) => bad_config(&text, "max_attempts must be at least 1"),
            Err(e) => bad_config(&text, &e.to_string()),
        };
        host::log(Level::Info, &format!("retry-policy: up to {} tries on {:?}, gRPC {:?}, backoff {}–{} ms", cfg.max_attempts, cfg.statuses, cfg.grpc_codes, cfg.base_ms, cfg.max_backoff_ms));
        Ready { cfg, give_up: host::counter("give-up"), retry: host::counter("retry") }
    })
}

fn bad_config(text: &str, why: &str) -> ! {
    host::log(Level::Error, &format!("retry-policy: bad config {text:?}: {why}"));
    panic!("bad config");
}

struct Plugin;

impl Manifest for Plugin {
    fn wanted_headers() -> Vec<String> {
        ready(); // parse (and check) the configuration at load
        Vec::new()
    }
}

impl Retrier for Plugin {
    fn should_retry(req: RequestInfo, outcome: Outcome, elapsed_ms: u32) -> RetryDecision {
        let r = ready();
        let decision = decide(&r.cfg, &req, &outcome, elapsed_ms);
        host::counter_add(if matches!(decision, RetryDecision::GiveUp) { r.give_up } else { r.retry }, 1);
        decision
    }
}

fn decide(cfg: &Config, req: &RequestInfo, outcome: &Outcome, elapsed_ms: u32) -> RetryDecision {
    if req.attempt >= cfg.max_attempts {
        return RetryDecision::GiveUp;
    }
    let worth_it = match *outcome {
        // Nothing reached the application: safe for any request.
        Outcome::ConnectFailed | Outcome::Refused => true,
        // Past this point the application may have acted on the request: only idempotent ones.
        _ if !req.idempotent => false,
        Outcome::Reset => cfg.on_reset,
        Outcome::Timeout => cfg.on_timeout,
        Outcome::Status(code) => cfg.statuses.contains(&code),
        Outcome::GrpcStatus(code) => cfg.grpc_codes.contains(&code),
    };
    if !worth_it {
        return RetryDecision::GiveUp;
    }
    let backoff = backoff_ms(cfg, req.attempt);
    if elapsed_ms.saturating_add(backoff) > cfg.budget_ms {
        return RetryDecision::GiveUp;
    }
    RetryDecision::Retry(backoff)
}

/// Exponential backoff with "equal jitter": half of base × 2^(attempt-1) (capped), plus a random
/// part up to the other half, so clients that failed together do not come back together.
fn backoff_ms(cfg: &Config, attempt: u32) -> u32 {
    let doublings = attempt.saturating_sub(1).min(20);
    let ceiling = cfg.base_ms.saturating_mul(1 << doublings).min(cfg.max_backoff_ms);
    let half = ceiling / 2;
    half + (random() % (u64::from(ceiling - half) + 1)) as u32
}

thread_local! {
    // Instance state survives between calls: the host keeps warm instances.
    static RNG: Cell<u64> = const { Cell::new(0x2545_f491_4f6c_dd1d) };
}

/// splitmix64: WASI random is not offered to plugins, and jitter needs no more than this.
fn random() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, attempt: u32) -> RequestInfo {
        RequestInfo {
            service: 1,
            namespace: 2,
            method: if method == "GET" { Method::Get } else { Method::Post },
            attempt,
            idempotent: method == "GET",
            source_zone: 3,
        }
    }

    fn backoff(decision: RetryDecision) -> Option<u32> {
        match decision {
            RetryDecision::Retry(ms) => Some(ms),
            RetryDecision::GiveUp => None,
        }
    }

    #[test]
    fn retries_configured_statuses_and_codes_of_idempotent_requests() {
        let cfg = Config::default();
        let first = backoff(decide(&cfg, &request("GET", 1), &Outcome::Status(429), 3)).expect("429 is retried");
        assert!((12..=25).contains(&first), "{first}");
        assert!(backoff(decide(&cfg, &request("GET", 1), &Outcome::GrpcStatus(14), 3)).is_some());
        assert!(backoff(decide(&cfg, &request("GET", 1), &Outcome::Status(500), 3)).is_none());
        assert!(backoff(decide(&cfg, &request("GET", 1), &Outcome::Timeout, 3)).is_none());
        assert!(backoff(decide(&cfg, &request("GET", 3), &Outcome::Status(429), 3)).is_none(), "max_attempts");
        assert!(backoff(decide(&cfg, &request("GET", 2), &Outcome::Status(429), 9_999)).is_none(), "budget");
    }

    #[test]
    fn a_non_idempotent_request_is_retried_only_when_it_never_reached_the_app() {
        let cfg = Config::default();
        for outcome in [Outcome::Status(429), Outcome::Status(502), Outcome::GrpcStatus(14), Outcome::Reset, Outcome::Timeout] {
            assert!(backoff(decide(&cfg, &request("POST", 1), &outcome, 0)).is_none(), "{outcome:?}");
        }
        for outcome in [Outcome::ConnectFailed, Outcome::Refused] {
            assert!(backoff(decide(&cfg, &request("POST", 1), &outcome, 0)).is_some(), "{outcome:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let cfg = Config { base_ms: 100, max_backoff_ms: 300, ..Config::default() };
        let draws: Vec<u32> = (0..200).map(|_| backoff_ms(&cfg, 2)).collect();
        assert!(draws.iter().all(|ms| (100..=200).contains(ms)), "{draws:?}");
        assert!(draws.iter().any(|&ms| ms != draws[0]), "jittered");
        assert!((0..200).all(|_| (150..=300).contains(&backoff_ms(&cfg, 9))), "capped");
    }

    #[test]
    fn the_configuration_reads_json_with_defaults() {
        let cfg: Config = serde_json::from_str(r#"{"statuses": [503], "max_attempts": 5}"#).unwrap();
        assert_eq!((cfg.statuses, cfg.max_attempts, cfg.grpc_codes), (vec![503], 5, vec![14]));
        assert!(serde_json::from_str::<Config>(r#"{"statuse": [503]}"#).is_err(), "typos are refused");
    }
}
