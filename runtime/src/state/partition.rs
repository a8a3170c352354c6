//! One partition's store as the pipeline shares it: the local copy, the
//! settled writes that are not in it yet, and the changelog offsets that
//! say where a restore would have to start.
//!
//! Writes reach a store once their call is settled, into the writer's
//! *pending* layer, which that writer's next calls read at once. They go to
//! the local copy only when they are in Kafka: at-least-once, when the
//! run's changelog records are acknowledged (which happens after its
//! outputs are); exactly-once, when the transaction commits (an abort drops
//! them). So the local copy, and every checkpoint written with it, only
//! ever holds writes the changelog has. Each writer (input topic of the
//! partition number) reports the changelog offset after its last applied
//! write; see [`Inner::checkpoint`] for how they make the checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
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

/// A writer's reads during one call: see [`PartitionStore::view`].
#[derive(Debug)]
pub struct View {
    snapshot: Snapshot,
    pending: Option<Arc<Layer>>,
}

impl View {
    /// The entry under `key`, expired or not; `Ok(None)` when absent or
    /// deleted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        match self.pending.as_ref().and_then(|l| l.writes.get(key)) {
            Some(write) => Ok(stored(write)),
            None => self.snapshot.get(key),
        }
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
    /// Per writer, settled writes not applied to the local copy yet (an
    /// at-least-once run whose records are not all acknowledged, an
    /// exactly-once transaction not committed). Only that writer reads them.
    pending: HashMap<String, Arc<Layer>>,
    /// Per writer and pending key: the run that wrote it last (a sequence
    /// number of the writer's) and its size in the local copy beneath.
    runs: HashMap<String, BTreeMap<Vec<u8>, (u64, u64)>>,
    /// Per writer, the changelog offset after its last applied write.
    writers: HashMap<String, i64>,
    /// The highest of those ever reported (a writer that left keeps its
    /// writes in the local copy).
    applied: Option<i64>,
    flushed: Instant,
}

impl Inner {
    /// The changelog offset before which every record is in the local
    /// copy (or aborted). A writer's records after the offset it reported
    /// are all in its pending layer: so the highest offset any writer
    /// reported is safe, unless a writer with pending writes reported less.
    /// A writer that only reads never holds it back.
    fn checkpoint(&self) -> Option<i64> {
        let top = self.writers.values().copied().max().max(self.applied)?;
        let pending = self
            .writers
            .iter()
            .filter(|(w, _)| self.pending.get(*w).is_some_and(|l| !l.writes.is_empty()))
            .map(|(_, at)| *at)
            .min();
        Some(pending.map_or(top, |p| p.min(top)))
    }
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
                runs: HashMap::new(),
                writers: HashMap::new(),
                applied: None,
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

    /// What `writer` reads during one call: the local copy and its pending
    /// layer, taken together. Writes move from the layer to the copy while
    /// calls run; taken apart, a key could be in neither view.
    pub fn view(&self, writer: &str) -> Result<View, StoreError> {
        let inner = lock(&self.inner);
        Ok(View {
            snapshot: self.local.snapshot()?,
            pending: inner.pending.get(writer).cloned(),
        })
    }

    /// `writer`'s uncommitted write of `key`, if any (`Some(None)`: a
    /// delete).
    fn pending(&self, writer: &str, key: &[u8]) -> Option<Option<Stored>> {
        let inner = lock(&self.inner);
        let write = inner.pending.get(writer)?.writes.get(key)?;
        Some(stored(write))
    }

    /// Up to `limit` live entries at `now_ms` whose key starts with
    /// `prefix`, after `after`, as `view` shows them with `layers` (lowest
    /// first) on top.
    pub fn scan(
        view: &View,
        layers: &[&Layer],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Entries, StoreError> {
        let all: Vec<&Layer> = view
            .pending
            .iter()
            .map(|l| &**l)
            .chain(layers.iter().copied())
            .collect();
        let in_range = |layer: &Layer| layer_range(layer, prefix, after).count();
        let extra: usize = all.iter().map(|l| in_range(l)).sum();
        let fetched = view.snapshot.scan(prefix, after, limit + extra)?;
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

    /// Adds the writes of `writer`'s settled run `run` (a sequence number
    /// that grows with each run) to its pending layer: visible to its next
    /// calls at once, applied to the local copy by [`PartitionStore::landed`]
    /// once the run's records are acknowledged (or its transaction commits).
    pub fn apply(
        &self,
        writer: &str,
        writes: Vec<(Vec<u8>, Write)>,
        run: u64,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let snapshot = self.local.snapshot()?;
        let mut sizes = Vec::with_capacity(writes.len());
        for (key, _) in &writes {
            sizes.push(snapshot.get(key)?.map_or(0, |s| size(key, &s)));
        }
        let mut inner = lock(&self.inner);
        let Inner { pending, runs, .. } = &mut *inner;
        // Copied only while a call still holds the layer in its view.
        let layer = Arc::make_mut(pending.entry(writer.to_owned()).or_default());
        let runs = runs.entry(writer.to_owned()).or_default();
        for ((key, write), below) in writes.into_iter().zip(sizes) {
            let below = runs.get(&key).map_or(below, |&(_, b)| b);
            runs.insert(key.clone(), (run, below));
            layer.put(key, write, below);
        }
        Ok(())
    }

    /// Applies `writes` to the local copy at once (replay, seeding).
    pub fn write_through(&self, writes: Vec<(Vec<u8>, Write)>) -> Result<(), StoreError> {
        self.local
            .apply(writes.iter().map(|(k, w)| (k.as_slice(), w)), None)
    }

    /// `writer`'s runs up to `run` are acknowledged: their pending writes go
    /// to the local copy (the layer keeps them, holding the checkpoint
    /// back, until they are there), and everything `writer` wrote before
    /// changelog offset `next` is in. Returns whether a checkpoint was
    /// written.
    pub fn landed(&self, writer: &str, run: u64, next: Option<i64>) -> Result<bool, StoreError> {
        let done: Vec<(Vec<u8>, Write)> = {
            let inner = lock(&self.inner);
            match (inner.pending.get(writer), inner.runs.get(writer)) {
                (Some(layer), Some(runs)) => layer
                    .writes
                    .iter()
                    .filter(|(k, _)| runs.get(*k).is_some_and(|&(r, _)| r <= run))
                    .map(|(k, w)| (k.clone(), w.clone()))
                    .collect(),
                _ => Vec::new(),
            }
        };
        if !done.is_empty() {
            self.local
                .apply(done.iter().map(|(k, w)| (k.as_slice(), w)), None)?;
            let mut inner = lock(&self.inner);
            let Inner { pending, runs, .. } = &mut *inner;
            if let (Some(layer), Some(runs)) = (pending.get_mut(writer), runs.get_mut(writer)) {
                let layer = Arc::make_mut(layer);
                for (key, _) in done {
                    // Written again by a later run meanwhile: that one lands later.
                    let Some(&(_, below)) = runs.get(&key).filter(|(r, _)| *r <= run) else {
                        continue;
                    };
                    runs.remove(&key);
                    if let Some(write) = layer.writes.remove(&key) {
                        layer.delta -= write.size(&key) as i64 - below as i64;
                    }
                }
            }
        }
        match next {
            Some(next) => self.acked(writer, next),
            None => Ok(false),
        }
    }

    /// Drops `writer`'s pending writes of `keys` made by run `run` (their
    /// event failed after all); a key written again by a later run keeps
    /// that write.
    pub fn drop_run(&self, writer: &str, run: u64, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        let Inner { pending, runs, .. } = &mut *inner;
        let (Some(layer), Some(runs)) = (pending.get_mut(writer), runs.get_mut(writer)) else {
            return;
        };
        let layer = Arc::make_mut(layer);
        for key in keys {
            if let Some(&(r, below)) = runs.get(key)
                && r == run
            {
                runs.remove(key);
                if let Some(write) = layer.writes.remove(key) {
                    layer.delta -= write.size(key) as i64 - below as i64;
                }
            }
        }
    }

    /// `writer`'s transaction committed: all its pending writes are applied
    /// ([`PartitionStore::landed`] for every run). Returns whether a
    /// checkpoint was written.
    pub fn committed(&self, writer: &str, next: Option<i64>) -> Result<bool, StoreError> {
        self.landed(writer, u64::MAX, next)
    }

    /// `writer`'s transaction aborted: its pending writes are dropped.
    pub fn aborted(&self, writer: &str) {
        let mut inner = lock(&self.inner);
        inner.pending.remove(writer);
        inner.runs.remove(writer);
    }

    /// Registers `writer`, whose writes before changelog offset `next` are
    /// all in the store (the end of the restore).
    pub fn register(&self, writer: &str, next: i64) {
        let mut inner = lock(&self.inner);
        inner.writers.insert(writer.to_owned(), next);
        inner.applied = inner.applied.max(Some(next));
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
        inner.runs.remove(writer);
    }

    /// Everything `writer` wrote before changelog offset `next` is
    /// acknowledged and applied; commits durably now and then. Returns
    /// whether it did (a checkpoint was written).
    pub fn acked(&self, writer: &str, next: i64) -> Result<bool, StoreError> {
        let checkpoint = {
            let mut inner = lock(&self.inner);
            if let Some(at) = inner.writers.get_mut(writer) {
                *at = (*at).max(next);
                inner.applied = inner.applied.max(Some(next));
            }
            if inner.flushed.elapsed() < FLUSH_INTERVAL {
                return Ok(false);
            }
            inner.flushed = Instant::now();
            inner.checkpoint()
        };
        self.local.flush(checkpoint)?;
        Ok(true)
    }

    /// Commits durably with the current checkpoint.
    pub fn flush(&self) -> Result<(), StoreError> {
        let checkpoint = {
            let mut inner = lock(&self.inner);
            inner.flushed = Instant::now();
            inner.checkpoint()
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
            .apply("in", vec![(b"k".to_vec(), put("1"))], 1)
            .unwrap();
        assert_eq!(value(&store, "in", "k").as_deref(), Some("1"));
        assert_eq!(value(&store, "other", "k"), None, "not committed yet");
        assert_eq!(store.bytes("in"), 2);
        store.aborted("in");
        assert_eq!(value(&store, "in", "k"), None);
        store
            .apply("in", vec![(b"k".to_vec(), put("2"))], 2)
            .unwrap();
        store.committed("in", Some(5)).unwrap();
        assert_eq!(value(&store, "other", "k").as_deref(), Some("2"));
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(5));
    }

    #[test]
    fn the_checkpoint_is_held_back_only_by_uncommitted_writes() {
        let store = PartitionStore::new(0, LocalStore::in_memory().unwrap());
        store.register("a", 10);
        store.register("b", 4);
        store.acked("a", 20).unwrap();
        store.flush().unwrap();
        // b only reads (a join's other input): it holds nothing back.
        assert_eq!(store.local().checkpoint().unwrap(), Some(20));
        // b's open transaction writes: its records may follow its mark.
        store
            .apply("b", vec![(b"k".to_vec(), put("1"))], 1)
            .unwrap();
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(4));
        store.committed("b", Some(25)).unwrap();
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(25));
        // A writer that leaves keeps its writes in the local copy.
        store.unregister("b");
        store.acked("a", 21).unwrap();
        store.unregister("a");
        assert!(store.unused());
        store.flush().unwrap();
        assert_eq!(store.local().checkpoint().unwrap(), Some(25));
    }

    #[test]
    fn scan_merges_layers_over_the_store() {
        let store = PartitionStore::new(0, LocalStore::in_memory().unwrap());
        let writes = ["p/1", "p/2", "p/3", "p/4"].map(|k| (k.as_bytes().to_vec(), put("s")));
        store.write_through(writes.to_vec()).unwrap();
        let mut layer = Layer::default();
        layer.put(b"p/2".to_vec(), Write::Delete, 4);
        layer.put(b"p/25".to_vec(), put("l"), 0);
        let view = store.view("w").unwrap();
        let keys = |after: Option<&[u8]>, limit| {
            PartitionStore::scan(&view, &[&layer], b"p/", after, limit, 0)
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
