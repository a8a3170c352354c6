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
//!
//! This file holds the metric families and [`Metrics`]; [`ModuleMetrics`]
//! and [`InFlight`] are in `module.rs`, the label enums in `labels.rs`,
//! readiness in `readiness.rs` and the guest log limiter in `limiter.rs`.
//! Nothing here knows about Kafka client types: librdkafka statistics are
//! turned into these metrics by `crate::kafka::stats`.

mod labels;
mod limiter;
mod module;
mod readiness;
mod sharing;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use labels::{DenyReason, Outcome, Outcomes, StallReason};
pub use limiter::LogLimiter;
pub use module::{InFlight, ModuleMetrics};
pub use sharing::BudgetMetrics;
pub use state::StateMetrics;

use crate::sync::lock;
use readiness::Readiness;

/// The wasmtime version weir is built against (checked against `Cargo.lock`
/// by a unit test).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Guest log lines a module may write per second, on average.
pub const GUEST_LOG_RATE: f64 = 100.0;
/// Guest log lines a module may write in a burst.
pub const GUEST_LOG_BURST: f64 = 200.0;

/// Every metric family of the process, and the readiness state.
pub struct Metrics {
    registry: Registry,
    events: EventFamilies,
    kafka: KafkaFamilies,
    modules: ModuleFamilies,
    state: state::StateFamilies,
    sharing: BudgetMetrics,
    /// Module name -> digest currently in `weir_module_info`.
    digests: Mutex<HashMap<String, String>>,
    readiness: Readiness,
}

/// The families that follow events through a module's calls.
struct EventFamilies {
    consumed: IntCounterVec,
    processed: IntCounterVec,
    emitted: IntCounterVec,
    emitted_bytes: IntCounterVec,
    dead_lettered: IntCounterVec,
    handler_duration: HistogramVec,
    emits_denied: IntCounterVec,
    in_flight: IntGaugeVec,
}

/// The families that follow a module's consumer group and producer.
struct KafkaFamilies {
    consumer_lag: IntGaugeVec,
    committed_offset: IntGaugeVec,
    rebalances: IntCounterVec,
    produce_errors: IntCounterVec,
    assigned_partitions: IntGaugeVec,
    paused: IntGaugeVec,
    partition_stalls: IntCounterVec,
    stalled_partitions: IntGaugeVec,
}

/// The families about the modules themselves: versions, reloads, memory,
/// guest logs.
struct ModuleFamilies {
    reloads: IntCounterVec,
    module_info: IntGaugeVec,
    guest_memory: IntGaugeVec,
    guest_logs_dropped: IntCounterVec,
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

const M: &[&str] = &["module"];
const MT: &[&str] = &["module", "topic"];
const MTP: &[&str] = &["module", "topic", "partition"];

/// Bucket bounds of `weir_handler_duration_seconds`, from 50 µs to 30 s.
const DURATION_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("unique metric");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, c)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, g)
}

/// Registers `weir_build_info` and sets its one series.
fn register_build_info(r: &Registry) {
    let build = gauge(
        r,
        "weir_build_info",
        "Versions weir was built with; the value is always 1.",
        &["version", "wasmtime", "librdkafka"],
    );
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    build
        .with_label_values(&[env!("CARGO_PKG_VERSION"), WASMTIME_VERSION, &librdkafka])
        .set(1);
}

impl EventFamilies {
    fn register(r: &Registry) -> Self {
        let duration = HistogramOpts::new(
            "weir_handler_duration_seconds",
            "Wall time of one guest call: one event (handle) or one batch \
             (handle-batch), traps and timeouts included.",
        )
        .buckets(DURATION_BUCKETS.to_vec());
        Self {
            consumed: counter(
                r,
                "weir_events_consumed_total",
                "Events read from Kafka and handed to a partition worker.",
                MT,
            ),
            processed: counter(
                r,
                "weir_events_processed_total",
                "Events settled by a module, by outcome (ok, rejected, trap, timeout); \
                 retry counts each attempt a handler asked to retry.",
                &["module", "outcome"],
            ),
            emitted: counter(
                r,
                "weir_events_emitted_total",
                "Records emitted by a module and acknowledged by the broker, per output topic.",
                MT,
            ),
            emitted_bytes: counter(
                r,
                "weir_emitted_bytes_total",
                "Bytes (key, value, headers) of acknowledged emitted records, per output topic.",
                MT,
            ),
            dead_lettered: counter(
                r,
                "weir_events_dead_lettered_total",
                "Events written to a dead-letter topic (0 until dead-letter topics exist).",
                M,
            ),
            handler_duration: register(r, HistogramVec::new(duration, M).expect("valid metric")),
            emits_denied: counter(
                r,
                "weir_emits_denied_total",
                "Emits refused by the host, by reason (topic_not_allowed, invalid_partition, \
                 too_large, too_many).",
                &["module", "reason"],
            ),
            in_flight: gauge(
                r,
                "weir_events_in_flight",
                "Events taken by partition workers and not yet settled (in a call, \
                 waiting for a retry, or waiting for output acknowledgements).",
                M,
            ),
        }
    }
}

impl KafkaFamilies {
    fn register(r: &Registry) -> Self {
        Self {
            consumer_lag: gauge(
                r,
                "weir_consumer_lag",
                "Events between the partition's end and the group's committed offset \
                 (librdkafka statistics; assigned partitions with a committed offset only).",
                MTP,
            ),
            committed_offset: gauge(
                r,
                "weir_committed_offset",
                "Last offset committed by the module's group (the next event to read).",
                MTP,
            ),
            rebalances: counter(
                r,
                "weir_rebalances_total",
                "Consumer group rebalance events, by kind (assign, revoke, lost, error).",
                &["module", "kind"],
            ),
            produce_errors: counter(
                r,
                "weir_produce_errors_total",
                "Failed attempts to produce a call's outputs (retried; offsets wait).",
                M,
            ),
            assigned_partitions: gauge(
                r,
                "weir_assigned_partitions",
                "Partitions currently assigned to the module's consumer.",
                M,
            ),
            paused: gauge(
                r,
                "weir_module_paused",
                "1 while an operator has paused the module (`weir pause`): its partitions \
                 stay assigned and are not fetched.",
                M,
            ),
            partition_stalls: counter(
                r,
                "weir_partition_stalls_total",
                "Times an assigned partition stopped making progress because the consumer \
                 reported an error for it, by reason (authorization, decompression, offset, \
                 fetch); counted once per stall, however often librdkafka repeats the error.",
                &["module", "reason"],
            ),
            stalled_partitions: gauge(
                r,
                "weir_stalled_partitions",
                "Assigned partitions the consumer cannot fetch right now (the last thing \
                 it reported for them was an error); /status names them and why.",
                M,
            ),
        }
    }
}

impl ModuleFamilies {
    fn register(r: &Registry) -> Self {
        Self {
            reloads: counter(
                r,
                "weir_module_reloads_total",
                "Module reloads, by result (ok, error).",
                &["module", "result"],
            ),
            module_info: gauge(
                r,
                "weir_module_info",
                "Loaded modules; digest is the SHA-256 of the component. The value is always 1.",
                &["module", "digest"],
            ),
            guest_memory: gauge(
                r,
                "weir_guest_memory_bytes",
                "Linear memory of the module's live instances (one per partition worker).",
                M,
            ),
            guest_logs_dropped: counter(
                r,
                "weir_guest_log_lines_dropped_total",
                "Guest log lines dropped by the per-module rate limit.",
                M,
            ),
        }
    }
}

impl Metrics {
    /// Creates and registers every family, and sets `weir_build_info`.
    pub fn new() -> Self {
        let registry = Registry::new();
        register_build_info(&registry);
        Self {
            events: EventFamilies::register(&registry),
            kafka: KafkaFamilies::register(&registry),
            modules: ModuleFamilies::register(&registry),
            state: state::StateFamilies::register(&registry),
            sharing: BudgetMetrics::register(&registry),
            registry,
            digests: Mutex::new(HashMap::new()),
            readiness: Readiness::default(),
        }
    }

    /// `module`'s state store metrics.
    pub fn state(&self, module: &str) -> StateMetrics {
        StateMetrics::new(&self.state, module)
    }

    /// The output budget's and the call slots' metrics.
    pub fn sharing(&self) -> BudgetMetrics {
        self.sharing.clone()
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
        let info = &self.modules.module_info;
        let mut digests = lock(&self.digests);
        if let Some(old) = digests.insert(module.to_owned(), digest.to_owned())
            && old != digest
        {
            let _ = info.remove_label_values(&[module, &old]);
        }
        info.with_label_values(&[module, digest]).set(1);
    }

    /// Records that `module` was removed from the folder.
    pub fn module_unloaded(&self, module: &str) {
        if let Some(old) = lock(&self.digests).remove(module) {
            let _ = self
                .modules
                .module_info
                .remove_label_values(&[module, &old]);
        }
    }

    /// Counts a reload attempt of `module`.
    pub fn module_reload(&self, module: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.modules
            .reloads
            .with_label_values(&[module, result])
            .inc();
    }

    /// Sets whether the process is running (modules loaded and consumers
    /// started). Readiness requires it; set it to false when shutting down.
    pub fn set_running(&self, running: bool) {
        self.readiness.set_running(running);
    }

    /// `Ok` when weir is ready to serve; otherwise every reason it is not.
    /// Ready means: running, at least one module consumer, and every module
    /// consumer has joined its group (it got an assignment, possibly empty
    /// when other weir processes own every partition), its last signal from
    /// the brokers was that they are reachable, and none of its partitions
    /// is stalled by a consumer-side error.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        self.readiness.check()
    }

    /// The handle of a module consumer that is starting. Readiness waits for
    /// it until [`ModuleMetrics::stopped`] is called.
    pub fn module(self: &Arc<Self>, module: &str) -> Arc<ModuleMetrics> {
        Arc::new(ModuleMetrics::new(self, module))
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
    use std::time::Duration;

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
}
