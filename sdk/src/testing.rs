//! Run a consumer natively in unit tests, without a host.
//!
//! A [`Harness`] plays the host for the duration of one call on the current
//! thread: it serves the config it was given, collects emitted records and
//! log lines, and refuses emits the way the host would for topics outside
//! the declared output topics or past the emit limit. It also keeps the
//! [`state`](crate::state) stores, which outlive its calls (see
//! [State](Harness#state)).
//!
//! ```
//! use weir_sdk::testing::Harness;
//! use weir_sdk::{Consumer, Context, Error, Event, Record, config};
//!
//! struct Tag;
//!
//! impl Consumer for Tag {
//!     fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
//!         let tag = config::require("tag")?;
//!         ctx.emit(event.forward_to("tagged").header("tag", tag))?;
//!         Ok(())
//!     }
//! }
//!
//! let outcome = Harness::new()
//!     .config("tag", "blue")
//!     .output_topics(["tagged"])
//!     .run::<Tag>(Event::builder().value("hello"));
//! assert!(outcome.is_ok());
//! assert_eq!(outcome.emitted[0].header("tag"), Some(&b"blue"[..]));
//!
//! let outcome = Harness::new().run::<Tag>(Event::builder().value("hello"));
//! assert_eq!(outcome.reason(), Some("config key `tag` is not set"));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::consumer::{Consumer, handle_batch, handle_event};
use crate::error::{Disposition, Error};
use crate::event::Event;
use crate::log::Level;
use crate::record::{EmitError, Record};
use crate::state::StateError;

/// The host's default `limits.max-emits`, which also caps the distinct
/// state keys one call may write.
pub const DEFAULT_MAX_EMITS: u32 = 1000;

/// A stand-in host for native tests; reusable.
///
/// # State
///
/// The harness keeps one in-memory [`state`](crate::state) store per input
/// partition, like the host, and they persist across its calls: run a
/// handler several times on the **same** harness (`run` takes `&self`) to
/// test what it does with what earlier events stored. Each call works on
/// the store of its event's partition (a batch: its first event's; a
/// [`Harness::with`] call: partition 0), sees its own writes at once, and
/// they are kept when the handler returns `Ok` and discarded when it
/// returns an error or panics; in a batch they are discarded only when an
/// event asks for a retry (or `on_batch` returns the wrong number of
/// results). Writes made in [`Harness::with`] are kept.
///
/// Writes are checked against [`StateLimits`] (the host's defaults unless
/// [`Harness::state_limits`] says otherwise) and, like `limits.max-emits`
/// on the host, at most [`Harness::max_emits`] (default
/// [`DEFAULT_MAX_EMITS`]) distinct keys per call. Time-to-live uses a
/// harness clock that only [`Harness::advance`] moves.
///
/// Seed stores with [`Harness::state`] and friends and inspect them with
/// [`Harness::state_get`] and friends; both use partition 0 (the
/// [`EventBuilder`](crate::EventBuilder) default) unless their `_in`
/// variant names another.
///
/// Cloning a harness copies its stores and clock: the clone and the
/// original do not see each other's writes afterwards.
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::prelude::*;
///
/// struct Remember;
///
/// impl Consumer for Remember {
///     fn on_event(_ctx: &mut Context, event: &Event) -> Result<(), Error> {
///         let key = event.key().or_reject("no key")?;
///         state::set_with_ttl(key, event.value().unwrap_or_default(), Duration::from_secs(60))?;
///         if event.value() == Some(b"undo") {
///             return Err(Error::reject("undone"));
///         }
///         Ok(())
///     }
/// }
///
/// let harness = Harness::new().state("seeded", "yes");
/// harness.run::<Remember>(Event::builder().key("k").value("v1"));
/// harness.run::<Remember>(Event::builder().key("k").value("undo"));
/// assert_eq!(harness.state_get("k").as_deref(), Some(&b"v1"[..]));
/// assert_eq!(harness.state_get("seeded").as_deref(), Some(&b"yes"[..]));
///
/// harness.advance(Duration::from_secs(60));
/// assert_eq!(harness.state_get("k"), None);
/// ```
#[derive(Debug, Default)]
pub struct Harness {
    config: BTreeMap<String, String>,
    output_topics: Option<BTreeSet<String>>,
    max_emits: Option<u32>,
    state_limits: StateLimits,
    /// Shared with the sessions of this harness's calls, not with clones.
    state: Arc<Mutex<Stores>>,
}

impl Clone for Harness {
    fn clone(&self) -> Self {
        let stores = self.stores().clone();
        Self {
            state: Arc::new(Mutex::new(stores)),
            ..self.share()
        }
    }
}

impl Harness {
    /// A harness with no config, any output topic allowed, no emit limit,
    /// empty state stores with the host's default [`StateLimits`], and its
    /// clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// This harness with the same state stores (not copies of them): what
    /// a call's session works with.
    fn share(&self) -> Self {
        Self {
            config: self.config.clone(),
            output_topics: self.output_topics.clone(),
            max_emits: self.max_emits,
            state_limits: self.state_limits,
            state: Arc::clone(&self.state),
        }
    }

    fn stores(&self) -> MutexGuard<'_, Stores> {
        // A panic while the lock is held cannot leave the stores half
        // updated (every update is a single map operation), so a poisoned
        // lock is still good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one `[config]` entry.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Only allows emits to these topics, like the manifest's
    /// `output-topics`; others fail with [`EmitError::TopicNotAllowed`].
    #[must_use]
    pub fn output_topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.output_topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Fails emits past `max` per call with [`EmitError::TooMany`], and
    /// state writes to more than `max` distinct keys per call with
    /// [`StateError::TooMany`], as the manifest's `limits.max-emits` does.
    /// Without it emits are unlimited and state writes are capped at
    /// [`DEFAULT_MAX_EMITS`] keys.
    #[must_use]
    pub fn max_emits(mut self, max: u32) -> Self {
        self.max_emits = Some(max);
        self
    }

    /// Checks state writes against `limits` instead of the host's defaults.
    #[must_use]
    pub fn state_limits(mut self, limits: StateLimits) -> Self {
        self.state_limits = limits;
        self
    }

    /// Stores `value` under `key` in partition 0's store, without a
    /// time-to-live and without checking the limits: test setup.
    #[must_use]
    pub fn state(self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.state_in(0, key, value)
    }

    /// [`Harness::state`] for the store of `partition`.
    #[must_use]
    pub fn state_in(self, partition: i32, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let mut stores = self.stores();
        let now = stores.now_ms;
        let store = stores.partition(partition, now);
        store.put(key.as_ref().to_vec(), value.as_ref().to_vec(), None);
        drop(stores);
        self
    }

    /// Stores `value` serialised as JSON under `key` in partition 0's
    /// store, like [`Harness::state`].
    ///
    /// # Panics
    ///
    /// If `value` cannot be serialised; this is a test helper.
    #[cfg(feature = "json")]
    #[must_use]
    pub fn state_json<T: serde::Serialize + ?Sized>(
        self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.state(key, bytes),
            Err(e) => panic!("Harness::state_json: value does not serialise: {e}"),
        }
    }

    /// The value under `key` in partition 0's store, as the next call would
    /// read it (`None` when absent or expired).
    pub fn state_get(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.state_get_in(0, key)
    }

    /// [`Harness::state_get`] for the store of `partition`.
    pub fn state_get_in(&self, partition: i32, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let stores = self.stores();
        let store = stores.by_partition.get(&partition)?;
        store.get(key.as_ref(), stores.now_ms).map(<[u8]>::to_vec)
    }

    /// Every live entry of partition 0's store, in key order.
    pub fn state_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.state_entries_in(0)
    }

    /// [`Harness::state_entries`] for the store of `partition`.
    pub fn state_entries_in(&self, partition: i32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let stores = self.stores();
        let now = stores.now_ms;
        stores
            .by_partition
            .get(&partition)
            .map(|store| {
                store
                    .entries
                    .iter()
                    .filter(|(_, entry)| entry.is_live(now))
                    .map(|(key, entry)| (key.clone(), entry.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Moves the harness clock forward by `by` (rounded up to whole
    /// milliseconds, as time-to-live is): a key stored with a time-to-live
    /// of `ttl` reads as absent once the clock has moved `ttl` past the
    /// write.
    pub fn advance(&self, by: Duration) {
        let mut stores = self.stores();
        stores.now_ms = stores.now_ms.saturating_add(crate::state::ttl_ms(by));
    }

    /// Calls `C` with one event, as the `handler` export does.
    pub fn run<C: Consumer>(&self, event: impl Into<Event>) -> Outcome {
        let event = event.into();
        let (result, session) = self.session(event.partition(), || handle_event::<C>(&event));
        if result.is_ok() {
            session.commit_state();
        }
        Outcome {
            result,
            emitted: session.emitted,
            logs: session.logs,
        }
    }

    /// Calls `C` with a batch, as the `batch-handler` export does.
    pub fn run_batch<C: Consumer>(
        &self,
        events: impl IntoIterator<Item = impl Into<Event>>,
    ) -> BatchOutcome {
        let events: Vec<Event> = events.into_iter().map(Into::into).collect();
        let partition = events.first().map_or(0, Event::partition);
        let (results, session) = self.session(partition, || handle_batch::<C>(&events));
        let retried = results.iter().any(|r| matches!(r, Err(e) if e.is_retry()));
        if results.len() == events.len() && !retried {
            session.commit_state();
        }
        BatchOutcome {
            results,
            emitted: session.emitted,
            logs: session.logs,
        }
    }

    /// Runs `f` with this harness standing in for the host, for testing
    /// helpers that read config, log or use state outside a consumer. State
    /// calls use partition 0's store, and their writes are kept.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let (value, session) = self.session(0, f);
        session.commit_state();
        value
    }

    fn session<R>(&self, partition: i32, f: impl FnOnce() -> R) -> (R, Session) {
        let fresh = Session {
            harness: self.share(),
            emitted: Vec::new(),
            logs: Vec::new(),
            partition,
            state: None,
        };
        SESSION.with(|cell| {
            let mut slot = cell.borrow_mut();
            assert!(
                slot.is_none(),
                "a Harness is already running on this thread"
            );
            *slot = Some(fresh);
        });
        // Clears the session even if the consumer panics, so one failing
        // test does not poison the next one on the same thread.
        let _guard = SessionGuard;
        let value = f();
        let session = SESSION.with(|cell| cell.borrow_mut().take());
        (value, session.unwrap_or_default())
    }
}

/// What one [`Harness::run`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the handler returned.
    pub result: Result<(), Error>,
    /// Every record the harness accepted, in emit order, whatever the result.
    pub emitted: Vec<Record>,
    /// Every log line, in order.
    pub logs: Vec<LogLine>,
}

impl Outcome {
    /// `true` when the handler returned `Ok`.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The disposition the host would receive.
    pub fn disposition(&self) -> Disposition {
        self.result.clone().into()
    }

    /// The retry or reject reason, `None` when the handler succeeded.
    pub fn reason(&self) -> Option<&str> {
        self.result.as_ref().err().map(Error::message)
    }

    /// The records the host would produce: all emitted records when the
    /// handler succeeded, none otherwise.
    pub fn produced(&self) -> &[Record] {
        if self.is_ok() { &self.emitted } else { &[] }
    }
}

/// What one [`Harness::run_batch`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// What `on_batch` returned: one result per event when it is correct.
    pub results: Vec<Result<(), Error>>,
    /// Every record the harness accepted, in emit order.
    pub emitted: Vec<Record>,
    /// Every log line, in order.
    pub logs: Vec<LogLine>,
}

impl BatchOutcome {
    /// The dispositions the host would receive.
    pub fn dispositions(&self) -> Vec<Disposition> {
        self.results
            .iter()
            .cloned()
            .map(Disposition::from)
            .collect()
    }

    /// The records the host would produce: none if any event asked for a
    /// retry (the host then retries the whole batch), all of them otherwise.
    pub fn produced(&self) -> &[Record] {
        let retried = self
            .results
            .iter()
            .any(|r| matches!(r, Err(e) if e.is_retry()));
        if retried { &[] } else { &self.emitted }
    }
}

/// One line logged through the SDK during a harness call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
}

#[derive(Debug, Default)]
struct Session {
    harness: Harness,
    emitted: Vec<Record>,
    logs: Vec<LogLine>,
    partition: i32,
    state: Option<StateCall>,
}

impl Session {
    /// The call's state, copied from its partition's store on first use.
    fn state(&mut self) -> &mut StateCall {
        let (harness, partition) = (&self.harness, self.partition);
        self.state.get_or_insert_with(|| {
            let mut stores = harness.stores();
            let now_ms = stores.now_ms;
            StateCall {
                now_ms,
                store: stores.partition(partition, now_ms).clone(),
                written: BTreeSet::new(),
            }
        })
    }

    /// Checks a write of `key` (`value: None` for a delete) against the
    /// limits, in the order the host does: key size, value size, the store
    /// quota (only for a write that grows the store), then the distinct
    /// keys per call.
    fn check_write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        let limits = self.harness.state_limits;
        let max_keys = self.harness.max_emits.unwrap_or(DEFAULT_MAX_EMITS);
        if key.len() > limits.max_key_bytes as usize {
            return Err(StateError::KeyTooLarge(limits.max_key_bytes));
        }
        if let Some(value) = value
            && value.len() > limits.max_value_bytes as usize
        {
            return Err(StateError::ValueTooLarge(limits.max_value_bytes));
        }
        let state = self.state();
        if let Some(value) = value {
            let old = state
                .store
                .get(key, state.now_ms)
                .map_or(0, |old| key.len() + old.len()) as u64;
            let new = (key.len() + value.len()) as u64;
            let quota = u64::from(limits.state_mib) << 20;
            if new > old && state.store.bytes - old + new > quota {
                return Err(StateError::QuotaExceeded(limits.state_mib));
            }
        }
        if !state.written.contains(key) && state.written.len() >= max_keys as usize {
            return Err(StateError::TooMany(max_keys));
        }
        Ok(())
    }

    fn state_set(
        &mut self,
        key: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), StateError> {
        self.check_write(key, Some(value))?;
        let state = self.state();
        // As on the host, a zero time-to-live counts as one millisecond.
        let expires_ms = ttl_ms.map(|ttl| state.now_ms.saturating_add(ttl.max(1)));
        state.written.insert(key.to_vec());
        state.store.put(key.to_vec(), value.to_vec(), expires_ms);
        Ok(())
    }

    fn state_delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.check_write(key, None)?;
        let state = self.state();
        state.written.insert(key.to_vec());
        state.store.remove(key);
        Ok(())
    }

    /// Writes the keys this call wrote back to the harness's store.
    fn commit_state(&self) {
        let Some(call) = &self.state else { return };
        let mut stores = self.harness.stores();
        let store = stores.partition(self.partition, call.now_ms);
        for key in &call.written {
            match call.store.entries.get(key) {
                Some(entry) => store.put(key.clone(), entry.value.clone(), entry.expires_ms),
                None => store.remove(key),
            }
        }
    }

    fn emit(&mut self, record: Record) -> Result<(), EmitError> {
        let harness = &self.harness;
        if let Some(topics) = &harness.output_topics
            && !topics.contains(record.topic())
        {
            return Err(EmitError::TopicNotAllowed(record.topic().to_owned()));
        }
        if let Some(p) = record.partition().filter(|p| *p < 0) {
            return Err(EmitError::InvalidPartition(p));
        }
        if let Some(max) = harness.max_emits
            && self.emitted.len() >= max as usize
        {
            return Err(EmitError::TooMany(max));
        }
        self.emitted.push(record);
        Ok(())
    }
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

struct SessionGuard;

impl Drop for SessionGuard {
    fn drop(&mut self) {
        SESSION.with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                slot.take();
            }
        });
    }
}

fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> Option<R> {
    SESSION.with(|cell| cell.borrow_mut().as_mut().map(f))
}

/// Emits into the running harness, or hands the record back if none runs.
pub(crate) fn try_emit(record: Record) -> Result<Result<(), EmitError>, Record> {
    SESSION.with(|cell| match cell.borrow_mut().as_mut() {
        Some(session) => Ok(session.emit(record)),
        None => Err(record),
    })
}

/// Logs into the running harness; `false` if none runs.
pub(crate) fn try_log(level: Level, message: &str) -> bool {
    with_session(|s| {
        s.logs.push(LogLine {
            level,
            message: message.to_owned(),
        });
    })
    .is_some()
}

pub(crate) fn try_config_get(key: &str) -> Option<Option<String>> {
    with_session(|s| s.harness.config.get(key).cloned())
}

pub(crate) fn try_state_get(key: &[u8]) -> Option<Option<Vec<u8>>> {
    with_session(|s| {
        let state = s.state();
        state.store.get(key, state.now_ms).map(<[u8]>::to_vec)
    })
}

pub(crate) fn try_state_set(
    key: &[u8],
    value: &[u8],
    ttl_ms: Option<u64>,
) -> Option<Result<(), StateError>> {
    with_session(|s| s.state_set(key, value, ttl_ms))
}

pub(crate) fn try_state_delete(key: &[u8]) -> Option<Result<(), StateError>> {
    with_session(|s| s.state_delete(key))
}

pub(crate) fn try_state_scan(
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: u32,
) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    with_session(|s| {
        let state = s.state();
        state.store.scan(prefix, after, limit, state.now_ms)
    })
}

pub(crate) fn try_config_all() -> Option<Vec<(String, String)>> {
    with_session(|s| {
        s.harness
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

mod store;
#[cfg(test)]
mod tests;

pub use store::StateLimits;
use store::{StateCall, Stores};
