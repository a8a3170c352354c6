//! Deciding what happened to each event of a call: which events are
//! settled, what to produce, which failed for good, and what to retry.

use super::failure::{Failure, FailureKind, event_size};
use super::worker::Worker;
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::invoke::{CallResult, Invoker};
use crate::metrics::{Outcome, Outcomes};

/// What to do with one call's events.
#[derive(Default)]
pub(super) struct Settlement {
    /// Leading events of the chunk that are settled.
    pub(super) settled: usize,
    /// Records to produce.
    pub(super) produce: Vec<Pending>,
    /// Events that failed for good.
    pub(super) rejects: Vec<Failure>,
    /// The first unsettled event asked to be retried, for this reason.
    pub(super) retry: Option<String>,
    /// Outcomes for `weir_events_processed_total`.
    pub(super) outcomes: Outcomes,
}

/// A record to produce, with the timestamp to give it and the offset of the
/// event that emitted it (the batch's first event in batch mode).
pub(super) struct Pending {
    pub(super) record: Outgoing,
    pub(super) timestamp_ms: Option<i64>,
    pub(super) owner: i64,
}

impl Worker {
    /// Decides what happened to each event of a call.
    pub(super) fn settle(
        &mut self,
        chunk: &[Event],
        result: CallResult,
        attempt: u32,
    ) -> Settlement {
        let max_attempts = self.shared.current().manifest.retry.max_attempts;
        let final_attempt = attempt >= max_attempts;
        let give_up = |offset: i64, kind: FailureKind, reason: &str| Failure {
            offset,
            kind,
            reason: reason.to_owned(),
            attempts: attempt,
        };
        let trap_kind = |timed_out: bool| {
            if timed_out {
                FailureKind::Timeout
            } else {
                FailureKind::Trap
            }
        };
        let mut plan = Settlement::default();
        let batch_mode = self.invoker.as_ref().is_some_and(Invoker::is_batch);

        if batch_mode {
            if let Some(failure) = result.failure {
                plan.outcomes.add(failed(&failure));
                if chunk.len() > 1 {
                    tracing::warn!(module = &*self.shared.name, topic = %self.tp.0,
                        partition = self.tp.1, events = chunk.len(), reason = %failure.reason,
                        "batch call failed; re-running its events one at a time");
                    self.isolate = chunk.len();
                } else if final_attempt {
                    let kind = trap_kind(failure.timed_out);
                    plan.rejects
                        .push(give_up(chunk[0].offset, kind, &failure.reason));
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
            for (event, disposition) in chunk.iter().zip(&result.dispositions) {
                plan.outcomes.add(match disposition {
                    Disposition::Ok => Outcome::Ok,
                    _ => Outcome::Rejected,
                });
                match disposition {
                    Disposition::Ok => {}
                    Disposition::Reject(r) => {
                        plan.rejects
                            .push(give_up(event.offset, FailureKind::Rejected, r));
                    }
                    Disposition::Retry(r) => {
                        plan.rejects
                            .push(give_up(event.offset, FailureKind::RetriesExhausted, r));
                    }
                }
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
            return plan;
        }

        // `attempt` counts the attempts of the chunk's first event only: a
        // later event asking for a retry goes back to the queue and becomes
        // the head of the next call, with its own count.
        let handled = result.dispositions.len();
        for (index, ((event, disposition), emitted)) in chunk
            .iter()
            .zip(result.dispositions)
            .zip(result.emitted)
            .enumerate()
        {
            let give_up_now = final_attempt && index == 0;
            plan.outcomes.add(match &disposition {
                Disposition::Ok => Outcome::Ok,
                Disposition::Retry(_) if !give_up_now => Outcome::Retry,
                _ => Outcome::Rejected,
            });
            match disposition {
                Disposition::Ok => {
                    let (timestamp_ms, owner) = (event.timestamp_ms, event.offset);
                    plan.produce
                        .extend(emitted.into_iter().map(|record| Pending {
                            record,
                            timestamp_ms,
                            owner,
                        }));
                }
                Disposition::Reject(r) => plan.rejects.push(Failure {
                    offset: event.offset,
                    kind: FailureKind::Rejected,
                    reason: r,
                    attempts: if index == 0 { attempt } else { 1 },
                }),
                Disposition::Retry(r) if give_up_now => {
                    plan.rejects
                        .push(give_up(event.offset, FailureKind::RetriesExhausted, &r));
                }
                Disposition::Retry(r) => {
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
        // rejected when its attempts are used up.
        if let Some(failure) = result.failure
            && let Some(event) = chunk.get(handled)
        {
            plan.outcomes.add(failed(&failure));
            if handled == 0 && final_attempt {
                let kind = trap_kind(failure.timed_out);
                plan.rejects
                    .push(give_up(event.offset, kind, &failure.reason));
                plan.settled += 1;
            } else if handled == 0 {
                plan.retry = Some(failure.reason);
            }
        }
        plan
    }
}

/// The outcome of an event whose call did not complete.
fn failed(failure: &crate::invoke::CallFailure) -> Outcome {
    if failure.timed_out {
        Outcome::Timeout
    } else {
        Outcome::Trap
    }
}

/// The plan for an event larger than `limits.max-event-bytes`: it fails
/// without a call.
pub(super) fn oversized(event: &Event, max: usize) -> Settlement {
    let mut plan = Settlement {
        settled: 1,
        ..Settlement::default()
    };
    plan.outcomes.add(Outcome::Rejected);
    plan.rejects.push(Failure {
        offset: event.offset,
        kind: FailureKind::Oversized,
        reason: format!(
            "the event is {} bytes, over `limits.max-event-bytes` ({max})",
            event_size(event)
        ),
        attempts: 0,
    });
    plan
}

/// `on-failure = stop`: cuts the plan at the first failure so that neither
/// it nor anything after it is produced or settled; returns that failure.
pub(super) fn stop_at_first_failure(chunk: &[Event], plan: &mut Settlement) -> Option<Failure> {
    let first = plan.rejects.iter().min_by_key(|f| f.offset)?.clone();
    let index = chunk.iter().position(|e| e.offset == first.offset)?;
    plan.settled = plan.settled.min(index);
    plan.produce.retain(|p| p.owner < first.offset);
    plan.rejects.clear();
    plan.retry = None;
    Some(first)
}
