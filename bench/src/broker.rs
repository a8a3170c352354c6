//! The broker a run measures against: a real one (`--brokers`) or weir's
//! embedded mock, and topic creation on it.

use std::collections::BTreeMap;

use crate::kafka::settings;

/// The broker of a run, and the runtime its admin calls block on.
#[derive(Debug)]
pub struct Broker {
    /// Bootstrap list the clients and children connect to.
    pub bootstrap: String,
    embedded: Option<weir::embedded::EmbeddedKafka>,
    rt: tokio::runtime::Runtime,
}

impl Broker {
    /// Connects to `brokers`, or starts the embedded mock broker without it.
    pub fn start(brokers: Option<&str>) -> anyhow::Result<Self> {
        let rt = crate::child::runtime()?;
        Ok(match brokers {
            Some(b) => Self {
                bootstrap: b.to_owned(),
                embedded: None,
                rt,
            },
            None => {
                let e = weir::embedded::EmbeddedKafka::start()?;
                Self {
                    bootstrap: e.bootstrap_servers(),
                    embedded: Some(e),
                    rt,
                }
            }
        })
    }

    /// Whether this is the embedded mock broker.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        match &self.embedded {
            Some(e) => e.create_topic(topic, partitions),
            None => self.rt.block_on(weir::kafka::create_topics(
                &settings(&self.bootstrap, BTreeMap::new()),
                &[topic.to_owned()],
                partitions,
            )),
        }
    }
}
