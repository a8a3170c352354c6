//! The partition pipeline: what happens to a partition's events between
//! the consumer and the committed offset, with no Kafka types in it.
//!
//! Every assigned partition gets a [`worker`] that takes events from a
//! [`Source`] in offset order, calls the module ([`Guest`]) for them,
//! decides what each call settled ([`policy`]), hands the records to emit
//! to a [`Sink`] and, once the sink has acknowledged them (and any dead
//! letters), moves the partition's watermark in the [`offsets::Offsets`]
//! tracker, which the group's poll thread commits. Exactly-once partitions
//! do the same inside a transaction of their own ([`Transactions`], driven
//! by [`txn`]).
//!
//! The Kafka implementations of these seams live in `crate::kafka`; the
//! unit tests in `tests` drive a worker with fakes.
//!
//! - [`policy`]: the settlement rules, plain functions over plain data
//!   (shared with `weir replay`).
//! - [`worker`]: the calling half of a partition's worker.
//! - [`ack`]: the acknowledging half: waits for deliveries, writes dead
//!   letters, moves the watermark.
//! - [`txn`]: exactly-once transactions of a partition.
//! - [`offsets`]: watermarks and what is committed, per partition.
//! - [`failure`]: events that fail for good and their dead-letter records.
//! - [`guest`]: the wasmtime implementation of [`Guest`].

pub mod ack;
pub mod budget;
pub mod failure;
pub mod guest;
pub mod offsets;
pub mod policy;
pub mod txn;
pub mod worker;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bindings::weir::consumer::types::Event;
use crate::invoke::CallResult;
use crate::manifest::Manifest;
use crate::metrics::ModuleMetrics;
use crate::slots::{ModuleShare, Slot};
use crate::state::{StateHandle, Stores};
use crate::status::StatusBoard;
use policy::Pending;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// How bad a failed delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Retrying may succeed (broker unreachable, timed out, ...).
    Transient,
    /// Retrying cannot fix this record (too large, no such partition, not
    /// authorised): the event that emitted it fails.
    Permanent,
    /// The producer cannot go on (fenced by a newer owner of its
    /// transactional id, or broken): the partition's worker stops.
    Fatal,
}

/// A record or transaction the sink could not deliver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct DeliveryError {
    /// Whether retrying can help.
    pub fault: Fault,
    /// The broker's or client's reason.
    pub reason: String,
}

impl DeliveryError {
    /// A transient failure with `reason`.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            fault: Fault::Transient,
            reason: reason.into(),
        }
    }
}

/// Where a partition's events come from, in offset order.
pub trait Source: Send + 'static {
    /// Takes up to `max` events that are ready, without waiting.
    fn take(&mut self, max: usize) -> Vec<Event>;
    /// Resolves when events may be ready. A wake-up that comes while the
    /// worker is busy is kept for its next wait.
    fn ready(&self) -> impl Future<Output = ()> + Send + '_;
    /// Delivers the partition again from `offset`: events taken before the
    /// call and not yet handled must be dropped by the caller.
    fn rewind(&mut self, offset: i64) -> Result<(), String>;
}

/// Where emitted records and dead letters go.
pub trait Sink: Clone + Send + Sync + 'static {
    /// The broker's answers on a run of records, in the order they were
    /// sent: each record's offset once acknowledged, or why not.
    type Answers: Future<Output = Vec<Result<i64, DeliveryError>>> + Send + 'static;
    /// Enqueues `records` in order, waiting while the producer's queue is
    /// full. Records enqueued one after another keep their order per
    /// partition. Each record's timestamp is its `timestamp_ms`, or the
    /// producer's clock when `None`.
    fn send_all(&self, records: &[Pending]) -> impl Future<Output = Self::Answers> + Send;
}

/// A partition's transactions (exactly-once): everything produced through
/// [`Transactions::init`]'s sink between `begin` and `commit` becomes
/// visible together with the input offset, or not at all.
pub trait Transactions: Send + 'static {
    /// The transactional producer.
    type Sink: Sink;
    /// Creates the producer and fences any previous owner of the same
    /// transactional id. Retried with backoff until it succeeds.
    fn init(&mut self) -> impl Future<Output = anyhow::Result<Self::Sink>> + Send;
    /// Begins a transaction.
    fn begin(&mut self) -> Result<(), DeliveryError>;
    /// Adds the partition's next offset `next` to the open transaction and
    /// commits it.
    fn commit(&mut self, next: i64) -> impl Future<Output = Result<(), DeliveryError>> + Send;
    /// Aborts the open transaction.
    fn abort(&mut self) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// What the pipeline reads of one version of a module. A call's settings
/// all come from the version it ran on.
pub trait Version: Send + Sync + 'static {
    /// The module's name (the same across versions).
    fn name(&self) -> &str;
    /// SHA-256 of the component, hex encoded.
    fn digest(&self) -> &str;
    /// Its manifest.
    fn manifest(&self) -> &Manifest;
    /// Whether it takes whole batches (`batch-consumer` world).
    fn is_batch(&self) -> bool;
}

/// The module a partition calls; hot reload changes its current version.
pub trait Guest: Send + Sync + 'static {
    /// One version of the module.
    type Version: Version;
    /// A live instance of one version.
    type Instance: Instance<Version = Self::Version>;
    /// The current version.
    fn current(&self) -> Arc<Self::Version>;
    /// Instantiates `version`. Blocking (runs the component's start code).
    fn instantiate(&self, version: Arc<Self::Version>) -> anyhow::Result<Self::Instance>;
}

/// A live instance of a module version, reused across calls.
pub trait Instance: Send + 'static {
    /// The version type it runs.
    type Version: Version;
    /// The version it runs.
    fn version(&self) -> &Arc<Self::Version>;
    /// Whether it can be called (false after a trap).
    fn is_live(&self) -> bool;
    /// Calls the module for `events` of one partition, in offset order,
    /// with the partition's state store when the module is stateful, on
    /// the call slot `slot`. Blocking. See [`crate::invoke::Invoker::call`].
    fn call(
        &mut self,
        events: &[Event],
        stop: &CancellationToken,
        state: Option<&StateHandle>,
        slot: Slot,
    ) -> CallResult;
}

/// The implementations a partition worker runs on.
pub trait Ports: Send + Sync + 'static {
    /// Where events come from.
    type Source: Source;
    /// Where at-least-once partitions' records go.
    type Sink: Sink;
    /// Exactly-once partitions' transactions.
    type Txn: Transactions;
    /// The module.
    type Guest: Guest;
}

/// What all partitions of one module share.
pub struct Module<P: Ports> {
    /// Module name; the same across versions.
    pub name: Arc<str>,
    /// The module and its versions.
    pub guest: Arc<P::Guest>,
    /// The shared producer (at-least-once partitions).
    pub sink: P::Sink,
    /// The module's metrics.
    pub metrics: Arc<ModuleMetrics>,
    /// Where partitions report why they cannot proceed.
    pub status: Arc<StatusBoard>,
    /// Settled watermarks, committed by the group's poll thread.
    pub offsets: Arc<offsets::Offsets>,
    /// Where blocking work (guest calls, instantiation) and the workers run.
    pub runtime: tokio::runtime::Handle,
    /// Stateful modules: the state stores, one per input partition number.
    pub state: Option<Arc<Stores>>,
    /// The module's share of the call slots.
    pub share: ModuleShare,
    /// The process's budget of output bytes.
    pub budget: Arc<budget::Budget>,
}

impl<P: Ports> std::fmt::Debug for Module<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<P: Ports> Module<P> {
    /// A partition's store wrote a checkpoint: its size goes to the
    /// metrics and `/status`.
    pub fn state_checkpointed(&self, state: &StateHandle) {
        if let Some(stores) = &self.state {
            stores.report(&state.store);
        }
    }

    /// The partition's state store failed: logs it, reports it in
    /// `/status`, and stops the partition.
    pub fn state_failed(&self, tp: &TopicPartition, err: &impl std::fmt::Display) -> Stopped {
        tracing::error!(module = &*self.name, topic = %tp.topic, partition = tp.partition,
            error = %err, "cannot write the state store; stopping the partition");
        self.problem(tp, Some(format!("state store: {err}")));
        Stopped
    }

    /// Reports (or, with `None`, clears) why a partition cannot proceed.
    pub fn problem(&self, tp: &TopicPartition, why: Option<String>) {
        self.status.problem(&self.name, &tp.to_string(), why);
    }
}

/// The worker was told to stop before the work was settled.
#[derive(Debug)]
pub struct Stopped;
