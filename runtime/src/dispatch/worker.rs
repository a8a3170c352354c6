//! One partition's worker: calls the module for its events in offset order,
//! produces what they emitted, waits for the acknowledgements, then moves the
//! partition's watermark.
//!
//! Dispositions:
//! - `ok`: the event's records are produced; once acknowledged, settled.
//! - `reject`: logged with the reason and settled, nothing produced.
//! - `retry`: called again after a capped exponential backoff; when
//!   `retry.max-attempts` are used up it is rejected.
//! - a trap (panic, time or memory limit): the instance is discarded and
//!   replaced, and the event rejected. In batch mode the batch is first
//!   re-run one event at a time to find the event that trapped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Shared, TopicPartition};
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::invoke::{CallResult, Invoker};
use crate::kafka::produce_all;

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

struct Worker {
    shared: Arc<Shared>,
    tp: TopicPartition,
    invoker: Option<Invoker>,
    /// Events still to be called one at a time after a batch trapped.
    isolate: usize,
    stop: CancellationToken,
}

/// What to do with one call's events.
#[derive(Default)]
struct Settlement {
    /// Leading events of the chunk that are settled.
    settled: usize,
    /// Records to produce, with the timestamp to give them.
    produce: Vec<(Outgoing, Option<i64>)>,
    /// Events rejected: (offset, reason).
    rejects: Vec<(i64, String)>,
    /// The first unsettled event asked to be retried, for this reason.
    retry: Option<String>,
}

impl Worker {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let max_batch = self.shared.module.manifest.limits.max_batch as usize;
        loop {
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
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
        let mut queue: VecDeque<Event> = events.into();
        let mut attempt = 1;
        while !queue.is_empty() {
            let take = if self.isolate > 0 { 1 } else { queue.len() };
            let chunk: Vec<Event> = queue.drain(..take).collect();
            let (chunk, result) = self.call(chunk).await?;
            self.isolate = self.isolate.saturating_sub(1);
            let plan = self.settle(&chunk, result, attempt);
            self.produce(&plan.produce).await?;
            for (offset, reason) in &plan.rejects {
                tracing::error!(module = &*self.shared.module.name, topic = %self.tp.0,
                    partition = self.tp.1, offset, reason = %reason, "event rejected");
            }
            if plan.settled > 0 {
                self.shared
                    .settle(&self.tp, chunk[plan.settled - 1].offset + 1);
                attempt = 1;
            }
            for event in chunk.into_iter().skip(plan.settled).rev() {
                queue.push_front(event);
            }
            if let Some(reason) = plan.retry {
                let backoff = self.shared.module.manifest.retry.backoff(attempt);
                tracing::warn!(module = &*self.shared.module.name, topic = %self.tp.0,
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
        let joined = tokio::task::spawn_blocking(move || {
            let result = invoker.call(&chunk);
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
                tracing::error!(module = &*self.shared.module.name, error = %err,
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
            return Ok(invoker);
        }
        let mut attempt = 1;
        loop {
            let (engine, module) = (self.shared.engine.clone(), self.shared.module.clone());
            let made = tokio::task::spawn_blocking(move || Invoker::new(&engine, module)).await;
            match made {
                Ok(Ok(invoker)) => return Ok(invoker),
                Ok(Err(err)) => tracing::error!(module = &*self.shared.module.name,
                    error = %format_args!("{err:#}"), "cannot instantiate the module; will retry"),
                Err(err) => tracing::error!(module = &*self.shared.module.name, error = %err,
                    "instantiation task failed; will retry"),
            }
            self.pause(self.shared.module.manifest.retry.backoff(attempt))
                .await?;
            attempt += 1;
        }
    }

    /// Decides what happened to each event of a call.
    fn settle(&mut self, chunk: &[Event], result: CallResult, attempt: u32) -> Settlement {
        let max_attempts = self.shared.module.manifest.retry.max_attempts;
        let final_attempt = attempt >= max_attempts;
        let give_up = |reason: &str| format!("gave up after {attempt} attempts: {reason}");
        let mut plan = Settlement::default();
        let batch_mode = self.invoker.as_ref().is_some_and(Invoker::is_batch);

        if batch_mode {
            if let Some(failure) = result.failure {
                if chunk.len() > 1 {
                    tracing::warn!(module = &*self.shared.module.name, topic = %self.tp.0,
                        partition = self.tp.1, events = chunk.len(), reason = %failure.reason,
                        "batch call failed; re-running its events one at a time");
                    self.isolate = chunk.len();
                } else {
                    plan.rejects.push((chunk[0].offset, failure.reason));
                    plan.settled = 1;
                }
                return plan;
            }
            let first_retry = result.dispositions.iter().find_map(|d| match d {
                Disposition::Retry(r) => Some(r.clone()),
                _ => None,
            });
            if let Some(reason) = first_retry
                && !final_attempt
            {
                plan.retry = Some(reason);
                return plan;
            }
            for (event, disposition) in chunk.iter().zip(&result.dispositions) {
                match disposition {
                    Disposition::Ok => {}
                    Disposition::Reject(r) => plan.rejects.push((event.offset, r.clone())),
                    Disposition::Retry(r) => plan.rejects.push((event.offset, give_up(r))),
                }
            }
            plan.produce = result
                .emitted
                .into_iter()
                .flatten()
                .map(|record| (record, None))
                .collect();
            plan.settled = chunk.len();
            return plan;
        }

        let handled = result.dispositions.len();
        for ((event, disposition), emitted) in
            chunk.iter().zip(result.dispositions).zip(result.emitted)
        {
            match disposition {
                Disposition::Ok => {
                    let ts = event.timestamp_ms;
                    plan.produce.extend(emitted.into_iter().map(|r| (r, ts)));
                }
                Disposition::Reject(r) => plan.rejects.push((event.offset, r)),
                Disposition::Retry(r) if final_attempt => {
                    plan.rejects.push((event.offset, give_up(&r)))
                }
                Disposition::Retry(r) => {
                    plan.retry = Some(r);
                    break;
                }
            }
            plan.settled += 1;
        }
        if let Some(failure) = result.failure
            && let Some(event) = chunk.get(handled)
        {
            plan.rejects.push((event.offset, failure.reason));
            plan.settled += 1;
        }
        plan
    }

    /// Produces records until the broker acknowledges all of them. A failed
    /// delivery (after librdkafka's own retries) is retried as a whole after
    /// a backoff: some records may then be written twice, never lost.
    async fn produce(&mut self, records: &[(Outgoing, Option<i64>)]) -> Result<(), Stopped> {
        if records.is_empty() {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            match produce_all(&self.shared.producer, records).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    let backoff = Duration::from_millis(200)
                        .saturating_mul(1 << attempt.min(5))
                        .min(Duration::from_secs(5));
                    tracing::error!(module = &*self.shared.module.name, topic = %self.tp.0,
                        partition = self.tp.1, error = %err, attempt, backoff = ?backoff,
                        "producing outputs failed; offsets stay uncommitted, retrying");
                    attempt += 1;
                    self.pause(backoff).await?;
                }
            }
        }
    }

    async fn pause(&mut self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }
}
