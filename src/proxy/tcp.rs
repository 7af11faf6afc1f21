//! TCP listeners: one upstream connection per client connection, bytes copied both ways with
//! half-close honoured (an EOF on one side shuts down writing on the other, the rest still flows).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use super::sock::Sock;

use super::Shared;
use super::attempt::Attempts;
use super::pipeline::{self, Codec, Tried};
use super::body::InFlight;
use super::error::ProxyError;
use super::io::{Activity, Metered};
use super::conn::Conn;
use super::table::ServiceRoute;
use crate::policy::{Headers, RawText, RequestInfo, Target};

/// Large enough that bulk transfers (a 1 MiB Redis value) take few syscalls.
const COPY_BUF: usize = 32 * 1024;

pub struct TcpListener {
    pub slot: Arc<ArcSwap<ServiceRoute>>,
    pub shared: Arc<Shared>,
}

/// The TCP codec under the request pipeline: a try is a connect; once one succeeds there is
/// nothing more to classify (bytes flow until either side closes).
struct TcpCodec<'a> {
    /// The connection, and its count as in flight on the endpoint while it lasts.
    answer: Option<(Conn, InFlight)>,
    l: &'a TcpListener,
    route: &'a ServiceRoute,
}

impl Codec for TcpCodec<'_> {
    type Conn = Conn;
    const COUNTS_REQUESTS: bool = false;

    async fn connect(&mut self, t: &Arc<Target>, _now: tokio::time::Instant) -> Result<Conn, ProxyError> {
        self.l.shared.pools.connect(self.route, t, self.route.connect_timeout).await
    }

    async fn reconnect(&mut self, t: &Arc<Target>, _old: Option<Conn>) -> Result<Conn, ProxyError> {
        self.connect(t, tokio::time::Instant::now()).await
    }

    async fn send(&mut self, _t: &Arc<Target>, conn: Conn, in_flight: InFlight, _a: &Attempts<'_>) -> Tried<Conn> {
        self.answer = Some((conn, in_flight));
        Tried::Answered { ok: true, timing: None, retry_on: None }
    }
}

/// The endpoint, the tries it took, and the connection to it.
async fn connect(l: &TcpListener, route: &ServiceRoute) -> Result<(Arc<Target>, u32, (Conn, InFlight)), ProxyError> {
    let info = RequestInfo {
        namespace: &route.namespace,
        service: &route.service,
        method: "",
        authority: RawText::default(),
        path: RawText::default(),
        headers: Headers::None,
        attempt: 1,
        idempotent: false,
        source_zone: &l.shared.zone,
        retry: &route.retry,
    };
    let mut attempts = Attempts::new(route, info, tokio::time::Instant::now());
    let mut codec = TcpCodec { answer: None, l, route };
    let target = pipeline::run(&mut attempts, &mut codec).await?;
    let tries = attempts.info.attempt;
    Ok((target, tries, codec.answer.ok_or_else(|| attempts.error())?))
}

/// A draining node lets the connection run on: the node's drain timeout bounds it.
pub async fn serve(client: Sock, peer: Option<std::net::SocketAddr>, l: Arc<TcpListener>) {
    let route = l.slot.load_full();
    let stats = route.stats.clone();
    let _connection = stats.open_connection();
    let _ = client.set_nodelay(true);
    let start = tokio::time::Instant::now();
    let begun = if route.access.is_some() { super::access::begin_tcp(&route, peer) } else { None };
    let mut ended = super::access::Ended { status: 0, flags: "-", bytes_in: 0, bytes_out: 0, upstream: None };
    match connect(&l, &route).await {
        Err(e) => {
            ended.flags = e.code();
            if e.side() != super::Side::Upstream {
                stats.failure(e.kind());
            }
            // Closing is all a TCP client can be told; the reason goes to the log and figures. A
            // refusal resets the connection (RST, not FIN), so the client cannot mistake it for
            // a server that answered nothing.
            if matches!(e, ProxyError::Denied { .. }) {
                let _ = client.set_zero_linger();
            }
            tracing::info!(service = %route.label(), error = %e, "no upstream for tcp connection");
        }
        Ok((target, tries, (upstream, _in_flight))) => {
            target.stats.connections.fetch_add(1, Relaxed);
            let activity = Activity::new();
            let mut a = Metered::new(client, activity.clone(), Some(stats.clone()));
            let mut b = Metered::new(upstream, activity.clone(), None);
            let idle = route.idle_timeout.unwrap_or(Duration::MAX);
            match super::io::until(tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUF, COPY_BUF), activity.idle(idle)).await {
                Some(Err(e)) => tracing::debug!(service = %route.label(), error = %e, "tcp connection ended with an error"),
                Some(Ok(_)) => {}
                None => tracing::debug!(service = %route.label(), "closing idle tcp connection"),
            }
            (ended.bytes_in, ended.bytes_out) = a.counted();
            ended.upstream = begun.is_some().then_some((target, tries));
        }
    }
    if let Some(b) = begun {
        super::access::finish(b, "TCP", start, ended);
    }
}
