//! The broker the tests run against, and the topics they create on it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use weir::embedded::EmbeddedKafka;
use weir::kafka::KafkaSettings;

use crate::modules::Manifest;
use crate::{PARTITIONS, unique};

/// The broker the tests run against.
pub enum Broker {
    /// A cluster named by `WEIR_TEST_BROKERS`.
    External(String),
    /// The in-memory mock cluster.
    Embedded(EmbeddedKafka),
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker({})", self.bootstrap())
    }
}

/// The broker shared by all tests of this binary.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("WEIR_TEST_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Broker::External(b),
        _ => Broker::Embedded(EmbeddedKafka::start().expect("start the embedded broker")),
    })
}

impl Broker {
    /// Bootstrap servers.
    pub fn bootstrap(&self) -> String {
        match self {
            Self::External(b) => b.clone(),
            Self::Embedded(e) => e.bootstrap_servers(),
        }
    }

    /// Whether this is a real broker (as opposed to the mock).
    pub fn is_real(&self) -> bool {
        matches!(self, Self::External(_))
    }

    /// Creates `topic` with [`PARTITIONS`] partitions.
    pub async fn create_topic(&self, topic: &str) {
        self.create_topic_with(topic, PARTITIONS).await;
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic_with(&self, topic: &str, partitions: i32) {
        match self {
            Self::External(b) => {
                let settings = KafkaSettings {
                    brokers: b.clone(),
                    passthrough: BTreeMap::new(),
                };
                weir::kafka::create_topics(&settings, &[topic.to_owned()], partitions)
                    .await
                    .expect("create topic");
            }
            Self::Embedded(e) => e.create_topic(topic, partitions).expect("create topic"),
        }
    }

    /// Keeps `topic`, which must not exist yet, from being written: the
    /// mock cluster answers "unknown topic" for it; a real broker (topic
    /// auto-creation off) simply does not have it yet.
    pub fn withhold_topic(&self, topic: &str) {
        if let Self::Embedded(e) = self {
            e.set_topic_unavailable(topic, true)
                .expect("make the topic unavailable");
        }
    }

    /// Ends [`Broker::withhold_topic`]: the mock serves `topic` again (it
    /// creates topics on first use, so clearing the error is enough); on a
    /// real broker the topic is created.
    pub async fn release_topic(&self, topic: &str) {
        match self {
            Self::Embedded(e) => e
                .set_topic_unavailable(topic, false)
                .expect("make the topic available"),
            Self::External(_) => self.create_topic(topic).await,
        }
    }
}

/// The names of one module's topics and group, unique to this run:
/// `<prefix>-in`, `<prefix>-out`, `<prefix>-dlq` and `g-<prefix>`, each made
/// unique with [`unique`].
#[derive(Debug, Clone)]
pub struct Topics {
    /// The input topic.
    pub input: String,
    /// The output topic.
    pub output: String,
    /// The dead-letter topic (created only by [`Topics::create_dlq`]).
    pub dlq: String,
    /// The consumer group.
    pub group: String,
}

impl Topics {
    /// Names for `prefix`; creates nothing.
    pub fn named(prefix: &str) -> Self {
        Self {
            input: unique(&format!("{prefix}-in")),
            output: unique(&format!("{prefix}-out")),
            dlq: unique(&format!("{prefix}-dlq")),
            group: unique(&format!("g-{prefix}")),
        }
    }

    /// Names for `prefix`, with the input and output topics created with
    /// [`PARTITIONS`] partitions.
    pub async fn create(prefix: &str) -> Self {
        Self::create_with(prefix, PARTITIONS).await
    }

    /// Names for `prefix`, with the input and output topics created with
    /// `partitions` partitions.
    pub async fn create_with(prefix: &str, partitions: i32) -> Self {
        let t = Self::named(prefix);
        broker().create_topic_with(&t.input, partitions).await;
        broker().create_topic_with(&t.output, partitions).await;
        t
    }

    /// Creates the dead-letter topic ([`PARTITIONS`] partitions).
    pub async fn create_dlq(&self) {
        broker().create_topic(&self.dlq).await;
    }

    /// The manifest of a module reading the input topic in the group and
    /// writing the output topic, whose guest is told where to write:
    /// [`Manifest::pipe`].
    pub fn manifest(&self) -> Manifest {
        Manifest::pipe(&self.input, &self.output, &self.group)
    }
}
