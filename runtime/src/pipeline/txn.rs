//! Exactly-once partitions (`[delivery] guarantee = "exactly-once"`):
//! read-process-write in transactions.
//!
//! Each input partition's worker owns a transactional producer (see
//! `crate::kafka::sink`), whose id is derived from the group, topic and
//! partition so that whichever process owns the partition next fences this
//! one. Settled events' outputs and dead letters are produced inside the
//! open transaction; every `transaction-interval` the worker waits for them,
//! adds the partition's next offset to the transaction and commits it:
//! outputs, dead letters and the input offset become visible together or
//! not at all. When the transaction cannot be committed it is aborted and
//! the partition is rewound to the transaction's first event: the worker
//! drops every event it holds past that point and handles the partition
//! again from there.
//!
//! Caveat: the guest may run more than once for an event (after an abort or
//! a crash); only what it emitted is exactly-once, as seen by
//! `read_committed` readers.

use std::time::{Duration, Instant};

use super::ack::{Answers, Flight, Tally, send_all};
use super::policy::Pending;
use super::{DeliveryError, Fault, Module, Ports, Sink, Stopped, TopicPartition, Transactions};
use crate::state::StateHandle;

/// The records a transaction's flights wait for.
type TxnFlight<P> = Flight<<<<P as Ports>::Txn as Transactions>::Sink as Sink>::Answers>;

/// A partition's transaction state.
pub struct Txn<P: Ports> {
    txns: P::Txn,
    /// The transactional producer.
    pub sink: <P::Txn as Transactions>::Sink,
    interval: Duration,
    /// When the open transaction began; `None` when none is open.
    opened: Option<Instant>,
    /// Settled events in the open transaction, in order.
    flights: Vec<TxnFlight<P>>,
    /// Stateful modules: the partition's store, whose writes of the open
    /// transaction are applied when it commits and dropped when it aborts.
    pub state: Option<StateHandle>,
}

/// How an open transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Committed (or there was none open).
    Committed,
    /// Aborted; the source was rewound to the transaction's first event
    /// (when it held events), so events the worker holds must be dropped.
    Aborted,
}

impl<P: Ports> std::fmt::Debug for Txn<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("opened", &self.opened)
            .field("flights", &self.flights.len())
            .finish_non_exhaustive()
    }
}

impl<P: Ports> Txn<P> {
    /// A partition's transactions, ready after `init`.
    pub fn new(txns: P::Txn, sink: <P::Txn as Transactions>::Sink, interval: Duration) -> Self {
        Self {
            txns,
            sink,
            interval,
            opened: None,
            flights: Vec::new(),
            state: None,
        }
    }

    /// Begins a transaction unless one is open. Call before producing.
    pub fn begin(&mut self) -> Result<(), DeliveryError> {
        if self.opened.is_none() {
            self.txns.begin()?;
            self.opened = Some(Instant::now());
        }
        Ok(())
    }

    /// Adds settled events (their outputs already produced) to the open
    /// transaction.
    pub fn add(&mut self, flight: TxnFlight<P>) {
        self.flights.push(flight);
    }

    /// When the open transaction is due for commit, if one is open.
    pub fn due(&self) -> Option<Instant> {
        self.opened.map(|at| at + self.interval)
    }

    /// Commits the open transaction (if any); on failure aborts it and
    /// rewinds `source` to its first event. `Err(Stopped)` only when this
    /// producer cannot go on (fenced).
    pub async fn commit(
        &mut self,
        module: &Module<P>,
        tp: &TopicPartition,
        source: &mut P::Source,
    ) -> Result<Ended, Stopped> {
        if self.opened.is_none() {
            return Ok(Ended::Committed);
        }
        let flights = std::mem::take(&mut self.flights);
        let first = flights
            .first()
            .and_then(|f| f.events.first())
            .map(|e| e.offset);
        match self.try_commit(module, tp, flights).await {
            Ok(()) => {
                self.opened = None;
                Ok(Ended::Committed)
            }
            Err(err) => {
                self.abort(module, tp, first, source).await;
                if err.fault == Fault::Fatal {
                    Err(Stopped)
                } else {
                    Ok(Ended::Aborted)
                }
            }
        }
    }

    async fn try_commit(
        &mut self,
        module: &Module<P>,
        tp: &TopicPartition,
        mut flights: Vec<TxnFlight<P>>,
    ) -> Result<(), DeliveryError> {
        let name = &*module.name;
        // Every output acknowledged (or refused for good: the event fails).
        let mut tally = Tally::default();
        for flight in &mut flights {
            let Some(sent) = flight.sent.take() else {
                continue;
            };
            let answers = Answers::wait(sent, true, &module.metrics).await;
            if let Some(err) = answers.last_error {
                tracing::error!(module = name, topic = %tp.topic, partition = tp.partition,
                    error = %err, "producing an output failed; aborting the transaction");
                return Err(err);
            }
            flight.rejects.extend(answers.refused);
            tally.merge(answers.tally);
        }
        let letters: Vec<Pending> = flights
            .iter()
            .flat_map(|f| f.letters.records(tp, &f.events, &f.rejects))
            .collect();
        self.dead_letters(module, tp, letters).await?;
        // The input offset, and the commit.
        let Some(next) = flights
            .last()
            .and_then(|f| f.events.last())
            .map(|e| e.offset + 1)
        else {
            // Nothing settled (only possible after a stop): nothing to commit.
            let _ = self.txns.abort().await;
            return Ok(());
        };
        if let Err(err) = self.txns.commit(next).await {
            tracing::error!(module = name, topic = %tp.topic, partition = tp.partition,
                error = %err, "committing the transaction failed");
            return Err(err);
        }
        module.problem(tp, None);
        if let Some(state) = &self.state {
            let next = tally.next_offset(&state.topic);
            let (store, writer) = (state.store.clone(), state.writer.clone());
            let committed = crate::state::off_thread(move || store.committed(&writer, next)).await;
            if let Ok(true) = committed {
                module.state_checkpointed(state);
            }
            if let Err(err) = committed {
                // Committed in Kafka, not here: only a restore from the
                // changelog can bring the store back in step.
                tracing::error!(module = name, topic = %tp.topic, partition = tp.partition,
                    error = %err, "cannot apply a committed transaction's state writes; stopping");
                return Err(DeliveryError {
                    fault: Fault::Fatal,
                    reason: format!("state store: {err}"),
                });
            }
        }
        tally.count(&module.metrics);
        for mut flight in flights {
            module.metrics.processed(&flight.outcomes);
            let count = flight.events.len();
            flight.in_flight.settled(count);
        }
        module
            .metrics
            .committed([(tp.topic.as_str(), tp.partition, next)]);
        tracing::debug!(module = name, topic = %tp.topic, partition = tp.partition, next,
            "transaction committed");
        Ok(())
    }

    /// Dead letters, in the same transaction.
    async fn dead_letters(
        &mut self,
        module: &Module<P>,
        tp: &TopicPartition,
        letters: Vec<Pending>,
    ) -> Result<(), DeliveryError> {
        let sent = send_all(&self.sink, letters).await;
        let answers = Answers::wait(sent, false, &module.metrics).await;
        (0..answers.acked).for_each(|_| module.metrics.dead_lettered());
        if let (Some(err), Some(p)) = (answers.last_error, answers.failed.last()) {
            let why = format!(
                "cannot write to dead-letter topic `{}`: {err}",
                p.record.topic
            );
            tracing::error!(module = &*module.name, topic = %tp.topic,
                partition = tp.partition, reason = %why, "aborting the transaction");
            module.problem(tp, Some(why));
            return Err(err);
        }
        Ok(())
    }

    /// Aborts the open transaction and rewinds the partition to `first`,
    /// the transaction's first event (if it had any).
    async fn abort(
        &mut self,
        module: &Module<P>,
        tp: &TopicPartition,
        first: Option<i64>,
        source: &mut P::Source,
    ) {
        use super::Source as _;
        self.opened = None;
        self.flights.clear();
        if let Some(state) = &self.state {
            state.store.aborted(&state.writer);
        }
        if let Err(err) = self.txns.abort().await {
            tracing::error!(module = &*module.name, topic = %tp.topic, partition = tp.partition,
                error = %err, "aborting the transaction failed");
        }
        if let Some(offset) = first {
            tracing::warn!(module = &*module.name, topic = %tp.topic, partition = tp.partition,
                offset, "transaction aborted; handling the partition again from its first event");
            if let Err(err) = source.rewind(offset) {
                tracing::error!(module = &*module.name, topic = %tp.topic,
                    partition = tp.partition, error = %err, "cannot rewind the partition");
            }
        }
    }
}
