//! Durable state in one redb file under the node's data directory: catalog records (tombstones
//! included, so deletions survive restarts and replicate), alias VIPs and node metadata.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
    db: Database,
    path: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join("weft.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let store = Store { db, path };
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

    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>) -> Result<T, StoreError> {
        self.write_with(true, f)
    }

    fn write_with<T>(&self, durable: bool, f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>) -> Result<T, StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        if !durable {
            tx.set_durability(redb::Durability::None).map_err(|e| StoreError::Db { path: self.path.clone(), source: redb::Error::from(redb::StorageError::from(std::io::Error::other(e.to_string()))) })?;
        }
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

    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.commit_with(batch, true)
    }

    /// Commits without waiting for the disk: what peers sent us can be fetched again, so it need
    /// not hold up the gossip task; [`Store::flush`] makes it durable a moment later.
    pub fn commit_lazy(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.commit_with(batch, false)
    }

    /// Makes every earlier lazy commit durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(()))
    }

    fn commit_with(&self, batch: &Batch<'_>, durable: bool) -> Result<(), StoreError> {
        let encoded: Vec<(String, Vec<u8>)> = batch
            .records
            .iter()
            .map(|r| (r.key.encode(), serde_json::to_vec(r).expect("records always serialize")))
            .collect();
        self.write_with(durable, |tx| {
            let mut records = tx.open_table(RECORDS)?;
            for (k, v) in &encoded {
                records.insert(k.as_str(), v.as_slice())?;
            }
            let mut vips = tx.open_table(VIPS)?;
            for (name, ip) in &batch.vips {
                vips.insert(*name, u32::from(*ip))?;
            }
            Ok(())
        })
    }

    pub fn save_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(BLOBS)?.insert(name, value)?;
            Ok(())
        })
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
