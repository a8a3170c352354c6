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
use crate::secrets::{Scrubber, redacted};

/// librdkafka settings shared by every client weir creates: the bootstrap
/// servers plus the user's `[kafka]` passthrough table. Its `Debug` output
/// redacts secrets (see [`crate::secrets`]).
#[derive(Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Verbatim librdkafka properties.
    pub passthrough: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("passthrough", &redacted(&self.passthrough))
            .finish()
    }
}

impl KafkaSettings {
    /// A librdkafka error as text safe to log or return: a configuration
    /// error names the property but never shows its value (a secret under a
    /// misspelt key is still a secret), and the values of secret `[kafka]`
    /// properties are removed from any other message.
    pub fn describe_error(&self, err: &KafkaError) -> String {
        let scrubber = Scrubber::new(&self.passthrough);
        match err {
            KafkaError::ClientConfig(_, desc, key, _value) => {
                format!("invalid property `{key}`: {}", scrubber.scrub(desc))
            }
            other => scrubber.scrub(&other.to_string()),
        }
    }

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
        self.producer_config().create().map_err(|e| {
            anyhow::anyhow!(
                "failed to create the kafka producer: {}",
                self.describe_error(&e)
            )
        })
    }

    /// An admin client.
    pub fn admin(&self) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        self.base().create().map_err(|e| {
            anyhow::anyhow!(
                "failed to create a kafka admin client: {}",
                self.describe_error(&e)
            )
        })
    }
}

/// The cluster cannot be used with these security settings, and retrying
/// cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A broker rejected the credentials: wrong user or password, or a
    /// mechanism the listener does not offer.
    #[error(
        "kafka at {brokers} rejected weir's credentials ({settings}): {reason}; \
         check `sasl.mechanism`, `sasl.username` and `sasl.password` in [kafka]"
    )]
    Credentials {
        /// The bootstrap servers.
        brokers: String,
        /// The non-secret security settings in use, e.g.
        /// `security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.username=weir`.
        settings: String,
        /// librdkafka's reason, secrets removed.
        reason: String,
    },
    /// A broker's TLS certificate failed verification (unknown CA, or a
    /// name that does not match the address).
    #[error(
        "cannot verify the TLS certificate of kafka at {brokers} ({settings}): {reason}; \
         check `ssl.ca.location` in [kafka]"
    )]
    Certificate {
        /// The bootstrap servers.
        brokers: String,
        /// The non-secret security settings in use.
        settings: String,
        /// librdkafka's reason, secrets removed.
        reason: String,
    },
}

/// What a librdkafka error says about the security settings, if anything
/// retrying cannot fix: `Some(true)` rejected credentials, `Some(false)` an
/// unverifiable certificate.
fn security_failure(error: &KafkaError, reason: &str) -> Option<bool> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => Some(true),
        RDKafkaErrorCode::SSL if reason.contains("certificate verify failed") => Some(false),
        _ => None,
    }
}

/// Records the first security failure a probing client reports.
struct ProbeContext {
    failure: std::sync::Mutex<Option<(bool, String)>>,
}

impl rdkafka::ClientContext for ProbeContext {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // The module consumers log the same connection troubles.
        tracing::debug!(target: "weir::kafka", facility = fac, "credential check: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(credentials) = security_failure(&error, reason) {
            let mut slot = self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slot.get_or_insert_with(|| (credentials, reason.to_owned()));
        } else {
            tracing::debug!(target: "weir::kafka", error = %error, "credential check: {reason}");
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl KafkaSettings {
    /// Connects to the cluster with the `[kafka]` settings and waits up to
    /// `within` (or until `stop` fires) for it to answer a metadata request.
    /// Blocking.
    ///
    /// Returns `Ok(true)` once the cluster answered, `Ok(false)` if it did
    /// not answer in time (unreachable brokers are not fatal: librdkafka keeps
    /// reconnecting), and a [`SecurityError`] as soon as a broker rejects the
    /// credentials or its certificate fails verification.
    pub fn check_credentials(
        &self,
        within: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<bool, SecurityError> {
        use rdkafka::producer::{BaseProducer, Producer};
        let context = ProbeContext {
            failure: std::sync::Mutex::new(None),
        };
        let fail = |credentials: bool, reason: &str| {
            let (brokers, settings) = (self.brokers.clone(), self.security_summary());
            let reason = Scrubber::new(&self.passthrough).scrub(reason);
            if credentials {
                SecurityError::Credentials {
                    brokers,
                    settings,
                    reason,
                }
            } else {
                SecurityError::Certificate {
                    brokers,
                    settings,
                    reason,
                }
            }
        };
        let client: BaseProducer<ProbeContext> = match self.base().create_with_context(context) {
            Ok(client) => client,
            // weir's own producer reports configuration errors.
            Err(_) => return Ok(false),
        };
        let deadline = std::time::Instant::now() + within;
        loop {
            let attempt = client
                .client()
                .fetch_metadata(None, Duration::from_millis(500));
            client.poll(Duration::ZERO);
            let failure = client
                .context()
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some((credentials, reason)) = failure {
                return Err(fail(credentials, &reason));
            }
            match attempt {
                Ok(_) => return Ok(true),
                Err(err) => {
                    let reason = err.to_string();
                    if let Some(credentials) = security_failure(&err, &reason) {
                        return Err(fail(credentials, &reason));
                    }
                    if stop.is_cancelled() || std::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// The non-secret security settings, for messages.
    fn security_summary(&self) -> String {
        let shown: Vec<String> = [
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
        ]
        .iter()
        .filter_map(|k| self.passthrough.get(*k).map(|v| format!("{k}={v}")))
        .collect();
        if shown.is_empty() {
            "security.protocol=plaintext".to_owned()
        } else {
            shown.join(", ")
        }
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
        .map_err(|e| anyhow::anyhow!("failed to create topics: {}", settings.describe_error(&e)))?;
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
/// returns its delivery, to be awaited with [`delivered`]. Records enqueued
/// one after another keep their order per partition. `timestamp_ms` is the
/// timestamp to give it (the input event's), or `None` for the producer's
/// clock.
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
    fn debug_and_errors_never_show_secret_values() {
        let mut s = settings();
        s.passthrough
            .insert("sasl.password".into(), "pw-in-config-1".into());
        s.passthrough
            .insert("ssl.keystore.password".into(), "store-pw-2".into());
        let debug = format!("{s:?}");
        assert!(!debug.contains("pw-in-config-1"), "{debug}");
        assert!(!debug.contains("store-pw-2"), "{debug}");
        assert!(
            debug.contains("linger.ms") && debug.contains("***"),
            "{debug}"
        );

        // A secret under a misspelt key: librdkafka rejects the key, and the
        // error must still not carry the value.
        s.passthrough
            .insert("sasl.pasword".into(), "typo-secret-3".into());
        let Err(err) = s.producer() else {
            panic!("a producer with an unknown property was created");
        };
        let text = format!("{err:#}");
        assert!(text.contains("sasl.pasword"), "{text}");
        assert!(!text.contains("typo-secret-3"), "{text}");
    }

    #[test]
    fn librdkafka_is_built_with_tls_and_sasl() {
        let (_, version) = rdkafka::util::get_rdkafka_version();
        let features = ClientConfig::new()
            .create_native_config()
            .and_then(|c| c.get("builtin.features"))
            .expect("builtin.features");
        for feature in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(
                features.split(',').any(|f| f == feature),
                "librdkafka {version} lacks `{feature}`: {features}"
            );
        }
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
