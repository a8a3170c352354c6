//! Kafka clients of the tests: producing events, reading topics back, and
//! the offsets a group committed.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{PARTITIONS, broker, unique};

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers (null values as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    /// The value as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).expect("json value")
    }

    /// The first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Send {
    /// Key.
    pub key: Option<String>,
    /// Value; `None` is a tombstone.
    pub value: Option<String>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl Send {
    /// A keyed record.
    pub fn kv(key: &str, value: &str) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

/// Produces `records` in order and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[Send]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for r in records {
        let mut record = FutureRecord::<str, str>::to(topic);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        record = record.headers(headers);
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    for d in deliveries {
        d.await.expect("delivery").expect("acknowledged");
    }
}

/// Reads `topic` from the beginning until `expected` records arrived (or
/// `timeout` passed), then keeps reading for `quiet` to catch extras.
/// Records of aborted transactions are not seen (`read_committed`).
pub fn consume(topic: &str, expected: usize, timeout: Duration, quiet: Duration) -> Vec<Received> {
    consume_as(topic, expected, timeout, quiet, "read_committed")
}

/// [`consume`] with the given `isolation.level` (`read_uncommitted` also
/// sees records of aborted and open transactions).
pub fn consume_as(
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
    isolation: &str,
) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if quiet_until.is_some_and(|q| now >= q) || (quiet_until.is_none() && now >= deadline) {
            break;
        }
        if quiet_until.is_none() && out.len() >= expected {
            quiet_until = Some(now + quiet);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => tracing::warn!(error = %e, "test consumer error"),
            None => {}
        }
    }
    out
}

/// The committed offset of `group` for each partition of `topic`
/// (`None` where nothing is committed).
pub fn committed(group: &str, topic: &str) -> Vec<Option<i64>> {
    committed_in(group, topic, PARTITIONS)
}

/// [`committed`] for a topic with `partitions` partitions.
pub fn committed_in(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}
