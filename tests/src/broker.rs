//! The broker the tests run against.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use weir::embedded::EmbeddedKafka;
use weir::kafka::KafkaSettings;

use crate::PARTITIONS;

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
        match self {
            Self::External(b) => {
                let settings = KafkaSettings {
                    brokers: b.clone(),
                    passthrough: BTreeMap::new(),
                };
                weir::kafka::create_topics(&settings, &[topic.to_owned()], PARTITIONS)
                    .await
                    .expect("create topic");
            }
            Self::Embedded(e) => e.create_topic(topic, PARTITIONS).expect("create topic"),
        }
    }
}
