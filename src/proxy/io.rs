//! A stream wrapper that counts bytes and notes activity on every read and write, so one idle
//! watchdog per connection can close it without a timer reset on every packet.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::telemetry::ServiceStats;

/// Shared by both directions of a connection. Reads and writes only bump a counter (no clock
/// call on the data path); the idle watchdog samples it a few times per timeout period.
pub struct Activity {
    events: AtomicU64,
    /// Requests waiting for their response head; a connection is idle only when this is zero
    /// (that wait is the request timeout's business, not the idle timeout's).
    busy: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { events: AtomicU64::new(0), busy: AtomicU64::new(0) })
    }

    /// Marks a request in flight until the guard drops (also when the request is abandoned).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    fn touch(&self) {
        self.events.fetch_add(1, Relaxed);
    }

    /// Resolves once nothing moved for `idle` (to within a quarter of it) while no request was in
    /// flight; never for a disabled timeout (`Duration::MAX`).
    pub async fn idle(&self, idle: Duration) {
        if idle == Duration::MAX {
            return std::future::pending().await;
        }
        let step = (idle / 4).max(Duration::from_millis(10));
        let mut seen = self.events.load(Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(step).await;
            let now = self.events.load(Relaxed);
            if now != seen || self.busy.load(Relaxed) > 0 {
                seen = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= idle {
                return;
            }
        }
    }
}

pub struct Busy(Arc<Activity>);

/// One timer per connection for its deadlines (a response head within the request or per-try
/// timeout). Arming and cancelling a tokio timer for every request cost a measurable share of
/// the per-request CPU; this one stays armed across requests. Deadlines on a busy connection only
/// move forward, so the timer is moved only when it fires before the deadline in force (once per
/// timeout period), or when a deadline comes earlier than the one it is set for.
pub struct Deadline {
    /// Made on first use: most connections of a quiet service never need it.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub fn new() -> Deadline {
        Deadline { sleep: None }
    }

    /// Runs `work` until `until`; `None` when that passed first (no limit: `None` for `until`).
    pub async fn run<F: Future>(&mut self, until: Option<Instant>, work: F) -> Option<F::Output> {
        let Some(until) = until else { return Some(work.await) };
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if sleep.deadline() > until {
            sleep.as_mut().reset(until);
        }
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                () = &mut *sleep => {
                    if Instant::now() >= until {
                        return None;
                    }
                    sleep.as_mut().reset(until);
                }
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// Records activity on every read and write and, on the client side, counts bytes in (read) and out
/// (written) into the service's figures.
pub struct Metered<S> {
    inner: S,
    activity: Arc<Activity>,
    stats: Option<Arc<ServiceStats>>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, activity: Arc<Activity>, stats: Option<Arc<ServiceStats>>) -> Self {
        Metered { inner, activity, stats }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            if let Some(s) = &self.stats {
                s.bytes_in.fetch_add(n as u64, Relaxed);
            }
        }
        r
    }
}

impl<S> Metered<S> {
    /// A response streaming out is activity too, even when the client sends nothing.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            self.activity.touch();
            if let Some(s) = &self.stats {
                s.bytes_out.fetch_add(*n as u64, Relaxed);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
