//! State writes as changelog records, and the seam that restores a store
//! from its changelog partition.
//!
//! A write is a record on the module's changelog topic, in the partition
//! of the input partition it belongs to: the key is the state key, the
//! value the state value (a tombstone for a delete, so compaction drops the
//! key), and a put with a time-to-live carries its expiry in the
//! `weir-expires-ms` header (decimal milliseconds since the epoch).

use super::Write;
use crate::bindings::weir::consumer::types::{Header, Outgoing};

/// Header of a changelog record that carries the entry's expiry.
pub const EXPIRES_HEADER: &str = "weir-expires-ms";

/// The default changelog topic of module `name`.
pub fn default_topic(name: &str) -> String {
    format!("weir-state-{name}")
}

/// The changelog record of `write` to `key`, for partition `partition` of
/// `topic`.
pub fn record(topic: &str, partition: i32, key: Vec<u8>, write: Write) -> Outgoing {
    let (value, headers) = match write {
        Write::Put { value, expires_ms } => {
            let headers = expires_ms
                .map(|at| Header {
                    key: EXPIRES_HEADER.into(),
                    value: at.to_string().into_bytes(),
                })
                .into_iter()
                .collect();
            (Some(value), headers)
        }
        Write::Delete => (None, Vec::new()),
    };
    Outgoing {
        topic: topic.to_owned(),
        key: Some(key),
        value,
        headers,
        partition: Some(partition),
    }
}

/// The write a changelog record stands for: `None` for a record without a
/// key (never written by weir).
pub fn write_of<'a>(
    key: Option<&'a [u8]>,
    value: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Option<(&'a [u8], Write)> {
    let key = key?;
    let write = match value {
        None => Write::Delete,
        Some(value) => {
            let expires_ms = headers
                .into_iter()
                .find(|(k, _)| *k == EXPIRES_HEADER)
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
            Write::Put {
                value: value.to_vec(),
                expires_ms,
            }
        }
    };
    Some((key, write))
}

/// The write carried by an emitted changelog record.
pub fn write_of_record(record: &Outgoing) -> Option<(&[u8], Write)> {
    write_of(
        record.key.as_deref(),
        record.value.as_deref(),
        record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_slice())),
    )
}

/// The writes among `records` that go to changelog `topic`, in order.
pub fn writes_in<'a>(
    topic: &str,
    records: impl IntoIterator<Item = &'a Outgoing>,
) -> Vec<(Vec<u8>, Write)> {
    records
        .into_iter()
        .filter(|r| r.topic == topic)
        .filter_map(|r| write_of_record(r).map(|(k, w)| (k.to_vec(), w)))
        .collect()
}

/// Why a restore did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The checkpoint is outside the changelog partition (the topic was
    /// recreated or truncated): the local copy must be rebuilt from the
    /// start.
    #[error("offset {offset} is out of range of the changelog partition")]
    OutOfRange {
        /// The offset asked for.
        offset: i64,
    },
    /// Anything else (broker unreachable, not authorised, ...); retried.
    #[error("{0}")]
    Failed(String),
}

/// What a restore does with each record: its key, value and headers.
pub type Apply<'a> =
    dyn FnMut(Option<&[u8]>, Option<&[u8]>, &[(&str, &[u8])]) -> anyhow::Result<()> + 'a;

/// Where a store's writes are read back from: the changelog partition.
pub trait Changelog: Send + Sync + 'static {
    /// Reads partition `partition` of `topic` from offset `from` (the
    /// beginning when `None`) up to its end as of now, committed records
    /// only, calling `apply` with each record's key, value and headers in
    /// order, and `progress` now and then with the records read so far.
    /// Returns the offset after the last record read. Blocking.
    fn restore(
        &self,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        apply: &mut Apply<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64, RestoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_through_records() {
        let put = Write::Put {
            value: b"v".to_vec(),
            expires_ms: Some(1_700_000_000_123),
        };
        let record = record("weir-state-m", 3, b"k".to_vec(), put.clone());
        assert_eq!(record.partition, Some(3));
        assert_eq!(record.headers[0].value, b"1700000000123");
        assert_eq!(write_of_record(&record), Some((&b"k"[..], put)));
        let delete = record_of_delete();
        assert_eq!(delete.value, None);
        assert_eq!(write_of_record(&delete), Some((&b"k"[..], Write::Delete)));
    }

    fn record_of_delete() -> Outgoing {
        record("t", 0, b"k".to_vec(), Write::Delete)
    }
}
