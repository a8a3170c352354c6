//! One adapter per engine. Every commit carries the data rows and a checkpoint row (the
//! changelog offset the data corresponds to) in one atomic write: a separate table (redb), a
//! separate keyspace (fjall) or a separate column family (rocksdb), in the same transaction or
//! batch.

use std::path::Path;

use crate::{KEY_LEN, Rng, VALUE_LEN, make_value, value_version};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Name of the store directory inside the per-run temp dir.
pub const DATA_DIR: &str = "store";
/// The checkpoint row's key, in its own table/keyspace/column family.
const CHECKPOINT_KEY: &str = "changelog_offset";
/// Reads are grouped under one read transaction/snapshot per this many operations (redb only;
/// fjall and rocksdb read the latest committed state without one).
const READS_PER_TXN: usize = 256;

pub const ENGINES: &[&str] = &[
    #[cfg(feature = "fjall")]
    "fjall",
    #[cfg(feature = "redb")]
    "redb",
    #[cfg(feature = "rocksdb")]
    "rocksdb",
];

pub fn version(engine: &str) -> &'static str {
    // Pinned with `=` in Cargo.toml.
    match engine {
        "fjall" => "3.1.13",
        "redb" => "5.0.0",
        "rocksdb" => "0.25.0+RocksDB-11.8.1",
        _ => "?",
    }
}

pub trait Store {
    /// One atomic, non-fsynced commit of `items` plus the checkpoint row.
    fn write_batch(&mut self, items: &[([u8; KEY_LEN], [u8; VALUE_LEN])], checkpoint: u64) -> Result<()>;
    /// For each key: read it, write it back with its version + 1. Then the checkpoint row. One
    /// atomic, non-fsynced commit. Returns how many keys were missing.
    fn get_set_round(&mut self, keys: &[[u8; KEY_LEN]], checkpoint: u64, rng: &mut Rng) -> Result<u64>;
    /// Blind writes of `keys` at `version`, plus the checkpoint row, one non-fsynced commit.
    fn set_round(&mut self, keys: &[[u8; KEY_LEN]], version: u64, checkpoint: u64, rng: &mut Rng) -> Result<()>;
    /// Make everything committed so far durable (fsync).
    fn sync(&mut self) -> Result<()>;
    /// Point gets; returns how many were found.
    fn get_many(&self, keys: &[[u8; KEY_LEN]]) -> Result<u64>;
    /// Prefix scans; returns the total number of entries seen.
    fn scan_many(&self, prefixes: &[[u8; KEY_LEN - 1]]) -> Result<u64>;
    /// Write the in-memory write buffers (memtables) out to table files, so that the next open
    /// has no journal/WAL to replay. A no-op for redb, which has no write-ahead log.
    fn flush_memtables(&mut self) -> Result<()>;
    fn checkpoint(&self) -> Result<Option<u64>>;
    fn version_of(&self, key: &[u8]) -> Result<Option<u64>>;
}

pub fn open(engine: &str, dir: &Path, cache_bytes: Option<u64>) -> Result<Box<dyn Store>> {
    match engine {
        #[cfg(feature = "fjall")]
        "fjall" => Ok(Box::new(fjall_store::FjallStore::open(dir, cache_bytes)?)),
        #[cfg(feature = "redb")]
        "redb" => Ok(Box::new(redb_store::RedbStore::open(dir, cache_bytes)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(rocksdb_store::RocksStore::open(dir, cache_bytes)?)),
        other => Err(format!("engine {other:?} not compiled in (features: fjall, redb, rocksdb)").into()),
    }
}

/// Exclusive upper bound of a prefix range: the prefix with its last byte incremented (the
/// prefixes used here are ASCII digits, so the last byte never overflows).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("empty prefix") += 1;
    end
}

#[cfg(feature = "fjall")]
mod fjall_store {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct FjallStore {
        db: Database,
        data: Keyspace,
        meta: Keyspace,
    }

    impl FjallStore {
        pub fn open(dir: &Path, cache_bytes: Option<u64>) -> Result<Self> {
            let mut b = Database::builder(dir);
            if let Some(c) = cache_bytes {
                b = b.cache_size(c);
            }
            // Default: each batch commit writes its journal entry to the OS (PersistMode::Buffer),
            // no fsync; `Database::persist(PersistMode::SyncAll)` makes it durable.
            let db = b.open()?;
            let data = db.keyspace("data", KeyspaceCreateOptions::default)?;
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
            Ok(FjallStore { db, data, meta })
        }
    }

    impl Store for FjallStore {
        fn write_batch(&mut self, items: &[([u8; KEY_LEN], [u8; VALUE_LEN])], checkpoint: u64) -> Result<()> {
            let mut batch = self.db.batch();
            for (k, v) in items {
                batch.insert(&self.data, &k[..], &v[..]);
            }
            batch.insert(&self.meta, CHECKPOINT_KEY, &checkpoint.to_be_bytes()[..]);
            batch.commit()?;
            Ok(())
        }

        fn get_set_round(&mut self, keys: &[[u8; KEY_LEN]], checkpoint: u64, rng: &mut Rng) -> Result<u64> {
            let mut missing = 0;
            let mut batch = self.db.batch();
            for k in keys {
                // Note: a plain WriteBatch is not readable; a key written twice in one round
                // would read the committed value (the optimistic/single-writer Tx databases
                // give read-your-writes).
                match self.data.get(k)? {
                    Some(v) => {
                        let nv = make_value(value_version(&v) + 1, rng);
                        batch.insert(&self.data, &k[..], &nv[..]);
                    }
                    None => missing += 1,
                }
            }
            batch.insert(&self.meta, CHECKPOINT_KEY, &checkpoint.to_be_bytes()[..]);
            batch.commit()?;
            Ok(missing)
        }

        fn set_round(&mut self, keys: &[[u8; KEY_LEN]], version: u64, checkpoint: u64, rng: &mut Rng) -> Result<()> {
            let mut batch = self.db.batch();
            for k in keys {
                batch.insert(&self.data, &k[..], &make_value(version, rng)[..]);
            }
            batch.insert(&self.meta, CHECKPOINT_KEY, &checkpoint.to_be_bytes()[..]);
            batch.commit()?;
            Ok(())
        }

        fn sync(&mut self) -> Result<()> {
            self.db.persist(PersistMode::SyncAll)?;
            Ok(())
        }

        fn get_many(&self, keys: &[[u8; KEY_LEN]]) -> Result<u64> {
            let mut found = 0;
            for k in keys {
                if let Some(v) = self.data.get(k)? {
                    std::hint::black_box(&v[..]);
                    found += 1;
                }
            }
            Ok(found)
        }

        fn scan_many(&self, prefixes: &[[u8; KEY_LEN - 1]]) -> Result<u64> {
            let mut n = 0;
            for p in prefixes {
                for guard in self.data.prefix(p) {
                    let (k, v) = guard.into_inner()?;
                    std::hint::black_box((&k[..], &v[..]));
                    n += 1;
                }
            }
            Ok(n)
        }

        fn flush_memtables(&mut self) -> Result<()> {
            // #[doc(hidden)] in fjall 3.1 ("used in tests"): there is no public flush call.
            self.data.rotate_memtable_and_wait()?;
            self.meta.rotate_memtable_and_wait()?;
            Ok(())
        }

        fn checkpoint(&self) -> Result<Option<u64>> {
            Ok(self.meta.get(CHECKPOINT_KEY)?.map(|v| value_version(&v)))
        }

        fn version_of(&self, key: &[u8]) -> Result<Option<u64>> {
            Ok(self.data.get(key)?.map(|v| value_version(&v)))
        }
    }
}

#[cfg(feature = "redb")]
mod redb_store {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

    const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

    pub struct RedbStore {
        db: Database,
    }

    impl RedbStore {
        pub fn open(dir: &Path, cache_bytes: Option<u64>) -> Result<Self> {
            std::fs::create_dir_all(dir)?;
            let mut b = Database::builder();
            if let Some(c) = cache_bytes {
                b.set_cache_size(c as usize);
            }
            // `create` opens the file if it is already a redb database.
            let db = b.create(dir.join("state.redb"))?;
            Ok(RedbStore { db })
        }

        fn non_durable_txn(&self) -> Result<redb::WriteTransaction> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::None)?;
            Ok(txn)
        }
    }

    impl Store for RedbStore {
        fn write_batch(&mut self, items: &[([u8; KEY_LEN], [u8; VALUE_LEN])], checkpoint: u64) -> Result<()> {
            let txn = self.non_durable_txn()?;
            {
                let mut data = txn.open_table(DATA)?;
                for (k, v) in items {
                    data.insert(&k[..], &v[..])?;
                }
                let mut meta = txn.open_table(META)?;
                meta.insert(CHECKPOINT_KEY, checkpoint)?;
            }
            txn.commit()?;
            Ok(())
        }

        fn get_set_round(&mut self, keys: &[[u8; KEY_LEN]], checkpoint: u64, rng: &mut Rng) -> Result<u64> {
            let mut missing = 0;
            let txn = self.non_durable_txn()?;
            {
                let mut data = txn.open_table(DATA)?;
                for k in keys {
                    // Reads inside the write transaction see its own earlier writes.
                    let old = data.get(&k[..])?.map(|g| value_version(g.value()));
                    match old {
                        Some(ver) => {
                            let nv = make_value(ver + 1, rng);
                            data.insert(&k[..], &nv[..])?;
                        }
                        None => missing += 1,
                    }
                }
                let mut meta = txn.open_table(META)?;
                meta.insert(CHECKPOINT_KEY, checkpoint)?;
            }
            txn.commit()?;
            Ok(missing)
        }

        fn set_round(&mut self, keys: &[[u8; KEY_LEN]], version: u64, checkpoint: u64, rng: &mut Rng) -> Result<()> {
            let txn = self.non_durable_txn()?;
            {
                let mut data = txn.open_table(DATA)?;
                for k in keys {
                    data.insert(&k[..], &make_value(version, rng)[..])?;
                }
                let mut meta = txn.open_table(META)?;
                meta.insert(CHECKPOINT_KEY, checkpoint)?;
            }
            txn.commit()?;
            Ok(())
        }

        fn sync(&mut self) -> Result<()> {
            // An empty transaction with the default Durability::Immediate makes the preceding
            // Durability::None commits durable.
            let txn = self.db.begin_write()?;
            txn.commit()?;
            Ok(())
        }

        fn get_many(&self, keys: &[[u8; KEY_LEN]]) -> Result<u64> {
            let mut found = 0;
            for chunk in keys.chunks(READS_PER_TXN) {
                let txn = self.db.begin_read()?;
                let data = txn.open_table(DATA)?;
                for k in chunk {
                    if let Some(g) = data.get(&k[..])? {
                        std::hint::black_box(g.value());
                        found += 1;
                    }
                }
            }
            Ok(found)
        }

        fn scan_many(&self, prefixes: &[[u8; KEY_LEN - 1]]) -> Result<u64> {
            let mut n = 0;
            for chunk in prefixes.chunks(READS_PER_TXN) {
                let txn = self.db.begin_read()?;
                let data = txn.open_table(DATA)?;
                for p in chunk {
                    let end = prefix_end(p);
                    for entry in data.range(&p[..]..&end[..])? {
                        let (k, v) = entry?;
                        std::hint::black_box((k.value(), v.value()));
                        n += 1;
                    }
                }
            }
            Ok(n)
        }

        fn flush_memtables(&mut self) -> Result<()> {
            Ok(())
        }

        fn checkpoint(&self) -> Result<Option<u64>> {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get(CHECKPOINT_KEY)?.map(|g| g.value()))
        }

        fn version_of(&self, key: &[u8]) -> Result<Option<u64>> {
            let txn = self.db.begin_read()?;
            let data = txn.open_table(DATA)?;
            Ok(data.get(key)?.map(|g| value_version(g.value())))
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocksdb_store {
    use super::*;
    use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, ReadOptions, WriteBatch, WriteOptions};

    pub struct RocksStore {
        db: DB,
        write_opts: WriteOptions,
    }

    impl RocksStore {
        pub fn open(dir: &Path, cache_bytes: Option<u64>) -> Result<Self> {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            if let Some(c) = cache_bytes {
                let mut bbo = BlockBasedOptions::default();
                bbo.set_block_cache(&Cache::new_lru_cache(c as usize));
                opts.set_block_based_table_factory(&bbo);
            }
            let cfs = vec![
                ColumnFamilyDescriptor::new("default", opts.clone()),
                ColumnFamilyDescriptor::new("meta", Options::default()),
            ];
            let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
            // WAL on, sync=false (the default): each write reaches the OS, no fsync.
            let mut write_opts = WriteOptions::default();
            write_opts.set_sync(false);
            Ok(RocksStore { db, write_opts })
        }

        fn put_checkpoint(&self, batch: &mut WriteBatch, checkpoint: u64) {
            let meta = self.db.cf_handle("meta").expect("meta column family");
            batch.put_cf(&meta, CHECKPOINT_KEY, checkpoint.to_be_bytes());
        }
    }

    impl Store for RocksStore {
        fn write_batch(&mut self, items: &[([u8; KEY_LEN], [u8; VALUE_LEN])], checkpoint: u64) -> Result<()> {
            let mut batch = WriteBatch::default();
            for (k, v) in items {
                batch.put(k, v);
            }
            self.put_checkpoint(&mut batch, checkpoint);
            self.db.write_opt(batch, &self.write_opts)?;
            Ok(())
        }

        fn get_set_round(&mut self, keys: &[[u8; KEY_LEN]], checkpoint: u64, rng: &mut Rng) -> Result<u64> {
            let mut missing = 0;
            let mut batch = WriteBatch::default();
            for k in keys {
                // As with fjall: a plain WriteBatch is not readable (WriteBatchWithIndex or a
                // TransactionDB would give read-your-writes).
                match self.db.get_pinned(k)? {
                    Some(v) => {
                        let nv = make_value(value_version(&v) + 1, rng);
                        batch.put(k, nv);
                    }
                    None => missing += 1,
                }
            }
            self.put_checkpoint(&mut batch, checkpoint);
            self.db.write_opt(batch, &self.write_opts)?;
            Ok(missing)
        }

        fn set_round(&mut self, keys: &[[u8; KEY_LEN]], version: u64, checkpoint: u64, rng: &mut Rng) -> Result<()> {
            let mut batch = WriteBatch::default();
            for k in keys {
                batch.put(k, make_value(version, rng));
            }
            self.put_checkpoint(&mut batch, checkpoint);
            self.db.write_opt(batch, &self.write_opts)?;
            Ok(())
        }

        fn sync(&mut self) -> Result<()> {
            self.db.flush_wal(true)?;
            Ok(())
        }

        fn get_many(&self, keys: &[[u8; KEY_LEN]]) -> Result<u64> {
            let mut found = 0;
            for k in keys {
                if let Some(v) = self.db.get_pinned(k)? {
                    std::hint::black_box(&v[..]);
                    found += 1;
                }
            }
            Ok(found)
        }

        fn scan_many(&self, prefixes: &[[u8; KEY_LEN - 1]]) -> Result<u64> {
            let mut n = 0;
            for p in prefixes {
                let mut ro = ReadOptions::default();
                ro.set_iterate_upper_bound(prefix_end(p));
                let mut it = self.db.raw_iterator_opt(ro);
                it.seek(p);
                while it.valid() {
                    std::hint::black_box((it.key(), it.value()));
                    n += 1;
                    it.next();
                }
                it.status()?;
            }
            Ok(n)
        }

        fn flush_memtables(&mut self) -> Result<()> {
            self.db.flush()?;
            let meta = self.db.cf_handle("meta").expect("meta column family");
            self.db.flush_cf(&meta)?;
            Ok(())
        }

        fn checkpoint(&self) -> Result<Option<u64>> {
            let meta = self.db.cf_handle("meta").expect("meta column family");
            Ok(self.db.get_pinned_cf(&meta, CHECKPOINT_KEY)?.map(|v| value_version(&v)))
        }

        fn version_of(&self, key: &[u8]) -> Result<Option<u64>> {
            Ok(self.db.get_pinned(key)?.map(|v| value_version(&v)))
        }
    }
}
