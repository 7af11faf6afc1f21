//! How the data plane stops. When the node drains, its listeners keep accepting for a while. The
//! connections they accept are served, and every HTTP/1.1 response says `Connection: close`, so
//! clients reconnect instead of running into a closed socket. Then the listeners close and the
//! open connections finish. A stopping node closed its listeners at once before: 13 ms after
//! SIGTERM, every client of a standalone node got its connections refused.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Listener, h1, h2, tcp};

/// When the drain window ends and when the drain stops waiting. The node sets the times, and a
/// second signal moves them to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPlan {
    /// The listeners accept at least until then: peers must hear of the drain first.
    pub hold_until: Instant,
    /// They close then at the latest, or earlier once the node has been quiet for `DRAIN_QUIET`.
    pub close_by: Instant,
    /// Connections still open then are left behind: the node stops.
    pub deadline: Instant,
    /// Another process took the listening sockets (`weft run --takeover`): this one stops
    /// accepting at once and leaves the hosts block to it.
    pub handed_over: bool,
}

impl DrainPlan {
    /// A drain that ends at once.
    pub fn now() -> DrainPlan {
        let now = Instant::now();
        DrainPlan { hold_until: now, close_by: now, deadline: now, handed_over: false }
    }

    /// The drain window: listeners accept for up to three quarters of `timeout`, keeping the last
    /// quarter for the requests they accepted last. `hold` keeps them open at least that long.
    pub fn new(timeout: Duration, hold: Duration) -> DrainPlan {
        let now = Instant::now();
        let hold = hold.min(timeout);
        DrainPlan { hold_until: now + hold, close_by: now + (timeout * 3 / 4).max(hold), deadline: now + timeout, handed_over: false }
    }

    /// After a handover: stop accepting now (the new process accepts on the same sockets), and
    /// let open connections finish within `timeout`.
    pub fn handed_over(timeout: Duration) -> DrainPlan {
        let now = Instant::now();
        DrainPlan { hold_until: now, close_by: now, deadline: now + timeout, handed_over: true }
    }
}

/// During a drain the listeners close early once no client connection has been open or accepted
/// for this long. A node with no traffic then stops within about a second. A client that pauses
/// for longer than this between connections finds the port closed, as it would once the node
/// stops. The end of a single connection does not count as quiet: a client told to close
/// reconnects within microseconds.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// During a drain, an open connection that is waiting for its next request gets this long for
/// that request. An HTTP/1.1 connection is then closed, and an HTTP/2 connection gets GOAWAY.
/// A client that works in a loop sends its next request within microseconds, and is told to
/// close by the response. Closing a connection at the moment the drain begins would cut the
/// request its client is sending at that moment. Idle pooled connections must not hold up a stop
/// either: the window ends early only when no connection is left.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Serves a connection accepted during the drain. Its stop token fires `DRAIN_IDLE` after it was
/// accepted. The connections accepted earlier share one token, which fires `DRAIN_IDLE` after
/// the drain begins; a token that had already fired would close this one before its first
/// request.
pub(super) async fn serve_late(s: super::sock::Sock, peer: Option<std::net::SocketAddr>, kind: Listener) {
    let token = CancellationToken::new();
    // Boxed: the three kinds differ, and this runs only for connections made during a drain.
    let mut conn: Pin<Box<dyn Future<Output = ()> + Send>> = match kind {
        Listener::Http1(l) => Box::pin(h1::serve(s, peer, l, token.clone())),
        Listener::Http2(l) => Box::pin(h2::serve(s, peer, l, token.clone())),
        Listener::Tcp(l) => Box::pin(tcp::serve(s, peer, l)),
    };
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = tokio::time::sleep(DRAIN_IDLE) => token.cancel(),
    }
    conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_three_quarters_of_the_timeout_and_at_least_the_hold() {
        let p = DrainPlan::new(Duration::from_secs(20), Duration::from_secs(1));
        assert_eq!(p.close_by - p.hold_until, Duration::from_secs(14));
        assert_eq!(p.deadline - p.close_by, Duration::from_secs(5));
        // A drain shorter than the hold: the hold is cut to it, and so is the window.
        let p = DrainPlan::new(Duration::from_millis(500), Duration::from_secs(1));
        assert_eq!(p.hold_until, p.deadline);
        assert_eq!(p.close_by, p.deadline);
        assert!(!p.handed_over && DrainPlan::handed_over(Duration::from_secs(4)).handed_over);
    }
}
