//! Small Kafka clients behind `weir produce` and `weir consume`, so the demo
//! and quick experiments need no other tool.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn text(bytes: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    bytes.map_or("<null>".into(), String::from_utf8_lossy)
}

/// Produces one record per input line to `topic`. With `key_separator`,
/// the text before its first occurrence is the key. Returns the count.
pub fn produce_lines(
    brokers: &str,
    topic: &str,
    key_separator: Option<&str>,
    headers: &[(String, String)],
    input: impl BufRead,
) -> anyhow::Result<usize> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(|e| anyhow::anyhow!("failed to create a producer for `{brokers}`: {e}"))?;
    let mut count = 0;
    for line in input.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let (key, value) = match key_separator.and_then(|sep| line.split_once(sep)) {
            Some((k, v)) => (Some(k.to_owned()), v.to_owned()),
            None => (None, line),
        };
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = BaseRecord::<str, str>::to(topic)
            .payload(&value)
            .headers(hs);
        if let Some(key) = &key {
            record = record.key(key);
        }
        producer
            .send(record)
            .map_err(|(e, _)| anyhow::anyhow!("failed to produce to `{topic}`: {e}"))?;
        producer.poll(Duration::ZERO);
        count += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("records to `{topic}` were not acknowledged: {e}"))?;
    Ok(count)
}

/// Prints the records of every partition of `topic` from the beginning, as
/// `partition offset key value [headers]`, until `count` records were seen
/// or nothing arrived for `idle`. Reads without a consumer group. Returns the
/// number printed.
pub fn consume_to(
    brokers: &str,
    topic: &str,
    count: Option<usize>,
    idle: Duration,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-cli-unused")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| anyhow::anyhow!("failed to create a consumer for `{brokers}`: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot read metadata of `{topic}`: {e}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or_default();
    anyhow::ensure!(partitions > 0, "topic `{topic}` does not exist");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut seen = 0;
    let mut last = Instant::now();
    while count.is_none_or(|c| seen < c) && last.elapsed() < idle {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(|e| anyhow::anyhow!("consuming `{topic}` failed: {e}"))?;
        last = Instant::now();
        seen += 1;
        let headers: Vec<String> = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| format!("{}={}", h.key, text(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{} {} {} {}{}",
            message.partition(),
            message.offset(),
            text(message.key()),
            text(message.payload()),
            if headers.is_empty() {
                String::new()
            } else {
                format!(" [{}]", headers.join(", "))
            }
        )?;
    }
    Ok(seen)
}
