//! Everything that speaks Kafka: how weir configures its clients, the
//! module consumers' group membership and poll thread ([`group`]), and the
//! Kafka implementations of the partition pipeline's seams: a partition's
//! own queue as its source ([`source`]), the producer as its sink and the
//! transactional producer of exactly-once partitions ([`sink`]), message
//! conversion ([`convert`]) and the credential check ([`security`]).
//! librdkafka types stay in this module.

pub mod acks;
pub mod changelog;
pub mod convert;
pub mod group;
pub mod membership;
mod pause;
pub mod properties;
pub mod runner;
pub mod security;
pub mod sink;
pub mod source;
pub mod stall;
pub mod stats;
mod tpl;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::secrets::{Scrubber, redacted};
use properties::{Scope, scope};

pub use runner::{RunnerSettings, spawn_runner};
pub use security::SecurityError;

/// librdkafka settings shared by every client weir creates: the bootstrap
/// servers plus the user's `[kafka]` passthrough table, of which each
/// client gets the properties that apply to it ([`properties`]). Its
/// `Debug` output redacts secrets (see [`crate::secrets`]).
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

    /// The bootstrap servers and the passthrough properties of `scopes`.
    fn base(&self, scopes: &[Scope]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.passthrough {
            if scopes.contains(&scope(key)) {
                config.set(key, value);
            }
        }
        config
    }

    /// Consumer configuration for one module's group. Offsets are stored and
    /// committed by weir only (see `dispatch`). Producer-only `[kafka]`
    /// properties (`compression.type`, `linger.ms`, ...) are left out.
    pub fn consumer_config(&self, group_id: &str, offset_reset: &str) -> ClientConfig {
        let mut config = self.base(&[Scope::Any, Scope::Consumer]);
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
    /// them; `[kafka] partitioner` overrides it. Consumer-only `[kafka]`
    /// properties are left out.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base(&[Scope::Any, Scope::Producer]);
        if config.get("partitioner").is_none() {
            config.set("partitioner", "murmur2_random");
        }
        config.set("enable.idempotence", "true");
        config
    }

    /// The idempotent producer shared by every module.
    pub fn producer(&self) -> anyhow::Result<acks::Producer> {
        sink::create_producer(&self.producer_config()).map_err(|e| {
            anyhow::anyhow!(
                "failed to create the kafka producer: {}",
                self.describe_error(&e)
            )
        })
    }

    /// An admin client, with the `[kafka]` properties that apply to every
    /// client.
    pub fn admin(&self) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        self.base(&[Scope::Any]).create().map_err(|e| {
            anyhow::anyhow!(
                "failed to create a kafka admin client: {}",
                self.describe_error(&e)
            )
        })
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
        assert_eq!(c.get("linger.ms"), None, "a producer property");
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn each_client_gets_only_the_properties_that_apply_to_it() {
        let mut s = settings();
        for (key, value) in [
            ("compression.type", "zstd"),
            ("session.timeout.ms", "6000"),
            ("security.protocol", "plaintext"),
        ] {
            s.passthrough.insert(key.into(), value.into());
        }
        let consumer = s.consumer_config("g", "earliest");
        let producer = s.producer_config();
        assert_eq!(consumer.get("compression.type"), None);
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("linger.ms"), Some("7"));
        assert_eq!(producer.get("session.timeout.ms"), None);
        for config in [&consumer, &producer] {
            assert_eq!(config.get("security.protocol"), Some("plaintext"));
        }
        // Each kind of client is created without complaint.
        let _consumer: rdkafka::consumer::BaseConsumer = consumer.create().expect("consumer");
        let _producer = sink::create_producer(&producer).expect("producer");
        s.admin().expect("admin");
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
        // TLS and SASL for secured clusters; every compression codec Kafka
        // producers use, so that any topic can be read and written.
        for feature in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
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
