//! An operator's pause applied to a module's consumer (`weir pause`).
//!
//! Pausing stops fetching every assigned partition (librdkafka's pause:
//! the partitions stay assigned, what was prefetched and not yet taken by a
//! worker is dropped, and fetching resumes after the last event a worker
//! took). Events the workers already took finish as usual; once every
//! partition's settled watermark reaches its consumer position, or the
//! drain timeout passes, the watermarks are committed synchronously and the
//! pause is reported as applied. Partitions assigned while paused are
//! paused as soon as they are assigned. Resuming resumes every assigned
//! partition where it stopped: nothing is skipped or handled twice.
//!
//! librdkafka learns a partition's end from its fetches, so while a module
//! is paused its statistics would show the lag of the moment it paused.
//! The pauser asks for the partitions' ends every few seconds instead and
//! keeps `/status` and `weir_consumer_lag` current.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::group::GroupContext;
use super::tpl::describe;
use crate::ops::control::{PauseState, PauseSwitch};
use crate::pipeline::TopicPartition;
use crate::pipeline::offsets::{Offsets, Scope};

/// How often the ends of paused partitions are asked for.
const ENDS_INTERVAL: Duration = Duration::from_secs(5);
/// Budget of asking one partition's end (on the poll thread).
const ENDS_TIMEOUT: Duration = Duration::from_millis(500);

/// The poll thread's side of the pause switch.
#[derive(Debug)]
pub(super) struct Pauser {
    /// Whether the pause is applied to the consumer; `None` until the
    /// first turn, which applies and reports the switch's state.
    applied: Option<bool>,
    /// While paused: each partition's end, and when to ask again.
    ends: HashMap<(String, i32), i64>,
    next_ends: Instant,
    /// While draining after a pause: until when.
    draining: Option<Instant>,
    drain_timeout: Duration,
}

impl Pauser {
    pub(super) fn new(drain_timeout: Duration) -> Self {
        Self {
            applied: None,
            ends: HashMap::new(),
            next_ends: Instant::now(),
            draining: None,
            drain_timeout,
        }
    }

    /// Applies a change of the switch, and follows a drain in progress.
    /// Called on every turn of the poll loop.
    pub(super) fn tick(&mut self, consumer: &BaseConsumer<GroupContext>) {
        let context = consumer.context();
        let switch = &context.pause;
        let wanted = switch.wanted();
        if Some(wanted) != self.applied {
            let first = self.applied.is_none();
            self.applied = Some(wanted);
            let assignment = consumer.assignment().unwrap_or_default();
            let module = &*context.module.name;
            if wanted {
                if let Err(err) = consumer.pause(&assignment) {
                    tracing::warn!(module, error = %err, "cannot pause the partitions");
                }
                tracing::info!(module, partitions = %describe(&assignment),
                    "module paused by the operator; draining events in flight");
                self.draining = Some(Instant::now() + self.drain_timeout);
                self.report(context, switch, PauseState::Pausing);
            } else if first {
                // A new consumer of a module that is not paused: nothing
                // to resume; only the state to report.
                self.report(context, switch, PauseState::Running);
            } else {
                if let Err(err) = consumer.resume(&assignment) {
                    tracing::warn!(module, error = %err, "cannot resume the partitions");
                }
                tracing::info!(module, partitions = %describe(&assignment), "module resumed");
                self.draining = None;
                self.ends.clear();
                self.report(context, switch, PauseState::Running);
            }
        }
        if wanted {
            self.paused_lag(consumer);
        }
        if let Some(until) = self.draining {
            let drained = drained(consumer, &context.module.offsets);
            if drained || Instant::now() >= until {
                self.draining = None;
                context.commit(consumer, Scope::Again(None), CommitMode::Sync);
                if !drained {
                    tracing::warn!(
                        module = &*context.module.name,
                        "events were still in flight when the drain timeout passed; \
                         they finish (or are redelivered) later"
                    );
                }
                self.report(context, switch, PauseState::Paused { drained });
            }
        }
    }

    fn report(&self, context: &GroupContext, switch: &PauseSwitch, state: PauseState) {
        let module = &context.module;
        let paused = self.applied == Some(true);
        switch.report(state);
        module.status.pause(&module.name, paused, state);
        module.metrics.paused(paused);
    }

    /// Keeps the lag of paused partitions current: their ends, asked for
    /// every [`ENDS_INTERVAL`], less the committed offsets.
    fn paused_lag(&mut self, consumer: &BaseConsumer<GroupContext>) {
        if Instant::now() >= self.next_ends {
            self.next_ends = Instant::now() + ENDS_INTERVAL;
            for e in consumer.assignment().unwrap_or_default().elements() {
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(e.topic(), e.partition(), ENDS_TIMEOUT)
                {
                    self.ends
                        .insert((e.topic().to_owned(), e.partition()), high);
                }
            }
        }
        let module = &consumer.context().module;
        for (topic, partition, lag) in module.status.ends(&module.name, &self.ends) {
            module.metrics.lag(&topic, partition, lag);
        }
    }
}

/// Whether every event the workers took was settled: each partition's
/// watermark has reached its consumer position (the offset after the last
/// event taken). A partition nothing was taken from has nothing in flight.
fn drained(consumer: &BaseConsumer<GroupContext>, offsets: &Offsets) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    positions.elements().iter().all(|e| match e.offset() {
        Offset::Offset(next) => {
            let tp = TopicPartition::new(e.topic(), e.partition());
            offsets.watermark(&tp).is_some_and(|w| w >= next)
        }
        _ => true,
    })
}

/// Newly assigned partitions (after the rebalance callback assigned them):
/// paused when the module is paused; otherwise resumed, in case a pause of
/// an earlier assignment is still recorded on them.
pub(super) fn assigned(
    consumer: &BaseConsumer<GroupContext>,
    tpl: &TopicPartitionList,
    paused: bool,
    module: &str,
) {
    let result = if paused {
        consumer.pause(tpl)
    } else {
        consumer.resume(tpl)
    };
    if let Err(err) = result {
        tracing::warn!(module, paused, partitions = %describe(tpl), error = %err,
            "cannot apply the pause to newly assigned partitions");
    }
}
