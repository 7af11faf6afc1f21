//! Per-service traffic settings: load balancing, active health checks, retries and outlier
//! ejection. They travel with the service record, so every node routes a service the same way.
//! Every field has a default; an absent table means "the defaults" (DESIGN.md §4).

use serde::{Deserialize, Serialize};

/// How an endpoint is chosen among the available ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LbKind {
    /// Power of two choices over peak-EWMA latency × (in-flight + 1): load-aware, and it reacts
    /// to a slow endpoint within a few requests without herding onto the fastest one.
    #[default]
    P2c,
    RoundRobin,
    /// The fewest requests in flight (ties broken by position).
    LeastRequest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect that succeeds within the timeout.
    #[default]
    Tcp,
    /// `GET path`, passing on `expect_status` (default: any 2xx).
    Http,
    /// The gRPC health protocol (`grpc.health.v1.Health/Check`), passing on SERVING.
    Grpc,
    /// No check: the endpoint's health is whatever it was registered with.
    None,
}

pub fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The active check the owning node runs against each of its endpoints of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// The service name asked about in a gRPC check ("" = the server as a whole).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub grpc_service: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            path: "/".into(),
            expect_status: None,
            grpc_service: String::new(),
            interval_ms: 5_000,
            timeout_ms: 1_000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Further tries after the first, each on an endpoint not tried yet.
    pub max_retries: u32,
    /// Also retry non-idempotent requests (POST, PATCH) after they may have reached the
    /// application. Off by default: a repeated payment is worse than a failed one.
    pub non_idempotent: bool,
    pub backoff_base_ms: u32,
    pub backoff_max_ms: u32,
    /// Bound on each try's wait for a response head (0: only the request timeout bounds it).
    pub per_try_timeout_ms: u64,
    /// Retries allowed: this percentage of the service's requests over the last 10 s ...
    pub budget_percent: u32,
    /// ... plus this many per second, so a quiet service can still retry.
    pub budget_min_per_s: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            non_idempotent: false,
            backoff_base_ms: 25,
            backoff_max_ms: 250,
            per_try_timeout_ms: 0,
            budget_percent: 20,
            budget_min_per_s: 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Failures in a row (connect failure, 5xx, gRPC UNAVAILABLE) that eject an endpoint; 0 turns
    /// ejection off.
    pub consecutive_failures: u32,
    /// The n-th ejection lasts n × this, up to `max_ejection_s`.
    pub base_ejection_s: u64,
    pub max_ejection_s: u64,
    /// Above this share of a service's endpoints, no more are ejected (panic threshold).
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig { consecutive_failures: 5, base_ejection_s: 30, max_ejection_s: 300, max_ejected_percent: 50 }
    }
}
