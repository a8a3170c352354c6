//! The wasmtime implementation of the pipeline's [`Guest`] seam: the
//! module's hot-swappable slot of versions, and [`Invoker`] instances.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{Guest, Instance, Version};
use crate::bindings::weir::consumer::types::Event;
use crate::engine::{LoadedModule, WasmEngine};
use crate::invoke::{CallResult, Invoker};
use crate::manifest::Manifest;
use crate::metrics::ModuleMetrics;
use crate::slots::Slot;
use crate::state::StateHandle;

impl Version for LoadedModule {
    fn name(&self) -> &str {
        &self.name
    }

    fn digest(&self) -> &str {
        &self.digest
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn is_batch(&self) -> bool {
        self.pre.is_batch()
    }
}

/// A module as the pipeline calls it: its current version (hot reload
/// stores a new one into the slot) and the engine that instantiates it.
#[derive(Debug)]
pub struct WasmGuest {
    /// The module's current version.
    pub slot: Arc<ArcSwap<LoadedModule>>,
    /// The process-wide engine.
    pub engine: Arc<WasmEngine>,
    /// Where instances report call durations, memory and denied emits.
    pub metrics: Arc<ModuleMetrics>,
}

impl Guest for WasmGuest {
    type Version = LoadedModule;
    type Instance = Invoker;

    fn current(&self) -> Arc<LoadedModule> {
        self.slot.load_full()
    }

    fn instantiate(&self, version: Arc<LoadedModule>) -> anyhow::Result<Invoker> {
        let mut invoker = Invoker::new(&self.engine, version)?;
        invoker.observe(self.metrics.clone());
        Ok(invoker)
    }
}

impl Instance for Invoker {
    type Version = LoadedModule;

    fn version(&self) -> &Arc<LoadedModule> {
        self.module()
    }

    fn is_live(&self) -> bool {
        Invoker::is_live(self)
    }

    fn call(
        &mut self,
        events: &[Event],
        stop: &CancellationToken,
        state: Option<&StateHandle>,
        slot: Slot,
    ) -> CallResult {
        Invoker::call(self, events, stop, state, Some(slot))
    }
}
