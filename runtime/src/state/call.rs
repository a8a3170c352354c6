//! What one call into a guest sees of its partition's state, and what it
//! writes: the host side of the `state` interface.
//!
//! Reads see, newest first: the current event's writes, the writes of the
//! events of the same call that returned `ok`, then the store. At the end
//! of each event its writes become changelog records appended to what it
//! emitted, so the settlement policy produces or discards them with its
//! outputs; the worker applies the produced ones to the store.

use std::sync::Arc;

use super::partition::{Layer, PartitionStore, View};
use super::{Entries, StateHandle, StateLimits, StoreError, Write, changelog};
use crate::bindings::weir::consumer::state::StateError;
use crate::bindings::weir::consumer::types::Outgoing;

/// Most entries one `scan` returns.
pub const MAX_SCAN_ENTRIES: usize = 1_000;
/// Most key and value bytes one `scan` returns.
pub const MAX_SCAN_BYTES: usize = 4 << 20;
/// Most expired keys one call deletes before the guest runs.
pub const SWEEP_PER_CALL: usize = 64;

/// The state of one call.
#[derive(Debug)]
pub struct CallState {
    store: Arc<PartitionStore>,
    /// The local copy and this writer's pending writes as of the call's
    /// start: one read transaction per call, not per read.
    view: View,
    /// The changelog topic.
    topic: Arc<str>,
    /// The input topic whose events the call handles.
    writer: Arc<str>,
    limits: StateLimits,
    now_ms: u64,
    /// Writes of earlier events of the call that returned `ok`.
    call: Layer,
    /// Writes of the current event.
    event: Layer,
    /// Deletes of expired keys made for the current event, not counted
    /// against its limit.
    swept: usize,
}

impl CallState {
    /// The state of a call on `handle`'s store at `now_ms`. Queues deletes
    /// for up to [`SWEEP_PER_CALL`] expired keys, attributed to the call's
    /// first event.
    pub fn new(handle: &StateHandle, limits: StateLimits, now_ms: u64) -> Result<Self, StoreError> {
        let mut state = Self {
            view: handle.store.view(&handle.writer)?,
            store: handle.store.clone(),
            topic: handle.topic.clone(),
            writer: handle.writer.clone(),
            limits,
            now_ms,
            call: Layer::default(),
            event: Layer::default(),
            swept: 0,
        };
        for key in state.store.local().expired(now_ms, SWEEP_PER_CALL)? {
            // Written again since (in an uncommitted transaction)? Keep it.
            if let Some(stored) = state.view.get(&key)?
                && stored.expires_ms.is_some_and(|at| at <= now_ms)
            {
                let size = (key.len() + stored.value.len()) as u64;
                state.event.put(key, Write::Delete, size);
                state.swept += 1;
            }
        }
        Ok(state)
    }

    /// The live value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        for layer in [&self.event, &self.call] {
            if let Some(write) = layer.writes.get(key) {
                return Ok(write.live(self.now_ms).map(<[u8]>::to_vec));
            }
        }
        Ok(self
            .view
            .get(key)?
            .filter(|s| s.expires_ms.is_none_or(|at| at > self.now_ms))
            .map(|s| s.value))
    }

    /// Size of `key`'s entry as the call sees it, expired or not (what the
    /// store holds until a delete).
    fn size_below(&self, key: &[u8]) -> Result<u64, StoreError> {
        if let Some(write) = self.call.writes.get(key) {
            return Ok(write.size(key));
        }
        Ok(self
            .view
            .get(key)?
            .map_or(0, |s| (key.len() + s.value.len()) as u64))
    }

    /// Stores `value` under `key`, expiring after `ttl_ms` when given.
    pub fn set(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<Result<(), StateError>, StoreError> {
        let limits = &self.limits;
        if key.len() > limits.max_key_bytes as usize {
            return Ok(Err(StateError::KeyTooLarge(limits.max_key_bytes)));
        }
        if value.len() > limits.max_value_bytes as usize {
            return Ok(Err(StateError::ValueTooLarge(limits.max_value_bytes)));
        }
        let expires_ms = ttl_ms.map(|ttl| self.now_ms.saturating_add(ttl.max(1)));
        let write = Write::Put { value, expires_ms };
        let below = self.size_below(&key)?;
        let current = match self.event.writes.get(&key) {
            Some(w) => w.size(&key),
            None => below,
        };
        let projected = self.store.bytes(&self.writer) as i64
            + self.call.delta
            + self.event.delta
            + write.size(&key) as i64
            - current as i64;
        if write.size(&key) > current && projected > self.limits.max_bytes() as i64 {
            return Ok(Err(StateError::QuotaExceeded(self.limits.state_mib)));
        }
        self.write(key, write, below)
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) -> Result<Result<(), StateError>, StoreError> {
        if key.len() > self.limits.max_key_bytes as usize {
            return Ok(Err(StateError::KeyTooLarge(self.limits.max_key_bytes)));
        }
        let below = self.size_below(&key)?;
        self.write(key, Write::Delete, below)
    }

    fn write(
        &mut self,
        key: Vec<u8>,
        write: Write,
        below: u64,
    ) -> Result<Result<(), StateError>, StoreError> {
        let written = self.event.writes.len() - self.swept;
        if written >= self.limits.max_writes as usize && !self.event.writes.contains_key(&key) {
            return Ok(Err(StateError::TooMany(self.limits.max_writes)));
        }
        self.event.put(key, write, below);
        Ok(Ok(()))
    }

    /// Live entries under `prefix` after `after`, at most `limit` (capped
    /// at [`MAX_SCAN_ENTRIES`] and [`MAX_SCAN_BYTES`]).
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Entries, StoreError> {
        let limit = (limit as usize).min(MAX_SCAN_ENTRIES);
        let mut found = PartitionStore::scan(
            &self.view,
            &[&self.call, &self.event],
            prefix,
            after,
            limit,
            self.now_ms,
        )?;
        let mut bytes = 0;
        let fits = found
            .iter()
            .take_while(|(k, v)| {
                bytes += k.len() + v.len();
                bytes <= MAX_SCAN_BYTES
            })
            .count();
        // Always at least one entry, so paging makes progress.
        found.truncate(fits.max(1));
        Ok(found)
    }

    /// Ends the current event: returns its writes as changelog records (to
    /// be produced with its outputs, or discarded with them), and keeps
    /// them visible to the call's later events when it succeeded.
    pub fn end_event(&mut self, ok: bool) -> Vec<Outgoing> {
        let layer = std::mem::take(&mut self.event);
        self.swept = 0;
        let partition = self.store.partition();
        let records = layer
            .writes
            .iter()
            .map(|(k, w)| changelog::record(&self.topic, partition, k.clone(), w.clone()))
            .collect();
        if ok {
            // The event's delta was taken over the call's layer: it adds up.
            self.call.delta += layer.delta;
            self.call.writes.extend(layer.writes);
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalStore;

    fn limits() -> StateLimits {
        StateLimits {
            max_key_bytes: 8,
            max_value_bytes: 16,
            state_mib: 1,
            max_writes: 2,
        }
    }

    fn call(store: &Arc<PartitionStore>, now_ms: u64) -> CallState {
        let handle = StateHandle {
            store: store.clone(),
            topic: "log".into(),
            writer: "in".into(),
        };
        CallState::new(&handle, limits(), now_ms).unwrap()
    }

    fn store() -> Arc<PartitionStore> {
        let store = Arc::new(PartitionStore::new(2, LocalStore::in_memory().unwrap()));
        store.register("in", 0);
        store
    }

    #[test]
    fn a_call_sees_its_own_writes_and_ok_events_pass_them_on() {
        let store = store();
        let mut state = call(&store, 0);
        state
            .set(b"a".to_vec(), b"1".to_vec(), None)
            .unwrap()
            .unwrap();
        assert_eq!(state.get(b"a").unwrap(), Some(b"1".to_vec()));
        let records = state.end_event(false);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].partition, Some(2));
        assert_eq!(
            state.get(b"a").unwrap(),
            None,
            "a rejected event's writes are gone"
        );
        state
            .set(b"a".to_vec(), b"2".to_vec(), None)
            .unwrap()
            .unwrap();
        state.end_event(true);
        assert_eq!(state.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.read("in", b"a").unwrap(), None, "the worker applies");
    }

    #[test]
    fn limits_are_reported_to_the_guest() {
        let store = store();
        let mut state = call(&store, 0);
        let set = |s: &mut CallState, k: &str, v: usize| {
            s.set(k.as_bytes().to_vec(), vec![b'x'; v], None).unwrap()
        };
        assert!(matches!(
            set(&mut state, "123456789", 1),
            Err(StateError::KeyTooLarge(8))
        ));
        assert!(matches!(
            set(&mut state, "k", 17),
            Err(StateError::ValueTooLarge(16))
        ));
        assert!(set(&mut state, "a", 1).is_ok());
        assert!(set(&mut state, "b", 1).is_ok());
        assert!(set(&mut state, "a", 2).is_ok(), "a key already written");
        assert!(matches!(
            set(&mut state, "c", 1),
            Err(StateError::TooMany(2))
        ));
        state.end_event(true);
        // Fill the 1 MiB quota through the store, then go over it.
        let big: Vec<(Vec<u8>, Write)> = (0..70)
            .map(|i| {
                let value = vec![0; 15_000];
                (
                    format!("f{i}").into_bytes(),
                    Write::Put {
                        value,
                        expires_ms: None,
                    },
                )
            })
            .collect();
        store.write_through(big).unwrap();
        let mut state = call(&store, 0);
        assert!(matches!(
            set(&mut state, "z", 16),
            Err(StateError::QuotaExceeded(1))
        ));
        assert!(
            state.delete(b"f1".to_vec()).unwrap().is_ok(),
            "deletes always pass"
        );
    }

    #[test]
    fn expired_keys_read_as_absent_and_are_swept_into_the_first_event() {
        let store = store();
        let write = Write::Put {
            value: b"v".to_vec(),
            expires_ms: Some(100),
        };
        store.write_through(vec![(b"t".to_vec(), write)]).unwrap();
        assert_eq!(call(&store, 99).get(b"t").unwrap(), Some(b"v".to_vec()));
        let mut state = call(&store, 100);
        assert_eq!(state.get(b"t").unwrap(), None);
        let records = state.end_event(true);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value, None, "a tombstone");
    }

    #[test]
    fn set_with_ttl_expires_by_the_clock() {
        let store = store();
        let mut state = call(&store, 1_000);
        state
            .set(b"d".to_vec(), b"1".to_vec(), Some(500))
            .unwrap()
            .unwrap();
        let records = state.end_event(true);
        assert_eq!(records[0].headers[0].value, b"1500");
        let writes = records
            .iter()
            .filter_map(|r| changelog::write_of_record(r).map(|(k, w)| (k.to_vec(), w)))
            .collect();
        store.write_through(writes).unwrap();
        assert!(call(&store, 1_499).get(b"d").unwrap().is_some());
        assert!(call(&store, 1_500).get(b"d").unwrap().is_none());
    }
}
