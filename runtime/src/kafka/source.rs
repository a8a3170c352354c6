//! A partition's own librdkafka queue as the pipeline's [`Source`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::Notify;

use super::convert::to_event;
use super::group::GroupContext;
use super::stall::{FetchHealth, polling};
use crate::bindings::weir::consumer::types::Event;
use crate::pipeline::{Source, TopicPartition};

/// A partition's queue, split off the consumer's when the partition was
/// assigned (so every message of the partition lands in it), its wake-up,
/// whether it can be fetched (the errors librdkafka puts in the queue
/// instead of records), and the consumer to seek with.
pub struct PartitionSource {
    health: FetchHealth,
    tp: TopicPartition,
    queue: PartitionQueue<GroupContext>,
    ready: Arc<Notify>,
    consumer: Arc<BaseConsumer<GroupContext>>,
}

impl std::fmt::Debug for PartitionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionSource")
            .field("tp", &self.tp)
            .finish_non_exhaustive()
    }
}

impl PartitionSource {
    /// The source of `tp`, reading `queue`; its stalls are reported as
    /// `health` says.
    pub(crate) fn new(
        health: FetchHealth,
        tp: TopicPartition,
        mut queue: PartitionQueue<GroupContext>,
        consumer: Arc<BaseConsumer<GroupContext>>,
    ) -> Self {
        let ready = Arc::new(Notify::new());
        let wake = ready.clone();
        // Called by librdkafka when the queue goes from empty to non-empty; a
        // wake-up that finds the worker busy is kept for its next wait.
        queue.set_nonempty_callback(move || wake.notify_one());
        Self {
            health,
            tp,
            queue,
            ready,
            consumer,
        }
    }
}

impl PartitionSource {
    /// The partition's position (the next offset to hand out), if the
    /// consumer has one.
    fn position(&self) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        match positions
            .find_partition(&self.tp.topic, self.tp.partition)?
            .offset()
        {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }
}

impl Source for PartitionSource {
    fn take(&mut self, max: usize) -> Vec<Event> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let (polled, text) = polling(|| self.queue.poll(Duration::ZERO));
            match polled {
                Some(Ok(message)) => {
                    self.health.progressed();
                    if batch.is_empty() {
                        // Most takes under load fill up: skip the small
                        // regrowths (each moves every event taken so far).
                        batch.reserve(max.min(64));
                    }
                    batch.push(to_event(&message, &self.tp.topic));
                }
                Some(Err(err)) => {
                    let position = self.position();
                    self.health.failed(&err, text.as_deref(), position);
                }
                None => break,
            }
        }
        batch
    }

    fn ready(&self) -> impl Future<Output = ()> + Send + '_ {
        self.ready.notified()
    }

    /// Seeks the partition: librdkafka then drops the messages it had
    /// fetched from the old position (they carry an outdated version).
    fn rewind(&mut self, offset: i64) -> Result<(), String> {
        self.consumer
            .seek(
                &self.tp.topic,
                self.tp.partition,
                Offset::Offset(offset),
                Duration::ZERO,
            )
            .map_err(|e| e.to_string())
    }
}
