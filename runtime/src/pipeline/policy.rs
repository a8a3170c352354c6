//! The settlement rules: given the events at the head of a partition, what
//! a call made of them, the attempt number and the module's settings,
//! decide which events are settled, what to produce, what failed for good,
//! what to retry and whether the partition stops. Plain functions over
//! plain data, shared by the partition worker and `weir replay`.
//!
//! Dispositions:
//! - `ok`: the event's records are produced; once acknowledged, settled.
//! - `reject`: the event failed for good; nothing it emitted is produced.
//! - `retry`: called again (after a backoff the driver sleeps); when
//!   `retry.max-attempts` are used up it failed for good.
//! - a trap (panic, time or memory limit): the instance is replaced and the
//!   event retried like `retry`. In batch mode the batch is first re-run one
//!   event at a time ([`Progress::isolate`]) to find the event that trapped.
//! - an event over `limits.max-event-bytes` fails without a call.
//!
//! An event that failed for good follows the module's `on-failure` action:
//! dead-lettered, skipped, or (`stop`) the partition halts at it: neither it
//! nor anything after it is produced or settled.

use super::failure::{Failure, FailureKind, event_size};
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::invoke::{CallFailure, CallResult};
use crate::manifest::{FailureAction, Manifest};
use crate::metrics::{Outcome, Outcomes};

/// The settings the rules read, all from one module version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `retry.max-attempts`.
    pub max_attempts: u32,
    /// `limits.max-event-bytes`.
    pub max_event_bytes: usize,
    /// `on-failure.action`.
    pub action: FailureAction,
    /// The module takes whole batches.
    pub batch: bool,
}

impl Rules {
    /// The rules of a module version.
    pub fn of(manifest: &Manifest, batch: bool) -> Self {
        Self {
            max_attempts: manifest.retry.max_attempts,
            max_event_bytes: manifest.limits.max_event_bytes as usize,
            action: manifest.on_failure.action,
            batch,
        }
    }
}

/// A record to produce, with the timestamp to give it and the offset of the
/// event that emitted it (the batch's first event in batch mode).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The record.
    pub record: Outgoing,
    /// Its timestamp, or `None` for the producer's clock.
    pub timestamp_ms: Option<i64>,
    /// Offset of the event it is attributed to.
    pub owner: i64,
}

/// What to do next with the head of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The first event is over `limits.max-event-bytes`: settle it with
    /// [`Progress::oversized`] without a call.
    Oversized,
    /// Call the module for this many leading events.
    Call(usize),
}

/// What to do with one call's events.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Leading events of the chunk that are settled.
    pub settled: usize,
    /// Records to produce.
    pub produce: Vec<Pending>,
    /// Settled events that failed for good.
    pub rejects: Vec<Failure>,
    /// The first unsettled event asked to be retried, for this reason.
    pub retry: Option<String>,
    /// `on-failure = stop`: the partition halts at this event, which is not
    /// settled (nor is anything after it).
    pub halt: Option<Failure>,
    /// Outcomes for `weir_events_processed_total`.
    pub outcomes: Outcomes,
    /// The attempt number of the call (of its first event).
    pub attempt: u32,
    /// The call ran in batch mode.
    pub batch: bool,
}

/// How one settled event ended, as `weir replay` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handled; its records are produced.
    Ok,
    /// Failed for good.
    Failed(Failure),
}

impl Settlement {
    /// How the settled event `chunk[index]` ended, and the handler calls it
    /// took.
    pub fn verdict(&self, index: usize, event: &Event) -> (Verdict, u32) {
        match self.rejects.iter().find(|f| f.offset == event.offset) {
            Some(failure) => (Verdict::Failed(failure.clone()), failure.attempts),
            None if self.batch || index == 0 => (Verdict::Ok, self.attempt),
            None => (Verdict::Ok, 1),
        }
    }
}

/// A partition's progress through its head event: the attempt number and
/// how many events are still to be called one at a time after a batch
/// trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Attempts made for the head event, plus one (counts from 1).
    pub attempt: u32,
    /// Events still to be called one at a time after a batch failed.
    pub isolate: usize,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            attempt: 1,
            isolate: 0,
        }
    }
}

impl Progress {
    /// What to do with the first `max` (at least 1) of `head`, the events
    /// waiting in offset order.
    pub fn next<'a>(
        &self,
        head: impl IntoIterator<Item = &'a Event>,
        max: usize,
        rules: &Rules,
    ) -> Next {
        let max = if self.isolate > 0 { 1 } else { max.max(1) };
        let mut count = 0;
        for event in head.into_iter().take(max) {
            if event_size(event) > rules.max_event_bytes {
                return if count == 0 {
                    Next::Oversized
                } else {
                    Next::Call(count)
                };
            }
            count += 1;
        }
        Next::Call(count)
    }

    /// Settles an event over `limits.max-event-bytes`: it fails without a
    /// call.
    pub fn oversized(&mut self, event: &Event, rules: &Rules) -> Settlement {
        let mut plan = Settlement {
            settled: 1,
            attempt: 0,
            batch: rules.batch,
            ..Settlement::default()
        };
        plan.outcomes.add(Outcome::Rejected);
        plan.rejects.push(Failure {
            offset: event.offset,
            kind: FailureKind::Oversized,
            reason: format!(
                "the event is {} bytes, over `limits.max-event-bytes` ({})",
                event_size(event),
                rules.max_event_bytes
            ),
            attempts: 0,
        });
        self.finish(plan, std::slice::from_ref(event), rules)
    }

    /// Decides what happened to each event of a call on `chunk` and moves
    /// the progress on.
    pub fn settle(&mut self, chunk: &[Event], result: CallResult, rules: &Rules) -> Settlement {
        let plan = if rules.batch {
            self.settle_batch(chunk, result, rules)
        } else {
            self.settle_each(chunk, result, rules)
        };
        self.finish(plan, chunk, rules)
    }

    /// Applies `stop` and moves the attempt and isolation counters on.
    fn finish(&mut self, mut plan: Settlement, chunk: &[Event], rules: &Rules) -> Settlement {
        if self.isolate > 0 {
            self.isolate = self.isolate.saturating_sub(plan.settled);
        }
        if rules.action == FailureAction::Stop {
            stop_at_first_failure(chunk, &mut plan);
        }
        if plan.settled > 0 || plan.halt.is_some() {
            self.attempt = 1;
        } else if plan.retry.is_some() {
            self.attempt += 1;
        }
        plan
    }

    fn settle_batch(&mut self, chunk: &[Event], result: CallResult, rules: &Rules) -> Settlement {
        let attempt = self.attempt;
        let final_attempt = attempt >= rules.max_attempts;
        let mut plan = Settlement {
            attempt,
            batch: true,
            ..Settlement::default()
        };
        if let Some(failure) = result.failure {
            plan.outcomes.add(failed(&failure));
            if chunk.len() > 1 {
                self.isolate = chunk.len();
            } else if final_attempt {
                plan.rejects.push(gave_up(
                    &chunk[0],
                    trap_kind(&failure),
                    failure.reason,
                    attempt,
                ));
                plan.settled = 1;
            } else {
                plan.retry = Some(failure.reason);
            }
            return plan;
        }
        let first_retry = result.dispositions.iter().find_map(|d| match d {
            Disposition::Retry(r) => Some(r.clone()),
            _ => None,
        });
        if let Some(reason) = first_retry
            && !final_attempt
        {
            for d in &result.dispositions {
                if matches!(d, Disposition::Retry(_)) {
                    plan.outcomes.add(Outcome::Retry);
                }
            }
            plan.retry = Some(reason);
            return plan;
        }
        for (event, disposition) in chunk.iter().zip(result.dispositions) {
            let kind = match disposition {
                Disposition::Ok => {
                    plan.outcomes.add(Outcome::Ok);
                    continue;
                }
                Disposition::Reject(r) => (FailureKind::Rejected, r),
                Disposition::Retry(r) => (FailureKind::RetriesExhausted, r),
            };
            plan.outcomes.add(Outcome::Rejected);
            plan.rejects.push(gave_up(event, kind.0, kind.1, attempt));
        }
        let owner = chunk[0].offset;
        plan.produce = result
            .emitted
            .into_iter()
            .flatten()
            .map(|record| Pending {
                record,
                timestamp_ms: None,
                owner,
            })
            .collect();
        plan.settled = chunk.len();
        plan
    }

    /// Per-event mode. `attempt` counts the attempts of the chunk's first
    /// event only: a later event asking for a retry goes back to the queue
    /// and becomes the head of the next call, with its own count.
    fn settle_each(&mut self, chunk: &[Event], result: CallResult, rules: &Rules) -> Settlement {
        let attempt = self.attempt;
        let final_attempt = attempt >= rules.max_attempts;
        let mut plan = Settlement {
            attempt,
            ..Settlement::default()
        };
        let handled = result.dispositions.len();
        let calls = chunk.iter().zip(result.dispositions).zip(result.emitted);
        for (index, ((event, disposition), emitted)) in calls.enumerate() {
            let attempts = if index == 0 { attempt } else { 1 };
            let give_up_now = final_attempt && index == 0;
            match disposition {
                Disposition::Ok => {
                    plan.outcomes.add(Outcome::Ok);
                    plan.produce
                        .extend(emitted.into_iter().map(|record| Pending {
                            record,
                            timestamp_ms: event.timestamp_ms,
                            owner: event.offset,
                        }));
                }
                Disposition::Reject(r) => {
                    plan.outcomes.add(Outcome::Rejected);
                    plan.rejects
                        .push(gave_up(event, FailureKind::Rejected, r, attempts));
                }
                Disposition::Retry(r) if give_up_now => {
                    plan.outcomes.add(Outcome::Rejected);
                    plan.rejects
                        .push(gave_up(event, FailureKind::RetriesExhausted, r, attempts));
                }
                Disposition::Retry(r) => {
                    plan.outcomes.add(Outcome::Retry);
                    if index == 0 {
                        plan.retry = Some(r);
                    }
                    break;
                }
            }
            plan.settled += 1;
        }
        // A trap: the instance is gone. The trapping event is retried on a
        // fresh instance (with backoff once it is the head of the call) and
        // fails for good when its attempts are used up.
        if let Some(failure) = result.failure
            && let Some(event) = chunk.get(handled)
        {
            plan.outcomes.add(failed(&failure));
            if handled == 0 && final_attempt {
                plan.rejects
                    .push(gave_up(event, trap_kind(&failure), failure.reason, attempt));
                plan.settled += 1;
            } else if handled == 0 {
                plan.retry = Some(failure.reason);
            }
        }
        plan
    }
}

fn gave_up(event: &Event, kind: FailureKind, reason: String, attempts: u32) -> Failure {
    Failure {
        offset: event.offset,
        kind,
        reason,
        attempts,
    }
}

fn trap_kind(failure: &CallFailure) -> FailureKind {
    if failure.timed_out {
        FailureKind::Timeout
    } else {
        FailureKind::Trap
    }
}

/// The outcome of an event whose call did not complete.
fn failed(failure: &CallFailure) -> Outcome {
    if failure.timed_out {
        Outcome::Timeout
    } else {
        Outcome::Trap
    }
}

/// `on-failure = stop`: cuts the plan at the first failure so that neither
/// it nor anything after it is produced or settled.
fn stop_at_first_failure(chunk: &[Event], plan: &mut Settlement) {
    let Some(first) = plan.rejects.iter().min_by_key(|f| f.offset).cloned() else {
        return;
    };
    let Some(index) = chunk.iter().position(|e| e.offset == first.offset) else {
        return;
    };
    plan.settled = plan.settled.min(index);
    plan.produce.retain(|p| p.owner < first.offset);
    plan.rejects.clear();
    plan.retry = None;
    plan.halt = Some(first);
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
