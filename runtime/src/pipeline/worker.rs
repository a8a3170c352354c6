//! One partition's worker: takes its events in offset order, calls the
//! module for them, settles each call by the [`policy`](super::policy) and
//! produces what it emitted; its acknowledging half ([`super::ack`]) waits
//! for the acknowledgements, writes dead letters, then moves the
//! partition's watermark. Exactly-once partitions put everything in a
//! transaction instead ([`super::txn`]).
//!
//! Each call runs on one version of the module, and everything the worker
//! decides about it (batch size, size limit, retries, `on-failure`, the
//! dead-letter topic) comes from that version: a reload lands between two
//! calls, never inside one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::ack::{Acker, Flight, Letters, send_all};
use super::budget::Reservation;
use super::failure::{Failure, record_size};
use super::policy::{Next, Progress, Rules, Settlement};
use super::txn::{Ended, Txn};
use super::{
    Guest, Instance, Module, Ports, Sink, Source, Stopped, TopicPartition, Transactions, Version,
};
use crate::bindings::weir::consumer::types::Event;
use crate::invoke::CallResult;
use crate::manifest::Guarantee;
use crate::metrics::InFlight;
use crate::state::StateHandle;
use budget::emit_allowance;

mod budget;
mod launch;
mod state;

/// Settled runs of events handed to the acknowledging half and not yet
/// landed, per partition. Calls go on while earlier outputs are on their way;
/// this bounds how far ahead they get.
pub const FLIGHTS: usize = 32;

/// Starts the worker of `tp` on `source`: the calling half, and the
/// acknowledging half ([`Acker`]) as a task it owns. `txns` makes the
/// partition exactly-once (when the module's manifest asks for it).
pub fn spawn<P: Ports>(
    module: Arc<Module<P>>,
    tp: TopicPartition,
    source: P::Source,
    txns: Option<P::Txn>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (flights, landing) = mpsc::channel(FLIGHTS);
    let stalled = Arc::new(AtomicBool::new(false));
    let state = Arc::new(OnceLock::new());
    let acker = Acker {
        module: module.clone(),
        tp: tp.clone(),
        stop: stop.clone(),
        stalled: stalled.clone(),
        state: state.clone(),
    };
    let exactly_once =
        module.guest.current().manifest().delivery.guarantee == Guarantee::ExactlyOnce;
    let txns = txns.filter(|_| exactly_once);
    let runtime = module.runtime.clone();
    let mut worker = Worker {
        module,
        tp,
        source,
        instance: None,
        progress: Progress::default(),
        stop,
        flights,
        stalled,
        txn: None,
        letters: None,
        state,
        runs: 0,
    };
    runtime.spawn(async move {
        if let Some(txns) = txns
            && worker.start_txn(txns).await.is_err()
        {
            return;
        }
        // Exactly-once: after the transactional producer has fenced the
        // previous owner, so its open transaction is aborted and the
        // restore reads only committed writes.
        let store = match worker.open_state().await {
            Ok(store) => store,
            Err(Stopped) => return,
        };
        // The acknowledging half is a task of its own, so it runs in parallel
        // with the calls; aborting this task (drain timeout) aborts it too.
        let acker = AbortOnDropHandle::new(tokio::spawn(acker.run(landing)));
        worker.run().await;
        let (module, tp) = (worker.module.clone(), worker.tp.clone());
        drop(worker);
        let _ = acker.await;
        if let (Some(stores), Some(_)) = (&module.state, store) {
            let stores = stores.clone();
            let _ =
                tokio::task::spawn_blocking(move || stores.release(&tp.topic, tp.partition)).await;
        }
    })
}

/// Sleeps until `due` (forever when `None`; only polled when `Some`).
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// A version of the module, as one call sees it.
type VersionOf<P> = Arc<<<P as Ports>::Guest as Guest>::Version>;
/// An instance of the module.
type InstanceOf<P> = <<P as Ports>::Guest as Guest>::Instance;

/// The calling half of a partition's worker.
struct Worker<P: Ports> {
    module: Arc<Module<P>>,
    tp: TopicPartition,
    source: P::Source,
    instance: Option<InstanceOf<P>>,
    progress: Progress,
    stop: CancellationToken,
    /// To the acknowledging half.
    flights: mpsc::Sender<Flight<<P::Sink as Sink>::Answers>>,
    /// Set by the acknowledging half while it retries a delivery.
    stalled: Arc<AtomicBool>,
    /// Exactly-once: the partition's transaction (settled events go there
    /// instead of to the acknowledging half).
    txn: Option<Txn<P>>,
    /// The dead-letter settings of the version of the last call.
    letters: Option<(VersionOf<P>, Arc<Letters>)>,
    /// Stateful modules: the partition's store (shared with the
    /// acknowledging half, set once it is restored).
    state: Arc<OnceLock<StateHandle>>,
    /// Settled runs handed on so far (numbers them for the store).
    runs: u64,
}

impl<P: Ports> Worker<P> {
    async fn run(&mut self) {
        loop {
            let due = self.txn.as_ref().and_then(Txn::due);
            if due.is_some_and(|due| Instant::now() >= due) && self.commit_txn().await.is_err() {
                return;
            }
            let max_batch = self.module.guest.current().manifest().limits.max_batch as usize;
            let batch = self.source.take(max_batch);
            if batch.is_empty() {
                let due = self.txn.as_ref().and_then(Txn::due);
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break,
                    () = self.source.ready() => continue,
                    () = sleep_until(due), if due.is_some() => continue,
                }
            }
            self.module.metrics.consumed(&self.tp.topic, batch.len());
            if self.handle(batch).await.is_err() {
                break;
            }
        }
        // Stopped (revoked or shutting down): what is settled commits.
        let _ = self.commit_txn().await;
    }

    /// Exactly-once: creates the partition's transactional producer,
    /// retrying with backoff until it is ready or the worker is stopped.
    async fn start_txn(&mut self, mut txns: P::Txn) -> Result<(), Stopped> {
        let mut attempt = 1;
        loop {
            match txns.init().await {
                Ok(sink) => {
                    let interval = self
                        .module
                        .guest
                        .current()
                        .manifest()
                        .delivery
                        .transaction_interval;
                    self.txn = Some(Txn::new(txns, sink, interval));
                    return Ok(());
                }
                Err(err) => {
                    let why = format!("{err:#}");
                    tracing::error!(module = &*self.module.name, topic = %self.tp.topic,
                        partition = self.tp.partition, error = %why,
                        "exactly-once partition cannot start; will retry");
                    self.module.problem(&self.tp, Some(why));
                }
            }
            self.pause(self.retry_backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// The current version's retry backoff after the `attempt`th failure.
    fn retry_backoff(&self, attempt: u32) -> Duration {
        let version = self.module.guest.current();
        version.manifest().retry.backoff(attempt)
    }

    /// Exactly-once: commits the partition's open transaction, if any.
    async fn commit_txn(&mut self) -> Result<Ended, Stopped> {
        match &mut self.txn {
            Some(txn) => txn.commit(&self.module, &self.tp, &mut self.source).await,
            None => Ok(Ended::Committed),
        }
    }

    /// Settles `events` (all of them, unless stopped or rewound).
    async fn handle(&mut self, events: Vec<Event>) -> Result<(), Stopped> {
        let mut in_flight = self.module.metrics.in_flight(events.len());
        let mut queue: VecDeque<Event> = events.into();
        self.drain(&mut queue, &mut in_flight).await
    }

    /// Calls and settles the events of `queue` until it is empty. Events
    /// that are not settled go back to its front. After a clean call the
    /// next one starts before this one's records are produced
    /// ([`launch`]), and the queue is topped up from the source meanwhile.
    async fn drain(
        &mut self,
        queue: &mut VecDeque<Event>,
        in_flight: &mut InFlight,
    ) -> Result<(), Stopped> {
        let mut launched = None;
        while !queue.is_empty() || launched.is_some() {
            if self.stop.is_cancelled() {
                return Err(Stopped);
            }
            let (version, reserved, mut chunk, mut plan) = match launched.take() {
                Some(call) => self.land(call).await?,
                None => {
                    while self.stalled.load(Ordering::Acquire) {
                        self.pause(Duration::from_millis(20)).await?;
                    }
                    let version = self.module.guest.current();
                    let allowance = emit_allowance(&*version, queue.len());
                    let Some(reserved) = self.reserve(allowance).await? else {
                        // Making room aborted the open transaction: rewound.
                        queue.clear();
                        self.progress = Progress::default();
                        return Ok(());
                    };
                    let (chunk, plan) = self.step(&version, queue).await?;
                    (version, reserved, chunk, plan)
                }
            };
            let rest = chunk.split_off(plan.settled.min(chunk.len()));
            if rest.is_empty() && plan.retry.is_none() && plan.halt.is_none() {
                launched = self.launch_next(queue, in_flight);
            }
            if chunk.is_empty() {
                self.module.metrics.processed(&plan.outcomes);
            } else {
                let letters = self.letters_of(&version);
                self.dispatch(chunk, &mut plan, letters, in_flight, reserved)
                    .await?;
            }
            for event in rest.into_iter().rev() {
                queue.push_front(event);
            }
            if launched.is_some() && queue.is_empty() {
                self.top_up(queue, in_flight);
            }
            if let Some(failure) = plan.halt {
                if self.commit_txn().await? == Ended::Aborted {
                    // Rewound to before `failure`: everything held here is
                    // delivered again, the failing event included, and
                    // counted afresh.
                    queue.clear();
                    self.progress = Progress::default();
                    return Ok(());
                }
                self.halt(&failure).await?;
                continue;
            }
            if let Some(reason) = plan.retry {
                // `attempt` is already the next one; the backoff follows the
                // attempt that failed.
                let failed = self.progress.attempt - 1;
                let backoff = version.manifest().retry.backoff(failed);
                tracing::warn!(module = &*self.module.name, topic = %self.tp.topic,
                    partition = self.tp.partition, offset = queue.front().map(|e| e.offset),
                    attempt = failed, backoff = ?backoff, reason = %reason, "event will be retried");
                self.pause(backoff).await?;
            }
        }
        Ok(())
    }

    /// One step at the head of `queue`: takes the events of one call (or
    /// one oversized event) off it and settles them, on `version`.
    async fn step(
        &mut self,
        version: &VersionOf<P>,
        queue: &mut VecDeque<Event>,
    ) -> Result<(Vec<Event>, Settlement), Stopped> {
        let rules = Rules::of(version.manifest(), version.is_batch());
        match self.progress.next(queue.iter(), queue.len(), &rules) {
            Next::Oversized => {
                let chunk: Vec<Event> = queue.drain(..1).collect();
                let plan = self.progress.oversized(&chunk[0], &rules);
                Ok((chunk, plan))
            }
            Next::Call(take) => {
                let chunk: Vec<Event> = queue.drain(..take).collect();
                let (chunk, result) = self.call(version, chunk).await?;
                let plan = self.settle_call(version, &chunk, result);
                Ok((chunk, plan))
            }
        }
    }

    /// The dead-letter settings of `version`, made once per version.
    fn letters_of(&mut self, version: &VersionOf<P>) -> Arc<Letters> {
        match &self.letters {
            Some((v, letters)) if Arc::ptr_eq(v, version) => letters.clone(),
            _ => {
                let letters = Arc::new(Letters::of(&**version));
                self.letters = Some((version.clone(), letters.clone()));
                letters
            }
        }
    }

    /// Produces a settled run's records and hands it on: to the
    /// acknowledging half, or into the open transaction. `reserved` (of the
    /// output budget) shrinks to the records' size and stays with them
    /// until they are acknowledged.
    async fn dispatch(
        &mut self,
        events: Vec<Event>,
        plan: &mut Settlement,
        letters: Arc<Letters>,
        in_flight: &mut InFlight,
        mut reserved: Reservation,
    ) -> Result<(), Stopped> {
        let mut produce = std::mem::take(&mut plan.produce);
        reserved.shrink_to(produce.iter().map(|p| record_size(&p.record) as u64).sum());
        let run = self.apply_state(&produce).await?;
        let in_flight = in_flight.split(plan.settled);
        match &mut self.txn {
            Some(txn) => {
                if let Err(err) = txn.begin() {
                    tracing::error!(module = &*self.module.name, topic = %self.tp.topic,
                        partition = self.tp.partition, error = %err,
                        "cannot begin a transaction; stopping the partition");
                    return Err(Stopped);
                }
                let sent = send_all(&txn.sink, produce).await;
                let mut flight = Flight::new(events, sent, plan, letters, in_flight);
                flight.reserved = Some(reserved);
                txn.add(flight);
                Ok(())
            }
            None => {
                // At-least-once: state writes go out after the outputs are
                // acknowledged (the acknowledging half sends them), so a
                // crash never leaves a write in Kafka whose event's outputs
                // are not.
                let writes = match self.state.get() {
                    Some(state) => {
                        let (writes, outputs) = produce
                            .into_iter()
                            .partition(|p| p.record.topic == *state.topic);
                        produce = outputs;
                        writes
                    }
                    None => Vec::new(),
                };
                let sent = send_all(&self.module.sink, produce).await;
                let mut flight = Flight::new(events, sent, plan, letters, in_flight);
                flight.state = (writes, run);
                flight.reserved = Some(reserved);
                self.flights.send(flight).await.map_err(|_| Stopped)
            }
        }
    }

    /// Calls `version` on a guest thread, (re)instantiating it first if
    /// needed.
    async fn call(
        &mut self,
        version: &VersionOf<P>,
        chunk: Vec<Event>,
    ) -> Result<(Vec<Event>, CallResult), Stopped> {
        let instance = self.live_instance(version).await?;
        let task = self.start(instance, chunk);
        self.finish(task).await
    }

    /// Returns a live instance of `version`, retrying instantiation with
    /// backoff.
    async fn live_instance(&mut self, version: &VersionOf<P>) -> Result<InstanceOf<P>, Stopped> {
        if let Some(instance) = self.instance.take()
            && instance.is_live()
        {
            if Arc::ptr_eq(instance.version(), version) {
                return Ok(instance);
            }
            tracing::debug!(module = &*self.module.name, topic = %self.tp.topic,
                partition = self.tp.partition, from = instance.version().digest(),
                to = version.digest(), "switching to the new version");
        }
        let mut attempt = 1;
        loop {
            let (guest, v) = (self.module.guest.clone(), version.clone());
            let made = crate::slots::spawn_guest(move || guest.instantiate(v)).await;
            match made {
                Ok(Ok(instance)) => return Ok(instance),
                Ok(Err(err)) => tracing::error!(module = &*self.module.name,
                    error = %format_args!("{err:#}"), "cannot instantiate the module; will retry"),
                Err(err) => tracing::error!(module = &*self.module.name, error = %err,
                    "instantiation task failed; will retry"),
            }
            self.pause(version.manifest().retry.backoff(attempt))
                .await?;
            attempt += 1;
        }
    }

    /// `on-failure = stop`: waits, with the partition halted at `failure`,
    /// until a new version of the module is deployed.
    async fn halt(&mut self, failure: &Failure) -> Result<(), Stopped> {
        let version = self.module.guest.current();
        let why = format!(
            "stopped at offset {} ({}: {}); deploy a new version of the module to continue",
            failure.offset,
            failure.kind.as_str(),
            failure.reason
        );
        tracing::error!(module = &*self.module.name, topic = %self.tp.topic,
            partition = self.tp.partition, offset = failure.offset, reason = %why,
            "partition stopped");
        self.module.problem(&self.tp, Some(why));
        while Arc::ptr_eq(&version, &self.module.guest.current()) {
            self.pause(Duration::from_millis(200)).await?;
        }
        self.module.problem(&self.tp, None);
        Ok(())
    }

    async fn pause(&mut self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Stopped),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }
}
