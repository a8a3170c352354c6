//! The producer side of the pipeline's seams: the shared idempotent
//! producer as a [`Sink`], and an exactly-once partition's transactional
//! producer ([`KafkaTxns`]).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSettings;
use super::acks::{Acks, Producer, Run, RunAnswers};
use super::convert::{delivery_error, send};
use super::group::GroupContext;
use crate::pipeline::policy::Pending;
use crate::pipeline::{DeliveryError, Sink, TopicPartition, Transactions};

/// Budget of the blocking transaction calls.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A librdkafka producer as the pipeline's sink.
#[derive(Clone)]
pub struct KafkaSink(pub Producer);

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KafkaSink").finish_non_exhaustive()
    }
}

impl Sink for KafkaSink {
    type Answers = RunAnswers;

    async fn send_all(&self, records: &[Pending]) -> RunAnswers {
        let run = Run::new(records.len());
        for (index, p) in records.iter().enumerate() {
            send(&self.0, &p.record, p.timestamp_ms, run.ticket(index)).await;
        }
        RunAnswers(run)
    }
}

/// Creates a producer from `config`, with the context that answers
/// [`Run`]s.
pub fn create_producer(config: &rdkafka::ClientConfig) -> Result<Producer, KafkaError> {
    Ok(Arc::new(ThreadedProducer::from_config_and_context(
        config, Acks,
    )?))
}

/// An exactly-once partition's transactions: a producer whose
/// `transactional.id` is derived from the group, topic and partition, so
/// whichever process owns the partition next fences this one
/// (`init_transactions` aborts what it left open).
pub struct KafkaTxns {
    module: Arc<str>,
    settings: KafkaSettings,
    id: String,
    tp: TopicPartition,
    consumer: Arc<BaseConsumer<GroupContext>>,
    producer: Option<Producer>,
}

impl std::fmt::Debug for KafkaTxns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTxns")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KafkaTxns {
    /// The transactions of partition `tp` of `group`'s input.
    pub(crate) fn new(
        module: Arc<str>,
        settings: KafkaSettings,
        group: &str,
        tp: TopicPartition,
        consumer: Arc<BaseConsumer<GroupContext>>,
    ) -> Self {
        Self {
            module,
            settings,
            id: format!("weir-{group}-{}-{}", tp.topic, tp.partition),
            tp,
            consumer,
            producer: None,
        }
    }

    fn producer(&self) -> Result<Producer, DeliveryError> {
        self.producer.clone().ok_or_else(|| DeliveryError {
            fault: crate::pipeline::Fault::Fatal,
            reason: format!(
                "the transactional producer `{}` is not initialised",
                self.id
            ),
        })
    }

    /// Runs a blocking transaction call off the async threads.
    async fn blocking(
        &self,
        call: impl FnOnce(Producer) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), DeliveryError> {
        let producer = self.producer()?;
        match tokio::task::spawn_blocking(move || call(producer)).await {
            Ok(result) => result.map_err(|e| delivery_error(&e)),
            Err(join) => Err(DeliveryError::transient(format!(
                "transaction task failed: {join}"
            ))),
        }
    }
}

impl Transactions for KafkaTxns {
    type Sink = KafkaSink;

    async fn init(&mut self) -> anyhow::Result<KafkaSink> {
        let id = self.id.clone();
        let mut config = self.settings.producer_config();
        config.set("transactional.id", &id);
        let producer = create_producer(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the transactional producer `{id}`: {e}"))?;
        let ready = producer.clone();
        tokio::task::spawn_blocking(move || ready.init_transactions(TXN_TIMEOUT))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot initialise transactions for `{id}`: {e}"))?;
        tracing::info!(module = &*self.module, topic = %self.tp.topic, partition = self.tp.partition,
            transactional_id = %id, "exactly-once partition ready");
        self.producer = Some(producer.clone());
        Ok(KafkaSink(producer))
    }

    fn begin(&mut self) -> Result<(), DeliveryError> {
        self.producer()?
            .begin_transaction()
            .map_err(|e| delivery_error(&e))
    }

    async fn commit(&mut self, next: i64) -> Result<(), DeliveryError> {
        let Some(group) = self.consumer.group_metadata() else {
            return Err(DeliveryError::transient("no consumer group metadata"));
        };
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.tp.topic, self.tp.partition, Offset::Offset(next))
            .map_err(|e| delivery_error(&e))?;
        self.blocking(move |producer| {
            producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
            producer.commit_transaction(TXN_TIMEOUT)
        })
        .await
    }

    async fn abort(&mut self) -> Result<(), DeliveryError> {
        self.blocking(|producer| producer.abort_transaction(TXN_TIMEOUT))
            .await
    }
}
