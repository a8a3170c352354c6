//! The second half of a partition's worker: waits for the broker's
//! acknowledgements of the records each call emitted, writes dead letters,
//! and only then moves the partition's watermark.
//!
//! The calling half ([`super::worker`]) hands over one [`Flight`] per
//! settled run of events and goes on with the next call, so calls overlap
//! with the producer's round trips. Flights land strictly in order: the
//! watermark never passes an event whose outputs (or dead letter) are not
//! acknowledged, whatever happens to the flights after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, FailureKind, dead_letter_record};
use super::settle::Pending;
use super::{Shared, TopicPartition};
use crate::bindings::weir::consumer::types::{Event, Outgoing};
use crate::kafka::{delivered, is_permanent, send};
use crate::manifest::FailureAction;
use crate::metrics::{InFlight, ModuleMetrics, Outcomes};

/// The worker was told to stop before the work was settled.
pub(super) struct Stopped;

/// A record handed to the producer, with its delivery.
pub(super) type Sent = (Pending, Result<DeliveryFuture, KafkaError>);

/// A settled run of events whose outputs are on their way to the broker.
pub(super) struct Flight {
    /// The settled events, in offset order; never empty.
    pub(super) events: Vec<Event>,
    /// The records they emitted, already enqueued to the producer.
    pub(super) sent: Vec<Sent>,
    /// Events that failed for good.
    pub(super) rejects: Vec<Failure>,
    /// The module's `on-failure` action when the events were settled.
    pub(super) action: FailureAction,
    /// Outcomes for `weir_events_processed_total`, counted when it lands.
    pub(super) outcomes: Outcomes,
    /// Keeps `weir_events_in_flight` up until the flight lands.
    pub(super) in_flight: InFlight,
}

/// Enqueues `records` to `producer` in order.
pub(super) async fn send_all(producer: &FutureProducer, records: Vec<Pending>) -> Vec<Sent> {
    let mut sent = Vec::with_capacity(records.len());
    for p in records {
        let delivery = send(producer, &p.record, p.timestamp_ms).await;
        sent.push((p, delivery));
    }
    sent
}

/// What a delivery is for: the policy differs for permanent refusals.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Records the module emitted: a permanent refusal rejects the event.
    Outputs,
    /// Dead letters: retried until acknowledged, the partition waits.
    DeadLetters,
}

/// Lands flights in order.
pub(super) struct Acker {
    pub(super) shared: Arc<Shared>,
    pub(super) tp: TopicPartition,
    pub(super) stop: CancellationToken,
    /// Set while a delivery is being retried: the calling half then makes
    /// no new calls, so a broker or dead-letter outage holds the partition
    /// with only the flights already taken off.
    pub(super) stalled: Arc<AtomicBool>,
}

impl Acker {
    /// Lands every flight until the calling half hangs up or a stop
    /// interrupts a retry.
    pub(super) async fn run(mut self, mut flights: mpsc::Receiver<Flight>) {
        while let Some(flight) = flights.recv().await {
            if self.land(flight).await.is_err() {
                break;
            }
        }
    }

    async fn land(&mut self, mut flight: Flight) -> Result<(), Stopped> {
        let sent = std::mem::take(&mut flight.sent);
        let refused = self.deliver(sent, Purpose::Outputs).await?;
        flight.rejects.extend(refused);
        self.fail(&flight.events, &flight.rejects, flight.action)
            .await?;
        let count = flight.events.len();
        if let Some(last) = flight.events.last() {
            self.shared.settle(&self.tp, last.offset + 1);
        }
        self.shared.metrics.processed(&flight.outcomes);
        flight.in_flight.settled(count);
        Ok(())
    }

    /// Waits until the broker has acknowledged each record, or (outputs
    /// only) refused it for good; returns the refusals as failures of the
    /// events that emitted them. Records that failed for a transient reason are produced
    /// again after a backoff, only those: acknowledged ones are not repeated.
    async fn deliver(
        &mut self,
        mut sent: Vec<Sent>,
        purpose: Purpose,
    ) -> Result<Vec<Failure>, Stopped> {
        let mut refused = Vec::new();
        let mut attempt: u32 = 1;
        let mut tally = Tally::default();
        while !sent.is_empty() {
            let mut failed = Vec::new();
            let mut last_error = None;
            for (p, delivery) in sent {
                match delivered(delivery).await {
                    Ok(()) if purpose == Purpose::Outputs => tally.add(p.record),
                    Ok(()) => self.shared.metrics.dead_lettered(),
                    Err(err) if purpose == Purpose::Outputs && is_permanent(&err) => {
                        self.shared.metrics.produce_error();
                        refused.push(refusal(&p, &err));
                    }
                    Err(err) => {
                        self.shared.metrics.produce_error();
                        last_error = Some((err, p.record.topic.clone()));
                        failed.push(p);
                    }
                }
            }
            let Some((err, topic)) = last_error else {
                break;
            };
            let backoff = Duration::from_millis(200)
                .saturating_mul(1 << attempt.min(5))
                .min(Duration::from_secs(5));
            if purpose == Purpose::DeadLetters {
                let why = format!("cannot write to dead-letter topic `{topic}`: {err}");
                tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                    partition = self.tp.1, attempt, backoff = ?backoff, reason = %why,
                    "partition paused: nothing is committed until the dead-letter write succeeds");
                self.shared.problem(&self.tp, Some(why));
            } else {
                tracing::error!(module = &*self.shared.name, topic = %self.tp.0,
                    partition = self.tp.1, error = %err, records = failed.len(), attempt,
                    backoff = ?backoff, "producing outputs failed; offsets stay uncommitted, retrying");
            }
            self.stalled.store(true, Ordering::Release);
            attempt += 1;
            self.pause(backoff).await?;
            sent = send_all(&self.shared.producer, failed).await;
        }
        tally.count(&self.shared.metrics);
        if attempt > 1 {
            self.stalled.store(false, Ordering::Release);
            if purpose == Purpose::DeadLetters {
                self.shared.problem(&self.tp, None);
            }
        }
        Ok(refused)
    }

    /// Applies the module's `on-failure` action to events that failed for
    /// good (see [`dead_letters`]). Returns once dead-letter records are
    /// acknowledged: an event is only settled after that.
    async fn fail(
        &mut self,
        events: &[Event],
        failures: &[Failure],
        action: FailureAction,
    ) -> Result<(), Stopped> {
        if failures.is_empty() {
            return Ok(());
        }
        let records = dead_letters(&self.shared, &self.tp, events, failures, action);
        let sent = send_all(&self.shared.producer, records).await;
        self.deliver(sent, Purpose::DeadLetters).await?;
        Ok(())
    }

    async fn pause(&mut self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }
}

/// Acknowledged outputs per topic, counted into the metrics once per flight
/// rather than with a label lookup per record.
#[derive(Default)]
pub(super) struct Tally(Vec<(String, usize, usize)>);

impl Tally {
    /// One more acknowledged record.
    pub(super) fn add(&mut self, record: Outgoing) {
        let bytes = crate::host::record_size(&record);
        match self.0.iter_mut().find(|t| t.0 == record.topic) {
            Some(t) => (t.1, t.2) = (t.1 + 1, t.2 + bytes),
            None => self.0.push((record.topic, 1, bytes)),
        }
    }

    /// Adds the counts to `weir_events_emitted_total` and its bytes.
    pub(super) fn count(self, metrics: &ModuleMetrics) {
        for (topic, records, bytes) in self.0 {
            metrics.emitted(&topic, records, bytes);
        }
    }
}

/// The failure of the event that emitted `p`, which the broker refused for
/// good with `err`.
pub(super) fn refusal(p: &Pending, err: &KafkaError) -> Failure {
    Failure {
        offset: p.owner,
        kind: FailureKind::Refused,
        reason: format!(
            "the broker refused a record emitted to `{}`: {err}",
            p.record.topic
        ),
        attempts: 1,
    }
}

/// Logs each event that failed for good and returns the dead-letter records
/// the module's `on-failure` action asks for (`stop` was applied before
/// producing, see [`super::settle::stop_at_first_failure`]; `skip` writes
/// none).
pub(super) fn dead_letters(
    shared: &Shared,
    tp: &TopicPartition,
    events: &[Event],
    failures: &[Failure],
    action: FailureAction,
) -> Vec<Pending> {
    let module = shared.current();
    let dlq_topic = module.manifest.on_failure.dead_letter_topic(&module.name);
    let mut records = Vec::new();
    for failure in failures {
        tracing::error!(module = &*shared.name, topic = %tp.0, partition = tp.1,
            offset = failure.offset, kind = failure.kind.as_str(), attempts = failure.attempts,
            reason = %failure.reason, action = ?action, "event failed");
        if action != FailureAction::DeadLetter {
            continue;
        }
        if let Some(event) = events.iter().find(|e| e.offset == failure.offset) {
            records.push(Pending {
                record: dead_letter_record(
                    event,
                    failure,
                    &module.name,
                    &module.digest,
                    &dlq_topic,
                ),
                timestamp_ms: event.timestamp_ms,
                owner: failure.offset,
            });
        }
    }
    records
}
