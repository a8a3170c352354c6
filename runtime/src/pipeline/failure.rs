//! Events that fail for good, and the dead-letter records that keep them.
//!
//! A dead-letter record carries the original key, value and headers, plus
//! these headers (all values UTF-8 text):
//!
//! | header | value |
//! |---|---|
//! | `weir.error.kind` | `rejected`, `retries-exhausted`, `trap`, `timeout`, `refused`, `oversized` |
//! | `weir.error.message` | the reason (the handler's, the trap's, the broker's) |
//! | `weir.source.topic`, `weir.source.partition`, `weir.source.offset` | where the event came from |
//! | `weir.source.timestamp` | its timestamp in ms, when it had one |
//! | `weir.module`, `weir.module.digest` | the module and the SHA-256 of its component |
//! | `weir.attempts` | how many times the handler was called for it |

use crate::bindings::weir::consumer::types::{Event, Header, Outgoing};

/// Why an event failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler returned `reject`.
    Rejected,
    /// The handler kept returning `retry` until `retry.max-attempts`.
    RetriesExhausted,
    /// The guest trapped (panic, memory limit, ...) on the last attempt.
    Trap,
    /// The guest ran past `limits.timeout` on the last attempt.
    Timeout,
    /// The broker refused a record the event emitted, for good.
    Refused,
    /// The event is larger than `limits.max-event-bytes`.
    Oversized,
}

impl FailureKind {
    /// The `weir.error.kind` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::RetriesExhausted => "retries-exhausted",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Oversized => "oversized",
        }
    }
}

/// One event that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Offset of the event.
    pub offset: i64,
    /// Why.
    pub kind: FailureKind,
    /// The reason, as text.
    pub reason: String,
    /// Handler calls made for the event.
    pub attempts: u32,
}

/// Bytes an event occupies: key, value, header names and values.
pub fn event_size(event: &Event) -> usize {
    payload_size(event.key.as_deref(), event.value.as_deref(), &event.headers)
}

/// Bytes a record occupies, counted as for events (what
/// `limits.max-record-bytes` bounds).
pub fn record_size(record: &Outgoing) -> usize {
    payload_size(
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
}

fn payload_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
}

/// The dead-letter record for `event`.
pub fn dead_letter_record(
    event: &Event,
    failure: &Failure,
    module: &str,
    digest: &str,
    topic: &str,
) -> Outgoing {
    let mut headers = event.headers.clone();
    let mut add = |key: &str, value: String| {
        headers.push(Header {
            key: key.to_owned(),
            value: value.into_bytes(),
        });
    };
    add("weir.error.kind", failure.kind.as_str().to_owned());
    add("weir.error.message", failure.reason.clone());
    add("weir.source.topic", event.topic.clone());
    add("weir.source.partition", event.partition.to_string());
    add("weir.source.offset", event.offset.to_string());
    if let Some(ts) = event.timestamp_ms {
        add("weir.source.timestamp", ts.to_string());
    }
    add("weir.module", module.to_owned());
    add("weir.module.digest", digest.to_owned());
    add("weir.attempts", failure.attempts.to_string());
    Outgoing {
        topic: topic.to_owned(),
        key: event.key.clone(),
        value: event.value.clone(),
        headers,
        partition: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_keeps_the_event_and_adds_provenance() {
        let event = Event {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"k".to_vec()),
            value: None,
            headers: vec![Header {
                key: "trace".into(),
                value: vec![0xff, 0x00],
            }],
        };
        let failure = Failure {
            offset: 41,
            kind: FailureKind::RetriesExhausted,
            reason: "db down".into(),
            attempts: 5,
        };
        let r = dead_letter_record(&event, &failure, "enrich", "abc", "dlq");
        assert_eq!(r.topic, "dlq");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value, None, "a tombstone stays a tombstone");
        let h: Vec<(&str, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.key.as_str(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect();
        assert_eq!(h[0], ("trace", "\u{fffd}\0".to_owned()));
        for (k, v) in [
            ("weir.error.kind", "retries-exhausted"),
            ("weir.error.message", "db down"),
            ("weir.source.topic", "orders"),
            ("weir.source.partition", "2"),
            ("weir.source.offset", "41"),
            ("weir.source.timestamp", "1700000000000"),
            ("weir.module", "enrich"),
            ("weir.module.digest", "abc"),
            ("weir.attempts", "5"),
        ] {
            assert!(h.contains(&(k, v.to_owned())), "{k}: {h:?}");
        }
        assert_eq!(event_size(&event), 1 + 5 + 2);
        let same = Outgoing {
            topic: "elsewhere".into(),
            key: event.key.clone(),
            value: event.value.clone(),
            headers: event.headers.clone(),
            partition: Some(3),
        };
        assert_eq!(
            record_size(&same),
            event_size(&event),
            "topic and partition do not count"
        );
    }
}
