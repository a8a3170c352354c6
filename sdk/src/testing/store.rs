//! The harness's in-memory state stores: one per input partition, with the
//! host's limits, time-to-live and scan paging.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{SCAN_PAGE, SCAN_PAGE_BYTES};

/// Limits the harness checks state writes against; the defaults are the
/// host's.
///
/// ```
/// use weir_sdk::testing::{Harness, StateLimits};
///
/// let harness = Harness::new().state_limits(StateLimits {
///     state_mib: 1,
///     ..StateLimits::default()
/// });
/// # let _ = harness;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateLimits {
    /// `limits.max-state-key-bytes`: the longest key, in bytes (4096).
    pub max_key_bytes: u32,
    /// `limits.max-state-value-bytes`: the longest value, in bytes (524288).
    pub max_value_bytes: u32,
    /// `limits.state-mib`: the most bytes of keys plus values of the live
    /// entries of one partition's store, in MiB (256).
    pub state_mib: u32,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: 524_288,
            state_mib: 256,
        }
    }
}

/// The harness clock and its state stores by partition.
#[derive(Debug, Clone, Default)]
pub(super) struct Stores {
    pub(super) now_ms: u64,
    pub(super) by_partition: BTreeMap<i32, Store>,
}

impl Stores {
    /// The store of `partition`, created if needed, without entries that
    /// expired by `now`.
    pub(super) fn partition(&mut self, partition: i32, now: u64) -> &mut Store {
        let store = self.by_partition.entry(partition).or_default();
        store.purge(now);
        store
    }
}

/// One partition's store.
#[derive(Debug, Clone, Default)]
pub(super) struct Store {
    pub(super) entries: BTreeMap<Vec<u8>, StoreEntry>,
    /// Keys plus values of every entry in `entries`.
    pub(super) bytes: u64,
}

#[derive(Debug, Clone)]
pub(super) struct StoreEntry {
    pub(super) value: Vec<u8>,
    /// Harness clock time at which the entry expires.
    pub(super) expires_ms: Option<u64>,
}

impl StoreEntry {
    pub(super) fn is_live(&self, now: u64) -> bool {
        self.expires_ms.is_none_or(|at| now < at)
    }
}

impl Store {
    pub(super) fn get(&self, key: &[u8], now: u64) -> Option<&[u8]> {
        self.entries
            .get(key)
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value.as_slice())
    }

    pub(super) fn put(&mut self, key: Vec<u8>, value: Vec<u8>, expires_ms: Option<u64>) {
        self.remove(&key);
        self.bytes += (key.len() + value.len()) as u64;
        self.entries.insert(key, StoreEntry { value, expires_ms });
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= (key.len() + old.value.len()) as u64;
        }
    }

    /// Drops the entries that expired by `now`, as the host deletes them.
    pub(super) fn purge(&mut self, now: u64) {
        let expired: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.is_live(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    /// One page of `state::scan`, with the host's caps.
    pub(super) fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        now: u64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::ops::Bound;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = limit.min(SCAN_PAGE) as usize;
        let mut page = Vec::new();
        let mut bytes = 0;
        for (key, entry) in self.entries.range::<[u8], _>((start, Bound::Unbounded)) {
            if page.len() >= limit || !key.starts_with(prefix) {
                break;
            }
            if !entry.is_live(now) {
                continue;
            }
            let size = key.len() + entry.value.len();
            if !page.is_empty() && bytes + size > SCAN_PAGE_BYTES {
                break;
            }
            bytes += size;
            page.push((key.clone(), entry.value.clone()));
        }
        page
    }
}

/// The state a call works on: a copy of its partition's store, written
/// back key by key when the call's writes are kept.
#[derive(Debug)]
pub(super) struct StateCall {
    pub(super) now_ms: u64,
    pub(super) store: Store,
    pub(super) written: BTreeSet<Vec<u8>>,
}
