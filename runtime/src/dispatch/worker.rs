//! One partition's worker: calls the module for its events in offset order,
//! produces what they emitted, waits for the acknowledgements, then moves the
//! partition's watermark.
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
use std::time::Duration;

use std::sync::OnceLock;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, FailureKind, dead_letter_record, event_size};
use super::settle::{Pending, oversized, stop_at_first_failure};
use super::{Shared, TopicPartition};
use crate::bindings::weir::consumer::types::{Event, Outgoing};
use crate::invoke::{CallResult, Invoker};
use crate::kafka::{is_permanent, produce_all};
use crate::manifest::FailureAction;

/// The worker was told to stop before the work was settled.
struct Stopped;

/// Starts the worker of `tp`.
pub(super) fn spawn(
    shared: Arc<Shared>,
    tp: TopicPartition,
    events: mpsc::Receiver<Event>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let worker = Worker {
        shared: shared.clone(),
        tp,
        invoker: None,
        isolate: 0,
        stop,
    };
    shared.runtime.spawn(worker.run(events))
}

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) tp: TopicPartition,
    pub(super) invoker: Option<Invoker>,
    /// Events still to be called one at a time after a batch trapped.
    pub(super) isolate: usize,
    stop: CancellationToken,
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
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        loop {
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            let max_batch = self.shared.module.load().manifest.limits.max_batch as usize;
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if self.handle(batch).await.is_err() {
                break;
            }
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
            let isolating = self.isolate > 0;
            let mut take = if isolating { 1 } else { queue.len() };
            let max_event = self.shared.module.load().manifest.limits.max_event_bytes as usize;
            let (chunk, mut plan) = match queue
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
            let refused = self.produce(std::mem::take(&mut plan.produce)).await?;
            plan.rejects
                .extend(refused.into_iter().map(|(offset, reason)| Failure {
                    offset,
                    kind: FailureKind::Refused,
                    reason,
                    attempts: 1,
                }));
            self.fail(&chunk, &plan.rejects, action).await?;
            self.shared.metrics.processed(&plan.outcomes);
            in_flight.settled(plan.settled);
            if plan.settled > 0 {
                self.shared
                    .settle(&self.tp, chunk[plan.settled - 1].offset + 1);
                attempt = 1;
            }
            for event in chunk.into_iter().skip(plan.settled).rev() {
                queue.push_front(event);
            }
            if let Some(failure) = halt {
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

    /// Produces records until the broker has acknowledged each of them, or
    /// refused it for good. Records that failed for a transient reason are
    /// produced again after a backoff (only those: the acknowledged ones are
    /// not repeated); a permanent refusal (too large, no such partition, not
    /// authorised) rejects the event that emitted the record.
    async fn produce(&mut self, records: Vec<Pending>) -> Result<Vec<(i64, String)>, Stopped> {
        let mut refused = Vec::new();
        let mut pending = records;
        let mut attempt = 1;
        while !pending.is_empty() {
            let batch: Vec<(&Outgoing, Option<i64>)> = pending
                .iter()
                .map(|p| (&p.record, p.timestamp_ms))
                .collect();
            let results = produce_all(&self.shared.producer, batch).await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (p, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        let bytes = crate::host::record_size(&p.record);
                        self.shared.metrics.emitted(&p.record.topic, bytes);
                    }
                    Err(err) if is_permanent(&err) => {
                        self.shared.metrics.produce_error();
                        refused.push((
                            p.owner,
                            format!(
                                "the broker refused a record emitted to `{}`: {err}",
                                p.record.topic
                            ),
                        ));
                    }
                    Err(err) => {
                        self.shared.metrics.produce_error();
                        last_error = Some(err);
                        failed.push(p);
                    }
                }
            }
            pending = failed;
            if let Some(err) = last_error {
                let backoff = Duration::from_millis(200)
                    .saturating_mul(1 << attempt.min(5))
                    .min(Duration::from_secs(5));
                tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                    partition = self.tp.1, error = %err, records = pending.len(), attempt,
                    backoff = ?backoff, "producing outputs failed; offsets stay uncommitted, retrying");
                attempt += 1;
                self.pause(backoff).await?;
            }
        }
        Ok(refused)
    }

    /// Applies the module's `on-failure` action to events that failed for
    /// good (`Stop` was applied before producing, see
    /// [`stop_at_first_failure`]). Returns once dead-letter records are
    /// acknowledged: an event is only settled after that.
    async fn fail(
        &mut self,
        chunk: &[Event],
        failures: &[Failure],
        action: FailureAction,
    ) -> Result<(), Stopped> {
        if failures.is_empty() {
            return Ok(());
        }
        let module = self.shared.current();
        let dlq_topic = module.manifest.on_failure.dead_letter_topic(&module.name);
        let mut records = Vec::new();
        for failure in failures {
            tracing::error!(module = &*self.shared.name, topic = %self.tp.0, partition = self.tp.1,
                offset = failure.offset, kind = failure.kind.as_str(), attempts = failure.attempts,
                reason = %failure.reason, action = ?action, "event failed");
            if action != FailureAction::DeadLetter {
                continue;
            }
            if let Some(event) = chunk.iter().find(|e| e.offset == failure.offset) {
                let record =
                    dead_letter_record(event, failure, &module.name, &module.digest, &dlq_topic);
                records.push(Pending {
                    record,
                    timestamp_ms: event.timestamp_ms,
                    owner: failure.offset,
                });
            }
        }
        let mut attempt: u32 = 1;
        while !records.is_empty() {
            let batch: Vec<(&Outgoing, Option<i64>)> = records
                .iter()
                .map(|p| (&p.record, p.timestamp_ms))
                .collect();
            let results = produce_all(&self.shared.producer, batch).await;
            let mut last_error = None;
            let mut failed = Vec::new();
            for (p, result) in records.into_iter().zip(results) {
                match result {
                    Ok(()) => self.shared.metrics.dead_lettered(),
                    Err(err) => {
                        last_error = Some(err);
                        failed.push(p);
                    }
                }
            }
            records = failed;
            if let Some(err) = last_error {
                let why = format!("cannot write to dead-letter topic `{dlq_topic}`: {err}");
                tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                    partition = self.tp.1, attempt, reason = %why,
                    "partition paused: nothing is committed until the dead-letter write succeeds");
                self.shared.problem(&self.tp, Some(why));
                attempt += 1;
                self.pause(Duration::from_secs(attempt.min(5).into()))
                    .await?;
            }
        }
        self.shared.problem(&self.tp, None);
        Ok(())
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
