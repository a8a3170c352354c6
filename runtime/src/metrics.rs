//! Prometheus metrics and readiness.
//!
//! One [`Metrics`] is created per process and shared as `Arc<Metrics>`; it
//! owns its own registry (nothing global). Each module runner gets a
//! [`ModuleMetrics`] handle with the module's label values bound, so the hot
//! paths (one per event or call) touch only atomics.
//!
//! Labels are bounded: module, topic, partition, and small enums (outcome,
//! reason, result, kind). Keys, offsets and event ids never become labels.
//! Every metric is listed in `docs/metrics.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The wasmtime version weir is built against (checked against `Cargo.lock`
/// by a unit test).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Guest log lines a module may write per second, on average.
pub const GUEST_LOG_RATE: f64 = 100.0;
/// Guest log lines a module may write in a burst.
pub const GUEST_LOG_BURST: f64 = 200.0;

/// How a call settled an event, the `outcome` label of
/// `weir_events_processed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handled; its outputs were produced and acknowledged.
    Ok,
    /// The handler asked for a retry (counted per attempt).
    Retry,
    /// Rejected by the handler, or after the last retry.
    Rejected,
    /// Rejected because the call trapped (panic, memory limit, ...).
    Trap,
    /// Rejected because the call ran past `limits.timeout`.
    Timeout,
}

impl Outcome {
    /// Every outcome, in [`Outcome::index`] order.
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Retry,
        Outcome::Rejected,
        Outcome::Trap,
        Outcome::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retry => "retry",
            Outcome::Rejected => "rejected",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
        }
    }

    /// The position of this outcome in [`Outcome::ALL`], and so in every
    /// array kept per outcome.
    const fn index(self) -> usize {
        self as usize
    }
}

/// Counts of outcomes of one call, recorded once the call's events settle.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcomes([u64; Outcome::ALL.len()]);

impl Outcomes {
    /// Counts one event.
    pub fn add(&mut self, outcome: Outcome) {
        self.0[outcome.index()] += 1;
    }

    /// How many events settled with `outcome`.
    fn count(&self, outcome: Outcome) -> u64 {
        self.0[outcome.index()]
    }
}

/// Why the host denied an emit, the `reason` label of
/// `weir_emits_denied_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The topic is not in the module's `output-topics`.
    TopicNotAllowed,
    /// The partition number is negative.
    InvalidPartition,
    /// Key, value and headers together exceed the per-record limit.
    TooLarge,
    /// The event already emitted the most records allowed per event.
    TooMany,
}

impl DenyReason {
    /// Every reason, in declaration order.
    pub const ALL: [DenyReason; 4] = [
        DenyReason::TopicNotAllowed,
        DenyReason::InvalidPartition,
        DenyReason::TooLarge,
        DenyReason::TooMany,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::TopicNotAllowed => "topic_not_allowed",
            DenyReason::InvalidPartition => "invalid_partition",
            DenyReason::TooLarge => "too_large",
            DenyReason::TooMany => "too_many",
        }
    }

    /// The position of this reason in [`DenyReason::ALL`], and so in every
    /// array kept per reason.
    const fn index(self) -> usize {
        self as usize
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every metric family of the process, and the readiness state.
pub struct Metrics {
    registry: Registry,
    events_consumed: IntCounterVec,
    events_processed: IntCounterVec,
    events_emitted: IntCounterVec,
    emitted_bytes: IntCounterVec,
    dead_lettered: IntCounterVec,
    handler_duration: HistogramVec,
    emits_denied: IntCounterVec,
    consumer_lag: IntGaugeVec,
    committed_offset: IntGaugeVec,
    in_flight: IntGaugeVec,
    reloads: IntCounterVec,
    module_info: IntGaugeVec,
    guest_memory: IntGaugeVec,
    rebalances: IntCounterVec,
    produce_errors: IntCounterVec,
    guest_logs_dropped: IntCounterVec,
    assigned_partitions: IntGaugeVec,
    /// Module name -> digest currently in `weir_module_info`.
    digests: Mutex<HashMap<String, String>>,
    /// Running module consumers, for readiness.
    modules: Mutex<HashMap<String, Arc<ModuleMetrics>>>,
    running: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    /// Creates and registers every family, and sets `weir_build_info`.
    pub fn new() -> Self {
        let r = Registry::new();
        let build = gauge(
            &r,
            "weir_build_info",
            "Versions weir was built with; the value is always 1.",
            &["version", "wasmtime", "librdkafka"],
        );
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), WASMTIME_VERSION, &librdkafka])
            .set(1);
        let m = ["module"];
        let mt = ["module", "topic"];
        let mtp = ["module", "topic", "partition"];
        Self {
            events_consumed: counter(
                &r,
                "weir_events_consumed_total",
                "Events read from Kafka and handed to a partition worker.",
                &mt,
            ),
            events_processed: counter(
                &r,
                "weir_events_processed_total",
                "Events settled by a module, by outcome (ok, rejected, trap, timeout); \
                 retry counts each attempt a handler asked to retry.",
                &["module", "outcome"],
            ),
            events_emitted: counter(
                &r,
                "weir_events_emitted_total",
                "Records emitted by a module and acknowledged by the broker, per output topic.",
                &mt,
            ),
            emitted_bytes: counter(
                &r,
                "weir_emitted_bytes_total",
                "Bytes (key, value, headers) of acknowledged emitted records, per output topic.",
                &mt,
            ),
            dead_lettered: counter(
                &r,
                "weir_events_dead_lettered_total",
                "Events written to a dead-letter topic (0 until dead-letter topics exist).",
                &m,
            ),
            handler_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "weir_handler_duration_seconds",
                        "Wall time of one guest call: one event (handle) or one batch \
                         (handle-batch), traps and timeouts included.",
                    )
                    .buckets(vec![
                        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                    &m,
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            emits_denied: counter(
                &r,
                "weir_emits_denied_total",
                "Emits refused by the host, by reason (topic_not_allowed, invalid_partition, \
                 too_large, too_many).",
                &["module", "reason"],
            ),
            consumer_lag: gauge(
                &r,
                "weir_consumer_lag",
                "Events between the partition's end and the group's committed offset \
                 (librdkafka statistics; assigned partitions with a committed offset only).",
                &mtp,
            ),
            committed_offset: gauge(
                &r,
                "weir_committed_offset",
                "Last offset committed by the module's group (the next event to read).",
                &mtp,
            ),
            in_flight: gauge(
                &r,
                "weir_events_in_flight",
                "Events taken by partition workers and not yet settled (in a call, \
                 waiting for a retry, or waiting for output acknowledgements).",
                &m,
            ),
            reloads: counter(
                &r,
                "weir_module_reloads_total",
                "Module reloads, by result (ok, error).",
                &["module", "result"],
            ),
            module_info: gauge(
                &r,
                "weir_module_info",
                "Loaded modules; digest is the SHA-256 of the component. The value is always 1.",
                &["module", "digest"],
            ),
            guest_memory: gauge(
                &r,
                "weir_guest_memory_bytes",
                "Linear memory of the module's live instances (one per partition worker).",
                &m,
            ),
            rebalances: counter(
                &r,
                "weir_rebalances_total",
                "Consumer group rebalance events, by kind (assign, revoke, lost, error).",
                &["module", "kind"],
            ),
            produce_errors: counter(
                &r,
                "weir_produce_errors_total",
                "Failed attempts to produce a call's outputs (retried; offsets wait).",
                &m,
            ),
            guest_logs_dropped: counter(
                &r,
                "weir_guest_log_lines_dropped_total",
                "Guest log lines dropped by the per-module rate limit.",
                &m,
            ),
            assigned_partitions: gauge(
                &r,
                "weir_assigned_partitions",
                "Partitions currently assigned to the module's consumer.",
                &m,
            ),
            registry: r,
            digests: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            running: AtomicBool::new(false),
        }
    }

    /// The registry, to encode or to register more collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Records that `module` is loaded at content `digest` (replacing the
    /// previous digest's `weir_module_info` series).
    pub fn module_loaded(&self, module: &str, digest: &str) {
        let mut digests = lock(&self.digests);
        if let Some(old) = digests.insert(module.to_owned(), digest.to_owned())
            && old != digest
        {
            let _ = self.module_info.remove_label_values(&[module, &old]);
        }
        self.module_info.with_label_values(&[module, digest]).set(1);
    }

    /// Records that `module` was removed from the folder.
    pub fn module_unloaded(&self, module: &str) {
        if let Some(old) = lock(&self.digests).remove(module) {
            let _ = self.module_info.remove_label_values(&[module, &old]);
        }
    }

    /// Counts a reload attempt of `module`.
    pub fn module_reload(&self, module: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[module, result]).inc();
    }

    /// Sets whether the process is running (modules loaded and consumers
    /// started). Readiness requires it; set it to false when shutting down.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// `Ok` when weir is ready to serve; otherwise every reason it is not.
    /// Ready means: running, at least one module consumer, and every module
    /// consumer has joined its group (it got an assignment, possibly empty
    /// when other weir processes own every partition) and its last signal from
    /// the brokers was that they are reachable.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !self.running.load(Ordering::Relaxed) {
            problems.push("modules are not running (starting or shutting down)".to_owned());
        }
        let modules = lock(&self.modules);
        if modules.is_empty() {
            problems.push("no module consumer is running".to_owned());
        }
        let mut names: Vec<&String> = modules.keys().collect();
        names.sort();
        for name in names {
            let m = &modules[name];
            if !m.joined.load(Ordering::Relaxed) {
                problems.push(format!("module `{name}`: no partition assignment yet"));
            }
            if !m.broker_up.load(Ordering::Relaxed) {
                problems.push(format!("module `{name}`: brokers not reachable"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The handle of a module consumer that is starting. Readiness waits for
    /// it until [`ModuleMetrics::stopped`] is called.
    pub fn module(self: &Arc<Self>, module: &str) -> Arc<ModuleMetrics> {
        let bound = |vec: &IntCounterVec| vec.with_label_values(&[module]);
        let handle = Arc::new(ModuleMetrics {
            name: module.to_owned(),
            processed: Outcome::ALL.map(|o| {
                self.events_processed
                    .with_label_values(&[module, o.as_str()])
            }),
            denied: DenyReason::ALL
                .map(|r| self.emits_denied.with_label_values(&[module, r.as_str()])),
            duration: self.handler_duration.with_label_values(&[module]),
            in_flight: self.in_flight.with_label_values(&[module]),
            memory: self.guest_memory.with_label_values(&[module]),
            produce_errors: bound(&self.produce_errors),
            dead_lettered: bound(&self.dead_lettered),
            assigned: self.assigned_partitions.with_label_values(&[module]),
            log_limiter: LogLimiter::new(
                module,
                bound(&self.guest_logs_dropped),
                GUEST_LOG_RATE,
                GUEST_LOG_BURST,
            ),
            joined: AtomicBool::new(false),
            broker_up: AtomicBool::new(false),
            metrics: self.clone(),
        });
        lock(&self.modules).insert(module.to_owned(), handle.clone());
        handle
    }
}

/// One module's metrics, with its label values bound.
pub struct ModuleMetrics {
    name: String,
    metrics: Arc<Metrics>,
    processed: [IntCounter; Outcome::ALL.len()],
    denied: [IntCounter; DenyReason::ALL.len()],
    duration: prometheus::Histogram,
    in_flight: IntGauge,
    memory: IntGauge,
    produce_errors: IntCounter,
    dead_lettered: IntCounter,
    assigned: IntGauge,
    log_limiter: LogLimiter,
    joined: AtomicBool,
    broker_up: AtomicBool,
}

impl std::fmt::Debug for ModuleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleMetrics")
            .field("module", &self.name)
            .finish_non_exhaustive()
    }
}

impl ModuleMetrics {
    /// The module name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The consumer stopped: readiness no longer waits for it, and its
    /// per-partition series go away.
    pub fn stopped(self: &Arc<Self>) {
        let mut modules = lock(&self.metrics.modules);
        if modules
            .get(&self.name)
            .is_some_and(|m| Arc::ptr_eq(m, self))
        {
            modules.remove(&self.name);
        }
        drop(modules);
        self.assigned.set(0);
        self.forget_partitions(None);
    }

    /// `n` events were read from `topic`.
    pub fn consumed(&self, topic: &str, n: usize) {
        self.metrics
            .events_consumed
            .with_label_values(&[&self.name, topic])
            .inc_by(n as u64);
    }

    /// Events settled by one call.
    pub fn processed(&self, outcomes: &Outcomes) {
        for outcome in Outcome::ALL {
            let n = outcomes.count(outcome);
            if n > 0 {
                self.processed[outcome.index()].inc_by(n);
            }
        }
    }

    /// One acknowledged emitted record of `bytes` bytes to `topic`.
    pub fn emitted(&self, topic: &str, records: usize, bytes: usize) {
        let labels = [self.name.as_str(), topic];
        self.metrics
            .events_emitted
            .with_label_values(&labels)
            .inc_by(records as u64);
        self.metrics
            .emitted_bytes
            .with_label_values(&labels)
            .inc_by(bytes as u64);
    }

    /// An event was written to a dead-letter topic.
    pub fn dead_lettered(&self) {
        self.dead_lettered.inc();
    }

    /// One guest call took `elapsed`.
    pub fn call_duration(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The host denied an emit for `reason`.
    pub fn emit_denied(&self, reason: DenyReason) {
        self.denied[reason.index()].inc();
    }

    /// Guest linear memory grew (positive) or was released (negative).
    pub fn memory_changed(&self, delta: i64) {
        self.memory.add(delta);
    }

    /// Producing a call's outputs failed once.
    pub fn produce_error(&self) {
        self.produce_errors.inc();
    }

    /// `n` events were taken by a worker; the guard counts them down as they
    /// settle and releases the rest when dropped.
    pub fn in_flight(&self, n: usize) -> InFlight {
        self.in_flight.add(n as i64);
        InFlight {
            gauge: self.in_flight.clone(),
            left: n as i64,
        }
    }

    /// The guest log rate limiter of this module.
    pub fn log_limiter(&self) -> &LogLimiter {
        &self.log_limiter
    }

    /// Partitions were assigned (`count` of them, possibly none).
    pub fn assigned(&self, count: usize) {
        self.metrics
            .rebalances
            .with_label_values(&[&self.name, "assign"])
            .inc();
        self.assigned.add(count as i64);
        self.joined.store(true, Ordering::Relaxed);
        self.broker_up.store(true, Ordering::Relaxed);
    }

    /// `partitions` (topic, partition) were revoked; `lost` when the group
    /// moved on without us.
    pub fn revoked<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>, lost: bool) {
        let partitions: Vec<(&str, i32)> = partitions.into_iter().collect();
        let kind = if lost { "lost" } else { "revoke" };
        self.metrics
            .rebalances
            .with_label_values(&[&self.name, kind])
            .inc();
        self.assigned.sub(partitions.len() as i64);
        if lost {
            self.joined.store(false, Ordering::Relaxed);
        }
        self.forget_partitions(Some(&partitions));
    }

    /// A rebalance failed.
    pub fn rebalance_error(&self) {
        self.metrics
            .rebalances
            .with_label_values(&[&self.name, "error"])
            .inc();
    }

    /// The group committed `offsets`: (topic, partition, next offset to
    /// read), each set as `weir_committed_offset`.
    pub fn committed<'a>(&self, offsets: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        for (topic, partition, offset) in offsets {
            self.partition_gauge(&self.metrics.committed_offset, topic, partition)
                .set(offset);
        }
    }

    /// Sets `weir_consumer_lag` of one partition: events between its end and
    /// the group's committed offset.
    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.partition_gauge(&self.metrics.consumer_lag, topic, partition)
            .set(lag);
    }

    fn partition_gauge(&self, family: &IntGaugeVec, topic: &str, partition: i32) -> IntGauge {
        family.with_label_values(&[self.name.as_str(), topic, &partition.to_string()])
    }

    /// Records whether the brokers are reachable as far as the client's
    /// latest report says (readiness requires it).
    pub fn brokers_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
    }

    /// librdkafka reported that every broker is down.
    pub fn brokers_down(&self) {
        self.brokers_up(false);
    }

    /// Drops the per-partition series of `partitions` (all when `None`).
    fn forget_partitions(&self, partitions: Option<&[(&str, i32)]>) {
        for family in [&self.metrics.consumer_lag, &self.metrics.committed_offset] {
            let series: Vec<(String, String)> = Collector::collect(family)
                .iter()
                .flat_map(|mf| mf.get_metric())
                .filter_map(|m| {
                    let label = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_owned())
                    };
                    (label("module")? == self.name).then_some(())?;
                    Some((label("topic")?, label("partition")?))
                })
                .collect();
            for (topic, partition) in series {
                let wanted = partitions.is_none_or(|ps| {
                    ps.iter()
                        .any(|&(t, p)| t == topic && p.to_string() == partition)
                });
                if wanted {
                    let _ = family.remove_label_values(&[self.name.as_str(), &topic, &partition]);
                }
            }
        }
    }
}

/// Counts down `weir_events_in_flight` as a worker's events settle.
#[derive(Debug)]
pub struct InFlight {
    gauge: IntGauge,
    left: i64,
}

impl InFlight {
    /// Moves `n` of these events (at most all that are left) to a new guard,
    /// which settles them when it is dropped or told so.
    pub fn split(&mut self, n: usize) -> InFlight {
        let n = (n as i64).min(self.left);
        self.left -= n;
        InFlight {
            gauge: self.gauge.clone(),
            left: n,
        }
    }

    /// `n` more events settled.
    pub fn settled(&mut self, n: usize) {
        let n = (n as i64).min(self.left);
        self.gauge.sub(n);
        self.left -= n;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.sub(self.left);
    }
}

/// A token bucket limiting one module's guest log lines (all its instances
/// together). Lines over the limit are dropped and counted; the next line
/// let through is preceded by a warning saying how many were dropped.
pub struct LogLimiter {
    module: String,
    dropped: IntCounter,
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl std::fmt::Debug for LogLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLimiter")
            .field("module", &self.module)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl LogLimiter {
    /// A limiter of `rate` lines per second with bursts of `burst`.
    pub fn new(module: &str, dropped: IntCounter, rate: f64, burst: f64) -> Self {
        Self {
            module: module.to_owned(),
            dropped,
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Whether one more line may be logged now. When lines were dropped
    /// since the last one let through, logs how many first.
    pub fn admit(&self) -> bool {
        let mut b = lock(&self.state);
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.last = now;
        if b.tokens < 1.0 {
            b.suppressed += 1;
            self.dropped.inc();
            return false;
        }
        b.tokens -= 1.0;
        let suppressed = std::mem::take(&mut b.suppressed);
        drop(b);
        if suppressed > 0 {
            tracing::warn!(target: "weir::guest", module = %self.module, dropped = suppressed,
                rate = self.rate, burst = self.burst,
                "guest log lines dropped by the per-module rate limit");
        }
        true
    }
}

#[cfg(test)]
impl Metrics {
    /// The value of the counter or gauge series of `family` whose labels are
    /// exactly `labels` (in any order), read by gathering the registry.
    pub(crate) fn sample(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus::proto::MetricType;
        let families = self.registry.gather();
        let family = families.iter().find(|f| f.name() == family)?;
        let metric = family.get_metric().iter().find(|m| {
            let got = m.get_label();
            got.len() == labels.len() && got.iter().all(|l| labels.contains(&(l.name(), l.value())))
        })?;
        match family.get_field_type() {
            MetricType::GAUGE => Some(metric.get_gauge().get_value()),
            MetricType::COUNTER => Some(metric.get_counter().get_value()),
            other => panic!("sample reads counters and gauges, not {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_version_matches_the_lock_file() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let entry = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
        assert!(lock.contains(&entry), "update WASMTIME_VERSION");
    }

    #[test]
    fn encodes_prometheus_text_with_bounded_labels() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("enrich");
        m.consumed("orders", 1);
        let mut outcomes = Outcomes::default();
        outcomes.add(Outcome::Ok);
        outcomes.add(Outcome::Ok);
        outcomes.add(Outcome::Timeout);
        m.processed(&outcomes);
        m.call_duration(Duration::from_millis(3));
        metrics.module_loaded("enrich", "abc");
        metrics.module_loaded("enrich", "def");
        let text = metrics.encode();
        assert!(text.contains("weir_build_info{"), "{text}");
        assert!(
            text.contains(r#"weir_events_processed_total{module="enrich",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_events_processed_total{module="enrich",outcome="timeout"} 1"#)
        );
        assert!(text.contains(r#"weir_module_info{digest="def",module="enrich"} 1"#));
        assert!(!text.contains(r#"digest="abc""#), "old digest removed");
        assert!(text.contains("weir_handler_duration_seconds_bucket{module=\"enrich\",le="));
    }

    #[test]
    fn readiness_needs_running_joined_and_brokers() {
        let metrics = Arc::new(Metrics::new());
        assert!(metrics.readiness().is_err());
        let m = metrics.module("a");
        metrics.set_running(true);
        assert_eq!(metrics.readiness().unwrap_err().len(), 2);
        m.assigned(0);
        assert!(metrics.readiness().is_ok());
        m.brokers_down();
        assert!(metrics.readiness().is_err());
        m.stopped();
        assert!(
            metrics.readiness().unwrap_err()[0].contains("no module"),
            "{:?}",
            metrics.readiness()
        );
    }

    #[test]
    fn in_flight_guard_releases_what_did_not_settle() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("a");
        {
            let mut g = m.in_flight(5);
            g.settled(2);
            assert_eq!(m.in_flight.get(), 3);
        }
        assert_eq!(m.in_flight.get(), 0);
    }

    #[test]
    fn log_limiter_drops_over_the_burst_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let dropped = metrics.guest_logs_dropped.with_label_values(&["a"]);
        let limiter = LogLimiter::new("a", dropped.clone(), 1.0, 3.0);
        let admitted = (0..10).filter(|_| limiter.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(dropped.get(), 7);
    }

    #[test]
    fn deny_reason_labels_are_the_documented_values() {
        let labels = DenyReason::ALL.map(DenyReason::as_str);
        assert_eq!(
            labels,
            [
                "topic_not_allowed",
                "invalid_partition",
                "too_large",
                "too_many"
            ]
        );
    }

    #[test]
    fn indices_follow_the_all_tables() {
        for (i, reason) in DenyReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
    }

    #[test]
    fn outcomes_count_per_outcome() {
        let mut outcomes = Outcomes::default();
        outcomes.add(Outcome::Trap);
        outcomes.add(Outcome::Trap);
        outcomes.add(Outcome::Ok);
        assert_eq!(outcomes.count(Outcome::Trap), 2);
        assert_eq!(outcomes.count(Outcome::Ok), 1);
        assert_eq!(outcomes.count(Outcome::Timeout), 0);
    }

    #[test]
    fn emit_denied_counts_under_the_reason_label() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("a");
        m.emit_denied(DenyReason::TooLarge);
        m.emit_denied(DenyReason::TooLarge);
        m.emit_denied(DenyReason::TopicNotAllowed);
        let denied = |reason: &str| {
            metrics.sample(
                "weir_emits_denied_total",
                &[("module", "a"), ("reason", reason)],
            )
        };
        assert_eq!(denied("too_large"), Some(2.0));
        assert_eq!(denied("topic_not_allowed"), Some(1.0));
        assert_eq!(denied("too_many"), Some(0.0));
        assert_eq!(denied("invalid_partition"), Some(0.0));
    }

    fn partition_labels<'a>(topic: &'a str, partition: &'a str) -> [(&'a str, &'a str); 3] {
        [("module", "a"), ("topic", topic), ("partition", partition)]
    }

    #[test]
    fn revoked_partitions_lose_their_series_and_others_keep_them() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("a");
        m.assigned(3);
        m.committed([("orders", 0, 10), ("orders", 1, 20), ("other", 0, 5)]);
        m.lag("orders", 1, 7);
        m.revoked([("orders", 1), ("other", 0)], false);
        let committed = |t, p| metrics.sample("weir_committed_offset", &partition_labels(t, p));
        assert_eq!(committed("orders", "0"), Some(10.0));
        assert_eq!(committed("orders", "1"), None);
        assert_eq!(committed("other", "0"), None);
        let lag = metrics.sample("weir_consumer_lag", &partition_labels("orders", "1"));
        assert_eq!(lag, None);
        let assigned = metrics.sample("weir_assigned_partitions", &[("module", "a")]);
        assert_eq!(assigned, Some(1.0));
        let revokes = [("module", "a"), ("kind", "revoke")];
        assert_eq!(metrics.sample("weir_rebalances_total", &revokes), Some(1.0));
    }
}
