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

use std::cell::RefCell;
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::group::KafkaPorts;
use crate::metrics::{ModuleMetrics, StallReason};
use crate::pipeline::{Module, TopicPartition};
use crate::status::StatusBoard;

thread_local! {
    /// Set while this thread polls a partition's queue ([`polling`]): the
    /// text of the last error event the poll met, once the consumer
    /// context's `error` callback hands it over ([`partition_error`]).
    static POLLING: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Runs `poll`, a poll of a partition's own queue, and returns what it
/// returned with librdkafka's text of the error event it met, if any.
///
/// rust-rdkafka hands every error event to the client context's `error`
/// callback (with librdkafka's text, e.g. "Decompression (codec 0x4) of
/// message at 12 of 345 bytes failed: Local: Not implemented") before
/// `poll` returns it as a bare error code. The callback runs inside
/// `poll`, on this thread: for a partition's errors it leaves the text
/// here instead of logging it, so that the partition reports it once per
/// change rather than at every fetch.
pub(super) fn polling<T>(poll: impl FnOnce() -> T) -> (T, Option<String>) {
    POLLING.with(|p| *p.borrow_mut() = Some(None));
    let polled = poll();
    let text = POLLING.with(|p| p.borrow_mut().take().flatten());
    (polled, text)
}

/// The consumer context's `error` callback met an error event: when this
/// thread is polling a partition's queue ([`polling`]), keeps its `text`
/// for the partition and returns true (the partition reports it);
/// otherwise returns false.
pub(super) fn partition_error(text: &str) -> bool {
    POLLING.with(|p| match &mut *p.borrow_mut() {
        Some(slot) => {
            *slot = Some(text.to_owned());
            true
        }
        None => false,
    })
}

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

    /// The consumer reported `err` for the partition instead of records,
    /// with librdkafka's `text` when known; `position` is where the
    /// partition stands, when known. The end of the partition counts as
    /// progress; any other error stalls it. A repeat of the current stall
    /// changes nothing.
    pub fn failed(&mut self, err: &KafkaError, text: Option<&str>, position: Option<i64>) {
        if matches!(err, KafkaError::PartitionEOF(_)) {
            self.progressed();
            return;
        }
        let (reason, mut why) = classify(err, text);
        if let Some(offset) = position {
            why = format!("{why} (position {offset})");
        }
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

/// The reason label of a per-partition consumer error and what it means
/// for the partition, followed by librdkafka's `text` of it when known
/// (it names the broker, codec and offset), else by the error itself.
fn classify(err: &KafkaError, text: Option<&str>) -> (StallReason, String) {
    use RDKafkaErrorCode as C;
    let (reason, meaning) = match err.rdkafka_error_code() {
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed,
        ) => (
            StallReason::Authorization,
            "not authorized to read the topic",
        ),
        Some(C::NotImplemented) => (
            StallReason::Decompression,
            "cannot decompress a record batch (librdkafka lacks its compression codec)",
        ),
        Some(C::BadCompression) => (
            StallReason::Decompression,
            "cannot decompress a record batch",
        ),
        Some(C::AutoOffsetReset | C::OffsetOutOfRange) => {
            (StallReason::Offset, "no valid offset to fetch from")
        }
        _ => (StallReason::Fetch, "cannot fetch"),
    };
    let detail = match (text.filter(|t| !t.is_empty()), err.rdkafka_error_code()) {
        (Some(text), _) => text.to_owned(),
        (None, Some(code)) => code.to_string(),
        (None, None) => err.to_string(),
    };
    (reason, format!("{meaning}: {detail}"))
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
            h.failed(&denied, Some("Decompression (codec 0x4) failed"), Some(7));
        }
        assert_eq!(stalls(), Some(1.0), "once per stall, not per repeat");
        let why = stalled().expect("shown in /status");
        assert!(
            why.contains("Decompression (codec 0x4) failed") && why.contains("position 7"),
            "{why}"
        );
        assert!(metrics.readiness().unwrap_err()[0].contains("in[2]"));
        h.failed(&KafkaError::PartitionEOF(2), None, None);
        assert_eq!(stalled(), None, "the end of the partition is progress");
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());

        h.failed(&denied, None, Some(7));
        assert_eq!(stalls(), Some(2.0), "a new stall counts again");
        h.progressed();
        assert_eq!(stalled(), None);

        h.failed(&denied, None, None);
        drop(h);
        assert_eq!(stalled(), None, "a revoked partition's stall goes");
        assert!(metrics.readiness().is_ok(), "{:?}", metrics.readiness());
        let gauge = metrics.sample("weir_stalled_partitions", &[("module", "m")]);
        assert_eq!(gauge, Some(0.0));
    }

    #[test]
    fn errors_map_to_bounded_reasons() {
        let reason = |code| classify(&KafkaError::MessageConsumption(code), None).0;
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
        let denied = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        let (_, why) = classify(&denied, None);
        assert!(why.contains("Topic authorization failed"), "{why}");
        let (_, why) = classify(&denied, Some("Fetch from broker 1 failed: denied"));
        assert_eq!(
            why,
            "not authorized to read the topic: Fetch from broker 1 failed: denied"
        );
    }

    #[test]
    fn error_texts_are_kept_only_while_a_partition_is_polled() {
        assert!(!partition_error("not polling"));
        let (value, text) = polling(|| {
            assert!(partition_error("first"));
            assert!(partition_error("Fetch from broker 1 failed"));
            7
        });
        assert_eq!(
            (value, text.as_deref()),
            (7, Some("Fetch from broker 1 failed"))
        );
        assert_eq!(polling(|| ()).1, None);
        assert!(!partition_error("after"));
    }
}
