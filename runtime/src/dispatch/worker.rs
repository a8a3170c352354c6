//! One partition's worker: calls the module for its events in offset order
//! and produces what they emitted; its acknowledging half ([`super::ack`])
//! waits for the broker's acknowledgements, writes dead letters, then moves
//! the partition's watermark.
//!
//! Dispositions:
//! - `ok`: the event's records are produced; once acknowledged, settled.
//! - `reject`: the event failed for good (see below); nothing it emitted is
//!   produced.
//! - `retry`: called again after a capped exponential backoff; when
//!   `retry.max-attempts` are used up it failed for good.
//! - a trap (panic, time or memory limit): the instance is discarded and
//!   replaced, and the event retried like `retry`. In batch mode the batch is
//!   first re-run one event at a time to find the event that trapped.
//!
//! An event that failed for good follows the module's `on-failure` action:
//! written to the dead-letter topic (and acknowledged) before it is settled,
//! skipped with a log line, or the partition stops at it until a new version
//! of the module is deployed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use rdkafka::consumer::BaseConsumer;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::producer::FutureProducer;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::ack::{Acker, Flight, Stopped, send_all};
use super::failure::{Failure, event_size};
use super::settle::{oversized, stop_at_first_failure};
use super::txn::Txn;
use super::{RunnerContext, Shared, TopicPartition};
use crate::bindings::weir::consumer::types::Event;
use crate::invoke::{CallResult, Invoker};
use crate::kafka::to_event;
use crate::manifest::{FailureAction, Guarantee};

/// Settled runs of events handed to the acknowledging half and not yet
/// landed, per partition. Calls go on while earlier outputs are on their way;
/// this bounds how far ahead they get.
const FLIGHTS: usize = 32;

/// Starts the worker of `tp`: the calling half, and the acknowledging half
/// ([`Acker`]) as a task it owns.
pub(super) fn spawn(
    shared: Arc<Shared>,
    tp: TopicPartition,
    mut queue: PartitionQueue<RunnerContext>,
    consumer: Arc<BaseConsumer<RunnerContext>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let ready = Arc::new(Notify::new());
    let wake = ready.clone();
    // Called by librdkafka when the queue goes from empty to non-empty; a
    // wake-up that finds the worker busy is kept for its next wait.
    queue.set_nonempty_callback(move || wake.notify_one());
    let source = Source { queue, ready };
    let (flights, landing) = mpsc::channel(FLIGHTS);
    let stalled = Arc::new(AtomicBool::new(false));
    let acker = Acker {
        shared: shared.clone(),
        tp: tp.clone(),
        stop: stop.clone(),
        stalled: stalled.clone(),
    };
    let exactly_once = shared.current().manifest.delivery.guarantee == Guarantee::ExactlyOnce;
    let mut worker = Worker {
        shared: shared.clone(),
        producer: shared.producer.clone(),
        tp,
        invoker: None,
        isolate: 0,
        stop,
        flights,
        stalled,
        txn: None,
    };
    shared.runtime.spawn(async move {
        if exactly_once && worker.start_txn(consumer).await.is_err() {
            return;
        }
        // The acknowledging half is a task of its own, so it runs in parallel
        // with the calls; aborting this task (drain timeout) aborts it too.
        let acker = AbortOnDropHandle::new(tokio::spawn(acker.run(landing)));
        worker.run(source).await;
        let _ = acker.await;
    })
}

/// Sleeps until `due` (forever when `None`; only polled when `Some`).
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// A partition's own librdkafka queue, and its wake-up.
struct Source {
    queue: PartitionQueue<RunnerContext>,
    ready: Arc<Notify>,
}

impl Source {
    /// Takes up to `max` events that are ready, without waiting.
    fn take(&self, shared: &Shared, tp: &TopicPartition, max: usize) -> Vec<Event> {
        let mut batch = Vec::new();
        while batch.len() < max {
            match self.queue.poll(Duration::ZERO) {
                Some(Ok(message)) => batch.push(to_event(&message)),
                Some(Err(err)) => {
                    tracing::warn!(module = &*shared.name, topic = %tp.0, partition = tp.1,
                        error = %err, "kafka consumer error");
                }
                None => break,
            }
        }
        batch
    }
}

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    /// Where outputs go: the shared producer, or this partition's
    /// transactional one.
    producer: FutureProducer,
    pub(super) tp: TopicPartition,
    pub(super) invoker: Option<Invoker>,
    /// Events still to be called one at a time after a batch trapped.
    pub(super) isolate: usize,
    stop: CancellationToken,
    /// To the acknowledging half.
    flights: mpsc::Sender<Flight>,
    /// Set by the acknowledging half while it retries a delivery.
    stalled: Arc<AtomicBool>,
    /// Exactly-once: the partition's transaction (settled events go there
    /// instead of to the acknowledging half).
    txn: Option<Txn>,
}

/// Limits concurrent guest calls to the machine's cores: call deadlines are
/// wall-clock, so oversubscribed cores would make them fire spuriously.
fn call_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
    })
}

impl Worker {
    async fn run(mut self, source: Source) {
        loop {
            let due = self.txn.as_ref().and_then(Txn::due);
            if due.is_some_and(|due| Instant::now() >= due) && self.commit_txn().await.is_err() {
                return;
            }
            let max_batch = self.shared.module.load().manifest.limits.max_batch as usize;
            let batch = source.take(&self.shared, &self.tp, max_batch);
            if batch.is_empty() {
                let due = self.txn.as_ref().and_then(Txn::due);
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break,
                    () = source.ready.notified() => continue,
                    () = sleep_until(due), if due.is_some() => continue,
                }
            }
            self.shared.metrics.consumed(&self.tp.0, batch.len());
            if self.handle(batch).await.is_err() {
                break;
            }
        }
        // Stopped (revoked or shutting down): what is settled commits.
        let _ = self.commit_txn().await;
    }

    /// Exactly-once: creates the partition's transactional producer,
    /// retrying with backoff until it is ready or the worker is stopped.
    async fn start_txn(
        &mut self,
        consumer: Arc<BaseConsumer<RunnerContext>>,
    ) -> Result<(), Stopped> {
        let mut attempt = 1;
        loop {
            match Txn::start(&self.shared, &self.tp, consumer.clone()).await {
                Ok(txn) => {
                    self.producer = txn.producer.clone();
                    self.txn = Some(txn);
                    return Ok(());
                }
                Err(err) => {
                    let why = format!("{err:#}");
                    tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                        partition = self.tp.1, error = %why, "exactly-once partition cannot start; will retry");
                    self.shared.problem(&self.tp, Some(why));
                }
            }
            self.pause(self.shared.current().manifest.retry.backoff(attempt))
                .await?;
            attempt += 1;
        }
    }

    /// Exactly-once: commits the partition's open transaction, if any.
    async fn commit_txn(&mut self) -> Result<(), Stopped> {
        match &mut self.txn {
            Some(txn) => txn.commit(&self.shared, &self.tp).await,
            None => Ok(()),
        }
    }

    /// Settles `events` (all of them, unless stopped).
    async fn handle(&mut self, events: Vec<Event>) -> Result<(), Stopped> {
        let mut in_flight = self.shared.metrics.in_flight(events.len());
        let mut queue: VecDeque<Event> = events.into();
        let mut attempt = 1;
        while !queue.is_empty() {
            if self.stop.is_cancelled() {
                return Err(Stopped);
            }
            while self.stalled.load(Ordering::Acquire) {
                self.pause(Duration::from_millis(20)).await?;
            }
            let isolating = self.isolate > 0;
            let mut take = if isolating { 1 } else { queue.len() };
            let max_event = self.shared.module.load().manifest.limits.max_event_bytes as usize;
            let (mut chunk, mut plan) = match queue
                .iter()
                .take(take)
                .position(|e| event_size(e) > max_event)
            {
                Some(0) => {
                    let chunk: Vec<Event> = queue.drain(..1).collect();
                    let plan = oversized(&chunk[0], max_event);
                    (chunk, plan)
                }
                found => {
                    take = found.unwrap_or(take);
                    let chunk: Vec<Event> = queue.drain(..take).collect();
                    let (chunk, result) = self.call(chunk).await?;
                    let plan = self.settle(&chunk, result, attempt);
                    (chunk, plan)
                }
            };
            if isolating {
                self.isolate = self.isolate.saturating_sub(plan.settled);
            }
            let action = self.shared.module.load().manifest.on_failure.action;
            let halt = if action == FailureAction::Stop {
                stop_at_first_failure(&chunk, &mut plan)
            } else {
                None
            };
            let rest = chunk.split_off(plan.settled.min(chunk.len()));
            if chunk.is_empty() {
                self.shared.metrics.processed(&plan.outcomes);
            } else {
                if let Some(txn) = &mut self.txn
                    && let Err(err) = txn.begin()
                {
                    tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                        partition = self.tp.1, error = %err, "cannot begin a transaction; stopping the partition");
                    return Err(Stopped);
                }
                let sent = send_all(&self.producer, std::mem::take(&mut plan.produce)).await;
                let flight = Flight {
                    events: chunk,
                    sent,
                    rejects: std::mem::take(&mut plan.rejects),
                    action,
                    outcomes: std::mem::take(&mut plan.outcomes),
                    in_flight: in_flight.split(plan.settled),
                };
                match &mut self.txn {
                    Some(txn) => txn.add(flight),
                    None => self.flights.send(flight).await.map_err(|_| Stopped)?,
                }
                attempt = 1;
            }
            for event in rest.into_iter().rev() {
                queue.push_front(event);
            }
            if let Some(failure) = halt {
                self.commit_txn().await?;
                self.halt(&failure).await?;
                attempt = 1;
                continue;
            }
            if let Some(reason) = plan.retry {
                let backoff = self.shared.current().manifest.retry.backoff(attempt);
                tracing::warn!(module = &*self.shared.name, topic = %self.tp.0,
                    partition = self.tp.1, offset = queue.front().map(|e| e.offset), attempt,
                    backoff = ?backoff, reason = %reason, "event will be retried");
                attempt += 1;
                self.pause(backoff).await?;
            }
        }
        Ok(())
    }

    /// Calls the module on a blocking thread, (re)instantiating it first if
    /// needed.
    async fn call(&mut self, chunk: Vec<Event>) -> Result<(Vec<Event>, CallResult), Stopped> {
        let mut invoker = self.live_invoker().await?;
        let Ok(_permit) = call_permits().acquire().await else {
            return Err(Stopped);
        };
        let stop = self.stop.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = invoker.call(&chunk, &stop);
            (invoker, chunk, result)
        })
        .await;
        match joined {
            Ok((invoker, chunk, result)) => {
                self.invoker = Some(invoker);
                Ok((chunk, result))
            }
            Err(err) => {
                // The events were moved into the lost task; only a bug gets here.
                tracing::error!(module = &*self.shared.name, error = %err,
                    "call task failed; stopping the partition worker");
                Err(Stopped)
            }
        }
    }

    /// Returns a usable instance, retrying instantiation with backoff.
    async fn live_invoker(&mut self) -> Result<Invoker, Stopped> {
        if let Some(invoker) = self.invoker.take()
            && invoker.is_live()
        {
            if Arc::ptr_eq(invoker.module(), &self.shared.module.load()) {
                return Ok(invoker);
            }
            tracing::debug!(module = &*self.shared.name, topic = %self.tp.0, partition = self.tp.1,
                from = invoker.module().short_digest(), "switching to the new version");
        }
        let mut attempt = 1;
        loop {
            let (engine, module) = (self.shared.engine.clone(), self.shared.current());
            let made = tokio::task::spawn_blocking(move || Invoker::new(&engine, module)).await;
            match made {
                Ok(Ok(mut invoker)) => {
                    invoker.observe(self.shared.metrics.clone());
                    return Ok(invoker);
                }
                Ok(Err(err)) => tracing::error!(module = &*self.shared.name,
                    error = %format_args!("{err:#}"), "cannot instantiate the module; will retry"),
                Err(err) => tracing::error!(module = &*self.shared.name, error = %err,
                    "instantiation task failed; will retry"),
            }
            self.pause(self.shared.current().manifest.retry.backoff(attempt))
                .await?;
            attempt += 1;
        }
    }

    /// `on-failure = stop`: waits, with the partition halted at `failure`,
    /// until a new version of the module is deployed.
    async fn halt(&mut self, failure: &Failure) -> Result<(), Stopped> {
        let version = self.shared.current();
        let why = format!(
            "stopped at offset {} ({}: {}); deploy a new version of the module to continue",
            failure.offset,
            failure.kind.as_str(),
            failure.reason
        );
        tracing::error!(module = &*self.shared.name, topic = %self.tp.0, partition = self.tp.1,
            offset = failure.offset, reason = %why, "partition stopped");
        self.shared.problem(&self.tp, Some(why));
        while Arc::ptr_eq(&version, &self.shared.current()) {
            self.pause(Duration::from_millis(200)).await?;
        }
        self.shared.problem(&self.tp, None);
        Ok(())
    }

    async fn pause(&mut self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }
}
