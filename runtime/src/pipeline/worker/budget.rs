//! A partition's worker and the output budget (`max-inflight-bytes`):
//! what a call may emit is reserved before it starts.

use super::{Ended, Stopped, Worker};
use crate::pipeline::budget::Reservation;
use crate::pipeline::{Ports, Version};

/// What a call on `version` over `events` events may emit at most: its
/// `limits.max-emit-bytes`, twice that for a per-event call over several
/// events (see [`crate::invoke::Invoker::call`]).
pub(super) fn emit_allowance(version: &impl Version, events: usize) -> u64 {
    let max = u64::from(version.manifest().limits.max_emit_bytes);
    if version.is_batch() || events <= 1 {
        max
    } else {
        2 * max
    }
}

impl<P: Ports> Worker<P> {
    /// Reserves `bytes` of the output budget for the next call, waiting
    /// while it is spent. `None` when an exactly-once partition had to
    /// commit its open transaction to make room and the commit aborted
    /// (the source is rewound).
    pub(super) async fn reserve(&mut self, bytes: u64) -> Result<Option<Reservation>, Stopped> {
        let budget = self.module.budget.clone();
        if let Some(reserved) = budget.try_reserve(bytes) {
            return Ok(Some(reserved));
        }
        // The open transaction's records hold budget that only its end
        // gives back: end it rather than wait for it.
        if self.txn.as_ref().is_some_and(|txn| txn.due().is_some())
            && self.commit_txn().await? == Ended::Aborted
        {
            return Ok(None);
        }
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(Stopped),
            reserved = budget.reserve(bytes) => Ok(Some(reserved)),
        }
    }
}
