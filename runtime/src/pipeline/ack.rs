//! The second half of a partition's worker: waits for the sink's
//! acknowledgements of the records each call emitted, writes dead letters,
//! and only then moves the partition's watermark.
//!
//! The calling half ([`super::worker`]) hands over one [`Flight`] per
//! settled run of events and goes on with the next call, so calls overlap
//! with the producer's round trips. Flights land strictly in order: the
//! watermark never passes an event whose outputs (or dead letter) are not
//! acknowledged, whatever happens to the flights after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, FailureKind, dead_letter_record};
use super::policy::{Pending, Settlement};
use super::{DeliveryError, Fault, Module, Ports, Sink, Stopped, TopicPartition, Version};
use crate::bindings::weir::consumer::types::{Event, Outgoing};
use crate::manifest::FailureAction;
use crate::metrics::{InFlight, ModuleMetrics, Outcomes};
use crate::state::{StateHandle, off_thread};

/// A run of records handed to the sink, with the sink's answers on them.
#[derive(Debug)]
pub struct Sent<A> {
    /// The records, in the order sent.
    pub records: Vec<Pending>,
    /// The answers, in the same order.
    pub answers: A,
}

/// A settled run of events whose outputs are on their way to the broker.
#[derive(Debug)]
pub struct Flight<D> {
    /// The settled events, in offset order; never empty.
    pub events: Vec<Event>,
    /// The records they emitted, already enqueued to the sink (taken when
    /// the flight lands).
    pub sent: Option<Sent<D>>,
    /// Events that failed for good.
    pub rejects: Vec<Failure>,
    /// Where and how their dead letters go, from the version that settled
    /// them.
    pub letters: Arc<Letters>,
    /// Outcomes for `weir_events_processed_total`, counted when it lands.
    pub outcomes: Outcomes,
    /// Keeps `weir_events_in_flight` up until the flight lands.
    pub in_flight: InFlight,
    /// Stateful at-least-once partitions: the run's state writes (changelog
    /// records, sent once the outputs are acknowledged) and the run's
    /// number in the store.
    pub state: (Vec<Pending>, u64),
    /// The output budget its records hold until the flight is done.
    pub reserved: Option<super::budget::Reservation>,
}

impl<D> Flight<D> {
    /// The flight of the settled `events` of `plan`, whose records `sent`
    /// are on their way; takes the plan's rejects and outcomes.
    pub fn new(
        events: Vec<Event>,
        sent: Sent<D>,
        plan: &mut Settlement,
        letters: Arc<Letters>,
        in_flight: InFlight,
    ) -> Self {
        Self {
            events,
            sent: Some(sent),
            rejects: std::mem::take(&mut plan.rejects),
            letters,
            outcomes: std::mem::take(&mut plan.outcomes),
            in_flight,
            state: (Vec::new(), 0),
            reserved: None,
        }
    }
}

/// The `on-failure` settings and provenance of the version that settled a
/// flight, for its dead letters.
#[derive(Debug, Clone)]
pub struct Letters {
    /// The module's `on-failure` action.
    pub action: FailureAction,
    /// The dead-letter topic.
    pub topic: String,
    /// The module's name.
    pub module: Arc<str>,
    /// The version's digest.
    pub digest: String,
}

impl Letters {
    /// The dead-letter settings of `version`.
    pub fn of(version: &impl Version) -> Self {
        let on_failure = &version.manifest().on_failure;
        Self {
            action: on_failure.action,
            topic: on_failure.dead_letter_topic(version.name()),
            module: version.name().into(),
            digest: version.digest().to_owned(),
        }
    }

    /// Logs each event that failed for good and returns the dead-letter
    /// records the `on-failure` action asks for (`stop` was applied by the
    /// policy before producing; `skip` writes none).
    pub fn records(
        &self,
        tp: &TopicPartition,
        events: &[Event],
        failures: &[Failure],
    ) -> Vec<Pending> {
        let mut records = Vec::new();
        for failure in failures {
            tracing::error!(module = &*self.module, topic = %tp.topic, partition = tp.partition,
                offset = failure.offset, kind = failure.kind.as_str(), attempts = failure.attempts,
                reason = %failure.reason, action = ?self.action, "event failed");
            if self.action != FailureAction::DeadLetter {
                continue;
            }
            if let Some(event) = events.iter().find(|e| e.offset == failure.offset) {
                records.push(Pending {
                    record: dead_letter_record(
                        event,
                        failure,
                        &self.module,
                        &self.digest,
                        &self.topic,
                    ),
                    timestamp_ms: event.timestamp_ms,
                    owner: failure.offset,
                });
            }
        }
        records
    }
}

/// Enqueues `records` to `sink` in order.
pub async fn send_all<S: Sink>(sink: &S, records: Vec<Pending>) -> Sent<S::Answers> {
    let answers = sink.send_all(&records).await;
    Sent { records, answers }
}

/// What a delivery is for: the policy differs for permanent refusals.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Records the module emitted: a permanent refusal fails the event.
    Outputs,
    /// Dead letters: retried until acknowledged, the partition waits.
    DeadLetters,
}

/// Lands flights in order.
pub struct Acker<P: Ports> {
    /// The module.
    pub module: Arc<Module<P>>,
    /// The partition.
    pub tp: TopicPartition,
    /// Fires when the worker stops.
    pub stop: CancellationToken,
    /// Set while a delivery is being retried: the calling half then makes
    /// no new calls, so a broker or dead-letter outage holds the partition
    /// with only the flights already taken off.
    pub stalled: Arc<AtomicBool>,
    /// Stateful modules: the partition's store, told how far its
    /// changelog writes are acknowledged.
    pub state: Arc<OnceLock<StateHandle>>,
}

impl<P: Ports> std::fmt::Debug for Acker<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acker")
            .field("tp", &self.tp)
            .finish_non_exhaustive()
    }
}

impl<P: Ports> Acker<P> {
    /// Lands every flight until the calling half hangs up or a stop
    /// interrupts a retry.
    pub async fn run(mut self, mut flights: mpsc::Receiver<Flight<<P::Sink as Sink>::Answers>>) {
        while let Some(flight) = flights.recv().await {
            if self.land(flight).await.is_err() {
                break;
            }
        }
    }

    async fn land(
        &mut self,
        mut flight: Flight<<P::Sink as Sink>::Answers>,
    ) -> Result<(), Stopped> {
        let sent = flight.sent.take();
        let mut changelog = None;
        let refused = self.deliver(sent, Purpose::Outputs, &mut changelog).await?;
        flight.rejects.extend(refused);
        // The state writes, now that the outputs are in: after a crash an
        // event may be handled again on top of its own writes (applied
        // twice), but never finds a write whose outputs were lost.
        let (mut writes, run) = std::mem::take(&mut flight.state);
        let wrote = !writes.is_empty();
        // An event whose output the broker refused for good failed: its
        // writes are dropped like those of an event the handler rejected.
        let mut dropped = Vec::new();
        if !flight.rejects.is_empty() && !writes.is_empty() {
            let failed = |owner: i64| flight.rejects.iter().any(|f| f.offset == owner);
            let (gone, kept): (Vec<Pending>, Vec<Pending>) =
                writes.into_iter().partition(|p| failed(p.owner));
            dropped = gone.into_iter().filter_map(|p| p.record.key).collect();
            writes = kept;
        }
        if !writes.is_empty() {
            let sent = send_all(&self.module.sink, writes).await;
            let refused = self
                .deliver(Some(sent), Purpose::Outputs, &mut changelog)
                .await?;
            flight.rejects.extend(refused);
        }
        if !flight.rejects.is_empty() {
            let records = flight
                .letters
                .records(&self.tp, &flight.events, &flight.rejects);
            let sent = send_all(&self.module.sink, records).await;
            self.deliver(Some(sent), Purpose::DeadLetters, &mut None)
                .await?;
        }
        let count = flight.events.len();
        // A run that wrote nothing (a join's reading input) has nothing to
        // land: no blocking task for it.
        if let Some(state) = self.state.get().filter(|_| wrote || changelog.is_some()) {
            let (store, writer) = (state.store.clone(), state.writer.clone());
            let landed = off_thread(move || {
                store.drop_run(&writer, run, &dropped);
                store.landed(&writer, run, changelog)
            })
            .await;
            match landed {
                Ok(true) => self.module.state_checkpointed(state),
                Ok(false) => {}
                Err(err) => {
                    // The writes stay pending (read by this partition) and
                    // in the changelog; a restore brings them back.
                    return Err(self.module.state_failed(&self.tp, &err));
                }
            }
        }
        if let Some(last) = flight.events.last() {
            self.module.offsets.settle(&self.tp, last.offset + 1);
        }
        self.module.metrics.processed(&flight.outcomes);
        flight.in_flight.settled(count);
        Ok(())
    }

    /// Waits until the sink has acknowledged each record, or (outputs only)
    /// refused it for good; returns the refusals as failures of the events
    /// that emitted them. Records that failed for a transient reason are
    /// produced again after a backoff, only those: acknowledged ones are
    /// not repeated.
    /// `changelog` is raised to the offset after the last acknowledged
    /// write to the state changelog, if any.
    async fn deliver(
        &mut self,
        mut sent: Option<Sent<<P::Sink as Sink>::Answers>>,
        purpose: Purpose,
        changelog: &mut Option<i64>,
    ) -> Result<Vec<Failure>, Stopped> {
        let metrics = self.module.metrics.clone();
        let mut refused = Vec::new();
        let mut attempt: u32 = 1;
        while let Some(run) = sent.take().filter(|run| !run.records.is_empty()) {
            let answers = Answers::wait(run, purpose == Purpose::Outputs, &metrics).await;
            refused.extend(answers.refused);
            if let Some(state) = self.state.get()
                && let Some(next) = answers.tally.next_offset(&state.topic)
            {
                *changelog = Some(changelog.map_or(next, |c| c.max(next)));
            }
            match purpose {
                Purpose::Outputs => answers.tally.count(&metrics),
                Purpose::DeadLetters => (0..answers.acked).for_each(|_| metrics.dead_lettered()),
            }
            let Some(err) = answers.last_error else {
                break;
            };
            let topic = answers.failed.last().map(|p| p.record.topic.clone());
            let backoff = delivery_backoff(attempt);
            let records = answers.failed.len();
            self.report(
                purpose,
                &err,
                topic.as_deref().unwrap_or_default(),
                records,
                attempt,
                backoff,
            );
            self.stalled.store(true, Ordering::Release);
            attempt += 1;
            self.pause(backoff).await?;
            sent = Some(send_all(&self.module.sink, answers.failed).await);
        }
        if attempt > 1 {
            self.stalled.store(false, Ordering::Release);
            self.module.problem(&self.tp, None);
        }
        Ok(refused)
    }

    fn report(
        &self,
        purpose: Purpose,
        err: &DeliveryError,
        topic: &str,
        records: usize,
        attempt: u32,
        backoff: Duration,
    ) {
        let (module, tp) = (&*self.module.name, &self.tp);
        if purpose == Purpose::DeadLetters {
            let why = format!("cannot write to dead-letter topic `{topic}`: {err}");
            tracing::error!(module, topic = %tp.topic, partition = tp.partition, attempt,
                backoff = ?backoff, reason = %why,
                "partition paused: nothing is committed until the dead-letter write succeeds");
            self.module.problem(tp, Some(why));
        } else {
            tracing::error!(module, topic = %tp.topic, partition = tp.partition, error = %err,
                records, attempt, backoff = ?backoff,
                "producing outputs failed; offsets stay uncommitted, retrying");
            self.module.problem(
                tp,
                Some(format!("cannot write outputs to `{topic}`: {err}")),
            );
        }
    }

    async fn pause(&mut self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }
}

/// Backoff before producing again after the `attempt`th failed delivery.
pub fn delivery_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(5))
}

/// The broker's answers on a run of sent records.
#[derive(Debug, Default)]
pub struct Answers {
    /// Acknowledged records, per topic.
    pub tally: Tally,
    /// How many were acknowledged.
    pub acked: usize,
    /// Events whose records were refused for good (outputs only).
    pub refused: Vec<Failure>,
    /// Records that failed otherwise: to be sent again, or the transaction
    /// aborted.
    pub failed: Vec<Pending>,
    /// The last of their errors.
    pub last_error: Option<DeliveryError>,
}

impl Answers {
    /// Waits for the answer on each record, in order. With `refusals`
    /// (outputs), a permanent refusal fails the event that emitted the
    /// record; without (dead letters), every failure is kept in `failed`.
    /// Counts each failure in `weir_produce_errors_total`.
    pub async fn wait<A>(sent: Sent<A>, refusals: bool, metrics: &ModuleMetrics) -> Self
    where
        A: Future<Output = Vec<Result<i64, DeliveryError>>>,
    {
        let mut answers = Self::default();
        let results = sent.answers.await;
        debug_assert_eq!(results.len(), sent.records.len(), "one answer per record");
        for (p, result) in sent.records.into_iter().zip(results) {
            match result {
                Ok(offset) => {
                    answers.acked += 1;
                    answers.tally.add(p.record, offset);
                }
                Err(err) => {
                    metrics.produce_error();
                    if refusals && err.fault == Fault::Permanent {
                        answers.refused.push(refusal(&p, &err));
                    } else {
                        answers.failed.push(p);
                        answers.last_error = Some(err);
                    }
                }
            }
        }
        answers
    }
}

/// Acknowledged outputs per topic (records, bytes, highest offset),
/// counted into the metrics once per flight rather than with a label lookup
/// per record.
#[derive(Debug, Default)]
pub struct Tally(Vec<(String, usize, usize, i64)>);

impl Tally {
    /// One more acknowledged record, at `offset`.
    pub fn add(&mut self, record: Outgoing, offset: i64) {
        let bytes = super::failure::record_size(&record);
        match self.0.iter_mut().find(|t| t.0 == record.topic) {
            Some(t) => (t.1, t.2, t.3) = (t.1 + 1, t.2 + bytes, t.3.max(offset)),
            None => self.0.push((record.topic, 1, bytes, offset)),
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Tally) {
        for (topic, records, bytes, offset) in other.0 {
            match self.0.iter_mut().find(|t| t.0 == topic) {
                Some(t) => (t.1, t.2, t.3) = (t.1 + records, t.2 + bytes, t.3.max(offset)),
                None => self.0.push((topic, records, bytes, offset)),
            }
        }
    }

    /// The offset after the highest acknowledged record of `topic`.
    /// (A changelog has one partition per writer here, so this is where
    /// the writer's acknowledged writes end.)
    pub fn next_offset(&self, topic: &str) -> Option<i64> {
        self.0
            .iter()
            .find(|t| t.0 == topic && t.3 >= 0)
            .map(|t| t.3 + 1)
    }

    /// Adds the counts to `weir_events_emitted_total` and its bytes.
    pub fn count(self, metrics: &ModuleMetrics) {
        for (topic, records, bytes, _) in self.0 {
            metrics.emitted(&topic, records, bytes);
        }
    }
}

/// The failure of the event that emitted `p`, which the broker refused for
/// good with `err`.
pub fn refusal(p: &Pending, err: &DeliveryError) -> Failure {
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
