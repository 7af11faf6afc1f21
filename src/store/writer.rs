//! The one writer of the store: a thread of its own that takes changes from a channel and commits
//! them in batches, so no runtime thread ever waits on the disk (on a one-CPU node the runtime
//! has one thread, and an fsync there stalled every proxied request). Changes commit in the order
//! they were queued; everything queued while a commit runs goes into the next one (a group
//! commit), durable (fsync) when any of it asked to be.
//!
//! A commit that fails (a full disk) is logged, answered as an error to those waiting for it, and
//! kept: it is tried again with the next batch, or after a second, so the disk catches up with
//! the catalog in memory once it can.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use redb::Database;

use super::{BLOBS, RECORDS, VIPS};

/// Most jobs folded into one commit.
const MAX_BATCH: usize = 512;
/// How long a failed commit waits before it is tried again when nothing new arrives.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One change set, encoded by the caller.
#[derive(Default)]
pub(super) struct Changes {
    pub records: Vec<(String, Vec<u8>)>,
    pub vips: Vec<(String, u32)>,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Changes {
    fn absorb(&mut self, other: Changes) {
        self.records.extend(other.records);
        self.vips.extend(other.vips);
        self.blobs.extend(other.blobs);
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.vips.is_empty() && self.blobs.is_empty()
    }
}

pub(super) struct Job {
    pub changes: Changes,
    /// Wait for the disk (fsync) before answering.
    pub durable: bool,
    /// Told the outcome once committed; None: nobody waits.
    pub done: Option<SyncSender<Result<(), String>>>,
}

/// Runs until every sender is gone, then makes what it committed durable.
pub(super) fn run(db: Arc<Database>, jobs: Receiver<Job>) {
    // Failed changes, tried again first; and whether a non-durable commit is not yet synced.
    let mut retry = Changes::default();
    let mut unsynced = false;
    loop {
        let first = if retry.is_empty() {
            match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        } else {
            match jobs.recv_timeout(RETRY_AFTER) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut batch: Vec<Job> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let durable = !retry.is_empty() || batch.iter().any(|j| j.durable);
        let mut changes = std::mem::take(&mut retry);
        let mut waiting = Vec::new();
        for job in batch {
            changes.absorb(job.changes);
            waiting.extend(job.done);
        }
        let result = commit(&db, &changes, durable);
        match &result {
            Ok(()) => unsynced = !durable && (unsynced || !changes.is_empty()),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the store; keeping the changes to try again");
                retry = changes;
            }
        }
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
    if (unsynced || !retry.is_empty())
        && let Err(e) = commit(&db, &retry, true)
    {
        tracing::error!(error = %e, "cannot write the store at shutdown");
    }
}

fn commit(db: &Database, c: &Changes, durable: bool) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut tx = db.begin_write().map_err(|e| text(&e))?;
    if !durable {
        tx.set_durability(redb::Durability::None).map_err(|e| text(&e))?;
    }
    {
        let mut records = tx.open_table(RECORDS).map_err(|e| text(&e))?;
        for (k, v) in &c.records {
            records.insert(k.as_str(), v.as_slice()).map_err(|e| text(&e))?;
        }
        let mut vips = tx.open_table(VIPS).map_err(|e| text(&e))?;
        for (name, ip) in &c.vips {
            vips.insert(name.as_str(), *ip).map_err(|e| text(&e))?;
        }
        let mut blobs = tx.open_table(BLOBS).map_err(|e| text(&e))?;
        for (name, value) in &c.blobs {
            blobs.insert(name.as_str(), value.as_slice()).map_err(|e| text(&e))?;
        }
    }
    tx.commit().map_err(|e| text(&e))
}
