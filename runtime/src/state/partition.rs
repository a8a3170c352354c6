//! One partition's store as the pipeline shares it: the local copy, the
//! writes of exactly-once transactions that are not committed yet, and the
//! changelog offsets that say where a restore would have to start.
//!
//! Writes reach a store once their call is settled. At-least-once writes
//! are applied at once (later calls must see them), before the changelog
//! has acknowledged them; exactly-once writes wait in the writer's pending
//! layer and are applied when its transaction commits, or dropped when it
//! aborts. Each writer (input topic of the partition number) reports the
//! changelog offset after its last applied write; the store's checkpoint is
//! the least of them, so every changelog record before it is in the local
//! copy, and restoring from it replays at most what is already there.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::{LocalStore, Snapshot, Stored};
use super::{Entries, StoreError, Write};
use crate::sync::lock;

/// How often a store commits durably, with its checkpoint, while in use.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Writes by key, newest per key, and what they change in the store's size.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    /// The writes.
    pub writes: BTreeMap<Vec<u8>, Write>,
    /// Bytes they add to (or, negative, remove from) the layer below.
    pub delta: i64,
}

impl Layer {
    /// Records `write` to `key`, whose size in the layers below is `below`.
    pub fn put(&mut self, key: Vec<u8>, write: Write, below: u64) {
        let new = write.size(&key) as i64;
        let old = match self.writes.get(&key) {
            Some(w) => w.size(&key) as i64,
            None => below as i64,
        };
        self.delta += new - old;
        self.writes.insert(key, write);
    }
}

/// One partition's store.
#[derive(Debug)]
pub struct PartitionStore {
    partition: i32,
    local: LocalStore,
    inner: Mutex<Inner>,
    /// The restore that opened it: from where, to where, how many records.
    restore: (Option<i64>, i64, u64),
}

#[derive(Debug)]
struct Inner {
    /// Exactly-once writers' uncommitted writes.
    pending: HashMap<String, Layer>,
    /// Per writer, the changelog offset after its last applied write.
    writers: HashMap<String, i64>,
    flushed: Instant,
}

impl PartitionStore {
    /// The store of input partition `partition` over `local`.
    pub fn new(partition: i32, local: LocalStore) -> Self {
        Self::restored(partition, local, 0, None, 0)
    }

    /// The store of input partition `partition` over `local`, restored
    /// from changelog offset `from` (the start when `None`) to `next` by
    /// reading `records` records.
    pub fn restored(
        partition: i32,
        local: LocalStore,
        next: i64,
        from: Option<i64>,
        records: u64,
    ) -> Self {
        Self {
            partition,
            local,
            restore: (from, next, records),
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                writers: HashMap::new(),
                flushed: Instant::now(),
            }),
        }
    }

    /// The input partition number.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The changelog offset its restore reached.
    pub fn restored_to(&self) -> i64 {
        self.restore.1
    }

    /// The changelog offset its restore started from.
    pub fn restored_from(&self) -> Option<i64> {
        self.restore.0
    }

    /// Changelog records its restore read.
    pub fn restored_records(&self) -> u64 {
        self.restore.2
    }

    /// The local copy.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// The entry under `key` as `writer` sees it (its own uncommitted
    /// writes first), expired or not; `Ok(None)` when absent or deleted.
    pub fn read(&self, writer: &str, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        match self.pending(writer, key) {
            Some(write) => Ok(write),
            None => self.local.get(key),
        }
    }

    /// [`PartitionStore::read`] with the local copy as of `snapshot`.
    pub fn read_in(
        &self,
        snapshot: &Snapshot,
        writer: &str,
        key: &[u8],
    ) -> Result<Option<Stored>, StoreError> {
        match self.pending(writer, key) {
            Some(write) => Ok(write),
            None => snapshot.get(key),
        }
    }

    /// `writer`'s uncommitted write of `key`, if any (`Some(None)`: a
    /// delete).
    fn pending(&self, writer: &str, key: &[u8]) -> Option<Option<Stored>> {
        let inner = lock(&self.inner);
        let write = inner.pending.get(writer)?.writes.get(key)?;
        Some(stored(write))
    }

    /// Up to `limit` live entries at `now_ms` whose key starts with
    /// `prefix`, after `after`, as `writer` sees them with `layers` (lowest
    /// first) on top of `snapshot`.
    #[allow(clippy::too_many_arguments, reason = "one query, spelled out")]
    pub fn scan(
        &self,
        snapshot: &Snapshot,
        writer: &str,
        layers: &[&Layer],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Entries, StoreError> {
        let pending = lock(&self.inner).pending.get(writer).cloned();
        let all: Vec<&Layer> = pending.iter().chain(layers.iter().copied()).collect();
        let in_range = |layer: &Layer| layer_range(layer, prefix, after).count();
        let extra: usize = all.iter().map(|l| in_range(l)).sum();
        let fetched = snapshot.scan(prefix, after, limit + extra)?;
        // When the store had more than was fetched, keys past the last one
        // fetched are not known to be in order: cut there.
        let bound = (fetched.len() == limit + extra)
            .then(|| fetched.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = fetched
            .into_iter()
            .map(|(k, s)| {
                let live = s.expires_ms.is_none_or(|at| at > now_ms);
                (k, live.then_some(s.value))
            })
            .collect();
        for layer in all {
            for (k, w) in layer_range(layer, prefix, after) {
                merged.insert(k.clone(), w.live(now_ms).map(<[u8]>::to_vec));
            }
        }
        Ok(merged
            .into_iter()
            .filter(|(k, _)| bound.as_ref().is_none_or(|b| k <= b))
            .filter_map(|(k, v)| Some((k, v?)))
            .take(limit)
            .collect())
    }

    /// Bytes of the store as `writer` sees it.
    pub fn bytes(&self, writer: &str) -> u64 {
        let delta = lock(&self.inner).pending.get(writer).map_or(0, |l| l.delta);
        (self.local.bytes() as i64 + delta).max(0) as u64
    }

    /// Applies a settled call's `writes` of `writer`: at once, or (exactly
    /// once) into its pending layer until its transaction ends.
    pub fn apply(
        &self,
        writer: &str,
        writes: Vec<(Vec<u8>, Write)>,
        exactly_once: bool,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        if !exactly_once {
            return self
                .local
                .apply(writes.iter().map(|(k, w)| (k.as_slice(), w)), None);
        }
        let mut sizes = Vec::with_capacity(writes.len());
        for (key, _) in &writes {
            sizes.push(self.local.get(key)?.map_or(0, |s| size(key, &s)));
        }
        let mut inner = lock(&self.inner);
        let layer = inner.pending.entry(writer.to_owned()).or_default();
        for ((key, write), below) in writes.into_iter().zip(sizes) {
            layer.put(key, write, below);
        }
        Ok(())
    }

    /// `writer`'s transaction committed: its pending writes are applied,
    /// and everything it wrote before changelog offset `next` is in.
    /// Returns whether a checkpoint was written.
    pub fn committed(&self, writer: &str, next: Option<i64>) -> Result<bool, StoreError> {
        let layer = lock(&self.inner).pending.remove(writer);
        if let Some(layer) = layer {
            self.local
                .apply(layer.writes.iter().map(|(k, w)| (k.as_slice(), w)), None)?;
        }
        match next {
            Some(next) => self.acked(writer, next),
            None => Ok(false),
        }
    }

    /// `writer`'s transaction aborted: its pending writes are dropped.
    pub fn aborted(&self, writer: &str) {
        lock(&self.inner).pending.remove(writer);
    }

    /// Registers `writer`, whose writes before changelog offset `next` are
    /// all in the store (the end of the restore).
    pub fn register(&self, writer: &str, next: i64) {
        lock(&self.inner).writers.insert(writer.to_owned(), next);
    }

    /// Whether `writer` is registered.
    pub fn has_writer(&self, writer: &str) -> bool {
        lock(&self.inner).writers.contains_key(writer)
    }

    /// Registers `writer` on a store other writers already keep up to date:
    /// it starts at the least offset they reported.
    pub fn join(&self, writer: &str) {
        let mut inner = lock(&self.inner);
        let at = inner
            .writers
            .values()
            .copied()
            .min()
            .unwrap_or(self.restore.1);
        inner.writers.entry(writer.to_owned()).or_insert(at);
    }

    /// Forgets `writer` (its partition was revoked) and its pending writes.
    pub fn unregister(&self, writer: &str) {
        let mut inner = lock(&self.inner);
        inner.writers.remove(writer);
        inner.pending.remove(writer);
    }

    /// Everything `writer` wrote before changelog offset `next` is
    /// acknowledged and applied; commits durably now and then. Returns
    /// whether it did (a checkpoint was written).
    pub fn acked(&self, writer: &str, next: i64) -> Result<bool, StoreError> {
        let checkpoint = {
            let mut inner = lock(&self.inner);
            if let Some(at) = inner.writers.get_mut(writer) {
                *at = (*at).max(next);
            }
            if inner.flushed.elapsed() < FLUSH_INTERVAL {
                return Ok(false);
            }
            inner.flushed = Instant::now();
            inner.writers.values().copied().min()
        };
        self.local.flush(checkpoint)?;
        Ok(true)
    }

    /// Commits durably with the current checkpoint.
    pub fn flush(&self) -> Result<(), StoreError> {
        let checkpoint = {
            let mut inner = lock(&self.inner);
            inner.flushed = Instant::now();
            inner.writers.values().copied().min()
        };
        self.local.flush(checkpoint)
    }

    /// Whether no writer uses the store any more.
    pub fn unused(&self) -> bool {
        lock(&self.inner).writers.is_empty()
    }
}

fn size(key: &[u8], stored: &Stored) -> u64 {
    (key.len() + stored.value.len()) as u64
}

fn stored(write: &Write) -> Option<Stored> {
    match write {
        Write::Put { value, expires_ms } => Some(Stored {
            value: value.clone(),
            expires_ms: *expires_ms,
        }),
        Write::Delete => None,
    }
}

/// The writes of `layer` whose key starts with `prefix`, after `after`.
fn layer_range<'a>(
    layer: &'a Layer,
    prefix: &'a [u8],
    after: Option<&[u8]>,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Write)> {
    let start = match after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    };
    layer
        .writes
        .range((start, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> Write {
        Write::Put {
            value: v.as_bytes().to_vec(),
            expires_ms: None,
        }
    }

    fn value(store: &PartitionStore, writer: &str, key: &str) -> Option<String> {
        store
            .read(writer, key.as_bytes())
            .unwrap()
            .map(|s| String::from_utf8(s.value).unwrap())
    }

    #[test]
    fn exactly_once_writes_wait_for_the_commit_and_vanish_on_abort() {
        let store = PartitionStore::new(0, LocalStore::in_memory().unwrap());
        store.register("in", 0);
        store
            .apply("in", vec![(b"k".to_vec(), put("1"))], true)
            .unwrap();
        assert_eq!(value(&store, "in", "k").as_deref(), Some("1"));
        assert_eq!(value(&store, "other", "k"), None, "not committed yet");
        assert_eq!(store.bytes("in"), 2);
        store.aborted("in");
        assert_eq!(value(&store, "in", "k"), None);
        store
            .apply("in", vec![(b"k".to_vec(), put("2"))], true)
            .unwrap();
        store.committed("in", Some(5)).unwrap();
        assert_eq!(value(&store, "other", "k").as_deref(), Some("2"));
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(5));
    }

    #[test]
    fn the_checkpoint_is_the_least_writer_offset() {
        let store = PartitionStore::new(0, LocalStore::in_memory().unwrap());
        store.register("a", 10);
        store.register("b", 4);
        store.acked("a", 20).unwrap();
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(4));
        store.unregister("b");
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(20));
        assert!(!store.unused());
        store.unregister("a");
        assert!(store.unused());
    }

    #[test]
    fn scan_merges_layers_over_the_store() {
        let store = PartitionStore::new(0, LocalStore::in_memory().unwrap());
        let writes = ["p/1", "p/2", "p/3", "p/4"].map(|k| (k.as_bytes().to_vec(), put("s")));
        store.apply("w", writes.to_vec(), false).unwrap();
        let mut layer = Layer::default();
        layer.put(b"p/2".to_vec(), Write::Delete, 4);
        layer.put(b"p/25".to_vec(), put("l"), 0);
        let snapshot = store.local().snapshot().unwrap();
        let keys = |after: Option<&[u8]>, limit| {
            store
                .scan(&snapshot, "w", &[&layer], b"p/", after, limit, 0)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(None, 2), ["p/1", "p/25"]);
        assert_eq!(keys(Some(b"p/25"), 2), ["p/3", "p/4"]);
        assert_eq!(keys(None, 10), ["p/1", "p/25", "p/3", "p/4"]);
    }
}
