//! The small enums behind bounded label values: how a call settled an event
//! ([`Outcome`]), why the host denied an emit ([`DenyReason`]) and why the
//! consumer cannot fetch a partition ([`StallReason`]).

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
    pub(super) const ALL: [Outcome; 5] = [
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
    pub(super) const fn index(self) -> usize {
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
    pub fn count(&self, outcome: Outcome) -> u64 {
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
    /// The record would take the event's (or batch's) output past
    /// `limits.max-emit-bytes`.
    EmitBytes,
}

impl DenyReason {
    /// Every reason, in declaration order.
    pub const ALL: [DenyReason; 5] = [
        DenyReason::TopicNotAllowed,
        DenyReason::InvalidPartition,
        DenyReason::TooLarge,
        DenyReason::TooMany,
        DenyReason::EmitBytes,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::TopicNotAllowed => "topic_not_allowed",
            DenyReason::InvalidPartition => "invalid_partition",
            DenyReason::TooLarge => "too_large",
            DenyReason::TooMany => "too_many",
            DenyReason::EmitBytes => "emit_bytes",
        }
    }

    /// The position of this reason in [`DenyReason::ALL`], and so in every
    /// array kept per reason.
    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Why the consumer cannot fetch a partition, the `reason` label of
/// `weir_partition_stalls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StallReason {
    /// The broker refuses to let weir's principal read the topic.
    Authorization,
    /// A record batch cannot be decompressed (a codec librdkafka lacks, or
    /// a corrupt batch).
    Decompression,
    /// The partition has no valid position to start from (`offset-reset`
    /// says to fail, or the offset is out of range).
    Offset,
    /// Any other error the consumer reported for the partition.
    Fetch,
}

impl StallReason {
    /// Every reason, in declaration order.
    pub const ALL: [StallReason; 4] = [
        StallReason::Authorization,
        StallReason::Decompression,
        StallReason::Offset,
        StallReason::Fetch,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::Authorization => "authorization",
            StallReason::Decompression => "decompression",
            StallReason::Offset => "offset",
            StallReason::Fetch => "fetch",
        }
    }

    /// The position of this reason in [`StallReason::ALL`], and so in every
    /// array kept per reason.
    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_reason_labels_are_the_documented_values() {
        let labels = DenyReason::ALL.map(DenyReason::as_str);
        assert_eq!(
            labels,
            [
                "topic_not_allowed",
                "invalid_partition",
                "too_large",
                "too_many",
                "emit_bytes"
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
        for (i, reason) in StallReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
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
}
