//! Kafka clients: how weir configures its consumers and its producer, how a
//! Kafka message becomes a WIT event, and how emitted records are produced.
//!
//! Nothing here knows about wasmtime beyond the WIT record types.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::bindings::weir::consumer::types::{Event, Header, Outgoing};

/// librdkafka settings shared by every client weir creates: the bootstrap
/// servers plus the user's `[kafka]` passthrough table.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Verbatim librdkafka properties.
    pub passthrough: BTreeMap<String, String>,
}

impl KafkaSettings {
    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.passthrough {
            config.set(key, value);
        }
        config
    }

    /// Consumer configuration for one module's group. Offsets are stored and
    /// committed by weir only (see `dispatch`).
    pub fn consumer_config(&self, group_id: &str, offset_reset: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", offset_reset);
        // Cooperative rebalancing: when a member joins or leaves, only the
        // partitions that move are revoked; the others keep flowing.
        if config.get("partition.assignment.strategy").is_none() {
            config.set("partition.assignment.strategy", "cooperative-sticky");
        }
        config
    }

    /// Producer configuration: idempotent, so retries inside librdkafka never
    /// duplicate or reorder a record. The Java client's partitioner
    /// (murmur2) is the default so that keys land where Java producers put
    /// them; `[kafka] partitioner` overrides it.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("partitioner", "murmur2_random");
        for (key, value) in &self.passthrough {
            config.set(key, value);
        }
        config.set("enable.idempotence", "true");
        config
    }

    /// The idempotent producer shared by every module.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        self.producer_config()
            .create()
            .map_err(|e| anyhow::anyhow!("failed to create the kafka producer: {e}"))
    }

    /// An admin client.
    pub fn admin(&self) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        self.base()
            .create()
            .map_err(|e| anyhow::anyhow!("failed to create a kafka admin client: {e}"))
    }
}

/// Creates `topics` with `partitions` partitions each; topics that already
/// exist are left alone.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[String],
    partitions: i32,
) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = settings.admin()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| anyhow::anyhow!("failed to create topics: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("failed to create topic `{topic}`: {code}"),
        }
    }
    Ok(())
}

/// Copies a Kafka message into a WIT event. A header with a null value
/// becomes an empty value.
pub fn to_event(message: &BorrowedMessage<'_>) -> Event {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Event {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Produces `records` in order and waits for the broker's answer on every
/// one; returns one result per record. Each record carries the timestamp
/// to give it (the input event's), or `None` for the producer's clock.
///
/// Records are enqueued strictly in order, waiting while librdkafka's queue
/// is full, so per-partition order follows emit order.
pub async fn produce_all<'a>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = (&'a Outgoing, Option<i64>)>,
) -> Vec<Result<(), KafkaError>> {
    let mut pending = Vec::new();
    for (record, timestamp_ms) in records {
        pending.push(send(producer, record, timestamp_ms).await);
    }
    let mut results = Vec::with_capacity(pending.len());
    for delivery in pending {
        results.push(delivered(delivery).await);
    }
    results
}

/// Waits for the broker's answer on a record [`send`] enqueued.
pub async fn delivered(sent: Result<DeliveryFuture, KafkaError>) -> Result<(), KafkaError> {
    match sent?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(err),
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}

/// Whether producing a record failed for a reason that retrying cannot fix
/// (the record is too large, its partition does not exist, ...).
pub fn is_permanent(err: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        err.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::UnknownPartition
                | C::TopicAuthorizationFailed
        )
    )
}

/// Enqueues one record (waiting while librdkafka's queue is full) and
/// returns its delivery, to be awaited with [`delivered`].
pub async fn send(
    producer: &FutureProducer,
    record: &Outgoing,
    timestamp_ms: Option<i64>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        let mut future = FutureRecord::<[u8], [u8]>::to(&record.topic);
        if let Some(key) = &record.key {
            future = future.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future = future.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            future = future.partition(partition);
        }
        if let Some(ts) = timestamp_ms {
            future = future.timestamp(ts);
        }
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |hs, h| {
                    hs.insert(KafkaHeader {
                        key: &h.key,
                        value: Some(h.value.as_slice()),
                    })
                },
            );
            future = future.headers(headers);
        }
        match producer.send_result(future) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((err, _)) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings {
            brokers: "b:9092".into(),
            passthrough: [("linger.ms".to_string(), "7".to_string())].into(),
        }
    }

    #[test]
    fn consumer_config_disables_auto_commit_and_sets_group() {
        let c = settings().consumer_config("g", "latest");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(
            c.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(c.get("linger.ms"), Some("7"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn producer_is_idempotent_with_java_partitioning_by_default() {
        let p = settings().producer_config();
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("partitioner"), Some("murmur2_random"));
        let mut custom = settings();
        custom
            .passthrough
            .insert("partitioner".into(), "consistent".into());
        assert_eq!(
            custom.producer_config().get("partitioner"),
            Some("consistent")
        );
    }
}
