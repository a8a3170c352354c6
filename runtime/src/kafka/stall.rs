//! Partitions the consumer cannot fetch. librdkafka reports a fetch that
//! fails for one partition (not authorised to read the topic, a record
//! batch it cannot decompress, no valid offset to start from) as an error
//! in that partition's own queue instead of its records, and keeps
//! retrying: a decompression error comes back at every fetch (twice a
//! second), an authorization error once until a fetch succeeds. The
//! partition makes no progress meanwhile, and nothing past it is
//! committed.
//!
//! [`FetchHealth`] turns that stream into a state per partition: stalled
//! (logged once per change, shown under `stalled` in `/status`, counted in
//! `weir_partition_stalls_total`, in `weir_stalled_partitions`, and named
//! by `/readyz`) until a record arrives or librdkafka reports the end of
//! the partition (a fetch succeeded), or the partition is no longer
//! assigned here.

use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::group::KafkaPorts;
use crate::metrics::{ModuleMetrics, StallReason};
use crate::pipeline::{Module, TopicPartition};
use crate::status::StatusBoard;

/// Whether one assigned partition can be fetched, as the errors and
/// records in its queue tell.
pub struct FetchHealth {
    module: Arc<str>,
    tp: TopicPartition,
    metrics: Arc<ModuleMetrics>,
    status: Arc<StatusBoard>,
    /// Why the partition is stalled, while it is.
    stalled: Option<(StallReason, String)>,
}

impl std::fmt::Debug for FetchHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchHealth")
            .field("tp", &self.tp)
            .field("stalled", &self.stalled)
            .finish_non_exhaustive()
    }
}

impl FetchHealth {
    /// The health of `tp`, a partition of `module`; not stalled.
    pub(crate) fn new(module: &Module<KafkaPorts>, tp: TopicPartition) -> Self {
        Self::reporting(
            module.name.clone(),
            tp,
            module.metrics.clone(),
            module.status.clone(),
        )
    }

    /// The health of `tp`, a partition of module `module`, reported to
    /// `metrics` and `status`; not stalled.
    fn reporting(
        module: Arc<str>,
        tp: TopicPartition,
        metrics: Arc<ModuleMetrics>,
        status: Arc<StatusBoard>,
    ) -> Self {
        Self {
            module,
            tp,
            metrics,
            status,
            stalled: None,
        }
    }

    /// Why the partition is stalled, if it is.
    pub fn stalled(&self) -> Option<&str> {
        self.stalled.as_ref().map(|(_, why)| why.as_str())
    }

    /// The consumer reported `err` for the partition instead of records;
    /// `position` is where the partition stands, when known. The end of
    /// the partition counts as progress; any other error stalls it. A
    /// repeat of the current stall changes nothing.
    pub fn failed(&mut self, err: &KafkaError, position: Option<i64>) {
        if matches!(err, KafkaError::PartitionEOF(_)) {
            self.progressed();
            return;
        }
        let (reason, why) = classify(err);
        let why = match position {
            Some(offset) => format!("{why} (at offset {offset})"),
            None => why,
        };
        if self
            .stalled
            .as_ref()
            .is_some_and(|(r, w)| *r == reason && *w == why)
        {
            return;
        }
        let (module, topic, partition) = (&*self.module, &self.tp.topic, self.tp.partition);
        tracing::warn!(module, topic = %topic, partition, offset = position,
            reason = reason.as_str(), error = %why,
            "partition stalled: the consumer cannot fetch it; nothing past it is committed \
             until it makes progress");
        self.metrics
            .partition_stalled(topic, partition, reason, &why);
        self.status
            .fetch_problem(module, &self.tp.to_string(), Some(why.clone()));
        self.stalled = Some((reason, why));
    }

    /// A record of the partition arrived (or its end was reached): a
    /// stalled partition resumes.
    pub fn progressed(&mut self) {
        let Some((reason, _)) = self.stalled.take() else {
            return;
        };
        let (module, topic, partition) = (&*self.module, &self.tp.topic, self.tp.partition);
        tracing::info!(module, topic = %topic, partition, reason = reason.as_str(),
            "stalled partition makes progress again");
        self.clear();
    }

    fn clear(&self) {
        self.metrics
            .partition_resumed(&self.tp.topic, self.tp.partition);
        self.status
            .fetch_problem(&self.module, &self.tp.to_string(), None);
    }
}

impl Drop for FetchHealth {
    /// The partition is no longer assigned here: its stall goes with it.
    fn drop(&mut self) {
        if self.stalled.take().is_some() {
            self.clear();
        }
    }
}

/// The reason label and the text of a per-partition consumer error.
fn classify(err: &KafkaError) -> (StallReason, String) {
    use RDKafkaErrorCode as C;
    let Some(code) = err.rdkafka_error_code() else {
        return (StallReason::Fetch, format!("cannot fetch: {err}"));
    };
    match code {
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed => (
            StallReason::Authorization,
            format!("not authorized to read the topic: {code}"),
        ),
        C::NotImplemented => (
            StallReason::Decompression,
            format!(
                "cannot decompress a record batch: {code} (librdkafka lacks its compression codec)"
            ),
        ),
        C::BadCompression => (
            StallReason::Decompression,
            format!("cannot decompress a record batch: {code}"),
        ),
        C::AutoOffsetReset | C::OffsetOutOfRange => (
            StallReason::Offset,
            format!("no valid offset to fetch from: {code}"),
        ),
        other => (StallReason::Fetch, format!("cannot fetch: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_stall_is_reported_once_and_cleared_by_progress_or_revocation() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_running(true);
        let status = Arc::new(StatusBoard::default());
        status.loaded("m", "d", SystemTime::now());
        let module = metrics.module("m");
        module.assigned(1);
        let health = || {
            FetchHealth::reporting(
                "m".into(),
                TopicPartition::new("in", 2),
                module.clone(),
                status.clone(),
            )
        };
        let stalls = || {
            metrics.sample(
                "weir_partition_stalls_total",
                &[("module", "m"), ("reason", "decompression")],
            )
        };
        let stalled = || status.snapshot()[0].stalled.get("in[2]").cloned();
        let denied = KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented);

        let mut h = health();
        for _ in 0..5 {
            h.failed(&denied, Some(7));
        }
        assert_eq!(stalls(), Some(1.0), "once per stall, not per repeat");
        let why = stalled().expect("shown in /status");
        assert!(why.contains("at offset 7"), "{why}");
        assert!(metrics.readiness().unwrap_err()[0].contains("in[2]"));
        h.failed(&KafkaError::PartitionEOF(2), None);
        assert_eq!(stalled(), None, "the end of the partition is progress");
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());

        h.failed(&denied, Some(7));
        assert_eq!(stalls(), Some(2.0), "a new stall counts again");
        h.progressed();
        assert_eq!(stalled(), None);

        h.failed(&denied, None);
        drop(h);
        assert_eq!(stalled(), None, "a revoked partition's stall goes");
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());
        let gauge = metrics.sample("weir_stalled_partitions", &[("module", "m")]);
        assert_eq!(gauge, Some(0.0));
    }

    #[test]
    fn errors_map_to_bounded_reasons() {
        let reason = |code| classify(&KafkaError::MessageConsumption(code)).0;
        assert_eq!(
            reason(RDKafkaErrorCode::TopicAuthorizationFailed),
            StallReason::Authorization
        );
        assert_eq!(
            reason(RDKafkaErrorCode::NotImplemented),
            StallReason::Decompression
        );
        assert_eq!(
            reason(RDKafkaErrorCode::AutoOffsetReset),
            StallReason::Offset
        );
        assert_eq!(
            reason(RDKafkaErrorCode::MessageSizeTooLarge),
            StallReason::Fetch
        );
        let (_, why) = classify(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ));
        assert!(why.contains("Topic authorization failed"), "{why}");
    }
}
