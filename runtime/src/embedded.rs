//! The embedded broker for `weir dev`: librdkafka's in-process mock cluster.
//!
//! It speaks the Kafka protocol on a loopback port, so any Kafka client can
//! use it, but it keeps everything in memory, bounds each partition's log
//! (older events silently disappear past a few tens of thousands), and does
//! not support the CreateTopics admin API. It is for demos and quick local
//! runs, not for data you care about.

use std::sync::mpsc;

use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaRespErr;

use crate::manifest::{FailureAction, Manifest};

enum Request {
    CreateTopic(String, i32, mpsc::Sender<anyhow::Result<()>>),
    TopicError(String, RDKafkaRespErr, mpsc::Sender<anyhow::Result<()>>),
}

/// A running in-memory Kafka cluster; stops when dropped.
///
/// The mock cluster handle is not thread-safe in Rust's eyes, so it lives
/// on a thread of its own and is driven through a channel.
#[derive(Debug)]
pub struct EmbeddedKafka {
    bootstrap: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster on an ephemeral loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (ready, started) = mpsc::channel::<anyhow::Result<String>>();
        let thread = std::thread::Builder::new()
            .name("weir-embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready.send(Err(anyhow::anyhow!(
                            "failed to start the embedded kafka broker: {e}"
                        )));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                for request in inbox {
                    match request {
                        Request::CreateTopic(topic, partitions, reply) => {
                            let result = cluster.create_topic(&topic, partitions, 1).map_err(|e| {
                                anyhow::anyhow!(
                                    "failed to create topic `{topic}` on the embedded broker: {e}"
                                )
                            });
                            let _ = reply.send(result);
                        }
                        Request::TopicError(topic, code, reply) => {
                            let result = cluster.topic_error(&topic, code).map_err(|e| {
                                anyhow::anyhow!("failed to set an error on topic `{topic}`: {e}")
                            });
                            let _ = reply.send(result);
                        }
                    }
                }
            })?;
        let bootstrap = started
            .recv()
            .map_err(|_| anyhow::anyhow!("the embedded kafka broker thread exited"))??;
        Ok(Self {
            bootstrap,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// The `host:port` list clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap.clone()
    }

    fn ask(
        &self,
        make: impl FnOnce(mpsc::Sender<anyhow::Result<()>>) -> Request,
    ) -> anyhow::Result<()> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .and_then(|r| r.send(make(reply)).ok())
            .ok_or_else(|| anyhow::anyhow!("the embedded kafka broker is stopped"))?;
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the embedded kafka broker is stopped"))?
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        self.ask(|reply| Request::CreateTopic(topic.to_owned(), partitions, reply))
    }

    /// Fault injection for tests: makes metadata requests for `topic`
    /// answer "unknown topic" (`unavailable = true`) or succeed again.
    pub fn set_topic_unavailable(&self, topic: &str, unavailable: bool) -> anyhow::Result<()> {
        let code = if unavailable {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
        } else {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
        };
        self.ask(|reply| Request::TopicError(topic.to_owned(), code, reply))
    }

    /// Creates every input, output, dead-letter and state changelog topic
    /// named by the manifests in `dir` (manifests that do not parse are skipped; loading
    /// reports them).
    pub fn create_manifest_topics(
        &self,
        dir: &std::path::Path,
        partitions: i32,
    ) -> anyhow::Result<Vec<String>> {
        let mut topics = std::collections::BTreeSet::new();
        for wasm in crate::modules::component_files(dir)? {
            if let Ok(manifest) = Manifest::load(&wasm.with_extension("toml")) {
                if manifest.on_failure.action == FailureAction::DeadLetter {
                    let name = crate::engine::module_name(&wasm);
                    topics.insert(manifest.on_failure.dead_letter_topic(&name));
                }
                if let Some(state) = &manifest.state {
                    let name = crate::engine::module_name(&wasm);
                    topics.insert(state.changelog_topic(&name));
                }
                topics.extend(manifest.input_topics);
                topics.extend(manifest.output_topics);
            }
        }
        for topic in &topics {
            self.create_topic(topic, partitions)?;
        }
        Ok(topics.into_iter().collect())
    }
}
