//! A stateful module's stores: one per input partition number, opened and
//! restored when the first worker of that number starts, closed when the
//! last one ends.
//!
//! Restoring reads the changelog partition from the local checkpoint (the
//! start when there is no local copy) to its end, committed records only,
//! and applies them in order. A checkpoint the changelog no longer has
//! (the topic was recreated) throws the local copy away and restores from
//! the start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::changelog::write_of;
use super::{Changelog, LocalStore, PartitionStore, RestoreError, StoreError, Write};
use crate::metrics::StateMetrics;
use crate::status::{StatusBoard, StoreStatus};
use crate::sync::lock;

/// Changelog records applied to the local copy per transaction while
/// restoring.
const RESTORE_BATCH: usize = 4_096;

/// A partition's store once open; its lock is held while it is opened.
type Slot = Arc<Mutex<Option<Arc<PartitionStore>>>>;

/// A stateful module's stores.
pub struct Stores {
    module: Arc<str>,
    /// `<state-dir>/<module>`.
    dir: PathBuf,
    /// The changelog topic.
    topic: Arc<str>,
    changelog: Arc<dyn Changelog>,
    metrics: StateMetrics,
    status: Arc<StatusBoard>,
    /// Open stores, and the lock taken while one is being opened.
    open: Mutex<HashMap<i32, Slot>>,
    /// The input partition count, once the topics are checked.
    partitions: OnceLock<i32>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("module", &self.module)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The local file cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The changelog cannot be read (retried by the caller).
    #[error("cannot restore from changelog `{topic}` partition {partition}: {reason}")]
    Restore {
        /// The changelog topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Why.
        reason: String,
    },
}

impl Stores {
    /// The stores of `module` under `<state_dir>/<module>`, restored from
    /// changelog `topic`.
    pub fn new(
        module: Arc<str>,
        state_dir: &std::path::Path,
        topic: &str,
        changelog: Arc<dyn Changelog>,
        metrics: StateMetrics,
        status: Arc<StatusBoard>,
    ) -> Self {
        Self {
            dir: state_dir.join(&*module).join(topic),
            module,
            topic: topic.into(),
            changelog,
            metrics,
            status,
            open: Mutex::new(HashMap::new()),
            partitions: OnceLock::new(),
        }
    }

    /// Records the input partition count (the topics were checked).
    pub fn set_partitions(&self, partitions: i32) {
        let _ = self.partitions.set(partitions);
    }

    /// The input partition count, once known.
    pub fn partitions(&self) -> Option<i32> {
        self.partitions.get().copied()
    }

    /// Partition `partition`'s store, if this process holds it open (and
    /// it is not being restored).
    pub fn held(&self, partition: i32) -> Option<Arc<PartitionStore>> {
        let slot = lock(&self.open).get(&partition).cloned()?;
        // A store being restored holds its slot's lock: not ready.
        let slot = slot.try_lock().ok()?;
        slot.clone()
    }

    /// The changelog topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// The store of partition number `partition` for `writer` (an input
    /// topic), opened and restored first if no other writer holds it.
    /// Blocking: a restore reads the changelog.
    pub fn open(&self, writer: &str, partition: i32) -> Result<Arc<PartitionStore>, OpenError> {
        let slot = lock(&self.open).entry(partition).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(store) = &*slot
            && store.has_writer(writer)
        {
            // Left behind by a worker of this writer that was aborted (a
            // drain that ran out of time) before releasing it: another
            // process may have written since, so restore again unless other
            // writers keep it up to date.
            tracing::warn!(
                module = &*self.module,
                partition,
                writer,
                "the state store was not released by the partition's previous worker"
            );
            store.unregister(writer);
            if store.unused() {
                *slot = None;
            }
        }
        if let Some(store) = &*slot {
            store.join(writer);
            return Ok(store.clone());
        }
        let store = Arc::new(self.restore(partition)?);
        store.register(writer, store.restored_to());
        *slot = Some(store.clone());
        Ok(store)
    }

    /// `writer` is done with partition `partition`'s store (its worker
    /// ended, everything it wrote settled): the store is checkpointed, and
    /// closed when no writer is left.
    pub fn release(&self, writer: &str, partition: i32) {
        let Some(slot) = lock(&self.open).get(&partition).cloned() else {
            return;
        };
        let mut slot = lock(&slot);
        let Some(store) = slot.clone() else {
            return;
        };
        if let Err(err) = store.flush() {
            tracing::error!(module = &*self.module, partition, error = %err,
                "cannot checkpoint the state store; the next owner restores more of the changelog");
        }
        self.report(&store);
        store.unregister(writer);
        if store.unused() {
            *slot = None;
            lock(&self.open).remove(&partition);
            self.metrics.closed(partition);
            self.status.store(&self.module, partition, None);
            tracing::info!(
                module = &*self.module,
                partition,
                keys = store.local().keys(),
                bytes = store.local().bytes(),
                "state store closed"
            );
        }
    }

    /// Publishes a store's size in metrics and status.
    pub fn report(&self, store: &PartitionStore) {
        let local = store.local();
        self.metrics
            .size(store.partition(), local.keys(), local.bytes());
        self.status.store(
            &self.module,
            store.partition(),
            Some(StoreStatus {
                restoring: false,
                restored_records: store.restored_records(),
                restored_from: store.restored_from(),
                keys: local.keys(),
                bytes: local.bytes(),
            }),
        );
    }

    fn restore(&self, partition: i32) -> Result<PartitionStore, OpenError> {
        let path = self.dir.join(format!("{partition}.redb"));
        let local = LocalStore::open(&path)?;
        let from = local.checkpoint()?;
        let module = &*self.module;
        tracing::info!(module, partition, changelog = &*self.topic, from = ?from,
            local_keys = local.keys(), "restoring state");
        let started = Instant::now();
        self.metrics.restore_started();
        let outcome = match self.replay(&local, partition, from) {
            Err(Replay::Changelog(RestoreError::OutOfRange { offset })) => {
                tracing::warn!(
                    module,
                    partition,
                    offset,
                    "the changelog no longer has the local checkpoint; rebuilding the store from its start"
                );
                local.wipe()?;
                self.replay(&local, partition, None)
            }
            other => other,
        };
        self.metrics
            .restore_ended(outcome.is_ok(), started.elapsed());
        let (next, records) = outcome.map_err(|err| match err {
            Replay::Store(err) => OpenError::Store(err),
            Replay::Changelog(err) => OpenError::Restore {
                topic: self.topic.to_string(),
                partition,
                reason: err.to_string(),
            },
        })?;
        local.flush(Some(next))?;
        let elapsed = started.elapsed();
        tracing::info!(
            module,
            partition,
            records,
            next,
            keys = local.keys(),
            bytes = local.bytes(),
            elapsed_ms = elapsed.as_millis() as u64,
            rate = (records as f64 / elapsed.as_secs_f64().max(1e-6)) as u64,
            "state restored"
        );
        let store = PartitionStore::restored(partition, local, next, from, records);
        self.report(&store);
        Ok(store)
    }

    /// Applies changelog records from `from` to the end; returns the next
    /// offset and how many records were read.
    fn replay(
        &self,
        local: &LocalStore,
        partition: i32,
        from: Option<i64>,
    ) -> Result<(i64, u64), Replay> {
        let mut batch: Vec<(Vec<u8>, Write)> = Vec::with_capacity(RESTORE_BATCH);
        let mut records = 0u64;
        let mut failed: Option<StoreError> = None;
        let status = |records: u64| {
            self.status.store(
                &self.module,
                partition,
                Some(StoreStatus {
                    restoring: true,
                    restored_records: records,
                    restored_from: from,
                    keys: local.keys(),
                    bytes: local.bytes(),
                }),
            );
        };
        status(0);
        let mut apply = |key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]| {
            records += 1;
            if let Some((key, write)) = write_of(key, value, headers.iter().copied()) {
                batch.push((key.to_vec(), write));
            }
            if batch.len() >= RESTORE_BATCH {
                let writes = std::mem::take(&mut batch);
                self.metrics.restored_records(writes.len() as u64);
                if let Err(err) = local.apply(writes.iter().map(|(k, w)| (k.as_slice(), w)), None) {
                    failed = Some(err);
                    anyhow::bail!("cannot write the local store");
                }
            }
            Ok(())
        };
        let mut progress = |n: u64| status(n);
        let result =
            self.changelog
                .restore(&self.topic, partition, from, &mut apply, &mut progress);
        if let Some(err) = failed {
            return Err(Replay::Store(err));
        }
        let next = result.map_err(Replay::Changelog)?;
        self.metrics.restored_records(batch.len() as u64);
        local
            .apply(batch.iter().map(|(k, w)| (k.as_slice(), w)), None)
            .map_err(Replay::Store)?;
        Ok((next, records))
    }
}

/// Why replaying the changelog stopped.
enum Replay {
    Store(StoreError),
    Changelog(RestoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::state::changelog::{Apply, record};

    /// A changelog partition in memory: records by offset.
    #[derive(Default)]
    struct Log(Mutex<Vec<crate::bindings::weir::consumer::types::Outgoing>>);

    impl Log {
        fn put(&self, key: &str, value: &str) {
            let write = Write::Put {
                value: value.as_bytes().to_vec(),
                expires_ms: None,
            };
            lock(&self.0).push(record("log", 0, key.as_bytes().to_vec(), write));
        }
    }

    impl Changelog for Log {
        fn restore(
            &self,
            _topic: &str,
            _partition: i32,
            from: Option<i64>,
            apply: &mut Apply<'_>,
            _progress: &mut dyn FnMut(u64),
        ) -> Result<i64, RestoreError> {
            let log = lock(&self.0);
            let from = from.unwrap_or(0);
            if from > log.len() as i64 {
                return Err(RestoreError::OutOfRange { offset: from });
            }
            for r in &log[from as usize..] {
                apply(r.key.as_deref(), r.value.as_deref(), &[])
                    .map_err(|e| RestoreError::Failed(e.to_string()))?;
            }
            Ok(log.len() as i64)
        }
    }

    fn stores(dir: &std::path::Path, log: Arc<Log>) -> Stores {
        let metrics = Metrics::new();
        Stores::new(
            "m".into(),
            dir,
            "log",
            log,
            metrics.state("m"),
            Arc::new(StatusBoard::default()),
        )
    }

    fn value(store: &PartitionStore, key: &str) -> Option<String> {
        let stored = store.local().get(key.as_bytes()).unwrap()?;
        Some(String::from_utf8(stored.value).unwrap())
    }

    #[test]
    fn a_reopened_store_reads_only_the_tail_and_a_lost_one_everything() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::default());
        log.put("a", "1");
        log.put("b", "1");
        let stores = stores(dir.path(), log.clone());
        let store = stores.open("in", 0).unwrap();
        assert_eq!(store.restored_records(), 2);
        assert_eq!(stores.held(0).map(|s| s.partition()), Some(0));
        drop(store);
        stores.release("in", 0);
        assert!(stores.held(0).is_none(), "closed when its last writer left");
        // Another process wrote while the partition was away.
        log.put("a", "2");
        let store = stores.open("in", 0).unwrap();
        assert_eq!(
            (store.restored_from(), store.restored_records()),
            (Some(2), 1)
        );
        assert_eq!(value(&store, "a").as_deref(), Some("2"));
        drop(store);
        stores.release("in", 0);
        // The local copy is lost: everything again.
        std::fs::remove_dir_all(dir.path().join("m")).unwrap();
        let store = stores.open("in", 0).unwrap();
        assert_eq!((store.restored_from(), store.restored_records()), (None, 3));
        assert_eq!(value(&store, "b").as_deref(), Some("1"));
    }

    #[test]
    fn a_checkpoint_past_the_changelog_rebuilds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::default());
        for i in 0..5 {
            log.put(&format!("k{i}"), "old");
        }
        let stores = stores(dir.path(), log.clone());
        drop(stores.open("in", 0).unwrap());
        stores.release("in", 0);
        // The topic was deleted and recreated with less in it.
        *lock(&log.0) = Vec::new();
        log.put("k0", "new");
        let store = stores.open("in", 0).unwrap();
        assert_eq!(store.local().keys(), 1, "the old entries are gone");
        assert_eq!(value(&store, "k0").as_deref(), Some("new"));
    }

    #[test]
    fn a_store_left_behind_by_an_aborted_worker_is_restored_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::default());
        let stores = stores(dir.path(), log.clone());
        drop(stores.open("in", 0).unwrap());
        // No release (the worker was aborted); the partition moved away
        // and back meanwhile.
        log.put("a", "elsewhere");
        let store = stores.open("in", 0).unwrap();
        assert_eq!(value(&store, "a").as_deref(), Some("elsewhere"));
    }
}
