//! Dispatching events from a module's consumer group to its partitions'
//! workers, and committing what they finished.
//!
//! Each module has one Kafka consumer, in its own group, polled by a
//! dedicated thread that serves the group (rebalances, commits, errors).
//! Every assigned partition gets a [`worker`] task that reads the
//! partition's own librdkafka queue (split off the consumer's queue when the
//! partition is assigned) and handles its events strictly in offset order;
//! partitions and modules run in parallel. A slow partition only fills its
//! own queue: librdkafka stops prefetching it at `queued.max.messages.kbytes`
//! while the other partitions keep flowing.
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

mod ack;
mod failure;
mod settle;
mod txn;
mod worker;

pub(crate) use failure::event_size;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::engine::{LoadedModule, WasmEngine};
use crate::kafka::KafkaSettings;
use crate::metrics::{Metrics, ModuleMetrics};
use crate::status::StatusBoard;

/// A topic and partition.
pub(crate) type TopicPartition = (String, i32);

/// What a module's poll thread and workers share.
pub(crate) struct Shared {
    /// Module name; the same across versions.
    pub(crate) name: Arc<str>,
    /// The module's current version; hot reload swaps it, and each worker
    /// moves to the new version between two calls.
    pub(crate) module: Arc<ArcSwap<LoadedModule>>,
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) producer: FutureProducer,
    /// Kafka settings, for exactly-once partitions' own producers.
    pub(crate) kafka: KafkaSettings,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) metrics: Arc<ModuleMetrics>,
    /// Where partitions report why they cannot proceed.
    pub(crate) status: Arc<StatusBoard>,
    /// Settled watermark per partition (next offset to read).
    watermarks: Mutex<HashMap<TopicPartition, i64>>,
}

impl Shared {
    /// Reports (or, with `None`, clears) why a partition cannot proceed.
    pub(crate) fn problem(&self, tp: &TopicPartition, why: Option<String>) {
        self.status
            .problem(&self.name, &format!("{}[{}]", tp.0, tp.1), why);
    }

    /// The current version of the module.
    pub(crate) fn current(&self) -> Arc<LoadedModule> {
        self.module.load_full()
    }

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
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The consumer's context: owns the workers so the rebalance callback (run
/// on the poll thread, inside `poll`) can drain them before a hand-over.
struct RunnerContext {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<TopicPartition, WorkerHandle>>,
    /// The consumer itself, to split partition queues off it on assignment.
    consumer: OnceLock<Weak<BaseConsumer<RunnerContext>>>,
    /// Partitions a message arrived for on the consumer's own queue, which
    /// their worker never sees: never committed again until revoked.
    stray: Mutex<HashSet<TopicPartition>>,
    /// Parent of every worker's stop token: the module's cancellation.
    stop: CancellationToken,
    committed: Mutex<HashMap<TopicPartition, i64>>,
    drain_timeout: Duration,
}

impl ClientContext for RunnerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let module = &*self.shared.name;
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

    fn stats(&self, statistics: rdkafka::Statistics) {
        crate::kafka_stats::record(&self.shared.metrics, &statistics);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.shared.metrics.brokers_down();
        }
        tracing::error!(target: "weir::kafka", module = &*self.shared.name, error = %error, "{reason}");
    }
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let module = &*self.shared.name;
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(module, partitions = %describe(tpl), "partitions assigned");
                self.shared.metrics.assigned(tpl.count());
                if let Some(at) = self.shared.current().manifest.start_at {
                    self.start_new_partitions_at(consumer, tpl, at);
                }
                for e in tpl.elements() {
                    self.start_worker((e.topic().to_owned(), e.partition()));
                }
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
                self.shared
                    .metrics
                    .revoked(revoked.iter().map(|(t, p)| (t.as_str(), *p)), lost);
                if !lost {
                    self.commit(consumer, Some(&revoked), CommitMode::Sync);
                }
                let mut marks = lock(&self.shared.watermarks);
                let mut committed = lock(&self.committed);
                let mut stray = lock(&self.stray);
                for tp in &revoked {
                    marks.remove(tp);
                    committed.remove(tp);
                    stray.remove(tp);
                }
            }
            Rebalance::Error(err) => {
                self.shared.metrics.rebalance_error();
                tracing::error!(module, error = %err, "rebalance failed")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.shared
                    .metrics
                    .committed(offsets.elements().iter().filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.topic(), e.partition(), o)),
                        _ => None,
                    }));
                tracing::debug!(module = &*self.shared.name,
                    offsets = %describe(offsets), "offsets committed")
            }
            Err(err) => {
                tracing::warn!(module = &*self.shared.name, error = %err,
                    offsets = %describe(offsets),
                    "offset commit failed; retried at the next commit while the partitions stay assigned \
                     (a revoked partition's next owner replays from its last committed offset)");
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
    /// `start-at`: for assigned partitions the group has no committed offset
    /// for, commits the offset of the first event at or after `at` (the
    /// partition's end when there is none), so fetching starts there.
    fn start_new_partitions_at(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
        at: std::time::SystemTime,
    ) {
        let module = &*self.shared.name;
        let timeout = Duration::from_secs(10);
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let result = (|| -> KafkaResult<TopicPartitionList> {
            let committed = consumer.committed_offsets(tpl.clone(), timeout)?;
            let mut new = TopicPartitionList::new();
            for e in committed.elements() {
                if !matches!(e.offset(), Offset::Offset(_)) {
                    new.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms))?;
                }
            }
            if new.count() == 0 {
                return Ok(new);
            }
            let found = consumer.offsets_for_times(new, timeout)?;
            let mut start = TopicPartitionList::new();
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => o,
                    _ => {
                        consumer
                            .fetch_watermarks(e.topic(), e.partition(), timeout)?
                            .1
                    }
                };
                start.add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))?;
            }
            consumer.commit(&start, CommitMode::Sync)?;
            Ok(start)
        })();
        match result {
            Ok(start) if start.count() > 0 => {
                tracing::info!(module, start_at = %humantime::format_rfc3339_millis(at),
                partitions = %describe(&start), "new partitions start at `start-at`")
            }
            Ok(_) => {}
            Err(err) => tracing::error!(module, error = %err,
                "cannot position new partitions at `start-at`; they start at `offset-reset`"),
        }
    }

    /// Starts the worker of a newly assigned partition on the partition's
    /// own queue. Called before librdkafka starts fetching it, so every
    /// message of the partition lands in that queue.
    fn start_worker(&self, tp: TopicPartition) {
        let module = &*self.shared.name;
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            // Only while the consumer is being closed: nothing to start.
            return;
        };
        let mut workers = lock(&self.workers);
        if workers.contains_key(&tp) {
            return;
        }
        let Some(queue) = consumer.split_partition_queue(&tp.0, tp.1) else {
            tracing::error!(module, topic = %tp.0, partition = tp.1,
                "cannot split off the partition's queue; it is not handled until the next rebalance");
            return;
        };
        let stop = self.stop.child_token();
        let task = worker::spawn(
            self.shared.clone(),
            tp.clone(),
            queue,
            consumer.clone(),
            stop.clone(),
        );
        workers.insert(tp, WorkerHandle { stop, task });
    }

    /// A message on the consumer's own queue: its partition has no queue of
    /// its own, so its worker will never see it. Not handled, and the
    /// partition is never committed again until it is revoked, so the
    /// message is redelivered rather than skipped.
    fn stray(&self, topic: &str, partition: i32, offset: i64) {
        let tp = (topic.to_owned(), partition);
        let newly = lock(&self.stray).insert(tp.clone());
        if newly {
            tracing::error!(
                module = &*self.shared.name,
                topic,
                partition,
                offset,
                "a message arrived outside its partition's queue; the partition is no longer \
                 committed until it is revoked or weir restarts (its events will be redelivered)"
            );
            self.shared.problem(
                &tp,
                Some(format!(
                    "message at offset {offset} arrived outside the partition's queue; commits held"
                )),
            );
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
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut task = handle.task;
            let joined = self
                .shared
                .runtime
                .block_on(async { tokio::time::timeout(remaining, &mut task).await });
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(module = &*self.shared.name, topic = %tp.0,
                    partition = tp.1, error = %err, "partition worker failed"),
                Err(_) => {
                    // Abort so it can never settle (and commit) after the
                    // hand-over; whatever it had not settled is redelivered.
                    task.abort();
                    let _ = self.shared.runtime.block_on(task);
                    tracing::warn!(module = &*self.shared.name, topic = %tp.0, partition = tp.1,
                        "worker did not finish within the drain timeout and was aborted; \
                         its unsettled events will be redelivered");
                }
            }
        }
    }

    /// Commits watermarks that moved since the last commit, for `only`
    /// partitions or all.
    ///
    /// A synchronous commit (revocation, shutdown) sends every watermark
    /// again: an earlier asynchronous commit of the same offset may still be
    /// unanswered, or refused during the rebalance that is revoking the
    /// partition, and the next owner starts from whatever is committed.
    fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        only: Option<&[TopicPartition]>,
        mode: CommitMode,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut newly = Vec::new();
        let again = matches!(mode, CommitMode::Sync);
        {
            let marks = lock(&self.shared.watermarks);
            let committed = lock(&self.committed);
            let stray = lock(&self.stray);
            for (tp, &next) in marks.iter() {
                if only.is_some_and(|o| !o.contains(tp))
                    || (!again && committed.get(tp) == Some(&next))
                    || stray.contains(tp)
                {
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
            Err(err) => tracing::warn!(module = &*self.shared.name, error = %err,
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
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The modules' status, for operators.
    pub status: Arc<StatusBoard>,
}

/// librdkafka statistics interval (lag and broker state for metrics and
/// readiness), unless `[kafka] statistics.interval.ms` sets one.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Starts consuming for `module` on a dedicated thread. The thread returns
/// after `cancel` fires and the module has drained, committed and left its
/// group. Storing a new version into `module` hot-swaps it: calls in flight
/// finish on the old version, and each partition's next call runs on the
/// new one. Input topics, group and offset reset are read only here.
pub fn spawn_runner(
    slot: Arc<ArcSwap<LoadedModule>>,
    engine: Arc<WasmEngine>,
    producer: FutureProducer,
    settings: RunnerSettings,
    cancel: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let module = slot.load_full();
    let group = module.manifest.group_id(&module.name);
    let module_metrics = settings.metrics.module(&module.name);
    let shared = Arc::new(Shared {
        name: module.name.clone(),
        module: slot,
        engine,
        producer,
        kafka: settings.kafka.clone(),
        runtime: tokio::runtime::Handle::current(),
        metrics: module_metrics.clone(),
        status: settings.status.clone(),
        watermarks: Mutex::new(HashMap::new()),
    });
    let context = RunnerContext {
        shared,
        workers: Mutex::new(HashMap::new()),
        consumer: OnceLock::new(),
        stray: Mutex::new(HashSet::new()),
        stop: cancel.child_token(),
        committed: Mutex::new(HashMap::new()),
        drain_timeout: settings.drain_timeout,
    };
    let mut config = settings
        .kafka
        .consumer_config(&group, module.manifest.offset_reset.as_kafka());
    if module.manifest.delivery.guarantee == crate::manifest::Guarantee::ExactlyOnce {
        // Never read other transactions' aborted records.
        config.set("isolation.level", "read_committed");
    }
    if config.get("statistics.interval.ms").is_none() {
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    let consumer: Arc<BaseConsumer<RunnerContext>> =
        Arc::new(config.create_with_context(context).map_err(|e| {
            module_metrics.stopped();
            anyhow::anyhow!(
                "failed to create the consumer of module `{}`: {}",
                module.name,
                settings.kafka.describe_error(&e)
            )
        })?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let topics: Vec<&str> = module
        .manifest
        .input_topics
        .iter()
        .map(String::as_str)
        .collect();
    consumer.subscribe(&topics).map_err(|e| {
        module_metrics.stopped();
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
    consumer: Arc<BaseConsumer<RunnerContext>>,
    commit_interval: Duration,
    cancel: CancellationToken,
) {
    let context = consumer.context();
    let module = context.shared.name.clone();
    let mut next_commit = Instant::now() + commit_interval;
    let mut last_error: Option<(String, Instant)> = None;
    while !cancel.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                use rdkafka::Message as _;
                context.stray(message.topic(), message.partition(), message.offset());
            }
            Some(Err(err)) => {
                // During an outage librdkafka reports the same error on every
                // poll: log it when it changes, or every 30 s.
                let text = err.to_string();
                let now = Instant::now();
                if last_error.as_ref().is_none_or(|(t, at)| {
                    *t != text || now.duration_since(*at) >= Duration::from_secs(30)
                }) {
                    tracing::warn!(module = &*module, error = %text, "kafka consumer error");
                    last_error = Some((text, now));
                }
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
    // Serve the revocation that unsubscribing starts before closing: closing
    // a cooperative consumer while a rebalance is still in flight can hang
    // in librdkafka (confluentinc/librdkafka#4527 and relatives).
    let leave_by = Instant::now() + Duration::from_secs(10);
    while Instant::now() < leave_by
        && consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            use rdkafka::Message as _;
            context.stray(message.topic(), message.partition(), message.offset());
        }
    }
    // Dropping the consumer closes it: it leaves the group (running the
    // revoke callback, which finds nothing left to drain). The workers held
    // the other references; they have all ended.
    let metrics = context.shared.metrics.clone();
    if Arc::strong_count(&consumer) > 1 {
        tracing::warn!(module = &*module, "a partition queue outlived its worker");
    }
    drop(consumer);
    metrics.stopped();
    tracing::info!(module = &*module, "module stopped");
}
