//! Kafka clients shared by every part: the librdkafka settings all clients
//! get, a producer that counts acknowledgements, producers that fill a topic
//! with N records or send timestamped records at a steady rate, and the
//! consumers that read outputs back (end offsets, or every record from the
//! beginning).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use weir::kafka::KafkaSettings;

/// librdkafka settings shared by the native pipe and weir (weir gets them
/// through `RunConfig.kafka`). Producer idempotence/acks are weir's own
/// (idempotent, acks=all); the native pipe uses weir's producer config too.
fn default_kafka() -> BTreeMap<String, String> {
    [
        ("linger.ms", "5"),
        ("fetch.queue.backoff.ms", "20"),
        ("queue.buffering.max.messages", "1000000"),
        ("queued.max.messages.kbytes", "262144"),
        ("log_level", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The defaults with the `--kafka` properties `extra` on top.
pub fn kafka_map(extra: &[(String, String)]) -> BTreeMap<String, String> {
    let mut m = default_kafka();
    m.extend(extra.iter().cloned());
    m
}

/// `map` as `--kafka key=value` arguments of a child process.
pub fn kafka_args(map: &BTreeMap<String, String>) -> Vec<String> {
    map.iter()
        .flat_map(|(k, v)| ["--kafka".to_owned(), format!("{k}={v}")])
        .collect()
}

/// weir's client settings for `bootstrap` with the properties `kafka`.
pub fn settings(
    bootstrap: &str,
    kafka: impl IntoIterator<Item = (String, String)>,
) -> KafkaSettings {
    KafkaSettings {
        brokers: bootstrap.to_owned(),
        passthrough: kafka.into_iter().collect(),
    }
}

/// Nanoseconds since the Unix epoch (the clock the timestamped records
/// carry, so that another process can compare).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// -------------------------------------------------------------- producers --

/// Delivery reports counted by a [`Pipe`].
#[derive(Debug, Default)]
pub struct Acked {
    /// Records the broker acknowledged.
    pub ok: AtomicU64,
    /// Records that failed for good.
    pub failed: AtomicU64,
}

/// Producer context that counts delivery reports into an [`Acked`].
#[derive(Debug, Clone)]
pub struct CountingContext(Arc<Acked>);

impl ClientContext for CountingContext {}

impl ProducerContext<NoCustomPartitioner> for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A producer whose delivery reports are counted.
pub type Pipe = ThreadedProducer<CountingContext>;

/// Creates a [`Pipe`] from `config` and the counters it reports into.
pub fn counting_producer(config: &ClientConfig) -> anyhow::Result<(Pipe, Arc<Acked>)> {
    let acked = Arc::new(Acked::default());
    let producer = config.create_with_context(CountingContext(acked.clone()))?;
    Ok((producer, acked))
}

/// Sends `record`, waiting while the local queue is full; panics on any
/// other error.
fn send_retry<'a>(producer: &Pipe, mut record: BaseRecord<'a, (), [u8]>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

/// Produces `n` events of `size` bytes (no key), round-robin over the
/// partitions, and checks the broker kept them all.
pub fn prefill(
    bootstrap: &str,
    kafka: &BTreeMap<String, String>,
    topic: &str,
    partitions: i32,
    n: u64,
    size: usize,
) -> anyhow::Result<()> {
    let mut config = settings(bootstrap, kafka.clone()).producer_config();
    config.set("linger.ms", "20");
    let (producer, acked) = counting_producer(&config)?;
    let value = vec![b'x'; size];
    for i in 0..n {
        let p = (i % partitions as u64) as i32;
        send_retry(
            &producer,
            BaseRecord::<(), [u8]>::to(topic)
                .partition(p)
                .payload(&value),
        );
    }
    producer.flush(Duration::from_secs(120))?;
    if acked.ok.load(Ordering::Relaxed) != n {
        bail!(
            "prefill: {} of {n} acknowledged ({} failed)",
            acked.ok.load(Ordering::Relaxed),
            acked.failed.load(Ordering::Relaxed)
        );
    }
    let (low, high) = watermarks(&watcher(bootstrap)?, topic, partitions, 10)?;
    if low != 0 || high != n as i64 {
        bail!(
            "prefill: the broker holds offsets {low}..{high} of {topic}, not 0..{n} (the embedded broker drops old events past ~39k per partition)"
        );
    }
    Ok(())
}

/// A steady stream of timestamped records: see [`Paced::spawn`].
#[derive(Debug)]
pub struct Paced {
    /// Producer configuration.
    pub config: ClientConfig,
    /// Topic written (no key, partitioner's choice).
    pub topic: String,
    /// Value size in bytes (at least 8: the send time).
    pub size: usize,
    /// Records per second.
    pub rate: u64,
    /// Stops the stream once set.
    pub stop: Arc<AtomicBool>,
    /// Stops the stream once the wall clock ([`now_ns`]) reaches it.
    pub until_ns: u64,
}

impl Paced {
    /// Sends `rate` records a second from a new thread until stopped; each
    /// value starts with its send time ([`now_ns`], little-endian, read back
    /// with [`sent_ns`]). The thread returns how many it sent.
    pub fn spawn(self) -> JoinHandle<anyhow::Result<u64>> {
        std::thread::spawn(move || {
            let (producer, _) = counting_producer(&self.config)?;
            let mut value = vec![b'x'; self.size];
            let mut sent = 0u64;
            let t0 = Instant::now();
            while !self.stop.load(Ordering::Relaxed) && now_ns() < self.until_ns {
                let due = (t0.elapsed().as_secs_f64() * self.rate as f64) as u64;
                while sent < due {
                    value[..8].copy_from_slice(&now_ns().to_le_bytes());
                    send_retry(
                        &producer,
                        BaseRecord::<(), [u8]>::to(&self.topic).payload(&value),
                    );
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(sent)
        })
    }
}

/// The send time a [`Paced`] record carries, if its value has one.
pub fn sent_ns(m: &BorrowedMessage<'_>) -> Option<u64> {
    m.payload()
        .filter(|v| v.len() >= 8)
        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap_or_default()))
}

// -------------------------------------------------------------- consumers --

/// A consumer of group `group` on `bootstrap` with the properties `extra`
/// and librdkafka's logging cut to errors.
fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    Ok(config.set("log_level", "3").create()?)
}

/// A consumer that only reads watermarks (it never commits).
pub fn watcher(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    consumer(
        bootstrap,
        "weir-bench-watcher",
        &[("enable.auto.commit", "false")],
    )
}

/// A consumer of group `group` with the properties `extra`, assigned every
/// partition of `topic` from its beginning.
pub fn reader(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BaseConsumer> {
    let reader = consumer(bootstrap, group, extra)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    Ok(reader)
}

/// Low and high watermarks of `topic` summed over its partitions.
fn watermarks(
    c: &BaseConsumer,
    topic: &str,
    partitions: i32,
    timeout_secs: u64,
) -> anyhow::Result<(i64, i64)> {
    let (mut low, mut high) = (0, 0);
    for p in 0..partitions {
        let (l, h) = c.fetch_watermarks(topic, p, Duration::from_secs(timeout_secs))?;
        low += l;
        high += h;
    }
    Ok((low, high))
}

/// Records the broker holds on `topic` (its end offsets summed; the
/// outputs start empty).
pub fn end_offsets(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    Ok(watermarks(c, topic, partitions, 5)?.1)
}
