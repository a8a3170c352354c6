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

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::group::GroupContext;
use super::tpl::describe;
use crate::ops::control::{PauseState, PauseSwitch};
use crate::pipeline::TopicPartition;
use crate::pipeline::offsets::{Offsets, Scope};

/// The poll thread's side of the pause switch.
#[derive(Debug)]
pub(super) struct Pauser {
    /// Whether the pause is applied to the consumer.
    applied: bool,
    /// While draining after a pause: until when.
    draining: Option<Instant>,
    drain_timeout: Duration,
}

impl Pauser {
    pub(super) fn new(drain_timeout: Duration) -> Self {
        Self {
            applied: false,
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
        if wanted != self.applied {
            self.applied = wanted;
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
            } else {
                if let Err(err) = consumer.resume(&assignment) {
                    tracing::warn!(module, error = %err, "cannot resume the partitions");
                }
                tracing::info!(module, partitions = %describe(&assignment), "module resumed");
                self.draining = None;
                self.report(context, switch, PauseState::Running);
            }
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
        switch.report(state);
        module.status.pause(&module.name, self.applied, state);
        module.metrics.paused(self.applied);
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
