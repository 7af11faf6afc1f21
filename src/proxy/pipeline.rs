//! The one request pipeline. Every request (and every TCP connection) goes through the same named
//! phases, whatever its protocol:
//!
//! 1. **route** — the service's policy may send it to another service ([`super::attempt::routed`],
//!    called by the listener before the pipeline, as it decides which service's figures count it);
//!    a service that does not admit this node refuses it here (`crate::authz`; the endpoint's
//!    node checks again when the request is relayed);
//! 2. **pick** — the policy chooses an endpoint among those this request has not ruled out
//!    ([`Attempts::pick`]);
//! 3. **connect / send** — the codec gets a connection (pooled or new, direct or relayed) and
//!    sends the request over it ([`Codec::connect`], [`Codec::send`]);
//! 4. **classify** — the codec says how the try ended ([`Tried`]): an answer (and whether the
//!    policy should be asked about it, e.g. a 503), a failure with its [`Outcome`], or a
//!    connection that went away under the request (the same endpoint again);
//! 5. **should-retry** — the policy's decision, bounded by replayability and the retry budget
//!    ([`Attempts::again`]);
//! 6. **record** — outlier detection, the latency estimate and the endpoint's figures
//!    ([`super::attempt::record`]).
//!
//! HTTP/1.1 (`h1`), HTTP/2 and gRPC (`h2`) and TCP (`tcp`) are codecs under it: they know how to
//! write and read their protocol, not when to try again or where.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{self, Attempts};
use super::body::InFlight;
use super::error::{ProxyError, Side};
use crate::policy::{Outcome, Target};

/// How one try ended, as the codec classified it.
pub enum Tried<C> {
    /// A response arrived, and the codec keeps it (an answer is a few hundred bytes: handed up
    /// through every return it was copied each time, ~3 % of a request's instructions). `ok`: a
    /// success for outlier detection (not a 5xx nor gRPC UNAVAILABLE); `timing`: how long it took
    /// to its head, and when that came; `retry_on`: the outcome to ask should-retry about (a 503,
    /// gRPC UNAVAILABLE) and whether the request can still be sent again.
    Answered { ok: bool, timing: Option<(Duration, Instant)>, retry_on: Option<(Outcome, bool)> },
    /// The try failed; `replayable`: the request can be sent again exactly as it was.
    Failed { error: ProxyError, outcome: Outcome, replayable: bool },
    /// The connection went away under a request the endpoint did not process (GOAWAY, a refused
    /// stream, a pooled connection closed a moment ago), or — for a request that may be repeated
    /// — may have: the same endpoint again over a new connection, outside the retry count and
    /// without an outlier strike. `conn` is what is left of the old connection, for the codec to
    /// retire.
    SameAgain { error: ProxyError, outcome: Outcome, conn: Option<C> },
}

/// A protocol under the pipeline.
pub trait Codec {
    type Conn;
    /// Whether each try counts as a request of its endpoint (HTTP kinds; a TCP connection is
    /// counted as a connection instead).
    const COUNTS_REQUESTS: bool;

    /// A connection to `t` for a try beginning at `now`: pooled or new.
    fn connect(&mut self, t: &Arc<Target>, now: Instant) -> impl Future<Output = Result<Self::Conn, ProxyError>>;
    /// A new connection to `t`, for a [`Tried::SameAgain`]; `old` is the one that went away.
    fn reconnect(&mut self, t: &Arc<Target>, old: Option<Self::Conn>) -> impl Future<Output = Result<Self::Conn, ProxyError>>;
    /// Sends the request over `conn` and classifies how the try ended; an answer stays with the
    /// codec (the last one is what the request gets). `in_flight` counts the try on its endpoint
    /// until the answer (and its body) is done: an answer keeps it.
    fn send(&mut self, t: &Arc<Target>, conn: Self::Conn, in_flight: InFlight, attempts: &Attempts<'_>) -> impl Future<Output = Tried<Self::Conn>>;
}

/// Resends to the same endpoint over a new connection, per request. An endpoint that recycles its
/// connections after a few dozen streams while as many are in flight (nginx's
/// `keepalive_requests`) refuses the overflow of every new connection, so a request may be
/// refused several times in a row on a loaded machine (three was too few: a loaded CI run lost
/// 18 of 3,000); but an endpoint recycling faster than requests finish must not hold a request
/// forever. Each round is a new connection, and the request timeout bounds them all.
const MAX_SAME_AGAIN: u32 = 10;

/// A resend to the same endpoint: where, the first try's outcome and error (what the try is
/// judged by if the new connection fails too), and the old connection.
type Resend<C> = (Arc<Target>, Outcome, ProxyError, Option<C>);

/// Runs a request's tries to an answer (kept by the codec; the endpoint that gave it is returned)
/// or a final error.
pub async fn run<C: Codec>(attempts: &mut Attempts<'_>, codec: &mut C) -> Result<Arc<Target>, ProxyError> {
    let route = attempts.route();
    if !route.permitted && !super::SKIP_CALLER_AUTHZ.load(Relaxed) {
        let me = format!("node {}", route.caller);
        return Err(ProxyError::Denied { service: route.label(), caller: me.clone(), by: format!("{me}, the caller's node") });
    }
    let mut same_again: Option<Resend<C::Conn>> = None;
    let mut resends = 0;
    loop {
        let (target, conn) = match same_again.take() {
            Some((t, outcome, cause, old)) => match codec.reconnect(&t, old).await {
                Ok(c) => (t, c),
                Err(e) => {
                    attempt::resend_failed(route, &t, &e);
                    attempts.failed(&t, cause);
                    if !attempts.again(&t, outcome, true).await {
                        return Err(attempts.error());
                    }
                    continue;
                }
            },
            None => connect(attempts, codec).await?,
        };
        let in_flight = InFlight::new(target.clone());
        if C::COUNTS_REQUESTS {
            target.stats.requests.fetch_add(1, Relaxed);
        }
        match codec.send(&target, conn, in_flight, attempts).await {
            Tried::Answered { ok, timing, retry_on } => {
                if let Some((took, _)) = timing {
                    target.stats.response_time.record(took);
                }
                attempt::record(route, &target, ok, timing);
                if let Some((outcome, replayable)) = retry_on
                    && attempts.again(&target, outcome, replayable).await
                {
                    continue;
                }
                return Ok(target);
            }
            // The client went away, or sent something unusable: nothing to hold against the
            // endpoint, and nobody to try again for.
            Tried::Failed { error, .. } if error.side() != Side::Upstream => return Err(error),
            Tried::Failed { error, outcome, replayable } => {
                attempts.failed(&target, error);
                if !attempts.again(&target, outcome, replayable).await {
                    return Err(attempts.error());
                }
            }
            Tried::SameAgain { error, outcome, conn } if resends < MAX_SAME_AGAIN => {
                resends += 1;
                tracing::debug!(service = %route.label(), endpoint = %target.id, error = %error, "the connection went away under the request; again over a new one");
                same_again = Some((target, outcome, error, conn));
            }
            Tried::SameAgain { error, outcome, .. } => {
                attempts.failed(&target, error);
                if !attempts.again(&target, outcome, true).await {
                    return Err(attempts.error());
                }
            }
        }
    }
}

/// The pick and connect phases: endpoints the policy picks until one connects (a failed connect
/// sent nothing, so trying another is always safe).
async fn connect<C: Codec>(attempts: &mut Attempts<'_>, codec: &mut C) -> Result<(Arc<Target>, C::Conn), ProxyError> {
    loop {
        let target = attempts.pick()?;
        match codec.connect(&target, attempts.now()).await {
            Ok(c) => return Ok((target, c)),
            Err(e) if e.side() == Side::Upstream && e.retryable() => {
                attempts.failed(&target, e);
                if !attempts.again(&target, Outcome::ConnectFailed, true).await {
                    return Err(attempts.error());
                }
            }
            Err(e) => return Err(e),
        }
    }
}
