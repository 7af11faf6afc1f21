//! A stream wrapper that counts bytes and notes activity on every read and write, so one idle
//! watchdog per connection can close it without a timer reset on every packet.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::{Acquire, Relaxed, Release}};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
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

    /// A plain load and store, not an atomic add: the watchdog only asks whether the count
    /// changed, which even two racing writers could not hide (both store something new), and the
    /// locked add was two of a request's costliest instructions.
    fn touch(&self) {
        self.events.store(self.events.load(Relaxed).wrapping_add(1), Relaxed);
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

/// Polls a future that seldom has anything to say (a timer) only when its own waker fired, not
/// on every wake of the task it shares with busy I/O. A connection task wakes twice per request;
/// polling its idle watchdog and deadline timers each time was ~300 instructions per request.
///
/// A future that returned `Pending` has arranged to wake its waker when it can progress, so
/// skipping polls until then is sound. The waker it is polled with forwards to the task's.
pub struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Release);
        self.task.wake();
    }
}

impl Gate {
    pub fn new() -> Gate {
        let flag = Arc::new(Flag { fired: AtomicBool::new(true), task: AtomicWaker::new() });
        Gate { waker: Waker::from(flag.clone()), flag }
    }

    /// The next poll goes through: the gated future changed (a timer was reset).
    pub fn open(&self) {
        self.flag.fired.store(true, Release);
    }

    pub fn poll<F: Future + ?Sized>(&self, f: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Register first: a wake between this and the check below reaches the task.
        self.flag.task.register(cx.waker());
        if !self.flag.fired.swap(false, Acquire) {
            return Poll::Pending;
        }
        f.poll(&mut Context::from_waker(&self.waker))
    }

    /// [`until`] with this gate, for a watchdog that outlives one call (it stays registered with
    /// this gate's waker between calls, so it must always be polled through this gate).
    pub async fn until<M: Future, W: Future>(&self, main: M, mut watchdog: Pin<&mut W>) -> Option<M::Output> {
        let mut main = pin!(main);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = main.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.poll(watchdog.as_mut(), cx).map(|_| None)
        })
        .await
    }
}

/// Runs `main` until it finishes (`Some` of its output) or `watchdog` does (`None`), polling the
/// watchdog only through a [`Gate`].
pub async fn until<M: Future, W: Future>(main: M, watchdog: W) -> Option<M::Output> {
    Gate::new().until(main, pin!(watchdog)).await
}

/// One timer per connection for its deadlines (a response head within the request or per-try
/// timeout). Arming and cancelling a tokio timer for every request cost a measurable share of
/// the per-request CPU; this one stays armed across requests. Deadlines on a busy connection only
/// move forward, so the timer is moved only when it fires before the deadline in force (once per
/// timeout period), or when a deadline comes earlier than the one it is set for. Its waker is
/// the gate's, across requests, so a firing is never lost between them.
pub struct Deadline {
    /// Made on first use: most connections of a quiet service never need it.
    sleep: Option<Pin<Box<Sleep>>>,
    gate: Gate,
}

impl Deadline {
    pub fn new() -> Deadline {
        Deadline { sleep: None, gate: Gate::new() }
    }

    /// Runs `work` until `until`; `None` when that passed first (no limit: `None` for `until`).
    /// `work` comes pinned where the caller made it: moving a large future into this one would
    /// be a copy of it per request.
    pub async fn run<F: Future>(&mut self, until: Option<Instant>, mut work: Pin<&mut F>) -> Option<F::Output> {
        let Some(until) = until else { return Some(work.await) };
        let Deadline { sleep, gate } = self;
        let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if sleep.deadline() > until {
            sleep.as_mut().reset(until);
            gate.open();
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            while gate.poll(sleep.as_mut(), cx).is_ready() {
                if Instant::now() >= until {
                    // The timer stays fired (in the past) until the next run moves it: that run
                    // must look at it.
                    gate.open();
                    return Poll::Ready(None);
                }
                sleep.as_mut().reset(until);
                gate.open();
            }
            Poll::Pending
        })
        .await
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
    /// Bytes read and written over the connection's life (a request's are a difference).
    read: u64,
    written: u64,
}

impl<S> Metered<S> {
    pub fn new(inner: S, activity: Arc<Activity>, stats: Option<Arc<ServiceStats>>) -> Self {
        Metered { inner, activity, stats, read: 0, written: 0 }
    }

    /// Bytes read and written so far.
    pub fn counted(&self) -> (u64, u64) {
        (self.read, self.written)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read += n as u64;
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
    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            self.written += *n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;
    use tokio::time::{sleep, timeout};

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn until_tells_which_finished() {
        assert_eq!(until(async { 5 }, pending::<()>()).await, Some(5));
        let r = timeout(LONG, until(pending::<()>(), sleep(Duration::from_millis(20)))).await;
        assert_eq!(r.expect("the watchdog's timer fired but was never polled"), None);
    }

    /// The deadline timer outlives requests: fired while nobody waited, moved later, moved earlier.
    #[tokio::test]
    async fn deadline_across_requests() {
        let mut d = Deadline::new();
        let soon = |ms| Some(Instant::now() + Duration::from_millis(ms));
        assert_eq!(d.run(soon(30), pin!(sleep(Duration::from_millis(5)))).await, Some(()));
        // Its timer fires between requests, with no run to see it.
        sleep(Duration::from_millis(60)).await;
        let r = timeout(LONG, d.run(soon(40), pin!(pending::<()>()))).await;
        assert_eq!(r.expect("a deadline after a firing between requests was missed"), None);
        // A later deadline: the early firing of the old one must not end this run.
        assert_eq!(d.run(soon(500), pin!(sleep(Duration::from_millis(80)))).await, Some(()));
        // An earlier one than the timer is set for.
        let r = timeout(LONG, d.run(soon(20), pin!(pending::<()>()))).await;
        assert_eq!(r.expect("an earlier deadline was missed"), None);
        assert_eq!(d.run(None, pin!(async { 7 })).await, Some(7));
    }
}
