//! Dispatching events from a module's consumer group to its partitions'
//! workers, and committing what they finished.
//!
//! Each module has one Kafka consumer, in its own group, polled by a
//! dedicated thread. Every assigned partition gets a [`worker`] task that
//! handles its events strictly in offset order; partitions and modules run
//! in parallel.
//!
//! # Offsets
//!
//! A worker records the *watermark* of its partition (the last settled
//! offset plus one) only after every record emitted for the settled events has been
//! acknowledged by the broker. The poll thread commits watermarks every
//! `commit-interval`, synchronously when partitions are revoked, and at
//! shutdown. librdkafka's auto-commit and offset store are off, so nothing
//! else ever commits. When an assignment is *lost* (the group moved on
//! without us) nothing is committed.
//!
//! # Shutdown and revocation
//!
//! A revoked partition's worker is told to stop: it finishes the call in
//! flight, waits for its outputs' acknowledgements, records its watermark
//! and exits; events queued behind it are dropped (they are redelivered to
//! the new owner from the committed offset). The rebalance callback waits for
//! the worker, commits, and only then lets librdkafka hand the partition
//! over.

mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{LoadedModule, WasmEngine};
use crate::kafka::{KafkaSettings, to_event};

/// Events buffered per partition between the poll thread and its worker.
const PARTITION_QUEUE: usize = 1024;

/// A topic and partition.
pub(crate) type TopicPartition = (String, i32);

/// What a module's poll thread and workers share.
pub(crate) struct Shared {
    pub(crate) module: Arc<LoadedModule>,
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) producer: FutureProducer,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Settled watermark per partition (next offset to read).
    watermarks: Mutex<HashMap<TopicPartition, i64>>,
}

impl Shared {
    /// Records that every event of `tp` below `next` is settled.
    pub(crate) fn settle(&self, tp: &TopicPartition, next: i64) {
        lock(&self.watermarks).insert(tp.clone(), next);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct WorkerHandle {
    events: mpsc::Sender<crate::bindings::weir::consumer::types::Event>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The consumer's context: owns the workers so the rebalance callback (run
/// on the poll thread, inside `poll`) can drain them before a hand-over.
struct RunnerContext {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<TopicPartition, WorkerHandle>>,
    committed: Mutex<HashMap<TopicPartition, i64>>,
    drain_timeout: Duration,
}

impl ClientContext for RunnerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let module = &*self.shared.module.name;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "weir::kafka", module, facility = fac, "{message}");
            }
            L::Warning => {
                tracing::warn!(target: "weir::kafka", module, facility = fac, "{message}")
            }
            L::Notice | L::Info => {
                tracing::info!(target: "weir::kafka", module, facility = fac, "{message}");
            }
            L::Debug => tracing::debug!(target: "weir::kafka", module, facility = fac, "{message}"),
        }
    }
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let module = &*self.shared.module.name;
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(module, partitions = %describe(tpl), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                tracing::info!(module, partitions = %describe(tpl), lost, "partitions revoked");
                let revoked: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                self.stop_workers(&revoked);
                if !lost {
                    self.commit(consumer, Some(&revoked), CommitMode::Sync);
                }
                let mut marks = lock(&self.shared.watermarks);
                let mut committed = lock(&self.committed);
                for tp in &revoked {
                    marks.remove(tp);
                    committed.remove(tp);
                }
            }
            Rebalance::Error(err) => tracing::error!(module, error = %err, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(module = &*self.shared.module.name,
                offsets = %describe(offsets), "offsets committed"),
            Err(err) => {
                tracing::warn!(module = &*self.shared.module.name, error = %err,
                    offsets = %describe(offsets), "offset commit failed; will retry");
                // Forget these so the next periodic commit sends them again.
                let mut committed = lock(&self.committed);
                for e in offsets.elements() {
                    let tp = (e.topic().to_owned(), e.partition());
                    if let Offset::Offset(o) = e.offset()
                        && committed.get(&tp) == Some(&o)
                    {
                        committed.remove(&tp);
                    }
                }
            }
        }
    }
}

impl RunnerContext {
    /// Routes an event to its partition's worker, starting one if needed.
    /// Blocks while the worker's queue is full (back-pressure).
    fn dispatch(&self, event: crate::bindings::weir::consumer::types::Event) {
        let tp = (event.topic.clone(), event.partition);
        let sender = {
            let mut workers = lock(&self.workers);
            let handle = workers.entry(tp.clone()).or_insert_with(|| {
                let (events, rx) = mpsc::channel(PARTITION_QUEUE);
                let stop = CancellationToken::new();
                let task = worker::spawn(self.shared.clone(), tp.clone(), rx, stop.clone());
                WorkerHandle { events, stop, task }
            });
            handle.events.clone()
        };
        if sender.blocking_send(event).is_err() {
            tracing::debug!(module = &*self.shared.module.name, topic = %tp.0,
                partition = tp.1, "worker stopped; event left for redelivery");
        }
    }

    /// Stops the workers of `partitions` (all when empty) and waits up to the
    /// drain timeout for them to finish their call in flight.
    fn stop_workers(&self, partitions: &[TopicPartition]) {
        let handles: Vec<(TopicPartition, WorkerHandle)> = {
            let mut workers = lock(&self.workers);
            let keys: Vec<TopicPartition> = if partitions.is_empty() {
                workers.keys().cloned().collect()
            } else {
                partitions.to_vec()
            };
            keys.into_iter()
                .filter_map(|tp| workers.remove(&tp).map(|h| (tp, h)))
                .collect()
        };
        for (_, handle) in &handles {
            handle.stop.cancel();
        }
        let deadline = Instant::now() + self.drain_timeout;
        for (tp, handle) in handles {
            drop(handle.events);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let task = handle.task;
            let joined = self
                .shared
                .runtime
                .block_on(async { tokio::time::timeout(remaining, task).await });
            if joined.is_err() {
                tracing::warn!(module = &*self.shared.module.name, topic = %tp.0, partition = tp.1,
                    "worker did not finish in time; its uncommitted events will be redelivered");
            }
        }
    }

    /// Commits watermarks that moved since the last commit, for `only`
    /// partitions or all.
    fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        only: Option<&[TopicPartition]>,
        mode: CommitMode,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut newly = Vec::new();
        {
            let marks = lock(&self.shared.watermarks);
            let committed = lock(&self.committed);
            for (tp, &next) in marks.iter() {
                if only.is_some_and(|o| !o.contains(tp)) || committed.get(tp) == Some(&next) {
                    continue;
                }
                if tpl
                    .add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
                    .is_ok()
                {
                    newly.push((tp.clone(), next));
                }
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                let mut committed = lock(&self.committed);
                committed.extend(newly);
            }
            Err(err) => tracing::warn!(module = &*self.shared.module.name, error = %err,
                offsets = %describe(&tpl), "offset commit failed; will retry"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}[{}]@{o}", e.topic(), e.partition()),
            _ => format!("{}[{}]", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything a module runner needs from the process.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Kafka connection settings.
    pub kafka: KafkaSettings,
    /// Interval of periodic commits.
    pub commit_interval: Duration,
    /// Budget for draining workers on revoke and shutdown.
    pub drain_timeout: Duration,
}

/// Starts consuming for `module` on a dedicated thread. The thread returns
/// after `cancel` fires and the module has drained, committed and left its
/// group.
pub fn spawn_runner(
    module: Arc<LoadedModule>,
    engine: Arc<WasmEngine>,
    producer: FutureProducer,
    settings: RunnerSettings,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let group = module.manifest.group_id(&module.name);
    let shared = Arc::new(Shared {
        module: module.clone(),
        engine,
        producer,
        runtime: tokio::runtime::Handle::current(),
        watermarks: Mutex::new(HashMap::new()),
    });
    let context = RunnerContext {
        shared,
        workers: Mutex::new(HashMap::new()),
        committed: Mutex::new(HashMap::new()),
        drain_timeout: settings.drain_timeout,
    };
    let consumer: BaseConsumer<RunnerContext> = settings
        .kafka
        .consumer_config(&group, module.manifest.offset_reset.as_kafka())
        .create_with_context(context)
        .map_err(|e| {
            anyhow::anyhow!(
                "failed to create the consumer of module `{}`: {e}",
                module.name
            )
        })?;
    let topics: Vec<&str> = module
        .manifest
        .input_topics
        .iter()
        .map(String::as_str)
        .collect();
    consumer.subscribe(&topics).map_err(|e| {
        anyhow::anyhow!(
            "module `{}` failed to subscribe to {topics:?}: {e}",
            module.name
        )
    })?;
    tracing::info!(module = &*module.name, digest = module.short_digest(), group = %group,
        topics = ?module.manifest.input_topics, batch = matches!(module.pre, crate::engine::HandlerPre::Batch(_)),
        "module started");
    let name = format!("weir-poll-{}", module.name);
    Ok(std::thread::Builder::new()
        .name(name)
        .spawn(move || poll_loop(consumer, settings.commit_interval, cancel))?)
}

fn poll_loop(
    consumer: BaseConsumer<RunnerContext>,
    commit_interval: Duration,
    cancel: CancellationToken,
) {
    let context = consumer.context();
    let module = context.shared.module.name.clone();
    let mut next_commit = Instant::now() + commit_interval;
    while !cancel.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => context.dispatch(to_event(&message)),
            Some(Err(err)) => {
                tracing::warn!(module = &*module, error = %err, "kafka consumer error")
            }
            None => {}
        }
        if Instant::now() >= next_commit {
            context.commit(&consumer, None, CommitMode::Async);
            next_commit = Instant::now() + commit_interval;
        }
    }
    tracing::info!(
        module = &*module,
        "module stopping: draining in-flight events"
    );
    context.stop_workers(&[]);
    context.commit(&consumer, None, CommitMode::Sync);
    consumer.unsubscribe();
    // Dropping the consumer closes it: it leaves the group (running the
    // revoke callback, which finds nothing left to drain).
    drop(consumer);
    tracing::info!(module = &*module, "module stopped");
}
