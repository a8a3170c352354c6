//! Calling into a module: one [`Invoker`] owns a wasmtime `Store` and an
//! instance, reused for every event of a partition until it traps.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use wasmtime::{Store, Trap};

use crate::bindings::Consumer;
use crate::bindings::batch::BatchConsumer;
use crate::bindings::v01;
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::engine::{HandlerPre, LoadedModule, WasmEngine};
use crate::host::HostState;
use crate::metrics::ModuleMetrics;
use crate::sandbox::MemoryLimitExceeded;
use crate::slots::Slot;
use crate::state::{CallState, StateHandle, StateLimits};

/// The result of one call into a module.
///
/// In per-event mode `dispositions` covers a prefix of the events: the call
/// stops early after a `retry` (later events must wait) or a trap. In batch
/// mode it covers all events, or none when the call trapped.
#[derive(Debug, Default)]
pub struct CallResult {
    /// One disposition per handled event, in order.
    pub dispositions: Vec<Disposition>,
    /// Per-event mode: what each handled event emitted. Batch mode: one
    /// entry with everything emitted during the call.
    pub emitted: Vec<Vec<Outgoing>>,
    /// Set when the call did not complete; the instance has been discarded.
    pub failure: Option<CallFailure>,
}

/// Why a call did not complete.
#[derive(Debug, Clone)]
pub struct CallFailure {
    /// Human-readable reason, e.g. the trap message.
    pub reason: String,
    /// The call ran past the module's `limits.timeout`.
    pub timed_out: bool,
}

enum Handler {
    Single(Consumer),
    Batch(BatchConsumer),
    Single01(v01::single::Consumer),
    Batch01(v01::batch::BatchConsumer),
}

impl Handler {
    fn is_batch(&self) -> bool {
        matches!(self, Self::Batch(_) | Self::Batch01(_))
    }

    fn handle(&self, store: &mut Store<HostState>, event: &Event) -> wasmtime::Result<Disposition> {
        match self {
            Self::Single(c) => c.weir_consumer_handler().call_handle(store, event),
            Self::Single01(c) => c.weir_consumer_handler().call_handle(store, event),
            Self::Batch(_) | Self::Batch01(_) => unreachable!("a batch handler handles batches"),
        }
    }

    fn handle_batch(
        &self,
        store: &mut Store<HostState>,
        events: &[Event],
    ) -> wasmtime::Result<Vec<Disposition>> {
        match self {
            Self::Batch(c) => c
                .weir_consumer_batch_handler()
                .call_handle_batch(store, events),
            Self::Batch01(c) => c
                .weir_consumer_batch_handler()
                .call_handle_batch(store, events),
            Self::Single(_) | Self::Single01(_) => {
                unreachable!("a per-event handler handles events")
            }
        }
    }
}

/// A live instance of a module, reused across calls.
pub struct Invoker {
    module: Arc<LoadedModule>,
    store: Store<HostState>,
    handler: Option<Handler>,
    metrics: Option<Arc<ModuleMetrics>>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("module", &self.module.name)
            .finish_non_exhaustive()
    }
}

impl Invoker {
    /// Instantiates `module`. Blocking (runs the component's start code).
    pub fn new(engine: &WasmEngine, module: Arc<LoadedModule>) -> anyhow::Result<Self> {
        let store = new_store(engine, &module);
        let mut invoker = Self {
            module,
            store,
            handler: None,
            metrics: None,
        };
        invoker.instantiate()?;
        Ok(invoker)
    }

    /// Reports this invoker's call durations, memory and denied emits to
    /// `metrics`, and rate-limits its guest logs with the module's limiter.
    pub fn observe(&mut self, metrics: Arc<ModuleMetrics>) {
        let version: Arc<str> = self.module.short_digest().into();
        self.store.data_mut().observe(metrics.clone(), version);
        self.metrics = Some(metrics);
    }

    /// The module this invoker runs.
    pub fn module(&self) -> &Arc<LoadedModule> {
        &self.module
    }

    /// Whether the module takes whole batches.
    pub fn is_batch(&self) -> bool {
        self.module.pre.is_batch()
    }

    fn instantiate(&mut self) -> anyhow::Result<()> {
        // Start code has the module's time limit too, on the wall clock.
        self.store.set_epoch_deadline(1);
        let timeout = self.module.manifest.limits.timeout;
        self.store
            .data_mut()
            .clock
            .start(timeout, std::time::Instant::now());
        let name = &self.module.name;
        let failed =
            |e: wasmtime::Error| anyhow::anyhow!("failed to instantiate module `{name}`: {e:#}");
        let store = &mut self.store;
        let handler = match &self.module.pre {
            HandlerPre::Single(pre) => Handler::Single(pre.instantiate(store).map_err(failed)?),
            HandlerPre::Batch(pre) => Handler::Batch(pre.instantiate(store).map_err(failed)?),
            HandlerPre::Single01(pre) => Handler::Single01(pre.instantiate(store).map_err(failed)?),
            HandlerPre::Batch01(pre) => Handler::Batch01(pre.instantiate(store).map_err(failed)?),
        };
        self.handler = Some(handler);
        Ok(())
    }

    /// Replaces a trapped instance with a fresh one (a trapped component
    /// instance refuses further calls).
    pub fn reset(&mut self, engine: &WasmEngine) -> anyhow::Result<()> {
        self.handler = None;
        self.store = new_store(engine, &self.module);
        if let Some(metrics) = self.metrics.clone() {
            self.observe(metrics);
        }
        self.instantiate()
    }

    /// Whether the instance is usable (false after a trap until [`reset`]).
    ///
    /// [`reset`]: Invoker::reset
    pub fn is_live(&self) -> bool {
        self.handler.is_some()
    }

    /// Calls the module for `events`, all from one partition, in offset
    /// order. Blocking: runs guest code for up to the module's timeout per
    /// event (per-event mode) or per batch, counting only the time the call
    /// holds `slot` when it has one (see [`crate::slots`]); the slot is
    /// given back when the call returns.
    /// In per-event mode the call stops between two events once `stop` is
    /// cancelled, or once the events so far emitted more than
    /// `limits.max-emit-bytes` (so one call emits at most twice that),
    /// returning the prefix handled so far.
    /// With `state`, the guest's `state` calls go to that partition store,
    /// and each event's writes are appended to what it emitted as changelog
    /// records.
    pub fn call(
        &mut self,
        events: &[Event],
        stop: &CancellationToken,
        state: Option<&StateHandle>,
        slot: Option<Slot>,
    ) -> CallResult {
        let mut result = CallResult::default();
        self.store.data_mut().clock.hold(slot);
        self.run(events, stop, state, &mut result);
        let data = self.store.data_mut();
        data.clock.release();
        data.state = None;
        if result.failure.is_some() {
            // The instance may be mid-way through anything; never reuse it.
            self.handler = None;
            data.emitted.clear();
        }
        result
    }

    fn run(
        &mut self,
        events: &[Event],
        stop: &CancellationToken,
        state: Option<&StateHandle>,
        result: &mut CallResult,
    ) {
        let Some(handler) = &self.handler else {
            result.failure = Some(CallFailure {
                reason: "instance is not live".into(),
                timed_out: false,
            });
            return;
        };
        if let Some(handle) = state {
            let limits = StateLimits::of(&self.module.manifest.limits);
            match CallState::new(handle, limits, crate::state::now_ms()) {
                Ok(state) => self.store.data_mut().state = Some(state),
                Err(err) => {
                    result.failure = Some(CallFailure {
                        reason: err.to_string(),
                        timed_out: false,
                    });
                    return;
                }
            }
        }
        let limits = &self.module.manifest.limits;
        let mut guest = GuestCall {
            store: &mut self.store,
            timeout: limits.timeout,
            metrics: self.metrics.as_deref(),
        };
        if handler.is_batch() {
            let outcome = guest.run(events.first(), |store| handler.handle_batch(store, events));
            match outcome {
                Ok(dispositions) if dispositions.len() == events.len() => {
                    result.dispositions = dispositions;
                    result.emitted.push(guest.take_emitted(true));
                }
                Ok(dispositions) => {
                    result.failure = Some(CallFailure {
                        reason: format!(
                            "handle-batch returned {} dispositions for {} events",
                            dispositions.len(),
                            events.len()
                        ),
                        timed_out: false,
                    });
                }
                Err(err) => result.failure = Some(failure(&err)),
            }
        } else {
            let mut emitted_bytes = 0;
            for event in events {
                if stop.is_cancelled() || emitted_bytes > u64::from(limits.max_emit_bytes) {
                    break;
                }
                match guest.run(Some(event), |store| handler.handle(store, event)) {
                    Ok(disposition) => {
                        let ok = matches!(disposition, Disposition::Ok);
                        let stop = matches!(disposition, Disposition::Retry(_));
                        emitted_bytes += guest.store.data().emitted_bytes;
                        result.dispositions.push(disposition);
                        result.emitted.push(guest.take_emitted(ok));
                        if stop {
                            break;
                        }
                    }
                    Err(err) => {
                        result.failure = Some(failure(&err));
                        break;
                    }
                }
            }
        }
    }
}

/// The store of one call into the guest, with what every call needs.
struct GuestCall<'a> {
    store: &'a mut Store<HostState>,
    timeout: std::time::Duration,
    metrics: Option<&'a ModuleMetrics>,
}

impl GuestCall<'_> {
    /// Runs `call` on the store: the deadline armed and the per-call state
    /// reset for `event` (a batch's first; nothing for an empty batch),
    /// then the call's duration recorded.
    fn run<T>(
        &mut self,
        event: Option<&Event>,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        // One clock read: the call's time limit and its duration metric.
        let started = std::time::Instant::now();
        if let Some(event) = event {
            begin(self.store, self.timeout, event, started);
        }
        let outcome = call(self.store);
        if let Some(m) = self.metrics {
            m.call_duration(started.elapsed());
        }
        outcome
    }

    /// What the guest emitted for the event (or batch) that just ended,
    /// followed by its state writes when it succeeded (`ok`); the writes
    /// of a failed event are dropped, and later events do not see them.
    fn take_emitted(&mut self, ok: bool) -> Vec<Outgoing> {
        let data = self.store.data_mut();
        let mut emitted = std::mem::take(&mut data.emitted);
        if let Some(state) = &mut data.state {
            let writes = state.end_event(ok);
            if ok {
                emitted.extend(writes);
            }
        }
        emitted
    }
}

/// Starts the call's clock and resets per-call state before calling the
/// guest.
fn begin(
    store: &mut Store<HostState>,
    timeout: std::time::Duration,
    event: &Event,
    now: std::time::Instant,
) {
    store.set_epoch_deadline(1);
    let state = store.data_mut();
    state.clock.start(timeout, now);
    state.emitted.clear();
    state.emitted_bytes = 0;
    // The topic rarely changes between calls: reuse its allocation.
    state.current.topic.clone_from(&event.topic);
    state.current.partition = event.partition;
    state.current.offset = event.offset;
}

fn new_store(engine: &WasmEngine, module: &LoadedModule) -> Store<HostState> {
    let mut store = Store::new(engine.engine(), HostState::new(module.policy.clone()));
    store.limiter(|state| &mut state.limits);
    // Every epoch tick: past the time limit, the call traps like an
    // interrupt; otherwise it may give its slot to waiting calls.
    store.epoch_deadline_callback(|mut store| {
        if store.data_mut().clock.tick() {
            Err(Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Continue(1))
        }
    });
    store
}

/// Describes a failed call: the trap first (a Rust panic shows as
/// `unreachable`), then the rest of the chain without the wasm backtrace.
fn failure(err: &wasmtime::Error) -> CallFailure {
    let trap = err.downcast_ref::<Trap>();
    let timed_out = matches!(trap, Some(Trap::Interrupt));
    let reason = match trap {
        Some(Trap::Interrupt) => {
            "the call exceeded the module's time limit (`limits.timeout`)".to_owned()
        }
        Some(Trap::UnreachableCodeReached) => {
            "guest trapped: wasm `unreachable` executed (a panic or abort; see the module's stderr)"
                .to_owned()
        }
        Some(trap) => format!("guest trapped: {trap}"),
        // Growth denied by `limits` is an error of the store's limiter, not
        // a trap; anything else is told by its root cause (the rest is the
        // wasm backtrace).
        None => match err.downcast_ref::<MemoryLimitExceeded>() {
            Some(exceeded) => format!("guest exceeded `limits.memory-mib`: {exceeded}"),
            None => err.root_cause().to_string(),
        },
    };
    CallFailure { reason, timed_out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_refused_by_the_limiter_is_told_by_its_type() {
        let refused = wasmtime::Error::new(MemoryLimitExceeded {
            desired: 33_554_432,
        })
        .context("error while executing at wasm backtrace:\n    0: 0x1234 - grow");
        let failure = failure(&refused);
        assert_eq!(
            failure.reason,
            "guest exceeded `limits.memory-mib`: \
             forcing trap when growing memory to 33554432 bytes"
        );
        assert!(!failure.timed_out);
    }

    #[test]
    fn other_errors_are_told_by_their_root_cause() {
        // The same words from anything but the limiter are not a memory limit.
        let other = wasmtime::Error::msg("forcing trap when growing memory to 8 bytes")
            .context("wasm backtrace");
        assert_eq!(
            failure(&other).reason,
            "forcing trap when growing memory to 8 bytes"
        );
        let timeout = wasmtime::Error::new(Trap::Interrupt).context("wasm backtrace");
        let failure = failure(&timeout);
        assert!(failure.timed_out);
        assert!(
            failure.reason.contains("`limits.timeout`"),
            "{}",
            failure.reason
        );
    }
}
