//! Fakes of the pipeline's seams for unit tests: a partition log as the
//! source, a recording sink whose deliveries a test can fail or hold, a
//! transactional sink that only publishes what a commit commits, and a
//! module whose handler is a plain closure.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::offsets::Offsets;
use super::policy::Pending;
use super::{
    DeliveryError, Fault, Guest, Instance, Module, Ports, Sink, Source, Transactions, Version,
};
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::invoke::{CallFailure, CallResult};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::status::StatusBoard;
use crate::sync::lock;

/// The fakes as ports.
pub(super) struct FakePorts;

impl Ports for FakePorts {
    type Source = FakeSource;
    type Sink = FakeSink;
    type Txn = FakeTxns;
    type Guest = FakeGuest;
}

/// An event of partition 0 of `in` at `offset`, with `value`.
pub(super) fn event(offset: i64, value: &str) -> Event {
    Event {
        topic: "in".into(),
        partition: 0,
        offset,
        timestamp_ms: Some(1_000 + offset),
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
    }
}

/// A record to `topic` with `value`.
pub(super) fn record(topic: &str, value: &str) -> Outgoing {
    Outgoing {
        topic: topic.into(),
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
        partition: None,
    }
}

/// The text value of a record.
pub(super) fn text(record: &Outgoing) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

// ---- source ----

/// A partition log and the position of its reader.
#[derive(Default)]
pub(super) struct Log {
    pub(super) events: Vec<Event>,
    pub(super) next: usize,
    pub(super) rewinds: Vec<i64>,
}

/// Reads a shared [`Log`].
#[derive(Clone, Default)]
pub(super) struct FakeSource {
    pub(super) log: Arc<Mutex<Log>>,
    pub(super) ready: Arc<Notify>,
}

impl FakeSource {
    /// Appends events to the log and wakes the reader.
    pub(super) fn push(&self, events: impl IntoIterator<Item = Event>) {
        lock(&self.log).events.extend(events);
        self.ready.notify_one();
    }
}

impl Source for FakeSource {
    fn take(&mut self, max: usize) -> Vec<Event> {
        let mut log = lock(&self.log);
        let end = (log.next + max).min(log.events.len());
        let taken = log.events[log.next..end].to_vec();
        log.next = end;
        taken
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.ready.notified()
    }

    fn rewind(&mut self, offset: i64) -> Result<(), String> {
        let mut log = lock(&self.log);
        log.rewinds.push(offset);
        log.next = log
            .events
            .iter()
            .position(|e| e.offset >= offset)
            .unwrap_or(log.events.len());
        drop(log);
        self.ready.notify_one();
        Ok(())
    }
}

// ---- sink ----

/// What the fake broker does with one delivery.
#[derive(Clone)]
pub(super) enum Answer {
    /// Acknowledge.
    Ack,
    /// Fail.
    Fail(Fault),
    /// Acknowledge once the notify fires.
    Hold(Arc<Notify>),
}

type Rule = Arc<dyn Fn(&Outgoing, usize) -> Answer + Send + Sync>;

/// A sink that records every send and answers by a rule (given the record
/// and how many times a record with the same value was sent before).
#[derive(Clone)]
pub(super) struct FakeSink {
    /// Every record sent, in order.
    pub(super) sent: Arc<Mutex<Vec<Outgoing>>>,
    /// Every record acknowledged, in the order of acknowledgement.
    pub(super) acked: Arc<Mutex<Vec<Outgoing>>>,
    rule: Rule,
    /// When set, each run waits for one permit before it is sent.
    permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for FakeSink {
    fn default() -> Self {
        Self::answering(|_, _| Answer::Ack)
    }
}

impl FakeSink {
    /// A sink that answers by `rule`.
    pub(super) fn answering(
        rule: impl Fn(&Outgoing, usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self {
            sent: Arc::default(),
            acked: Arc::default(),
            rule: Arc::new(rule),
            permits: None,
        }
    }

    /// This sink, sending each run only once it gets one of `permits`.
    pub(super) fn gated(mut self, permits: Arc<tokio::sync::Semaphore>) -> Self {
        self.permits = Some(permits);
        self
    }

    /// Values acknowledged to `topic`, in order.
    pub(super) fn acked_to(&self, topic: &str) -> Vec<String> {
        lock(&self.acked)
            .iter()
            .filter(|r| r.topic == topic)
            .map(text)
            .collect()
    }
}

/// Records `record` as acknowledged; its offset is its index among the
/// records acknowledged to its topic.
fn acknowledge(acked: &Mutex<Vec<Outgoing>>, record: Outgoing) -> i64 {
    let mut acked = lock(acked);
    let offset = acked.iter().filter(|r| r.topic == record.topic).count();
    acked.push(record);
    offset as i64
}

type Delivery = Pin<Box<dyn Future<Output = Result<i64, DeliveryError>> + Send>>;
type Answers = Pin<Box<dyn Future<Output = Vec<Result<i64, DeliveryError>>> + Send>>;

impl FakeSink {
    /// Sends one record: answered by the rule.
    fn send(&self, record: &Outgoing) -> Delivery {
        let before = {
            let mut sent = lock(&self.sent);
            let before = sent.iter().filter(|r| r.value == record.value).count();
            sent.push(record.clone());
            before
        };
        // Acknowledgements happen when the fake broker answers, not when
        // the pipeline looks: an `Ack` is recorded at once.
        match (self.rule)(record, before) {
            Answer::Ack => {
                let offset = acknowledge(&self.acked, record.clone());
                Box::pin(std::future::ready(Ok(offset)))
            }
            Answer::Fail(fault) => Box::pin(std::future::ready(Err(DeliveryError {
                fault,
                reason: format!("fake {fault:?} failure"),
            }))),
            Answer::Hold(gate) => {
                let (acked, record) = (self.acked.clone(), record.clone());
                Box::pin(async move {
                    gate.notified().await;
                    Ok(acknowledge(&acked, record))
                })
            }
        }
    }
}

impl Sink for FakeSink {
    type Answers = Answers;

    async fn send_all(&self, records: &[Pending]) -> Answers {
        if let Some(permits) = &self.permits {
            permits.acquire().await.expect("never closed").forget();
        }
        let deliveries: Vec<Delivery> = records.iter().map(|p| self.send(&p.record)).collect();
        Box::pin(async move {
            let mut answers = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                answers.push(delivery.await);
            }
            answers
        })
    }
}

// ---- transactions ----

/// What the fake transaction coordinator saw.
#[derive(Default)]
pub(super) struct TxnLog {
    /// Records of committed transactions, in order.
    pub(super) committed: Vec<Outgoing>,
    /// Input offsets committed with them.
    pub(super) offsets: Vec<i64>,
    /// Commits still to fail (transiently, so they abort).
    pub(super) fail_commits: usize,
    pub(super) begun: usize,
    pub(super) aborted: usize,
}

/// Transactions over a [`FakeSink`]: a commit publishes what was
/// acknowledged since the last commit or abort; an abort discards it.
#[derive(Clone, Default)]
pub(super) struct FakeTxns {
    pub(super) sink: FakeSink,
    pub(super) log: Arc<Mutex<TxnLog>>,
}

impl Transactions for FakeTxns {
    type Sink = FakeSink;

    async fn init(&mut self) -> anyhow::Result<FakeSink> {
        Ok(self.sink.clone())
    }

    fn begin(&mut self) -> Result<(), DeliveryError> {
        lock(&self.log).begun += 1;
        Ok(())
    }

    async fn commit(&mut self, next: i64) -> Result<(), DeliveryError> {
        let pending: Vec<Outgoing> = std::mem::take(&mut *lock(&self.sink.acked));
        let mut log = lock(&self.log);
        if log.fail_commits > 0 {
            log.fail_commits -= 1;
            return Err(DeliveryError::transient("fake commit failure"));
        }
        log.committed.extend(pending);
        log.offsets.push(next);
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), DeliveryError> {
        lock(&self.sink.acked).clear();
        lock(&self.log).aborted += 1;
        Ok(())
    }
}

// ---- state ----

/// A changelog with nothing in it: every store starts empty.
pub(super) struct EmptyChangelog;

impl crate::state::Changelog for EmptyChangelog {
    fn restore(
        &self,
        _topic: &str,
        _partition: i32,
        from: Option<i64>,
        _apply: &mut crate::state::changelog::Apply<'_>,
        _progress: &mut dyn FnMut(u64),
    ) -> Result<i64, crate::state::RestoreError> {
        Ok(from.unwrap_or(0))
    }
}

/// The stores of the fake module, in `dir`, with changelog
/// `weir-state-fake`.
pub(super) fn stores(dir: &std::path::Path) -> Arc<crate::state::Stores> {
    let metrics = Metrics::new();
    Arc::new(crate::state::Stores::new(
        "fake".into(),
        dir,
        "weir-state-fake",
        Arc::new(EmptyChangelog),
        metrics.state("fake"),
        Arc::new(StatusBoard::default()),
    ))
}

// ---- the module ----

/// What the fake handler does with one event.
#[derive(Debug, Clone)]
pub(super) enum Act {
    /// `ok`, emitting these records.
    Ok(Vec<Outgoing>),
    /// `reject`.
    Reject(String),
    /// `retry`.
    Retry(String),
    /// Trap.
    Trap(String),
    /// A stateful `ok`: adds one to the count stored under this key and
    /// emits the new count to `out` (like the `count-by-key` example).
    Count(String),
}

type Handler = Arc<dyn Fn(&Event) -> Act + Send + Sync>;

/// One version of the fake module.
pub(super) struct FakeVersion {
    pub(super) manifest: Manifest,
    pub(super) digest: String,
    pub(super) batch: bool,
    pub(super) handler: Handler,
}

impl FakeVersion {
    /// A version named by `digest` with the manifest `toml` (input topic `in`
    /// added) and `handler`.
    pub(super) fn new(
        digest: &str,
        toml: &str,
        handler: impl Fn(&Event) -> Act + Send + Sync + 'static,
    ) -> Arc<Self> {
        let text = format!("input-topics = [\"in\"]\noutput-topics = [\"out\"]\n{toml}");
        let manifest = Manifest::parse(&text, std::path::Path::new("fake.toml")).expect("manifest");
        Arc::new(Self {
            manifest,
            digest: digest.into(),
            batch: false,
            handler: Arc::new(handler),
        })
    }
}

impl Version for FakeVersion {
    fn name(&self) -> &str {
        "fake"
    }

    fn digest(&self) -> &str {
        &self.digest
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn is_batch(&self) -> bool {
        self.batch
    }
}

/// The fake module: a slot of versions.
pub(super) struct FakeGuest {
    pub(super) slot: ArcSwap<FakeVersion>,
}

impl Guest for FakeGuest {
    type Version = FakeVersion;
    type Instance = FakeInstance;

    fn current(&self) -> Arc<FakeVersion> {
        self.slot.load_full()
    }

    fn instantiate(&self, version: Arc<FakeVersion>) -> anyhow::Result<FakeInstance> {
        Ok(FakeInstance {
            version,
            live: true,
        })
    }
}

/// An instance of a fake version; calls behave like an `Invoker`'s.
pub(super) struct FakeInstance {
    version: Arc<FakeVersion>,
    live: bool,
}

impl Instance for FakeInstance {
    type Version = FakeVersion;

    fn version(&self) -> &Arc<FakeVersion> {
        &self.version
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn call(
        &mut self,
        events: &[Event],
        stop: &CancellationToken,
        state: Option<&crate::state::StateHandle>,
        _slot: crate::slots::Slot,
    ) -> CallResult {
        let mut result = CallResult::default();
        let mut emitted = Vec::new();
        // One call's view of the store, as the host keeps it.
        let limits = crate::state::StateLimits::of(&crate::manifest::Limits::default());
        let mut call_state =
            state.map(|h| crate::state::CallState::new(h, limits, 0).expect("fake store"));
        for event in events {
            if stop.is_cancelled() && !self.version.batch {
                break;
            }
            let (disposition, mut out) = match (self.version.handler)(event) {
                Act::Ok(out) => (Disposition::Ok, out),
                Act::Count(key) => {
                    let state = call_state
                        .as_mut()
                        .expect("Act::Count needs a stateful rig");
                    let count = state
                        .get(key.as_bytes())
                        .expect("fake store")
                        .map_or(0, |v| String::from_utf8(v).unwrap().parse::<u64>().unwrap())
                        + 1;
                    let set = state.set(key.into_bytes(), count.to_string().into_bytes(), None);
                    assert!(set.expect("fake store").is_ok());
                    (Disposition::Ok, vec![record("out", &count.to_string())])
                }
                Act::Reject(r) => (Disposition::Reject(r), Vec::new()),
                Act::Retry(r) => (Disposition::Retry(r), Vec::new()),
                Act::Trap(reason) => {
                    self.live = false;
                    result.failure = Some(CallFailure {
                        reason,
                        timed_out: false,
                    });
                    break;
                }
            };
            let retry = matches!(disposition, Disposition::Retry(_));
            if let Some(state) = &mut call_state {
                let writes = state.end_event(matches!(disposition, Disposition::Ok));
                if matches!(disposition, Disposition::Ok) {
                    out.extend(writes);
                }
            }
            result.dispositions.push(disposition);
            if self.version.batch {
                emitted.extend(out);
            } else {
                result.emitted.push(out);
                if retry {
                    break;
                }
            }
        }
        if self.version.batch {
            if result.failure.is_some() {
                result.dispositions.clear();
            } else {
                result.emitted.push(emitted);
            }
        }
        result
    }
}

/// A module of fakes, and the handles a test looks at.
pub(super) struct Rig {
    pub(super) module: Arc<Module<FakePorts>>,
    pub(super) source: FakeSource,
}

impl Rig {
    /// A module whose first version is `version`, producing to `sink`.
    pub(super) fn new(version: Arc<FakeVersion>, sink: FakeSink) -> Self {
        Self::with_state(version, sink, None)
    }

    /// [`Rig::new`], stateful when given `stores`.
    pub(super) fn with_state(
        version: Arc<FakeVersion>,
        sink: FakeSink,
        stores: Option<Arc<crate::state::Stores>>,
    ) -> Self {
        Self::build(version, sink, stores, 64 << 20)
    }

    /// [`Rig::new`] with an output budget of `budget` bytes.
    pub(super) fn with_budget(version: Arc<FakeVersion>, sink: FakeSink, budget: u64) -> Self {
        Self::build(version, sink, None, budget)
    }

    fn build(
        version: Arc<FakeVersion>,
        sink: FakeSink,
        stores: Option<Arc<crate::state::Stores>>,
        budget: u64,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let status = Arc::new(StatusBoard::default());
        let module = Arc::new(Module {
            name: "fake".into(),
            guest: Arc::new(FakeGuest {
                slot: ArcSwap::new(version),
            }),
            sink,
            metrics: metrics.module("fake"),
            status,
            offsets: Arc::new(Offsets::default()),
            runtime: tokio::runtime::Handle::current(),
            state: stores,
            share: crate::slots::ModuleShare::standalone(2),
            budget: Arc::new(super::budget::Budget::new(budget)),
        });
        Self {
            module,
            source: FakeSource::default(),
        }
    }

    /// Deploys a new version.
    pub(super) fn deploy(&self, version: Arc<FakeVersion>) {
        self.module.guest.slot.store(version);
    }

    /// The watermark of `in[0]`.
    pub(super) fn watermark(&self) -> Option<i64> {
        self.module
            .offsets
            .watermark(&super::TopicPartition::new("in", 0))
    }

    /// Waits up to 5 s for `check` to hold.
    pub(super) async fn until(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
