//! The state stores' metrics: restores, and each store's size.

use std::time::Duration;

use prometheus::{Counter, CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::{M, counter, gauge, register};

/// The state families.
pub(super) struct StateFamilies {
    restore_records: IntCounterVec,
    restores: IntCounterVec,
    restore_seconds: CounterVec,
    restoring: IntGaugeVec,
    bytes: IntGaugeVec,
    keys: IntGaugeVec,
}

impl StateFamilies {
    pub(super) fn register(r: &prometheus::Registry) -> Self {
        let seconds = Opts::new(
            "weir_state_restore_seconds_total",
            "Time spent restoring state stores from their changelog.",
        );
        Self {
            restore_records: counter(
                r,
                "weir_state_restore_records_total",
                "Changelog records read while restoring state stores.",
                M,
            ),
            restores: counter(
                r,
                "weir_state_restores_total",
                "State store restores completed (one per partition assignment of a stateful module).",
                M,
            ),
            restore_seconds: register(r, CounterVec::new(seconds, M).expect("valid metric")),
            restoring: gauge(
                r,
                "weir_state_restoring_partitions",
                "Partitions whose state store is being restored (no calls until it is done).",
                M,
            ),
            bytes: gauge(
                r,
                "weir_state_bytes",
                "Keys plus values of the entries of a partition's state store (the quantity \
                 `limits.state-mib` bounds), as of its last checkpoint.",
                &["module", "partition"],
            ),
            keys: gauge(
                r,
                "weir_state_keys",
                "Entries of a partition's state store, as of its last checkpoint.",
                &["module", "partition"],
            ),
        }
    }
}

/// One module's state metrics.
#[derive(Clone)]
pub struct StateMetrics {
    module: String,
    restore_records: IntCounter,
    restores: IntCounter,
    restore_seconds: Counter,
    restoring: IntGauge,
    bytes: IntGaugeVec,
    keys: IntGaugeVec,
}

impl std::fmt::Debug for StateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMetrics")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl StateMetrics {
    pub(super) fn new(families: &StateFamilies, module: &str) -> Self {
        Self {
            module: module.to_owned(),
            restore_records: families.restore_records.with_label_values(&[module]),
            restores: families.restores.with_label_values(&[module]),
            restore_seconds: families.restore_seconds.with_label_values(&[module]),
            restoring: families.restoring.with_label_values(&[module]),
            bytes: families.bytes.clone(),
            keys: families.keys.clone(),
        }
    }

    /// A restore started.
    pub fn restore_started(&self) {
        self.restoring.inc();
    }

    /// `records` more changelog records were read by a restore.
    pub fn restored_records(&self, records: u64) {
        self.restore_records.inc_by(records);
    }

    /// A restore ended (`done` when it completed) after `elapsed`.
    pub fn restore_ended(&self, done: bool, elapsed: Duration) {
        self.restoring.dec();
        self.restore_seconds.inc_by(elapsed.as_secs_f64());
        if done {
            self.restores.inc();
        }
    }

    /// A partition's store holds `keys` entries of `bytes` bytes.
    pub fn size(&self, partition: i32, keys: u64, bytes: u64) {
        let p = partition.to_string();
        let labels = [self.module.as_str(), p.as_str()];
        self.keys.with_label_values(&labels).set(keys as i64);
        self.bytes.with_label_values(&labels).set(bytes as i64);
    }

    /// A partition's store was closed: its series go away.
    pub fn closed(&self, partition: i32) {
        let p = partition.to_string();
        let labels = [self.module.as_str(), p.as_str()];
        let _ = self.keys.remove_label_values(&labels);
        let _ = self.bytes.remove_label_values(&labels);
    }
}
