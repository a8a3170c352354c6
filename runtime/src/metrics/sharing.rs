//! What the modules share: the output budget (`max-inflight-bytes`) and the
//! call slots.

use std::time::Duration;

use prometheus::{Counter, CounterVec, IntCounter, IntGauge, Opts};

use super::{M, register};

/// The process-wide families of the output budget and the call slots.
#[derive(Clone)]
pub struct BudgetMetrics {
    held: IntGauge,
    limit: IntGauge,
    waits: IntCounter,
    wait_seconds: Counter,
    slot_wait_seconds: CounterVec,
}

impl std::fmt::Debug for BudgetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetMetrics").finish_non_exhaustive()
    }
}

impl BudgetMetrics {
    pub(super) fn register(r: &prometheus::Registry) -> Self {
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        Self {
            held: gauge(
                "weir_inflight_bytes",
                "Output bytes held for guest calls in progress and records not yet acknowledged \
                 (reserved out of `max-inflight-bytes`).",
            ),
            limit: gauge(
                "weir_inflight_limit_bytes",
                "The output budget, `max-inflight-bytes`.",
            ),
            waits: register(
                r,
                IntCounter::new(
                    "weir_inflight_waits_total",
                    "Guest calls that waited for the output budget before they could start.",
                )
                .expect("valid metric"),
            ),
            wait_seconds: register(
                r,
                Counter::new(
                    "weir_inflight_wait_seconds_total",
                    "Time guest calls spent waiting for the output budget.",
                )
                .expect("valid metric"),
            ),
            slot_wait_seconds: register(
                r,
                CounterVec::new(
                    Opts::new(
                        "weir_call_slot_wait_seconds_total",
                        "Time a module's guest calls spent waiting for a call slot (their turn \
                         on a core), before they started and when they yielded.",
                    ),
                    M,
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Sets the budget.
    pub fn limit(&self, bytes: u64) {
        self.limit.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Bytes were reserved (positive) or given back (negative).
    pub fn held(&self, delta: i64) {
        self.held.add(delta);
    }

    /// A call waited `elapsed` for the budget.
    pub fn waited(&self, elapsed: Duration) {
        self.waits.inc();
        self.wait_seconds.inc_by(elapsed.as_secs_f64());
    }

    /// The counter of `module`'s waits for a call slot.
    pub fn slot_waits(&self, module: &str) -> Counter {
        self.slot_wait_seconds.with_label_values(&[module])
    }
}
