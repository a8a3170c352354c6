//! [`ModuleMetrics`], one module consumer's handle on the metrics with its
//! label values bound, and [`InFlight`], the guard behind
//! `weir_events_in_flight`.

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, IntCounter, IntGauge, IntGaugeVec};

use super::readiness::ConsumerState;
use super::{
    DenyReason, GUEST_LOG_BURST, GUEST_LOG_RATE, LogLimiter, Metrics, Outcome, Outcomes,
    StallReason,
};

/// One module's metrics, with its label values bound.
pub struct ModuleMetrics {
    name: String,
    metrics: Arc<Metrics>,
    processed: [IntCounter; Outcome::ALL.len()],
    denied: [IntCounter; DenyReason::ALL.len()],
    duration: Histogram,
    in_flight: IntGauge,
    memory: IntGauge,
    produce_errors: IntCounter,
    dead_lettered: IntCounter,
    assigned: IntGauge,
    paused: IntGauge,
    stalls: [IntCounter; StallReason::ALL.len()],
    stalled: IntGauge,
    log_limiter: LogLimiter,
    readiness: Arc<ConsumerState>,
}

impl std::fmt::Debug for ModuleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleMetrics")
            .field("module", &self.name)
            .finish_non_exhaustive()
    }
}

impl ModuleMetrics {
    /// Binds `module`'s series and makes readiness wait for its consumer.
    pub(super) fn new(metrics: &Arc<Metrics>, module: &str) -> Self {
        let events = &metrics.events;
        let bound = |vec: &IntGaugeVec| vec.with_label_values(&[module]);
        let dropped = metrics
            .modules
            .guest_logs_dropped
            .with_label_values(&[module]);
        Self {
            name: module.to_owned(),
            processed: Outcome::ALL
                .map(|o| events.processed.with_label_values(&[module, o.as_str()])),
            denied: DenyReason::ALL
                .map(|r| events.emits_denied.with_label_values(&[module, r.as_str()])),
            duration: events.handler_duration.with_label_values(&[module]),
            in_flight: bound(&events.in_flight),
            memory: bound(&metrics.modules.guest_memory),
            produce_errors: metrics.kafka.produce_errors.with_label_values(&[module]),
            dead_lettered: events.dead_lettered.with_label_values(&[module]),
            assigned: bound(&metrics.kafka.assigned_partitions),
            paused: bound(&metrics.kafka.paused),
            stalls: StallReason::ALL.map(|r| {
                metrics
                    .kafka
                    .partition_stalls
                    .with_label_values(&[module, r.as_str()])
            }),
            stalled: bound(&metrics.kafka.stalled_partitions),
            log_limiter: LogLimiter::new(module, dropped, GUEST_LOG_RATE, GUEST_LOG_BURST),
            readiness: metrics.readiness.consumer_started(module),
            metrics: metrics.clone(),
        }
    }

    /// The module name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The consumer stopped: readiness no longer waits for it, and its
    /// per-partition series go away.
    pub fn stopped(self: &Arc<Self>) {
        self.metrics
            .readiness
            .consumer_stopped(&self.name, &self.readiness);
        self.assigned.set(0);
        self.stalled.set(0);
        self.paused.set(0);
        self.forget_partitions(None);
    }

    /// Whether an operator's pause is applied to the module's consumer.
    pub fn paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
    }

    /// `n` events were read from `topic`.
    pub fn consumed(&self, topic: &str, n: usize) {
        self.metrics
            .events
            .consumed
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

    /// `records` acknowledged emitted records of `bytes` bytes in all to
    /// `topic`.
    pub fn emitted(&self, topic: &str, records: usize, bytes: usize) {
        let labels = [self.name.as_str(), topic];
        let events = &self.metrics.events;
        events
            .emitted
            .with_label_values(&labels)
            .inc_by(records as u64);
        events
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
        self.rebalance("assign");
        self.assigned.add(count as i64);
        self.readiness.set_joined(true);
        self.readiness.set_broker_up(true);
    }

    /// `partitions` (topic, partition) were revoked; `lost` when the group
    /// moved on without us.
    pub fn revoked<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>, lost: bool) {
        let partitions: Vec<(&str, i32)> = partitions.into_iter().collect();
        self.rebalance(if lost { "lost" } else { "revoke" });
        self.assigned.sub(partitions.len() as i64);
        if lost {
            self.readiness.set_joined(false);
        }
        self.forget_partitions(Some(&partitions));
    }

    /// The consumer reported an error for an assigned partition instead of
    /// its records: counted in `weir_partition_stalls_total` under
    /// `reason`, and until [`ModuleMetrics::partition_resumed`] the
    /// partition is in `weir_stalled_partitions` and readiness says `why`.
    /// Call once per stall, not per repeated error.
    pub fn partition_stalled(&self, topic: &str, partition: i32, reason: StallReason, why: &str) {
        self.stalls[reason.index()].inc();
        let tp = format!("{topic}[{partition}]");
        let n = self.readiness.set_stalled(&tp, Some(why));
        self.stalled.set(n as i64);
    }

    /// A stalled partition made progress again, or is no longer assigned.
    pub fn partition_resumed(&self, topic: &str, partition: i32) {
        let tp = format!("{topic}[{partition}]");
        let n = self.readiness.set_stalled(&tp, None);
        self.stalled.set(n as i64);
    }

    /// A rebalance failed.
    pub fn rebalance_error(&self) {
        self.rebalance("error");
    }

    fn rebalance(&self, kind: &str) {
        self.metrics
            .kafka
            .rebalances
            .with_label_values(&[&self.name, kind])
            .inc();
    }

    /// The group committed `offsets`: (topic, partition, next offset to
    /// read), each set as `weir_committed_offset`.
    pub fn committed<'a>(&self, offsets: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        for (topic, partition, offset) in offsets {
            self.partition_gauge(&self.metrics.kafka.committed_offset, topic, partition)
                .set(offset);
        }
    }

    /// Sets `weir_consumer_lag` of one partition: events between its end and
    /// the group's committed offset.
    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.partition_gauge(&self.metrics.kafka.consumer_lag, topic, partition)
            .set(lag);
    }

    fn partition_gauge(&self, family: &IntGaugeVec, topic: &str, partition: i32) -> IntGauge {
        family.with_label_values(&[self.name.as_str(), topic, &partition.to_string()])
    }

    /// Records whether the brokers are reachable as far as the client's
    /// latest report says (readiness requires it).
    pub fn brokers_up(&self, up: bool) {
        self.readiness.set_broker_up(up);
    }

    /// librdkafka reported that every broker is down.
    pub fn brokers_down(&self) {
        self.brokers_up(false);
    }

    /// Drops the per-partition series of `partitions` (all when `None`).
    fn forget_partitions(&self, partitions: Option<&[(&str, i32)]>) {
        let kafka = &self.metrics.kafka;
        for family in [&kafka.consumer_lag, &kafka.committed_offset] {
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

    /// `n` more events are in flight, under this guard.
    pub fn grow(&mut self, n: usize) {
        self.gauge.add(n as i64);
        self.left += n as i64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition_labels<'a>(topic: &'a str, partition: &'a str) -> [(&'a str, &'a str); 3] {
        [("module", "a"), ("topic", topic), ("partition", partition)]
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
