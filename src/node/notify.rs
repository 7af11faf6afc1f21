//! systemd's notification protocol (`sd_notify(3)`), the few lines of it weft needs: with
//! `Type=notify` the unit is "started" when weft says `READY=1` — after its listeners are bound and
//! the catalog is loaded — and "stopping" at `STOPPING=1`, when the drain begins; `STATUS=` is
//! what `systemctl status` shows; with `WatchdogSec=` set, weft sends `WATCHDOG=1` at half the
//! interval from a task on the runtime, so a runtime that stops making progress is restarted.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call does nothing. A send that fails is
//! logged once and ignored: notification must never stop the node.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

static FAILED: AtomicBool = AtomicBool::new(false);

/// Sends one notification (`KEY=VALUE` lines) to `$NOTIFY_SOCKET`, if set.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        // `@name`: an abstract socket (Linux), as systemd hands them out.
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = result
        && !FAILED.swap(true, Relaxed)
    {
        tracing::warn!(socket = %path.to_string_lossy(), error = %e, "cannot notify systemd (NOTIFY_SOCKET); carrying on without");
    }
}

pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
}

pub fn stopping(status: &str) {
    send(&format!("STOPPING=1\nSTATUS={status}"));
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this process per
/// `WATCHDOG_PID`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    let us: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// Pings the watchdog at half its interval until `stop`. It runs on the runtime, so it stops
/// pinging when the runtime stops making progress: what the watchdog is for.
pub async fn watchdog(every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every / 2);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => send("WATCHDOG=1"),
        }
    }
}
