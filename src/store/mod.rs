//! Durable state in one redb file under the node's data directory: catalog records (tombstones
//! included, so deletions survive restarts and replicate), alias VIPs and node metadata. Every
//! write after startup goes through one writer thread (`writer`), batched, never on a runtime
//! thread: callers that need durability wait on a [`Ticket`], from a blocking thread.

mod writer;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::catalog::Record;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const VIPS: TableDefinition<&str, u32> = TableDefinition::new("vips");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Opaque state of other subsystems (the gossip membership), by name.
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open store {path}: {source} (is another weft using this data directory?)")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("store {path}: {source}")]
    Db { path: PathBuf, source: redb::Error },
    #[error("store {path}: record `{key}` is corrupt: {source}")]
    Corrupt { path: PathBuf, key: String, source: serde_json::Error },
    #[error("store {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// A queued change's outcome, to wait for (from a blocking thread, never a runtime one).
#[must_use = "wait() for the commit, or drop the ticket to not wait"]
pub struct Ticket {
    done: Option<mpsc::Receiver<Result<(), String>>>,
    path: PathBuf,
}

impl Ticket {
    /// Nothing was queued: done already.
    pub fn done() -> Ticket {
        Ticket { done: None, path: PathBuf::new() }
    }

    /// Blocks until the change is on disk (or the commit failed).
    pub fn wait(self) -> Result<(), StoreError> {
        let Some(rx) = self.done else { return Ok(()) };
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Write { path: self.path, message }),
            Err(_) => Err(StoreError::Write { path: self.path, message: "the store writer stopped".into() }),
        }
    }
}

/// What the store held at startup.
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub vips: BTreeMap<String, Ipv4Addr>,
}

/// One atomic write: records and newly assigned VIPs commit together or not at all.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub records: Vec<&'a Record>,
    pub vips: Vec<(&'a str, Ipv4Addr)>,
}

pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<writer::Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Store {
    /// Lets the writer finish what is queued and sync it, and closes the file.
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join("weft.redb");
        let db = Arc::new(Database::create(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?);
        let (tx, rx) = mpsc::channel();
        let for_writer = db.clone();
        let thread = std::thread::Builder::new()
            .name("weft-store".into())
            .spawn(move || {
                crate::background::lower_this_thread("weft-store");
                writer::run(for_writer, rx)
            })
            .map_err(|source| StoreError::CreateDir { path: path.clone(), source })?;
        let store = Store { db, path, writer: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) };
        // Create the tables up front so readers never meet a missing table.
        store.write(|tx| {
            tx.open_table(RECORDS)?;
            tx.open_table(VIPS)?;
            tx.open_table(META)?;
            tx.open_table(BLOBS)?;
            Ok(())
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db { path: self.path.clone(), source: e.into() }
    }

    /// A direct write, for startup (tables, the generation): the writer thread does the rest.
    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>) -> Result<T, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = Loaded::default();
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for item in records.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let record = serde_json::from_slice(v.value())
                .map_err(|source| StoreError::Corrupt { path: self.path.clone(), key: k.value().to_string(), source })?;
            out.records.push(record);
        }
        let vips = tx.open_table(VIPS).map_err(|e| self.err(e))?;
        for item in vips.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.vips.insert(k.value().to_string(), Ipv4Addr::from(v.value()));
        }
        Ok(out)
    }

    /// Commits durably and waits (a blocking call: not on a runtime thread).
    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.enqueue(batch).wait()
    }

    /// Queues a durable commit; the ticket tells when it is on disk. Queue order is commit order.
    pub fn enqueue(&self, batch: &Batch<'_>) -> Ticket {
        self.send(Self::changes(batch), true, true)
    }

    /// Queues a commit nobody waits for, synced with the next durable one (or [`Store::flush`]):
    /// what peers sent us can be fetched again, and health is checked again after a restart.
    pub fn commit_background(&self, batch: &Batch<'_>) {
        let _ = self.send(Self::changes(batch), false, false);
    }

    /// Makes every earlier commit durable, and waits.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.send(writer::Changes::default(), true, true).wait()
    }

    pub fn save_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.send(Self::blob(name, value), true, true).wait()
    }

    /// Queues a durable blob write nobody waits for (from a runtime thread).
    pub fn save_blob_background(&self, name: &str, value: &[u8]) {
        let _ = self.send(Self::blob(name, value), true, false);
    }

    fn blob(name: &str, value: &[u8]) -> writer::Changes {
        writer::Changes { blobs: vec![(name.to_string(), value.to_vec())], ..Default::default() }
    }

    fn changes(batch: &Batch<'_>) -> writer::Changes {
        writer::Changes {
            records: batch.records.iter().map(|r| (r.key.encode(), serde_json::to_vec(r).expect("records always serialize"))).collect(),
            vips: batch.vips.iter().map(|(n, ip)| (n.to_string(), u32::from(*ip))).collect(),
            blobs: Vec::new(),
        }
    }

    fn send(&self, changes: writer::Changes, durable: bool, wait: bool) -> Ticket {
        let (done, rx) = if wait {
            let (tx, rx) = mpsc::sync_channel(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let sent = match self.writer.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(w) => w.send(writer::Job { changes, durable, done }).is_ok(),
            None => false,
        };
        if !sent {
            tracing::error!(path = %self.path.display(), "the store writer has stopped; a change was not written");
        }
        Ticket { done: rx, path: self.path.clone() }
    }

    pub fn load_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(BLOBS).map_err(|e| self.err(e))?;
        let value = table.get(name).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Bumps and returns the node generation: every start is a new incarnation, so peers can tell a
    /// restarted node from a stale copy of itself.
    pub fn next_generation(&self) -> Result<u64, StoreError> {
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let next = meta.get("generation")?.map(|g| g.value()).unwrap_or(0) + 1;
            meta.insert("generation", next)?;
            Ok(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Body, Key, Namespace, Origin, Version};

    #[test]
    fn records_and_vips_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("weft-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rec = Record {
            key: Key::Namespace("a".into()),
            body: Some(Body::Namespace(Namespace { name: "a".into(), description: String::new() })),
            version: Version { hlc: 7, writer: "n".into() },
            origin: Origin::Api,
            registered: 0,
        };
        {
            let s = Store::open(&dir).unwrap();
            s.commit(&Batch { records: vec![&rec], vips: vec![("db", Ipv4Addr::new(127, 255, 0, 1))] }).unwrap();
            assert_eq!(s.next_generation().unwrap(), 1);
        }
        let s = Store::open(&dir).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.records, vec![rec]);
        assert_eq!(loaded.vips["db"], Ipv4Addr::new(127, 255, 0, 1));
        assert_eq!(s.next_generation().unwrap(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
