//! Kafka clients of the tests: producing events, reading topics back, and
//! the offsets a group committed.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{PARTITIONS, broker, eventually, unique};

/// A librdkafka configuration: `bootstrap` plus `props`.
pub fn client_config(bootstrap: &str, props: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        config.set(k, v);
    }
    config
}

/// A consumer of the test broker in `group` that never commits.
pub fn consumer(group: &str) -> BaseConsumer {
    reader_config(group).create().expect("consumer")
}

fn reader_config(group: &str) -> ClientConfig {
    let mut config = client_config(&broker().bootstrap(), &[]);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    config
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Send {
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
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

    /// A keyed record to `partition`.
    pub fn on(partition: i32, key: &str, value: &str) -> Self {
        Self {
            partition: Some(partition),
            ..Self::kv(key, value)
        }
    }

    /// Records `{"i":<i>}` keyed `k<i>`, for `i` in `ids`.
    pub fn numbered(ids: std::ops::Range<usize>) -> Vec<Self> {
        ids.map(|i| Self::kv(&format!("k{i}"), &format!(r#"{{"i":{i}}}"#)))
            .collect()
    }

    /// The record with header `name` added.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A producer: idempotent (so `acks=all`), `linger.ms` 5.
pub struct Producer(FutureProducer);

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

impl Producer {
    /// A producer to the test broker.
    pub fn new() -> Self {
        Self::connect(&broker().bootstrap(), &[])
    }

    /// A producer to `bootstrap`; `props` (librdkafka properties) override
    /// the defaults.
    pub fn connect(bootstrap: &str, props: &[(String, String)]) -> Self {
        let mut config = client_config(bootstrap, &[]);
        config
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (k, v) in props {
            config.set(k, v);
        }
        Self(config.create().expect("producer"))
    }

    /// Enqueues `record` to `topic`; the future resolves with its
    /// acknowledgement.
    pub fn enqueue(&self, topic: &str, record: &Send) -> DeliveryFuture {
        let mut out = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = &record.key {
            out = out.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            out = out.payload(v.as_slice());
        }
        if let Some(p) = record.partition {
            out = out.partition(p);
        }
        let mut headers = OwnedHeaders::new();
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        self.0
            .send_result(out.headers(headers))
            .map_err(|(e, _)| e)
            .expect("enqueue")
    }

    /// Produces `records` to `topic` in order at about `rate` records per
    /// second (in 50 ms ticks), then waits for every acknowledgement;
    /// panics if one fails.
    pub async fn send_paced(&self, topic: &str, records: &[Send], rate: usize) {
        let per_tick = (rate / 20).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut deliveries = Vec::with_capacity(records.len());
        for chunk in records.chunks(per_tick) {
            tick.tick().await;
            deliveries.extend(chunk.iter().map(|r| self.enqueue(topic, r)));
        }
        for d in deliveries {
            d.await.expect("delivery").expect("acknowledged");
        }
    }

    /// Produces `records` to `topic` in order and waits for every
    /// acknowledgement; panics if one fails.
    pub async fn send(&self, topic: &str, records: &[Send]) {
        let deliveries: Vec<DeliveryFuture> =
            records.iter().map(|r| self.enqueue(topic, r)).collect();
        for d in deliveries {
            d.await.expect("delivery").expect("acknowledged");
        }
    }
}

impl Default for Producer {
    fn default() -> Self {
        Self::new()
    }
}

/// Produces `records` to `topic` in order with a new [`Producer`] and waits
/// for every acknowledgement.
pub async fn produce(topic: &str, records: &[Send]) {
    Producer::new().send(topic, records).await;
}

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

    /// The key as text; panics on a record without a key or with one that
    /// is not UTF-8.
    pub fn key_text(&self) -> String {
        String::from_utf8(self.key.clone().expect("a key")).expect("a UTF-8 key")
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

impl From<&BorrowedMessage<'_>> for Received {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        Self {
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
        }
    }
}

/// Assigns `consumer` partitions `0..partitions` of `topic`, each from its
/// beginning.
pub fn assign_from_beginning(consumer: &BaseConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
}

/// Polls `consumer`, handing every message to `each`, until `expected`
/// messages arrived (or `timeout` passed), then keeps polling for `quiet`
/// to catch extras. Consumer errors are logged, not counted.
pub fn poll_until(
    consumer: &BaseConsumer,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) {
    let deadline = Instant::now() + timeout;
    let mut quiet_until: Option<Instant> = None;
    let mut seen = 0;
    loop {
        let now = Instant::now();
        if quiet_until.is_some_and(|q| now >= q) || (quiet_until.is_none() && now >= deadline) {
            break;
        }
        if quiet_until.is_none() && seen >= expected {
            quiet_until = Some(now + quiet);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen += 1;
                each(&m);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "test consumer error"),
            None => {}
        }
    }
}

/// Reads `topic` from the beginning until `expected` records arrived (or
/// `timeout` passed), then keeps reading for `quiet` to catch extras.
/// Records of aborted transactions are not seen (`read_committed`). Reads
/// on a blocking thread.
pub async fn consume(
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<Received> {
    consume_as(topic, expected, timeout, quiet, "read_committed").await
}

/// [`consume`] with the given `isolation.level` (`read_uncommitted` also
/// sees records of aborted and open transactions).
pub async fn consume_as(
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
    isolation: &str,
) -> Vec<Received> {
    let (topic, isolation) = (topic.to_owned(), isolation.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = reader_config(&unique("reader"))
            .set("isolation.level", &isolation)
            .create()
            .expect("consumer");
        assign_from_beginning(&consumer, &topic, PARTITIONS);
        let mut out = Vec::new();
        poll_until(&consumer, expected, timeout, quiet, |m| {
            out.push(Received::from(m));
        });
        out
    })
    .await
    .expect("the reading thread")
}

/// The committed offset of `group` for each partition of `topic`
/// (`None` where nothing is committed).
pub fn committed(group: &str, topic: &str) -> Vec<Option<i64>> {
    committed_in(group, topic, PARTITIONS)
}

/// [`committed`] for a topic with `partitions` partitions.
///
/// Reads with `isolation.level=read_uncommitted`: librdkafka then does not
/// ask for *stable* offsets (KIP-447), which the broker withholds while a
/// transaction holding offsets for the group is open. A process killed in
/// the middle of committing a transaction leaves one open until its
/// successor fences it or it times out (60 s); its offsets are not
/// committed, and what is committed is returned at once.
pub fn committed_in(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = reader_config(group)
        .set("isolation.level", "read_uncommitted")
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

/// The sum of [`committed`] over the partitions, uncommitted ones counting
/// 0: how many events `group` committed, when it started at the beginning.
pub fn committed_total(group: &str, topic: &str) -> i64 {
    sum_offsets(&committed(group, topic))
}

fn sum_offsets(offsets: &[Option<i64>]) -> i64 {
    offsets.iter().map(|o| o.unwrap_or(0)).sum()
}

/// Waits until the offsets `group` committed for `topic` ([`committed`])
/// satisfy `done`, and returns them; panics after `timeout`, naming `what`.
pub async fn wait_committed(
    group: &str,
    topic: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Option<i64>]) -> bool,
) -> Vec<Option<i64>> {
    eventually(
        timeout,
        &format!("offsets of `{topic}` committed by `{group}`: {what}"),
        || Some(committed(group, topic)).filter(|c| done(c)),
    )
    .await
}

/// Waits until [`committed_total`] is `total`; panics after `timeout`.
pub async fn wait_committed_total(group: &str, topic: &str, total: i64, timeout: Duration) {
    wait_committed(group, topic, timeout, &format!("{total} in all"), |c| {
        sum_offsets(c) == total
    })
    .await;
}

/// The high watermark (next offset) of each partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let c = consumer(&unique("high-watermarks"));
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("fetch watermarks")
                .1
        })
        .collect()
}

/// Reads partitions `0..from.len()` of `topic`, each from offset `from[p]`
/// up to its high watermark as of the call, with `isolation`
/// (`read_committed` skips aborted transactions and, like every reader,
/// transaction markers). Blocking; panics when the read stalls for
/// `timeout` (a `read_committed` reader cannot pass a transaction that
/// stays open).
pub fn read_from(topic: &str, from: &[i64], isolation: &str, timeout: Duration) -> Vec<Received> {
    let partitions = i32::try_from(from.len()).expect("partition count");
    let ends = end_offsets(topic, partitions);
    let consumer: BaseConsumer = reader_config(&unique("range-reader"))
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, &o) in (0..).zip(from) {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut next = from.to_vec();
    let mut out = Vec::new();
    let mut last_progress = Instant::now();
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        assert!(
            last_progress.elapsed() < timeout,
            "reading `{topic}` ({isolation}) stalled at {next:?} of {ends:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = usize::try_from(m.partition()).expect("partition");
                next[p] = m.offset() + 1;
                if m.offset() < ends[p] {
                    out.push(Received::from(&m));
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "range reader error"),
            None => {
                // Transaction markers and aborted records are never
                // returned, but they move the position.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Ok(p), Offset::Offset(o)) =
                            (usize::try_from(e.partition()), e.offset())
                            && p < next.len()
                            && o > next[p]
                        {
                            next[p] = o;
                            last_progress = Instant::now();
                        }
                    }
                }
            }
        }
    }
    out
}

/// The partition count of `topic`, `None` when the broker does not have
/// it.
pub fn partition_count(topic: &str) -> Option<i32> {
    let c = consumer(&unique("metadata"));
    let metadata = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("fetch metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| i32::try_from(t.partitions().len()).expect("partition count"))
}
