//! A module's consumer group membership: the consumer's context, whose
//! rebalance callbacks start and stop the partition workers, and commits.
//!
//! Each module has one Kafka consumer, in its own group, polled by a
//! dedicated thread ([`super::runner`]). Every assigned partition gets a
//! pipeline worker (`crate::pipeline::worker`) that reads the partition's
//! own librdkafka queue, split off the consumer's queue in the assign
//! callback before fetching starts, so every message of the partition
//! lands there; partitions and modules run in parallel. A slow partition
//! only fills its own queue: librdkafka stops prefetching it at
//! `queued.max.messages.kbytes` while the other partitions keep flowing.
//!
//! # Offsets
//!
//! A worker records its partition's *watermark* in
//! [`Offsets`](crate::pipeline::offsets::Offsets) only after every record
//! emitted for the settled events has been acknowledged. The poll thread
//! commits watermarks every `commit-interval`, synchronously when
//! partitions are revoked, and at shutdown. A periodic commit is
//! asynchronous: its result comes back to the commit callback, and one the
//! coordinator refused (during a rebalance) is sent again at the next
//! interval while the partition stays assigned. librdkafka's auto-commit and
//! offset store are off, so nothing else ever commits. When an assignment is
//! *lost* (the group moved on without us) nothing is committed.
//!
//! # Revocation
//!
//! A revoked partition's worker is told to stop: it finishes the call in
//! flight, waits for its outputs' acknowledgements, records its watermark
//! and exits; events queued behind it are dropped (they are redelivered to
//! the new owner from the committed offset). The revoke callback waits for
//! the worker (up to the drain timeout), commits, and only then lets
//! librdkafka hand the partition over: that wait is the point of the
//! callback. Nothing else in the callbacks waits on the network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::KafkaSettings;
use super::sink::{KafkaSink, KafkaTxns};
use super::source::PartitionSource;
use super::stall::FetchHealth;
use super::tpl::{describe, offset_list, partitions};
use crate::ops::control::PauseSwitch;
use crate::pipeline::guest::WasmGuest;
use crate::pipeline::offsets::{Offsets, Scope};
use crate::pipeline::{Module, Ports, TopicPartition, worker};
use crate::sync::lock;

/// The Kafka implementations of the pipeline's seams.
#[derive(Debug)]
pub struct KafkaPorts;

impl Ports for KafkaPorts {
    type Source = PartitionSource;
    type Sink = KafkaSink;
    type Txn = KafkaTxns;
    type Guest = WasmGuest;
}

struct WorkerHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The consumer's context: owns the workers so the rebalance callback (run
/// on the poll thread, inside `poll`) can drain them before a hand-over.
pub struct GroupContext {
    pub(super) module: Arc<Module<KafkaPorts>>,
    /// Settings for exactly-once partitions' own producers.
    kafka: KafkaSettings,
    group: String,
    workers: Mutex<HashMap<TopicPartition, WorkerHandle>>,
    /// The consumer itself, to split partition queues off it on assignment.
    pub(super) consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    /// Parent of every worker's stop token: the module's cancellation.
    stop: CancellationToken,
    drain_timeout: Duration,
    /// The operator's pause, applied to newly assigned partitions too.
    pub(super) pause: PauseSwitch,
}

impl std::fmt::Debug for GroupContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupContext")
            .field("module", &self.module.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let module = &*self.module.name;
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
        super::stats::report(&self.module, &statistics);
    }

    /// Every error event comes here first (rust-rdkafka), also those that
    /// `poll` then returns. A partition's own errors are its worker's to
    /// report, once per change (`super::stall`); the end of a partition is
    /// not an error.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        if super::stall::partition_error(reason) {
            return;
        }
        match error.rdkafka_error_code() {
            Some(C::PartitionEOF) => return,
            Some(C::AllBrokersDown) => self.module.metrics.brokers_down(),
            _ => {}
        }
        tracing::error!(target: "weir::kafka", module = &*self.module.name, error = %error, "{reason}");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let module = &*self.module.name;
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(module, partitions = %describe(tpl), "partitions assigned");
                self.module.metrics.assigned(tpl.count());
                for tp in partitions(tpl) {
                    self.start_worker(tp);
                }
            }
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                tracing::info!(module, partitions = %describe(tpl), lost, "partitions revoked");
                let revoked = partitions(tpl);
                self.stop_workers(&revoked);
                self.module.metrics.revoked(
                    revoked.iter().map(|tp| (tp.topic.as_str(), tp.partition)),
                    lost,
                );
                if !lost {
                    self.commit(consumer, Scope::Again(Some(&revoked)), CommitMode::Sync);
                }
                self.module.offsets.forget(&revoked);
            }
            Rebalance::Error(err) => {
                self.module.metrics.rebalance_error();
                tracing::error!(module, error = %err, "rebalance failed")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            super::pause::assigned(consumer, tpl, self.pause.wanted(), &self.module.name);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let module = &*self.module.name;
        match &result {
            Ok(()) => {
                // A partition revoked since the commit was sent is no longer
                // reported (its series was dropped on revocation).
                let tracked = &self.module.offsets;
                self.module.metrics.committed(
                    offset_list(offsets)
                        .iter()
                        .filter(|(tp, _)| tracked.watermark(tp).is_some())
                        .map(|(tp, o)| (tp.topic.as_str(), tp.partition, *o)),
                );
                tracing::debug!(module, offsets = %describe(offsets), "offsets committed")
            }
            Err(err) => {
                tracing::warn!(module, error = %err, offsets = %describe(offsets),
                    "offset commit failed; retried at the next commit while the partitions stay assigned \
                     (a revoked partition's next owner replays from its last committed offset)");
            }
        }
        commit_settled(&self.module.offsets, &result, offsets);
    }
}

impl GroupContext {
    /// The context of `module`'s consumer in `group`.
    pub(super) fn new(
        module: Arc<Module<KafkaPorts>>,
        kafka: KafkaSettings,
        group: String,
        stop: CancellationToken,
        drain_timeout: Duration,
        pause: PauseSwitch,
    ) -> Self {
        Self {
            module,
            kafka,
            group,
            workers: Mutex::new(HashMap::new()),
            consumer: OnceLock::new(),
            stop,
            drain_timeout,
            pause,
        }
    }

    /// Starts the worker of a newly assigned partition on the partition's
    /// own queue. Called before librdkafka starts fetching it, so every
    /// message of the partition lands in that queue.
    fn start_worker(&self, tp: TopicPartition) {
        let module = &*self.module.name;
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            // Only while the consumer is being closed: nothing to start.
            return;
        };
        let mut workers = lock(&self.workers);
        if workers.contains_key(&tp) {
            return;
        }
        let Some(queue) = consumer.split_partition_queue(&tp.topic, tp.partition) else {
            tracing::error!(module, topic = %tp.topic, partition = tp.partition,
                "cannot split off the partition's queue; it is not handled until the next rebalance");
            return;
        };
        let source = PartitionSource::new(
            FetchHealth::new(&self.module, tp.clone()),
            tp.clone(),
            queue,
            consumer.clone(),
        );
        let txns = KafkaTxns::new(
            self.module.name.clone(),
            self.kafka.clone(),
            &self.group,
            tp.clone(),
            consumer,
        );
        let stop = self.stop.child_token();
        let task = worker::spawn(
            self.module.clone(),
            tp.clone(),
            source,
            Some(txns),
            stop.clone(),
        );
        workers.insert(tp, WorkerHandle { stop, task });
    }

    /// A message on the consumer's own queue: its partition has no queue of
    /// its own, so its worker will never see it. Not handled, and the
    /// partition is never committed again until it is revoked, so the
    /// message is redelivered rather than skipped.
    pub(super) fn stray(&self, topic: &str, partition: i32, offset: i64) {
        let tp = TopicPartition::new(topic, partition);
        if self.module.offsets.hold(&tp) {
            tracing::error!(
                module = &*self.module.name,
                topic,
                partition,
                offset,
                "a message arrived outside its partition's queue; the partition is no longer \
                 committed until it is revoked or weir restarts (its events will be redelivered)"
            );
            self.module.problem(
                &tp,
                Some(format!(
                    "message at offset {offset} arrived outside the partition's queue; commits held"
                )),
            );
        }
    }

    /// Stops the workers of `partitions` (all when empty) and waits up to the
    /// drain timeout for them to finish their call in flight.
    pub(super) fn stop_workers(&self, partitions: &[TopicPartition]) {
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
            self.join(tp, handle.task, deadline);
        }
    }

    fn join(&self, tp: TopicPartition, mut task: tokio::task::JoinHandle<()>, deadline: Instant) {
        let (module, runtime) = (&*self.module.name, &self.module.runtime);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let joined = runtime.block_on(async { tokio::time::timeout(remaining, &mut task).await });
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(module, topic = %tp.topic,
                partition = tp.partition, error = %err, "partition worker failed"),
            Err(_) => {
                // Abort so it can never settle (and commit) after the
                // hand-over; whatever it had not settled is redelivered.
                task.abort();
                let _ = runtime.block_on(task);
                tracing::warn!(module, topic = %tp.topic, partition = tp.partition,
                    "worker did not finish within the drain timeout and was aborted; \
                     its unsettled events will be redelivered");
            }
        }
    }

    /// Commits the watermarks `scope` selects.
    pub(super) fn commit(&self, consumer: &BaseConsumer<Self>, scope: Scope<'_>, mode: CommitMode) {
        if let Some((tpl, Err(err))) = commit_offsets(consumer, &self.module.offsets, scope, mode) {
            tracing::warn!(module = &*self.module.name, error = %err,
                offsets = %describe(&tpl), "offset commit failed; will retry");
        }
    }
}

/// Commits the watermarks of `offsets` that `scope` selects, and records
/// them as committed once the commit is sent (synchronous: done;
/// asynchronous: enqueued). An asynchronous commit's result comes back
/// later through the consumer's `commit_callback`, which hands it to
/// [`commit_settled`]. Returns what was sent and how sending went; `None`
/// when nothing was due.
fn commit_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &Offsets,
    scope: Scope<'_>,
    mode: CommitMode,
) -> Option<(TopicPartitionList, KafkaResult<()>)> {
    let due = offsets.to_commit(scope);
    if due.is_empty() {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for (tp, next) in &due {
        // Only fails for an invalid offset, which a watermark never is.
        let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next));
    }
    let sent = match mode {
        CommitMode::Sync => consumer.commit(&tpl, mode),
        CommitMode::Async => commit_async(consumer, &tpl),
    };
    if sent.is_ok() {
        offsets.committed(due);
    }
    Some((tpl, sent))
}

/// Enqueues an asynchronous commit of `tpl` whose result comes back to
/// the consumer's `commit_callback` (served by `poll`).
///
/// `Consumer::commit(.., CommitMode::Async)` does not do that: it calls
/// `rd_kafka_commit(.., async)`, which asks for no reply, and rust-rdkafka
/// enables librdkafka's offset-commit *event* without setting an
/// `offset_commit_cb`, so librdkafka reports the result to nobody (it only
/// logs a refusal as `COMMITFAIL`: `rd_kafka_cgrp_propagate_commit_result`
/// in rdkafka_cgrp.c; fede1024/rust-rdkafka#856). A commit the coordinator
/// refused then counted as committed, and was never sent again once its
/// partition's watermark stopped moving. `rd_kafka_commit_queue` with the
/// consumer's queue as the reply queue delivers the result there as an
/// offset-commit event, which `poll` hands to `commit_callback`.
fn commit_async<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> KafkaResult<()> {
    use rdkafka::bindings as rd;
    use rdkafka::error::{IsError, KafkaError};
    use rdkafka::types::RDKafkaErrorCode;

    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the handle of `consumer`, alive for the whole call.
    // `rd_kafka_queue_get_consumer` returns a new reference to the
    // consumer's queue (null without a group), released below;
    // `rd_kafka_commit_queue` copies `tpl` and takes its own reference to
    // the queue for the reply, and with a queue given it does not block.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup));
        }
        let err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    if err.is_error() {
        Err(KafkaError::ConsumerCommit(err.into()))
    } else {
        Ok(())
    }
}

/// The result of an asynchronous commit of `tpl`, as the commit callback
/// reports it: a refused commit is forgotten, so the next periodic commit
/// sends it again.
fn commit_settled(offsets: &Offsets, result: &KafkaResult<()>, tpl: &TopicPartitionList) {
    if result.is_err() {
        offsets.commit_failed(offset_list(tpl).iter().map(|(tp, o)| (tp, *o)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
    use rdkafka::error::KafkaResult;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

    use super::{commit_offsets, commit_settled};
    use crate::pipeline::TopicPartition;
    use crate::pipeline::offsets::{Offsets, Scope};
    use crate::sync::lock;

    const TOPIC: &str = "in";

    /// A consumer context that hands commit results to its offsets, as
    /// the group's context does, and keeps whether each succeeded.
    #[derive(Debug, Default)]
    struct Committer {
        offsets: Arc<Offsets>,
        results: Mutex<Vec<bool>>,
    }

    impl ClientContext for Committer {}

    impl ConsumerContext for Committer {
        fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
            commit_settled(&self.offsets, &result, offsets);
            lock(&self.results).push(result.is_ok());
        }
    }

    /// A consumer of group `g` on `cluster`, with weir's commit settings;
    /// it commits without joining the group (the coordinator accepts that).
    fn consumer(
        cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    ) -> BaseConsumer<Committer> {
        ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(Committer::default())
            .expect("consumer")
    }

    /// Polls `consumer` until `n` commit results have come back (or 10 s
    /// passed), and returns them.
    fn results(consumer: &BaseConsumer<Committer>, n: usize) -> Vec<bool> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&consumer.context().results).len() < n && Instant::now() < deadline {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        lock(&consumer.context().results).clone()
    }

    fn committed(consumer: &BaseConsumer<Committer>, tp: &TopicPartition) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
    }

    #[test]
    fn a_periodic_commit_the_coordinator_refuses_is_sent_again() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("topic");
        let consumer = consumer(&cluster);
        let offsets = consumer.context().offsets.clone();
        let tp = TopicPartition::new(TOPIC, 0);
        offsets.settle(&tp, 5);
        // Refused as during a rebalance: the enqueueing succeeds, the
        // coordinator's answer is an error.
        cluster.request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS],
        );
        let sent = commit_offsets(&consumer, &offsets, Scope::Moved, CommitMode::Async);
        assert!(matches!(sent, Some((_, Ok(())))), "enqueued");
        assert_eq!(
            results(&consumer, 1),
            [false],
            "the refusal reaches the commit callback"
        );
        assert_eq!(
            offsets.to_commit(Scope::Moved),
            [(tp.clone(), 5)],
            "the next periodic commit sends it again"
        );
        commit_offsets(&consumer, &offsets, Scope::Moved, CommitMode::Async);
        assert_eq!(results(&consumer, 2), [false, true]);
        assert!(offsets.to_commit(Scope::Moved).is_empty());
        assert_eq!(committed(&consumer, &tp), Some(5));
    }
}
