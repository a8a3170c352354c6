//! What weir gives a guest: the `log`, `config`, `emitter` and `state`
//! imports of the `weir:consumer` package (0.2.0, and 0.1.0 in `legacy`), a
//! WASI context with no capabilities, and guest stdout/stderr routed to the
//! log (`output`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use crate::sandbox::add_wasi_to_linker;

mod legacy;
mod output;
mod state;

use output::{GuestOutput, Stream};

use crate::bindings::weir::consumer::types::{EmitError, Outgoing};
use crate::bindings::weir::consumer::{config, emitter, log, types};
use crate::manifest::Limits;
use crate::metrics::{DenyReason, ModuleMetrics};

/// Longest guest log line kept; the rest is cut and marked.
const MAX_LOG_LINE: usize = 8 * 1024;

/// The parts of a module's manifest its host imports need, shared by every
/// instance of the module.
#[derive(Debug)]
pub struct GuestPolicy {
    /// Module name, used in every log line.
    pub module: Arc<str>,
    /// The manifest's `[config]` table.
    pub config: BTreeMap<String, String>,
    /// Topics the module may emit to.
    pub outputs: HashSet<String>,
    /// Per-call limits.
    pub limits: Limits,
}

/// Identifies the event being handled, for log lines.
#[derive(Debug, Clone, Default)]
pub struct EventRef {
    /// Topic of the event (or of the batch).
    pub topic: String,
    /// Partition of the event.
    pub partition: i32,
    /// Offset of the event (first offset of a batch).
    pub offset: i64,
}

/// Per-instance state kept in the wasmtime `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and instance limits, enforced by wasmtime.
    pub(crate) limits: GuestLimiter,
    /// Metrics and log context, set by [`HostState::observe`].
    observer: Arc<Observer>,
    policy: Arc<GuestPolicy>,
    /// Records emitted during the current call, in emit order.
    pub(crate) emitted: Vec<Outgoing>,
    /// Bytes the current event (or batch) has emitted and written to state,
    /// against `limits.max-emit-bytes`.
    pub(crate) emitted_bytes: u64,
    /// The call's slot and time limit (see [`crate::slots`]).
    pub(crate) clock: crate::slots::CallClock,
    /// The event being handled.
    pub(crate) current: EventRef,
    /// Stateful modules: the partition's state as the current call sees it.
    pub(crate) state: Option<crate::state::CallState>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("module", &self.policy.module)
            .field("emitted", &self.emitted.len())
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// A fresh state: no files, no network, no environment, no arguments;
    /// stdin is empty and stdout/stderr go to the log. No directory is
    /// preopened, TCP, UDP and name lookup are disabled and every socket
    /// address is denied, so the filesystem and socket interfaces linked by
    /// [`add_wasi_to_linker`] exist but reach nothing.
    pub fn new(policy: Arc<GuestPolicy>) -> Self {
        let memory = usize::try_from(policy.limits.memory_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        let observer = Arc::new(Observer::default());
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(&policy.module, Stream::Stdout, &observer))
            .stderr(GuestOutput::new(&policy.module, Stream::Stderr, &observer))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: GuestLimiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory)
                    .table_elements(policy.limits.table_elements as usize)
                    .trap_on_grow_failure(true)
                    .build(),
                memory: 0,
                metrics: None,
            },
            observer,
            policy,
            emitted: Vec::new(),
            emitted_bytes: 0,
            clock: crate::slots::CallClock::default(),
            current: EventRef::default(),
            state: None,
        }
    }
}

impl HostState {
    /// Reports this instance's metrics (memory, denied emits) to `metrics`
    /// and rate-limits its logs with the module's limiter; `version` tags
    /// its log lines. Call once, right after creating the store.
    pub fn observe(&mut self, metrics: Arc<ModuleMetrics>, version: Arc<str>) {
        let _ = self.observer.version.set(version);
        let _ = self.observer.metrics.set(metrics.clone());
        self.limits.attach(metrics);
    }
}

/// Per-instance context for logs and metrics, shared with the guest's
/// stdout/stderr writers.
#[derive(Debug, Default)]
struct Observer {
    metrics: OnceLock<Arc<ModuleMetrics>>,
    version: OnceLock<Arc<str>>,
}

impl Observer {
    fn version(&self) -> &str {
        self.version.get().map_or("", |v| v)
    }

    /// Whether a guest log line may be written (the module's rate limit).
    fn admit(&self) -> bool {
        self.metrics.get().is_none_or(|m| m.log_limiter().admit())
    }
}

/// wasmtime's [`StoreLimits`], also tracking the instance's linear memory
/// for `weir_guest_memory_bytes`.
#[derive(Debug)]
pub struct GuestLimiter {
    inner: StoreLimits,
    memory: usize,
    metrics: Option<Arc<ModuleMetrics>>,
}

impl GuestLimiter {
    fn attach(&mut self, metrics: Arc<ModuleMetrics>) {
        metrics.memory_changed(self.memory as i64);
        self.metrics = Some(metrics);
    }
}

impl Drop for GuestLimiter {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.memory_changed(-(self.memory as i64));
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `StoreLimits` refuses growth past `limits.memory-mib` with an
        // error; replace it with a typed one that `invoke` recognises.
        let allowed = self
            .inner
            .memory_growing(current, desired, maximum)
            .map_err(|_| crate::sandbox::MemoryLimitExceeded { desired })?;
        if allowed {
            let delta = desired.saturating_sub(current);
            self.memory += delta;
            if let Some(m) = &self.metrics {
                m.memory_changed(delta as i64);
            }
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if !self.observer.admit() {
            return;
        }
        let message = truncate(&message);
        let (module, ev) = (&*self.policy.module, &self.current);
        let version = self.observer.version();
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(target: "weir::guest", $lvl, module, version, topic = %ev.topic,
                    partition = ev.partition, offset = ev.offset, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.policy.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.policy
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl emitter::Host for HostState {
    fn emit(&mut self, record: Outgoing) -> Result<(), EmitError> {
        let result = self.try_emit(record);
        if let (Err(err), Some(m)) = (&result, self.observer.metrics.get()) {
            m.emit_denied(match err {
                EmitError::TopicNotAllowed(_) => DenyReason::TopicNotAllowed,
                EmitError::InvalidPartition(_) => DenyReason::InvalidPartition,
                EmitError::TooLarge(_) => DenyReason::TooLarge,
                EmitError::TooMany(_)
                    if self.emitted.len() < self.policy.limits.max_emits as usize =>
                {
                    DenyReason::EmitBytes
                }
                EmitError::TooMany(_) => DenyReason::TooMany,
            });
        }
        result
    }
}

impl HostState {
    fn try_emit(&mut self, record: Outgoing) -> Result<(), EmitError> {
        let limits = &self.policy.limits;
        if !self.policy.outputs.contains(&record.topic) {
            return Err(EmitError::TopicNotAllowed(record.topic));
        }
        if let Some(p) = record.partition
            && p < 0
        {
            return Err(EmitError::InvalidPartition(p));
        }
        let size = crate::pipeline::failure::record_size(&record);
        if size > limits.max_record_bytes as usize {
            return Err(EmitError::TooLarge(limits.max_record_bytes));
        }
        if self.emitted.len() >= limits.max_emits as usize {
            return Err(EmitError::TooMany(limits.max_emits));
        }
        self.charge(size as u64)
            .map_err(|()| EmitError::TooMany(self.emitted.len() as u32))?;
        self.emitted.push(record);
        Ok(())
    }

    /// Counts `bytes` more of the current event's (or batch's) output
    /// against `limits.max-emit-bytes`; refused, and not counted, past it.
    pub(crate) fn charge(&mut self, bytes: u64) -> Result<(), ()> {
        let total = self.emitted_bytes + bytes;
        if total > u64::from(self.policy.limits.max_emit_bytes) {
            return Err(());
        }
        self.emitted_bytes = total;
        Ok(())
    }
}

fn truncate(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_LOG_LINE {
        return message.into();
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &message[..end], message.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::weir::consumer::types::Header;
    use emitter::Host as _;

    fn state(outputs: &[&str]) -> HostState {
        HostState::new(Arc::new(GuestPolicy {
            module: "m".into(),
            config: BTreeMap::new(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            limits: Limits {
                max_emits: 2,
                max_record_bytes: 10,
                ..Limits::default()
            },
        }))
    }

    fn record(topic: &str, value: &[u8]) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            key: None,
            value: Some(value.to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: b"v".to_vec(),
            }],
            partition: None,
        }
    }

    #[test]
    fn emit_enforces_allowlist_size_partition_and_count() {
        let mut s = state(&["out"]);
        assert!(matches!(
            s.emit(record("other", b"x")),
            Err(EmitError::TopicNotAllowed(t)) if t == "other"
        ));
        assert!(matches!(
            s.emit(record("out", b"123456789")),
            Err(EmitError::TooLarge(10))
        ));
        let mut negative = record("out", b"x");
        negative.partition = Some(-1);
        assert!(matches!(
            s.emit(negative),
            Err(EmitError::InvalidPartition(-1))
        ));
        s.emit(record("out", b"a")).unwrap();
        s.emit(record("out", b"b")).unwrap();
        assert!(matches!(
            s.emit(record("out", b"c")),
            Err(EmitError::TooMany(2))
        ));
        assert_eq!(s.emitted.len(), 2);
    }

    #[test]
    fn emit_bytes_of_one_event_are_bounded_by_max_emit_bytes() {
        let mut s = HostState::new(Arc::new(GuestPolicy {
            module: "m".into(),
            config: BTreeMap::new(),
            outputs: HashSet::from(["out".to_owned()]),
            limits: Limits {
                max_record_bytes: 10,
                max_emit_bytes: 20,
                ..Limits::default()
            },
        }));
        // 8 bytes each (value plus a one-byte header key and value).
        s.emit(record("out", b"123456")).unwrap();
        s.emit(record("out", b"abcdef")).unwrap();
        assert_eq!(s.emitted_bytes, 16);
        // A third would make 24: refused as `too-many`, carrying the
        // records the event was allowed, and not counted.
        assert!(matches!(
            s.emit(record("out", b"xyzxyz")),
            Err(EmitError::TooMany(2))
        ));
        assert_eq!(s.emitted_bytes, 16);
        // A smaller one still fits.
        s.emit(record("out", b"xy")).unwrap();
        assert_eq!(s.emitted_bytes, 20);
        assert_eq!(s.emitted.len(), 3);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_LOG_LINE);
        let cut = truncate(&long);
        assert!(cut.len() < long.len());
        assert!(cut.ends_with("bytes cut]"));
    }
}
