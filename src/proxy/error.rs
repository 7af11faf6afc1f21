//! Proxy errors, classified by which side failed and whether another endpoint may be tried: the
//! metrics, the status a client sees and the retry decision all read this classification.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::telemetry::FailureKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The endpoint or the path to it failed.
    Upstream,
    /// The calling application went away or sent something unusable.
    Downstream,
    /// weft itself could not do its part.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no healthy endpoint for service {0}")]
    NoEndpoint(String),
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error("endpoint {addr} sent no response within {after:?}")]
    RequestTimeout { addr: SocketAddr, after: Duration },
    #[error("endpoint {addr}: {source}")]
    Upstream { addr: SocketAddr, source: hyper::Error },
    #[error("endpoint {addr} closed or reset the connection: {source}")]
    UpstreamIo { addr: SocketAddr, source: std::io::Error },
    #[error("endpoint {addr} sent an invalid response: {detail}")]
    BadResponse { addr: SocketAddr, detail: String },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("client connection: {0}")]
    Downstream(String),
    /// A fail-closed policy plugin could not answer.
    #[error("{0}")]
    Policy(String),
    /// The service does not admit the caller (`crate::authz`); `by`: which node said so.
    #[error("service {service} does not admit {caller} (refused by {by}; see the service's `allow`)")]
    Denied { service: String, caller: String, by: String },
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::Downstream(_) | ProxyError::BadRequest(_) | ProxyError::BodyTimeout(_) => Side::Downstream,
            ProxyError::NoEndpoint(_) | ProxyError::Policy(_) | ProxyError::Denied { .. } => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// Whether the request certainly never reached an application, so another endpoint is safe.
    pub fn retryable(&self) -> bool {
        matches!(self, ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoEndpoint(_) | ProxyError::Policy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RequestTimeout { .. } | ProxyError::ConnectTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Downstream(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Denied { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The value of the `x-weft-error` header: short, stable, for scripts and dashboards.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoEndpoint(_) => "no-healthy-endpoint",
            ProxyError::Policy(_) => "policy",
            ProxyError::Connect { .. } => "connect-failed",
            ProxyError::ConnectTimeout { .. } => "connect-timeout",
            ProxyError::RequestTimeout { .. } | ProxyError::BodyTimeout(_) => "request-timeout",
            ProxyError::Upstream { .. } | ProxyError::UpstreamIo { .. } => "upstream-error",
            ProxyError::BadResponse { .. } => "bad-upstream-response",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Downstream(_) => "downstream-error",
            ProxyError::Denied { .. } => "denied",
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            ProxyError::NoEndpoint(_) | ProxyError::Policy(_) => FailureKind::NoEndpoint,
            ProxyError::Connect { .. } => FailureKind::Connect,
            ProxyError::ConnectTimeout { .. } | ProxyError::RequestTimeout { .. } => FailureKind::Timeout,
            ProxyError::Upstream { .. } | ProxyError::UpstreamIo { .. } | ProxyError::BadResponse { .. } => FailureKind::Upstream,
            ProxyError::Downstream(_) | ProxyError::BadRequest(_) | ProxyError::BodyTimeout(_) => FailureKind::Downstream,
            ProxyError::Denied { .. } => FailureKind::Denied,
        }
    }
}
