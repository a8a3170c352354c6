//! Calls as tasks: a call runs on a guest thread while the worker goes on.
//!
//! When a call settles cleanly (no retry, no halt, nothing left over), the
//! worker starts the next call at once and only then produces the settled
//! call's records and takes more events from the source: the guest thread
//! and the worker's thread work at the same time instead of taking turns.
//! Each partition still has at most one call running, calls still run in
//! offset order on one version each, and every call is settled before the
//! next one starts, so retries, isolation and `on-failure` see exactly
//! what they saw before.
//!
//! Exactly-once and stateful partitions do not start early: a transaction
//! must take a run's records before the next call, and a stateful call must
//! see the state writes of the call before it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{InstanceOf, Stopped, VersionOf, Worker, budget::emit_allowance};
use crate::bindings::weir::consumer::types::Event;
use crate::invoke::CallResult;
use crate::metrics::InFlight;
use crate::pipeline::budget::Reservation;
use crate::pipeline::policy::{Next, Rules, Settlement};
use crate::pipeline::{Guest, Instance, Ports, Source, Version};

/// What a call task gives back: the instance, the events it was given and
/// how the call went.
type Called<P> = (InstanceOf<P>, Vec<Event>, CallResult);

/// A call running as a task of its own.
pub(super) struct Launched<P: Ports> {
    /// The version it runs on (its rules settle it).
    pub version: VersionOf<P>,
    /// Its share of the output budget.
    pub reserved: Reservation,
    task: tokio::task::JoinHandle<Result<Called<P>, Stopped>>,
}

/// One settled call: its version, budget, events and settlement.
pub(super) type Landed<P> = (VersionOf<P>, Reservation, Vec<Event>, Settlement);

impl<P: Ports> Worker<P> {
    /// Starts `instance` on `chunk` as a task: it waits for the module's
    /// turn and a call slot, then calls on a guest thread.
    pub(super) fn start(
        &self,
        instance: InstanceOf<P>,
        chunk: Vec<Event>,
    ) -> tokio::task::JoinHandle<Result<Called<P>, Stopped>> {
        let share = self.module.share.clone();
        let stop = self.stop.clone();
        let state = self.state.get().cloned();
        let name = self.module.name.clone();
        self.module.runtime.spawn(async move {
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => return Err(Stopped),
                slot = share.acquire() => slot,
            };
            let joined = crate::slots::spawn_guest(move || {
                let mut instance = instance;
                let result = instance.call(&chunk, &stop, state.as_ref(), slot);
                (instance, chunk, result)
            })
            .await;
            joined.map_err(|err| {
                // The events were moved into the lost task; only a bug gets here.
                tracing::error!(module = &*name, error = %err,
                    "call task failed; stopping the partition worker");
                Stopped
            })
        })
    }

    /// Waits for a started call; keeps its instance for the next call.
    pub(super) async fn finish(
        &mut self,
        task: tokio::task::JoinHandle<Result<Called<P>, Stopped>>,
    ) -> Result<(Vec<Event>, CallResult), Stopped> {
        let (instance, chunk, result) = task.await.map_err(|err| {
            tracing::error!(module = &*self.module.name, error = %err,
                "call task failed; stopping the partition worker");
            Stopped
        })??;
        self.instance = Some(instance);
        Ok((chunk, result))
    }

    /// Settles one call's result by `version`'s rules.
    pub(super) fn settle_call(
        &mut self,
        version: &VersionOf<P>,
        chunk: &[Event],
        result: CallResult,
    ) -> Settlement {
        let rules = Rules::of(version.manifest(), version.is_batch());
        if rules.batch && result.failure.is_some() && chunk.len() > 1 {
            tracing::warn!(module = &*self.module.name, topic = %self.tp.topic,
                partition = self.tp.partition, events = chunk.len(),
                "batch call failed; re-running its events one at a time");
        }
        self.progress.settle(chunk, result, &rules)
    }

    /// Starts the call after a cleanly settled one, from the head of
    /// `queue` (topped up from the source when empty), if nothing has to
    /// wait: the partition is at-least-once and stateless, not stalled or
    /// stopped, the instance is live on the current version, the head is
    /// not oversized and the output budget has room now.
    pub(super) fn launch_next(
        &mut self,
        queue: &mut VecDeque<Event>,
        in_flight: &mut InFlight,
    ) -> Option<Launched<P>> {
        if self.txn.is_some()
            || self.module.state.is_some()
            || self.stop.is_cancelled()
            || self.stalled.load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        let version = self.module.guest.current();
        let instance = match self.instance.take() {
            Some(i) if i.is_live() && Arc::ptr_eq(i.version(), &version) => i,
            other => {
                self.instance = other;
                return None;
            }
        };
        if queue.is_empty() {
            self.top_up(queue, in_flight);
        }
        let rules = Rules::of(version.manifest(), version.is_batch());
        let take = match self.progress.next(queue.iter(), queue.len(), &rules) {
            Next::Call(take) if !queue.is_empty() => take,
            _ => {
                self.instance = Some(instance);
                return None;
            }
        };
        let Some(reserved) = self
            .module
            .budget
            .try_reserve(emit_allowance(&*version, queue.len()))
        else {
            self.instance = Some(instance);
            return None;
        };
        let chunk: Vec<Event> = queue.drain(..take).collect();
        let task = self.start(instance, chunk);
        Some(Launched {
            version,
            reserved,
            task,
        })
    }

    /// Waits for a launched call and settles it.
    pub(super) async fn land(&mut self, call: Launched<P>) -> Result<Landed<P>, Stopped> {
        let (chunk, result) = self.finish(call.task).await?;
        let plan = self.settle_call(&call.version, &chunk, result);
        Ok((call.version, call.reserved, chunk, plan))
    }

    /// Takes the events the source has ready, up to the current version's
    /// `max-batch`, onto the end of `queue`.
    pub(super) fn top_up(&mut self, queue: &mut VecDeque<Event>, in_flight: &mut InFlight) {
        let max_batch = self.module.guest.current().manifest().limits.max_batch as usize;
        let batch = self.source.take(max_batch);
        if batch.is_empty() {
            return;
        }
        self.module.metrics.consumed(&self.tp.topic, batch.len());
        in_flight.grow(batch.len());
        queue.extend(batch);
    }
}
