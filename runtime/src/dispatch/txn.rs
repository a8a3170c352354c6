//! Exactly-once partitions (`[delivery] guarantee = "exactly-once"`):
//! read-process-write in Kafka transactions.
//!
//! Each input partition's worker owns a transactional producer whose
//! `transactional.id` is derived from the group, topic and partition, so
//! whichever process owns the partition next fences this one
//! (`init_transactions` aborts what it left open). Settled events' outputs
//! and dead letters are produced inside the open transaction; every
//! `transaction-interval` the worker waits for them, adds the partition's
//! next offset to the transaction and commits it: outputs, dead letters and
//! the input offset become visible together or not at all. When the
//! transaction cannot be committed it is aborted and the partition is
//! rewound to the transaction's first event, which is handled again.
//!
//! Caveat: the guest may run more than once for an event (after an abort or
//! a crash); only what it emitted is exactly-once, as seen by
//! `read_committed` readers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::ack::{Flight, Stopped, Tally, dead_letters, refusal, send_all};
use super::settle::Pending;
use super::{RunnerContext, Shared, TopicPartition};
use crate::kafka::{delivered, is_permanent};

/// Budget of the blocking transaction calls.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition's transaction state.
pub(super) struct Txn {
    /// The transactional producer of this partition.
    pub(super) producer: FutureProducer,
    consumer: Arc<BaseConsumer<RunnerContext>>,
    interval: Duration,
    /// When the open transaction began; `None` when none is open.
    opened: Option<Instant>,
    /// Settled events in the open transaction, in order.
    flights: Vec<Flight>,
}

/// Why a transaction ended without committing.
enum Failed {
    /// Aborted; the partition is rewound and goes on.
    Aborted,
    /// This producer is fenced or broken for good; the worker stops.
    Fatal,
}

impl Txn {
    /// Creates the partition's transactional producer and fences any
    /// previous owner of the same `transactional.id`.
    pub(super) async fn start(
        shared: &Shared,
        tp: &TopicPartition,
        consumer: Arc<BaseConsumer<RunnerContext>>,
    ) -> anyhow::Result<Self> {
        let module = shared.current();
        let group = module.manifest.group_id(&module.name);
        let id = format!("weir-{group}-{}-{}", tp.0, tp.1);
        let mut config = shared.kafka.producer_config();
        config.set("transactional.id", &id);
        let producer: FutureProducer = config
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create the transactional producer `{id}`: {e}"))?;
        let ready = producer.clone();
        tokio::task::spawn_blocking(move || ready.init_transactions(TXN_TIMEOUT))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot initialise transactions for `{id}`: {e}"))?;
        tracing::info!(module = &*shared.name, topic = %tp.0, partition = tp.1,
            transactional_id = %id, "exactly-once partition ready");
        Ok(Self {
            producer,
            consumer,
            interval: module.manifest.delivery.transaction_interval,
            opened: None,
            flights: Vec::new(),
        })
    }

    /// Begins a transaction unless one is open. Call before producing.
    pub(super) fn begin(&mut self) -> Result<(), KafkaError> {
        if self.opened.is_none() {
            self.producer.begin_transaction()?;
            self.opened = Some(Instant::now());
        }
        Ok(())
    }

    /// Adds settled events (their outputs already produced) to the open
    /// transaction.
    pub(super) fn add(&mut self, flight: Flight) {
        self.flights.push(flight);
    }

    /// When the open transaction is due for commit, if one is open.
    pub(super) fn due(&self) -> Option<Instant> {
        self.opened.map(|at| at + self.interval)
    }

    /// Commits the open transaction (if any). Returns `Err(Stopped)` only
    /// when this producer cannot go on (fenced).
    pub(super) async fn commit(
        &mut self,
        shared: &Shared,
        tp: &TopicPartition,
    ) -> Result<(), Stopped> {
        if self.opened.is_none() {
            return Ok(());
        }
        let flights = std::mem::take(&mut self.flights);
        let first = flights
            .first()
            .and_then(|f| f.events.first())
            .map(|e| e.offset);
        match self.try_commit(shared, tp, flights).await {
            Ok(()) => {
                self.opened = None;
                Ok(())
            }
            Err(failed) => {
                let fatal = matches!(failed, Failed::Fatal);
                self.abort(shared, tp, first).await;
                if fatal { Err(Stopped) } else { Ok(()) }
            }
        }
    }

    async fn try_commit(
        &mut self,
        shared: &Shared,
        tp: &TopicPartition,
        mut flights: Vec<Flight>,
    ) -> Result<(), Failed> {
        let module = &*shared.name;
        // Every output acknowledged (or refused for good: the event fails).
        let mut tally = Tally::default();
        for flight in &mut flights {
            for (p, delivery) in std::mem::take(&mut flight.sent) {
                match delivered(delivery).await {
                    Ok(()) => tally.add(p.record),
                    Err(err) if is_permanent(&err) => {
                        shared.metrics.produce_error();
                        flight.rejects.push(refusal(&p, &err));
                    }
                    Err(err) => {
                        shared.metrics.produce_error();
                        tracing::error!(module, topic = %tp.0, partition = tp.1, error = %err,
                            "producing an output failed; aborting the transaction");
                        return Err(classify(&err));
                    }
                }
            }
        }
        // Dead letters, in the same transaction.
        let letters: Vec<Pending> = flights
            .iter()
            .flat_map(|f| dead_letters(shared, tp, &f.events, &f.rejects, f.action))
            .collect();
        for (p, delivery) in send_all(&self.producer, letters).await {
            if let Err(err) = delivered(delivery).await {
                let why = format!(
                    "cannot write to dead-letter topic `{}`: {err}",
                    p.record.topic
                );
                tracing::error!(module, topic = %tp.0, partition = tp.1, reason = %why,
                    "aborting the transaction");
                shared.problem(tp, Some(why));
                return Err(classify(&err));
            }
            shared.metrics.dead_lettered();
        }
        // The input offset, and the commit.
        let Some(next) = flights
            .last()
            .and_then(|f| f.events.last())
            .map(|e| e.offset + 1)
        else {
            // Nothing settled (only possible after a stop): nothing to commit.
            let producer = self.producer.clone();
            let _ =
                tokio::task::spawn_blocking(move || producer.abort_transaction(TXN_TIMEOUT)).await;
            return Ok(());
        };
        let Some(group) = self.consumer.group_metadata() else {
            tracing::error!(
                module,
                "no consumer group metadata; aborting the transaction"
            );
            return Err(Failed::Aborted);
        };
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
            .map_err(|_| Failed::Aborted)?;
        let producer = self.producer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
            producer.commit_transaction(TXN_TIMEOUT)
        })
        .await
        .map_err(|_| Failed::Aborted)?;
        if let Err(err) = committed {
            tracing::error!(module, topic = %tp.0, partition = tp.1, error = %err,
                "committing the transaction failed");
            return Err(classify(&err));
        }
        shared.problem(tp, None);
        tally.count(&shared.metrics);
        for mut flight in flights {
            shared.metrics.processed(&flight.outcomes);
            let count = flight.events.len();
            flight.in_flight.settled(count);
        }
        shared.metrics.committed([(tp.0.as_str(), tp.1, next)]);
        tracing::debug!(module, topic = %tp.0, partition = tp.1, next, "transaction committed");
        Ok(())
    }

    /// Aborts the open transaction and rewinds the partition to `first`,
    /// the transaction's first event (if it had any).
    async fn abort(&mut self, shared: &Shared, tp: &TopicPartition, first: Option<i64>) {
        self.opened = None;
        self.flights.clear();
        let producer = self.producer.clone();
        let aborted =
            tokio::task::spawn_blocking(move || producer.abort_transaction(TXN_TIMEOUT)).await;
        if let Ok(Err(err)) = aborted {
            tracing::error!(module = &*shared.name, topic = %tp.0, partition = tp.1,
                error = %err, "aborting the transaction failed");
        }
        if let Some(offset) = first {
            tracing::warn!(module = &*shared.name, topic = %tp.0, partition = tp.1, offset,
                "transaction aborted; handling the partition again from its first event");
            if let Err(err) =
                self.consumer
                    .seek(&tp.0, tp.1, Offset::Offset(offset), Duration::ZERO)
            {
                tracing::error!(module = &*shared.name, topic = %tp.0, partition = tp.1,
                    error = %err, "cannot rewind the partition");
            }
        }
    }
}

/// Fenced or fatal errors end the producer; anything else aborts and goes on.
fn classify(err: &KafkaError) -> Failed {
    match err {
        KafkaError::Transaction(e) if e.is_fatal() => Failed::Fatal,
        _ if matches!(
            err.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::ProducerFenced)
                | Some(rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch)
        ) =>
        {
            Failed::Fatal
        }
        _ => Failed::Aborted,
    }
}
