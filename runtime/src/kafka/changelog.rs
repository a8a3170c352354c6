//! The Kafka side of state: checking a stateful module's topics before it
//! subscribes (co-partitioned inputs, a compacted changelog with one
//! partition per input partition, created when missing), and restoring a
//! store by reading its changelog partition ([`KafkaChangelog`]).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSettings;
use crate::state::changelog::Apply;
use crate::state::{Changelog, RestoreError};

/// Budget of each metadata or admin request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A restore that reads nothing for this long gives up (and is retried).
const RESTORE_STALL: Duration = Duration::from_secs(60);
/// Restore progress is reported every this many records.
const PROGRESS_EVERY: u64 = 10_000;

/// Why a stateful module cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The topics are not usable as they are; the module does not run
    /// until they are fixed (or the manifest changes).
    #[error("{0}")]
    Refused(String),
    /// The broker could not be asked; worth trying again.
    #[error("{0}")]
    Transient(String),
}

/// Checks a stateful module's input topics and changelog `changelog`:
/// every input topic must exist with the same partition count N, and the
/// changelog must have N partitions and (with `check_policy`) be compacted;
/// it is created so when missing. Returns N. Blocking.
pub fn prepare(
    settings: &KafkaSettings,
    runtime: &tokio::runtime::Handle,
    module: &str,
    inputs: &[String],
    changelog: &str,
    check_policy: bool,
) -> Result<i32, PrepareError> {
    let transient = |what: &str, e: &KafkaError| {
        PrepareError::Transient(format!("{what}: {}", settings.describe_error(e)))
    };
    let probe: BaseConsumer = settings
        .consumer_config("weir-state-probe", "earliest")
        .create()
        .map_err(|e| transient("cannot create a metadata client", &e))?;
    let mut counts = Vec::with_capacity(inputs.len());
    for topic in inputs {
        match partition_count(&probe, topic).map_err(|e| transient("cannot read metadata", &e))? {
            Some(n) => counts.push((topic.as_str(), n)),
            None => {
                return Err(PrepareError::Transient(format!(
                    "input topic `{topic}` does not exist yet"
                )));
            }
        }
    }
    let n = counts[0].1;
    if counts.iter().any(|(_, c)| *c != n) {
        let list: Vec<String> = counts
            .iter()
            .map(|(t, c)| format!("`{t}` has {c}"))
            .collect();
        return Err(PrepareError::Refused(format!(
            "stateful module `{module}` reads input topics with different partition counts \
             ({}): partition N of every input shares one state store, so they must be \
             co-partitioned (same partition count, same keys); re-key through an intermediate \
             topic with the right count first",
            list.join(", ")
        )));
    }
    match partition_count(&probe, changelog).map_err(|e| transient("cannot read metadata", &e))? {
        Some(c) if c != n => Err(PrepareError::Refused(format!(
            "changelog topic `{changelog}` of module `{module}` has {c} partitions, but its \
             input topics have {n}: each input partition needs its own changelog partition; \
             delete the topic or set `[state] changelog-topic` to another one"
        ))),
        Some(_) => {
            if check_policy {
                check_compacted(settings, runtime, module, changelog)?;
            }
            Ok(n)
        }
        None => {
            create(settings, runtime, changelog, n)?;
            tracing::info!(
                module,
                changelog,
                partitions = n,
                "created the compacted changelog topic"
            );
            Ok(n)
        }
    }
}

/// The partition count of `topic`, `None` when it does not exist.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<Option<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

fn create(
    settings: &KafkaSettings,
    runtime: &tokio::runtime::Handle,
    topic: &str,
    partitions: i32,
) -> Result<(), PrepareError> {
    let admin = settings
        .admin()
        .map_err(|e| PrepareError::Transient(format!("{e:#}")))?;
    // The broker's default replication factor (KIP-464).
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|e| {
            PrepareError::Transient(format!(
                "cannot create changelog topic `{topic}`: {}",
                settings.describe_error(&e)
            ))
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(PrepareError::Transient(format!(
                    "cannot create changelog topic `{topic}`: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a changelog whose `cleanup.policy` does not compact.
fn check_compacted(
    settings: &KafkaSettings,
    runtime: &tokio::runtime::Handle,
    module: &str,
    topic: &str,
) -> Result<(), PrepareError> {
    let admin = settings
        .admin()
        .map_err(|e| PrepareError::Transient(format!("{e:#}")))?;
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let described = runtime
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(|e| {
            PrepareError::Transient(format!(
                "cannot describe changelog topic `{topic}`: {}",
                settings.describe_error(&e)
            ))
        })?;
    let policy = described
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|entry| entry.name == "cleanup.policy")
        .and_then(|entry| entry.value);
    match policy {
        Some(policy) if policy.split(',').any(|p| p.trim() == "compact") => Ok(()),
        Some(policy) => Err(PrepareError::Refused(format!(
            "changelog topic `{topic}` of module `{module}` has cleanup.policy={policy}: a \
             changelog must be compacted (`kafka-configs --alter --add-config \
             cleanup.policy=compact`), or it loses state when old segments are deleted"
        ))),
        None => Err(PrepareError::Transient(format!(
            "cannot read cleanup.policy of changelog topic `{topic}`"
        ))),
    }
}

/// The restore consumer's context: the end of the partition is how a
/// restore ends, not an error worth a log line.
struct RestoreContext {
    module: String,
}

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        tracing::warn!(target: "weir::kafka", module = %self.module, error = %error,
            "state restore: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// Restores stores from changelog partitions with a consumer of its own
/// (assigned, never subscribed, never committing).
#[derive(Debug, Clone)]
pub struct KafkaChangelog {
    /// Connection settings.
    pub settings: KafkaSettings,
    /// The module's group, to name the restore consumer's.
    pub group: String,
}

impl Changelog for KafkaChangelog {
    fn restore(
        &self,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        apply: &mut Apply<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64, RestoreError> {
        let failed = |e: KafkaError| RestoreError::Failed(self.settings.describe_error(&e));
        let mut config = self
            .settings
            .consumer_config(&format!("{}-restore", self.group), "error");
        config
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            // The end of the partition is known from an empty fetch: do not
            // let the broker hold that answer for the default 500 ms.
            .set("fetch.wait.max.ms", "10");
        let context = RestoreContext {
            module: self.group.clone(),
        };
        let consumer: BaseConsumer<RestoreContext> =
            config.create_with_context(context).map_err(failed)?;
        let mut tpl = TopicPartitionList::new();
        let start = from.map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(topic, partition, start)
            .map_err(failed)?;
        consumer.assign(&tpl).map_err(failed)?;
        let mut records = 0u64;
        let mut last_read = Instant::now();
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    last_read = Instant::now();
                    headers.clear();
                    if let Some(h) = message.headers() {
                        for header in h.iter() {
                            headers.push((
                                header.key.to_owned(),
                                header.value.unwrap_or_default().to_vec(),
                            ));
                        }
                    }
                    let borrowed: Vec<(&str, &[u8])> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    apply(message.key(), message.payload(), &borrowed)
                        .map_err(|e| RestoreError::Failed(format!("{e:#}")))?;
                    records += 1;
                    if records.is_multiple_of(PROGRESS_EVERY) {
                        progress(records);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                ))) => {
                    return Err(RestoreError::OutOfRange {
                        offset: from.unwrap_or(0),
                    });
                }
                Some(Err(err)) => {
                    if last_read.elapsed() > RESTORE_STALL {
                        return Err(failed(err));
                    }
                    tracing::debug!(topic, partition, error = %err, "restore consumer error");
                }
                None if last_read.elapsed() > RESTORE_STALL => {
                    return Err(RestoreError::Failed(format!(
                        "no progress for {}s",
                        RESTORE_STALL.as_secs()
                    )));
                }
                None => {}
            }
        }
        progress(records);
        // After the end of a partition the position also covers the
        // transaction markers after the last record.
        let position = consumer.position().map_err(failed)?;
        let next = position
            .find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .or(from)
            .unwrap_or(0);
        Ok(next)
    }
}
