//! The file watcher: a plugin file replaced on disk is reloaded within `POLL` (200 ms; the
//! issue asks for a new behaviour live within 1 s, and the compile, the routing-table rebuild and
//! requests queued behind a busy proxy take their share of that second).
//! Polling the modified time and length of a few files costs nothing measurable and works on
//! every file system (inotify misses changes on some network and overlay mounts).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{PluginHost, file_stamp};

pub const POLL: Duration = Duration::from_millis(200);

/// Runs until `stop`: checks the files, and reloads changed ones, off the runtime threads.
pub async fn run(host: Arc<PluginHost>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let h = host.clone();
        let work = tokio::task::spawn_blocking(move || {
            for (name, path, stamp) in h.watched() {
                let now = file_stamp(&path);
                // A file being written may show a new length before its last bytes: a changed
                // stamp is reloaded; a refused half-written file is retried at the next change.
                if now.is_some() && now != stamp {
                    match h.reload(&name) {
                        Ok(()) => tracing::info!(plugin = %name, file = %path.display(), "plugin file changed: reloaded"),
                        Err(e) => tracing::error!(plugin = %name, error = %e, "plugin file changed but the new version is refused; the previous version keeps serving"),
                    }
                }
            }
        });
        let _ = work.await;
    }
}
