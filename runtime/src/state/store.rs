//! The local copy of one partition's state: a [`redb`] database file with
//! the entries, an index of the entries that expire, and the changelog
//! checkpoint.
//!
//! Writes are applied in transactions that are not synced to disk; a
//! [`LocalStore::flush`] commits durably, with the changelog offset the
//! store is known to reflect. After a crash redb comes back at the last
//! durable commit, whose data and checkpoint belong together, so restoring
//! from that checkpoint rebuilds exactly what the changelog holds.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{StoreError, Write};

/// Entries: key → 8-byte big-endian expiry (0 = never) then the value.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Expiring entries: 8-byte big-endian expiry then the key.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
/// Counters and the checkpoint.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const CHECKPOINT: &str = "checkpoint";
const BYTES: &str = "bytes";
const KEYS: &str = "keys";

/// A stored value with its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value.
    pub value: Vec<u8>,
    /// When it expires (ms since the epoch), if it does.
    pub expires_ms: Option<u64>,
}

/// A consistent read-only view of a store, as of when it was taken: what
/// one guest call reads (its own writes are in layers above it). Taking
/// one costs a read transaction; reads through it do not.
pub struct Snapshot {
    entries: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: PathBuf,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The entry under `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.entries
            .get(key)
            .map(|found| found.map(|g| decode(g.value())))
            .map_err(|e| StoreError {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// See [`LocalStore::scan`].
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Stored)>, StoreError> {
        scan_table(&self.entries, prefix, after, limit).map_err(|e| StoreError {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// Up to `limit` entries of `entries` under `prefix`, after `after`.
fn scan_table(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Stored)>, redb::Error> {
    let start = match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut found = Vec::new();
    for item in entries.range((start, Bound::<&[u8]>::Unbounded))? {
        let (k, v) = item?;
        let key = k.value();
        if !key.starts_with(prefix) || found.len() >= limit {
            break;
        }
        found.push((key.to_vec(), decode(v.value())));
    }
    Ok(found)
}

/// One partition's local store.
pub struct LocalStore {
    db: Database,
    path: PathBuf,
    /// Keys plus values of the stored entries.
    bytes: AtomicU64,
    /// Number of stored entries.
    keys: AtomicU64,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens (creating when missing) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let error = |reason: String| StoreError {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| error(format!("cannot create its directory: {e}")))?;
        }
        let db = Database::builder()
            .set_cache_size(128 << 20)
            .create(path)
            .map_err(|e| error(e.to_string()))?;
        Self::with_db(db, path.to_path_buf())
    }

    /// A store kept in memory only (`weir replay`, tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError {
                path: "(memory)".into(),
                reason: e.to_string(),
            })?;
        Self::with_db(db, PathBuf::from("(memory)"))
    }

    fn with_db(db: Database, path: PathBuf) -> Result<Self, StoreError> {
        let store = Self {
            db,
            path,
            bytes: AtomicU64::new(0),
            keys: AtomicU64::new(0),
        };
        let (bytes, keys) = store.read_meta().map_err(|e| store.error(e.to_string()))?;
        store.bytes.store(bytes, Ordering::Relaxed);
        store.keys.store(keys, Ordering::Relaxed);
        Ok(store)
    }

    fn read_meta(&self) -> Result<(u64, u64), redb::Error> {
        let tx = self.db.begin_write()?;
        let counters = {
            // Create every table so that readers never meet a missing one.
            tx.open_table(ENTRIES)?;
            tx.open_table(EXPIRY)?;
            let meta = tx.open_table(META)?;
            let get = |k| meta.get(k).map(|v| v.map_or(0, |g| g.value()));
            (get(BYTES)?, get(KEYS)?)
        };
        tx.commit()?;
        Ok(counters)
    }

    fn error(&self, reason: String) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            reason,
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keys plus values of the stored entries, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of stored entries (expired ones included until removed).
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// The changelog offset from which restoring brings this store up to
    /// date, if it was ever flushed.
    pub fn checkpoint(&self) -> Result<Option<i64>, StoreError> {
        let read = || -> Result<Option<i64>, redb::Error> {
            let tx = self.db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok(meta.get(CHECKPOINT)?.map(|g| g.value() as i64))
        };
        read().map_err(|e| self.error(e.to_string()))
    }

    /// A read-only view of the store as it is now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let take = || -> Result<_, redb::Error> { Ok(self.db.begin_read()?.open_table(ENTRIES)?) };
        Ok(Snapshot {
            entries: take().map_err(|e| self.error(e.to_string()))?,
            path: self.path.clone(),
        })
    }

    /// The entry under `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.snapshot()?.get(key)
    }

    /// Up to `limit` entries whose key starts with `prefix`, after `after`,
    /// in key order, expired ones included.
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Stored)>, StoreError> {
        self.snapshot()?.scan(prefix, after, limit)
    }

    /// Keys whose entries expired at `now_ms`, oldest first, at most `max`.
    pub fn expired(&self, now_ms: u64, max: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let read = || -> Result<Vec<Vec<u8>>, redb::Error> {
            let tx = self.db.begin_read()?;
            let expiry = tx.open_table(EXPIRY)?;
            let mut keys = Vec::new();
            for item in expiry.iter()? {
                let (k, ()) = item.map(|(k, v)| (k, v.value()))?;
                let k = k.value();
                let at = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
                if at > now_ms || keys.len() >= max {
                    break;
                }
                keys.push(k[8..].to_vec());
            }
            Ok(keys)
        };
        read().map_err(|e| self.error(e.to_string()))
    }

    /// Applies `writes` in order, in one transaction that is not synced;
    /// with `checkpoint`, commits durably and records it.
    pub fn apply<'a>(
        &self,
        writes: impl IntoIterator<Item = (&'a [u8], &'a Write)>,
        checkpoint: Option<i64>,
    ) -> Result<(), StoreError> {
        self.transact(writes, checkpoint)
            .map_err(|e| self.error(e.to_string()))
    }

    /// Commits durably, recording `checkpoint` (when given).
    pub fn flush(&self, checkpoint: Option<i64>) -> Result<(), StoreError> {
        self.apply(std::iter::empty(), checkpoint.or(Some(-1)))
    }

    /// Removes every entry and the checkpoint (the changelog no longer
    /// matches the local copy).
    pub fn wipe(&self) -> Result<(), StoreError> {
        let wipe = || -> Result<(), redb::Error> {
            let tx = self.db.begin_write()?;
            tx.delete_table(ENTRIES)?;
            tx.delete_table(EXPIRY)?;
            tx.delete_table(META)?;
            tx.open_table(ENTRIES)?;
            tx.open_table(EXPIRY)?;
            tx.open_table(META)?;
            tx.commit()?;
            Ok(())
        };
        wipe().map_err(|e| self.error(e.to_string()))?;
        self.bytes.store(0, Ordering::Relaxed);
        self.keys.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn transact<'a>(
        &self,
        writes: impl IntoIterator<Item = (&'a [u8], &'a Write)>,
        checkpoint: Option<i64>,
    ) -> Result<(), redb::Error> {
        let mut tx = self.db.begin_write()?;
        if checkpoint.is_none() {
            tx.set_durability(Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        }
        let (mut bytes, mut keys) = (self.bytes() as i64, self.keys() as i64);
        {
            let mut entries = tx.open_table(ENTRIES)?;
            let mut expiry = tx.open_table(EXPIRY)?;
            let mut meta = tx.open_table(META)?;
            for (key, write) in writes {
                let old = match write {
                    Write::Put { value, expires_ms } => {
                        let encoded = encode(value, *expires_ms);
                        let old = entries
                            .insert(key, encoded.as_slice())?
                            .map(|g| decode(g.value()));
                        if let Some(at) = expires_ms {
                            expiry.insert(expiry_key(*at, key).as_slice(), ())?;
                        }
                        bytes += (key.len() + value.len()) as i64;
                        keys += 1;
                        old
                    }
                    Write::Delete => entries.remove(key)?.map(|g| decode(g.value())),
                };
                if let Some(old) = old {
                    bytes -= (key.len() + old.value.len()) as i64;
                    keys -= 1;
                    if let Some(at) = old.expires_ms
                        && !matches!(write, Write::Put { expires_ms: Some(new), .. } if *new == at)
                    {
                        expiry.remove(expiry_key(at, key).as_slice())?;
                    }
                }
            }
            meta.insert(BYTES, bytes.max(0) as u64)?;
            meta.insert(KEYS, keys.max(0) as u64)?;
            if let Some(offset) = checkpoint.filter(|&c| c >= 0) {
                meta.insert(CHECKPOINT, offset as u64)?;
            }
        }
        tx.commit()?;
        self.bytes.store(bytes.max(0) as u64, Ordering::Relaxed);
        self.keys.store(keys.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn encode(value: &[u8], expires_ms: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(raw: &[u8]) -> Stored {
    let (at, value) = raw.split_at(8.min(raw.len()));
    let at = u64::from_be_bytes(at.try_into().unwrap_or_default());
    Stored {
        value: value.to_vec(),
        expires_ms: (at != 0).then_some(at),
    }
}

fn expiry_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str, expires_ms: Option<u64>) -> Write {
        Write::Put {
            value: v.as_bytes().to_vec(),
            expires_ms,
        }
    }

    #[test]
    fn writes_counts_expiry_and_checkpoint_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p0.redb");
        {
            let store = LocalStore::open(&path).unwrap();
            assert_eq!(store.checkpoint().unwrap(), None);
            let (a, b, c) = (put("1", None), put("22", Some(50)), put("333", None));
            store
                .apply([(&b"a"[..], &a), (&b"b"[..], &b), (&b"c"[..], &c)], None)
                .unwrap();
            assert_eq!(store.bytes(), 2 + 3 + 4);
            assert_eq!(store.keys(), 3);
            let replaced = put("9", None);
            store
                .apply(
                    [(&b"c"[..], &replaced), (&b"a"[..], &Write::Delete)],
                    Some(7),
                )
                .unwrap();
            assert_eq!(store.bytes(), 3 + 2);
            assert_eq!(store.expired(49, 10).unwrap(), Vec::<Vec<u8>>::new());
            assert_eq!(store.expired(50, 10).unwrap(), vec![b"b".to_vec()]);
        }
        let store = LocalStore::open(&path).unwrap();
        assert_eq!(store.checkpoint().unwrap(), Some(7));
        assert_eq!((store.bytes(), store.keys()), (5, 2));
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(
            store.get(b"b").unwrap(),
            Some(Stored {
                value: b"22".to_vec(),
                expires_ms: Some(50)
            })
        );
        // Overwriting without a TTL drops the key from the expiry index.
        let plain = put("x", None);
        store.apply([(&b"b"[..], &plain)], None).unwrap();
        assert!(store.expired(u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn scan_pages_through_a_prefix_in_key_order() {
        let store = LocalStore::in_memory().unwrap();
        let v = put("v", None);
        let keys = [&b"a/1"[..], b"a/2", b"a/3", b"b/1", b"a"];
        store.apply(keys.iter().map(|k| (*k, &v)), None).unwrap();
        let names = |found: Vec<(Vec<u8>, Stored)>| {
            found
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(store.scan(b"a/", None, 2).unwrap()), ["a/1", "a/2"]);
        assert_eq!(names(store.scan(b"a/", Some(b"a/2"), 2).unwrap()), ["a/3"]);
        assert_eq!(names(store.scan(b"", Some(b"a/3"), 9).unwrap()), ["b/1"]);
        store.wipe().unwrap();
        assert!(store.scan(b"", None, 9).unwrap().is_empty());
        assert_eq!(store.bytes(), 0);
    }
}
