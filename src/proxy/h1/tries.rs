//! The HTTP/1.1 codec under the request pipeline (`proxy::pipeline`): how a try writes a request
//! and reads its response head, and how it ended. Two shapes: a request whose body is kept
//! (`replayable`: sent whole on every try, so a try that may have reached an endpoint can go
//! to another) and one whose body streams through (`streaming`: only a failed connect is tried
//! again, since after that the body is gone).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::body::{copy_body, read_response_head};
use super::head::Head;
use super::{Answer, Client, Exchange, Scratch, request_info};
use crate::catalog::RetryConfig;
use crate::policy::{Outcome, Target};
use crate::proxy::attempt::Attempts;
use crate::proxy::body::InFlight;
use crate::proxy::error::ProxyError;
use crate::proxy::io::Deadline;
use crate::proxy::pipeline::{self, Codec, Tried};
use crate::proxy::pool::{Pools, Upstream};
use crate::proxy::table::ServiceRoute;

/// The wait for one try's response head: the per-try timeout, within what is left of the
/// request timeout.
pub(in crate::proxy) fn try_limit(retry: &RetryConfig, deadline: Option<Instant>) -> Duration {
    let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
    match retry.per_try_timeout_ms {
        0 => left,
        ms => left.min(Duration::from_millis(ms)),
    }
}

/// When a try's wait for its response head ends, and how long that is after it was sent.
#[derive(Clone, Copy)]
struct Limit {
    until: Instant,
    after: Duration,
}

/// [`try_limit`] as a deadline for a try sent at `sent`, from times already read.
/// For a request that must not run after its caller gave up (not idempotent): when this try's
/// caller gives up, in Unix ms, as the far side of a relay reads it. Taken before connecting,
/// so a little early: cutting a request a connect's time early is safe, running it late is not.
fn give_up_ms(idempotent: bool, retry: &RetryConfig, deadline: Option<Instant>, now: Instant) -> Option<u64> {
    if idempotent {
        return None;
    }
    let left = try_until(retry, deadline, now)?.until.saturating_duration_since(Instant::now());
    Some(crate::transport::relay::unix_ms() + left.as_millis() as u64)
}

fn try_until(retry: &RetryConfig, deadline: Option<Instant>, sent: Instant) -> Option<Limit> {
    let whole = deadline.map(|until| Limit { until, after: until.saturating_duration_since(sent) });
    match retry.per_try_timeout_ms {
        0 => whole,
        ms => {
            let per_try = Limit { until: sent + Duration::from_millis(ms), after: Duration::from_millis(ms) };
            Some(whole.filter(|w| w.until < per_try.until).unwrap_or(per_try))
        }
    }
}


/// A request whose body is in `buf`: sent whole on each try, so a failed try (broken connection,
/// timeout, 503) can be repeated on another endpoint when the policy deems it safe. The answer
/// is left in `slot`, where the caller keeps it (see [`answered`]).
pub(super) async fn replayable<'s>(x: Exchange<'_>, client: &mut Client, buf: &BytesMut, head: &Head, n: usize, sc: &mut Scratch, slot: &'s mut Option<Answer>) -> Result<&'s mut Answer, ProxyError> {
    let Exchange { l, route, settings, .. } = x;
    let info = request_info(route, settings, head, &buf[..], &l.shared.zone, route.policy.tries_read_requests());
    sc.out.clear();
    head.write_to(buf, &mut sc.out, true, x.added);
    sc.out.extend_from_slice(&buf[head.len..head.len + n]);
    let mut attempts = Attempts::new(route, info, x.start);
    let mut codec = Replayable {
        answer: &mut *slot,
        up: Ups { pools: &l.shared.pools, route, retry: settings.retry, deadline: x.deadline(), idempotent: attempts.info.idempotent },
        is_head: head.method.get(buf) == b"HEAD",
        interim: head.minor > 0,
        client,
        sc,
    };
    pipeline::run(&mut attempts, &mut codec).await?;
    answered(slot, &mut attempts)
}

/// The last try's answer, where it was made: an answer (a response head and its connection,
/// ~250 bytes) moved up through the returns and into the delivery was copied five times, ~2 %
/// of a request's instructions (callgrind).
fn answered<'s>(slot: &'s mut Option<Answer>, attempts: &mut Attempts<'_>) -> Result<&'s mut Answer, ProxyError> {
    match slot {
        Some(a) => {
            a.attempts = attempts.info.attempt;
            Ok(a)
        }
        None => Err(attempts.error()),
    }
}

/// A request whose body streams from the client to the endpoint as it arrives.
pub(super) async fn streaming<'s>(x: Exchange<'_>, client: &mut Client, buf: &mut BytesMut, head: &Head, sc: &mut Scratch, slot: &'s mut Option<Answer>) -> Result<&'s mut Answer, ProxyError> {
    let Exchange { l, route, settings, .. } = x;
    // The head leaves `buf` now, whatever happens (answered here or sent on): the request
    // description borrows it while the body streams from what follows.
    let head_bytes = buf.split_to(head.len);
    let info = request_info(route, settings, head, &head_bytes[..], &l.shared.zone, route.policy.tries_read_requests());
    let mut attempts = Attempts::new(route, info, x.start);
    let is_head = head.method.get(&head_bytes) == b"HEAD";
    let mut codec = Streaming { answer: &mut *slot, up: Ups { pools: &l.shared.pools, route, retry: settings.retry, deadline: x.deadline(), idempotent: attempts.info.idempotent }, is_head, head, head_bytes: &head_bytes, client, buf, sc, added: x.added };
    pipeline::run(&mut attempts, &mut codec).await?;
    answered(slot, &mut attempts)
}

/// Where a try's upstream connection comes from, and what bounds the request's tries.
struct Ups<'a> {
    pools: &'a Pools,
    route: &'a ServiceRoute,
    retry: &'a RetryConfig,
    deadline: Option<Instant>,
    idempotent: bool,
}

impl Ups<'_> {
    /// For a try beginning at `now`: the held or a pooled connection, else a new one.
    async fn connect(&self, sc: &mut Scratch, t: &Arc<Target>, now: Instant) -> Result<Upstream, ProxyError> {
        match sc.ready(self.pools, t, now, self.give_up(t, now)) {
            Some(up) => Ok(up),
            None => self.fresh(t, now).await,
        }
    }

    /// A new connection (a relay stream carrying the request's deadline when it needs one).
    async fn fresh(&self, t: &Arc<Target>, now: Instant) -> Result<Upstream, ProxyError> {
        self.pools.fresh_h1(self.route, t, self.give_up(t, now)).await
    }

    /// For a request to another host that must not run late: when its caller gives up.
    fn give_up(&self, t: &Target, now: Instant) -> Option<u64> {
        if t.via.is_some() { give_up_ms(self.idempotent, self.retry, self.deadline, now) } else { None }
    }
}

struct Replayable<'a, 'c> {
    /// The last try's answer.
    answer: &'c mut Option<Answer>,
    up: Ups<'a>,
    is_head: bool,
    /// Interim (1xx) responses go to the client (not to an HTTP/1.0 one).
    interim: bool,
    client: &'c mut Client,
    /// `out` holds the request, head and body, as it goes to every endpoint.
    sc: &'c mut Scratch,
}

impl Codec for Replayable<'_, '_> {
    type Conn = Upstream;
    const COUNTS_REQUESTS: bool = true;

    async fn connect(&mut self, t: &Arc<Target>, now: Instant) -> Result<Upstream, ProxyError> {
        self.up.connect(self.sc, t, now).await
    }

    async fn reconnect(&mut self, t: &Arc<Target>, _old: Option<Upstream>) -> Result<Upstream, ProxyError> {
        self.up.fresh(t, Instant::now()).await
    }

    async fn send(&mut self, t: &Arc<Target>, mut up: Upstream, in_flight: InFlight, attempts: &Attempts<'_>) -> Tried<Upstream> {
        let addr = t.address;
        // A pooled connection on the first try: sent at the start, near enough (a fresh one took
        // a connect first).
        let sent = if up.reused { attempts.now() } else { Instant::now() };
        let limit = try_until(self.up.retry, self.up.deadline, sent);
        match send(&mut up, self.client, &self.sc.out, self.is_head, self.interim, &mut self.sc.timer, limit, addr).await {
            Ok(resp) => {
                let at = Instant::now();
                // Every error status goes to should-retry (the built-in hook retries only a 503;
                // a plugin may retry a 429).
                let (ok, retry_on) = (resp.status < 500, (resp.status >= 400).then_some((Outcome::Status(resp.status), true)));
                *self.answer = Some(Answer { target: t.clone(), up, resp, body_done: true, _in_flight: in_flight, attempts: 1 });
                Tried::Answered { ok, timing: Some((at - sent, at)), retry_on }
            }
            // A pooled connection the endpoint closed a moment ago fails before any byte comes
            // back: an idempotent request goes once more over a new connection to the same
            // endpoint (a repeat is harmless even if the first got through).
            Err(error @ ProxyError::UpstreamIo { .. }) if up.reused && up.buf.is_empty() && attempts.info.idempotent => Tried::SameAgain { error, outcome: Outcome::Reset, conn: None },
            Err(error) => Tried::Failed { outcome: outcome_of(&error), error, replayable: true },
        }
    }
}

struct Streaming<'a, 'c> {
    answer: &'c mut Option<Answer>,
    up: Ups<'a>,
    is_head: bool,
    head: &'c Head,
    /// The request head's bytes (split off the client's buffer).
    head_bytes: &'c BytesMut,
    client: &'c mut Client,
    /// The client's buffer after the head: the start of the body.
    buf: &'c mut BytesMut,
    sc: &'c mut Scratch,
    /// Fields added to the head on its way (an `x-request-id`).
    added: &'a [&'a str],
}

impl Codec for Streaming<'_, '_> {
    type Conn = Upstream;
    const COUNTS_REQUESTS: bool = true;

    async fn connect(&mut self, t: &Arc<Target>, now: Instant) -> Result<Upstream, ProxyError> {
        self.up.connect(self.sc, t, now).await
    }

    async fn reconnect(&mut self, t: &Arc<Target>, _old: Option<Upstream>) -> Result<Upstream, ProxyError> {
        self.up.fresh(t, Instant::now()).await
    }

    async fn send(&mut self, t: &Arc<Target>, mut up: Upstream, in_flight: InFlight, _attempts: &Attempts<'_>) -> Tried<Upstream> {
        let head = self.head;
        self.sc.out.clear();
        head.write_to(self.head_bytes, &mut self.sc.out, true, self.added);
        let addr = t.address;
        let sent = Instant::now();
        let limit = try_until(self.up.retry, self.up.deadline, sent);
        match exchange_head(&mut up, self.client, self.buf, head, &mut self.sc.out, self.is_head, &mut self.sc.timer, limit, addr).await {
            Ok((resp, body_done)) => {
                let at = Instant::now();
                let ok = resp.status < 500;
                *self.answer = Some(Answer { target: t.clone(), up, resp, body_done, _in_flight: in_flight, attempts: 1 });
                Tried::Answered { ok, timing: Some((at - sent, at)), retry_on: None }
            }
            // The body is gone: the policy is not asked.
            Err(error) => Tried::Failed { outcome: outcome_of(&error), error, replayable: false },
        }
    }
}

/// What a failed try ran into, for should-retry.
fn outcome_of(e: &ProxyError) -> Outcome {
    if matches!(e, ProxyError::RequestTimeout { .. }) { Outcome::Timeout } else { Outcome::Reset }
}

fn timed_out(addr: std::net::SocketAddr, limit: Option<Limit>) -> ProxyError {
    ProxyError::RequestTimeout { addr, after: limit.map_or(Duration::ZERO, |l| l.after) }
}

/// Writes a whole request and reads the final response head within `limit`.
#[allow(clippy::too_many_arguments)]
async fn send(up: &mut Upstream, client: &mut Client, out: &[u8], is_head: bool, interim: bool, timer: &mut Deadline, limit: Option<Limit>, addr: std::net::SocketAddr) -> Result<Head, ProxyError> {
    up.stream.write_all(out).await.map_err(|source| ProxyError::UpstreamIo { addr, source })?;
    let read = pin!(read_response_head(&mut up.stream, &mut up.buf, is_head, interim, client, addr));
    timer.run(limit.map(|l| l.until), read).await.ok_or_else(|| timed_out(addr, limit))?
}

/// Writes the request head, then its body concurrently with reading the response, so an
/// `Expect: 100-continue` or an early error response flows back at once) and returns the final
/// response head and whether the whole request body went out.
#[allow(clippy::too_many_arguments)]
async fn exchange_head(
    up: &mut Upstream,
    client: &mut Client,
    buf: &mut BytesMut,
    head: &Head,
    out: &mut Vec<u8>,
    is_head: bool,
    timer: &mut Deadline,
    limit: Option<Limit>,
    addr: std::net::SocketAddr,
) -> Result<(Head, bool), ProxyError> {
    let (mut up_r, mut up_w) = up.stream.split();
    let (mut cl_r, mut cl_w) = tokio::io::split(&mut *client);
    let send = async {
        let r = copy_body(head.body, buf, &mut cl_r, &mut up_w, out).await;
        r.map_err(|e| e.into_proxy_from_client(addr))
    };
    let read = pin!(read_response_head(&mut up_r, &mut up.buf, is_head, head.minor > 0, &mut cl_w, addr));
    let recv = timer.run(limit.map(|l| l.until), read);
    tokio::pin!(send, recv);
    let mut sent: Option<Result<(), ProxyError>> = None;
    loop {
        tokio::select! {
            r = &mut send, if sent.is_none() => {
                // The client gave up mid-body: nobody is left to answer.
                if let Err(ProxyError::Downstream(d)) = r {
                    return Err(ProxyError::Downstream(d));
                }
                sent = Some(r);
            }
            r = &mut recv => {
                let resp = r.ok_or_else(|| timed_out(addr, limit))?;
                return match (resp, sent) {
                    (Ok(h), Some(Ok(()))) => Ok((h, true)),
                    // An answer before the whole body went out: forward it, then close.
                    (Ok(h), _) => Ok((h, false)),
                    (Err(e), _) => Err(e),
                };
            }
        }
    }
}

