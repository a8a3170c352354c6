//! Durable keyed state: one store per module and input partition.
//!
//! Keys and values are bytes. The store a handler sees belongs to the
//! partition of the event (or batch) it is handling, so keys must be
//! *co-partitioned* with the input: aggregate by the record key, or re-key
//! through an intermediate topic first. The host produces every write to
//! the module's compacted changelog topic and restores a partition's store
//! from it when the partition moves to another process.
//!
//! The host keeps stores only for modules whose manifest has a `[state]`
//! table (it names the changelog topic, `weir-state-<module>` by default);
//! without one, a state call traps and the event is retried.
//!
//! Writes follow the event's verdict like emitted records do: a handler
//! sees its own writes at once, and so do later events of the partition
//! once it returns `Ok`; when it returns a retry or reject (or traps) its
//! writes are discarded. In a batch, writes are discarded only when the
//! batch is retried or traps.
//!
//! The host refuses a write with a [`StateError`] when it breaks one of
//! the module's limits (`limits.max-state-key-bytes`,
//! `limits.max-state-value-bytes`, `limits.state-mib`, and at most
//! `limits.max-emits` distinct keys written per call). `?` turns that into
//! a reject of the event.
//!
//! ```
//! use weir_sdk::prelude::*;
//!
//! /// Counts events per key.
//! struct Count;
//!
//! impl Consumer for Count {
//!     fn on_event(_ctx: &mut Context, event: &Event) -> Result<(), Error> {
//!         let key = event.key().or_reject("event has no key")?;
//!         let seen: u64 = state::get_json(key)?.unwrap_or(0);
//!         state::set_json(key, &(seen + 1))?;
//!         Ok(())
//!     }
//! }
//!
//! let harness = Harness::new();
//! harness.run::<Count>(Event::builder().key("a"));
//! harness.run::<Count>(Event::builder().key("a"));
//! assert_eq!(harness.state_get("a").as_deref(), Some(&b"2"[..]));
//! ```
//!
//! Off `wasm32` these calls go to the running [`Harness`], or, outside
//! one, to an empty stand-in that reads nothing and drops writes.
//!
//! [`Harness`]: crate::testing::Harness

use std::fmt;
use std::time::Duration;

use crate::bindings::consumer::weir::consumer::state as wit;
#[cfg(feature = "json")]
use crate::error::Error;
use crate::host;

/// The most entries one [`scan`] page holds (the host caps `limit` at it),
/// and what [`scan_prefix`] asks for.
pub const SCAN_PAGE: u32 = 1000;

/// The most bytes of keys plus values one [`scan`] page holds (4 MiB),
/// unless its first entry alone is larger.
pub const SCAN_PAGE_BYTES: usize = 4 << 20;

/// The value stored under `key`, or `None` when there is none (never set,
/// deleted, or expired).
pub fn get(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    host::state_get(key.as_ref())
}

/// Stores `value` under `key`, replacing any previous value and any
/// time-to-live it had.
pub fn set(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StateError> {
    host::state_set(key.as_ref(), value.as_ref(), None)
}

/// Stores `value` under `key` for `ttl` from now (the host's wall clock);
/// after that the key reads as absent and the host deletes it.
///
/// The host counts whole milliseconds: `ttl` is rounded up to the next
/// millisecond, and a zero `ttl` counts as one millisecond (the key is
/// readable for the rest of the call, and gone by the next millisecond).
pub fn set_with_ttl(
    key: impl AsRef<[u8]>,
    value: impl AsRef<[u8]>,
    ttl: Duration,
) -> Result<(), StateError> {
    host::state_set(key.as_ref(), value.as_ref(), Some(ttl_ms(ttl)))
}

/// Removes `key`; removing a key that is absent is not an error (but it
/// still counts as a key written by the call).
pub fn delete(key: impl AsRef<[u8]>) -> Result<(), StateError> {
    host::state_delete(key.as_ref())
}

/// One page of entries whose key starts with `prefix`, in ascending key
/// order, starting after the key `after` when given.
///
/// The host returns at most `limit` entries, capped at [`SCAN_PAGE`]
/// entries and [`SCAN_PAGE_BYTES`] of keys and values, so a page may be shorter than
/// `limit` and yet not be the last: only an empty page means there are no
/// more. Pass the last key of one page as `after` to get the next, or use
/// [`scan_prefix`], which does that.
pub fn scan(prefix: impl AsRef<[u8]>, after: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    host::state_scan(prefix.as_ref(), after, limit)
}

/// Every entry whose key starts with `prefix`, in ascending key order,
/// fetched lazily one [`scan`] page at a time.
///
/// Each page is read when the previous one is used up, after the last key
/// returned, so writes made while iterating are seen when they sort after
/// that key. An empty `prefix` walks the whole store.
pub fn scan_prefix(prefix: impl AsRef<[u8]>) -> ScanPrefix {
    ScanPrefix {
        prefix: prefix.as_ref().to_vec(),
        after: None,
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// The iterator [`scan_prefix`] returns.
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct ScanPrefix {
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Iterator for ScanPrefix {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.page.next() {
            return Some(entry);
        }
        if self.done {
            return None;
        }
        let page = scan(&self.prefix, self.after.as_deref(), SCAN_PAGE);
        match page.last() {
            Some((last, _)) => self.after = Some(last.clone()),
            None => {
                self.done = true;
                return None;
            }
        }
        self.page = page.into_iter();
        self.page.next()
    }
}

/// The value under `key` parsed as JSON into `T`; `Ok(None)` when there is
/// none. A value that does not parse is a reject naming the key.
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
    let key = key.as_ref();
    get(key)
        .map(|value| {
            serde_json::from_slice(&value).map_err(|e| {
                Error::reject(format!(
                    "state value of key `{}` is not the expected JSON: {e}",
                    String::from_utf8_lossy(key)
                ))
            })
        })
        .transpose()
}

/// Stores `value` serialised as JSON under `key`. A value that cannot be
/// serialised, or a [`StateError`], is a reject.
#[cfg(feature = "json")]
pub fn set_json<T: serde::Serialize + ?Sized>(
    key: impl AsRef<[u8]>,
    value: &T,
) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::reject(format!("cannot serialise the state value: {e}")))?;
    set(key, bytes)?;
    Ok(())
}

/// `ttl` in whole milliseconds, rounded up, saturating at `u64::MAX`.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Why the host refused a state write, mirroring the WIT `state-error`.
///
/// It implements [`std::error::Error`], so `state::set(k, v)?` rejects the
/// event with the message below; match on it to decide otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateError {
    /// The key is longer than `limits.max-state-key-bytes`, this many bytes.
    KeyTooLarge(u32),
    /// The value is longer than `limits.max-state-value-bytes`, this many
    /// bytes.
    ValueTooLarge(u32),
    /// The write would take the partition's store (keys plus values of live
    /// entries) over `limits.state-mib`, this many MiB.
    QuotaExceeded(u32),
    /// The call already wrote this many distinct keys, the maximum
    /// (`limits.max-emits`).
    TooMany(u32),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyTooLarge(limit) => write!(
                f,
                "state key is longer than `limits.max-state-key-bytes` ({limit} bytes)"
            ),
            Self::ValueTooLarge(limit) => write!(
                f,
                "state value is longer than `limits.max-state-value-bytes` ({limit} bytes)"
            ),
            Self::QuotaExceeded(mib) => write!(
                f,
                "state store is full: `limits.state-mib` ({mib} MiB) would be exceeded"
            ),
            Self::TooMany(max) => write!(
                f,
                "more than {max} state keys written in one call (`limits.max-emits`)"
            ),
        }
    }
}

impl std::error::Error for StateError {}

impl From<wit::StateError> for StateError {
    fn from(error: wit::StateError) -> Self {
        match error {
            wit::StateError::KeyTooLarge(limit) => Self::KeyTooLarge(limit),
            wit::StateError::ValueTooLarge(limit) => Self::ValueTooLarge(limit),
            wit::StateError::QuotaExceeded(mib) => Self::QuotaExceeded(mib),
            wit::StateError::TooMany(max) => Self::TooMany(max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn errors_name_the_limit_and_reject_through_question_mark() {
        assert_eq!(
            StateError::from(wit::StateError::KeyTooLarge(4096)).to_string(),
            "state key is longer than `limits.max-state-key-bytes` (4096 bytes)"
        );
        assert_eq!(
            StateError::ValueTooLarge(10).to_string(),
            "state value is longer than `limits.max-state-value-bytes` (10 bytes)"
        );
        assert_eq!(
            StateError::QuotaExceeded(256).to_string(),
            "state store is full: `limits.state-mib` (256 MiB) would be exceeded"
        );
        let converted: Error = StateError::TooMany(1000).into();
        assert!(converted.is_reject());
        assert_eq!(
            converted.message(),
            "more than 1000 state keys written in one call (`limits.max-emits`)"
        );
    }

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_ms(Duration::ZERO), 0);
        assert_eq!(ttl_ms(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn outside_a_harness_state_is_an_empty_stand_in() {
        assert_eq!(set("k", "v"), Ok(()));
        assert_eq!(get("k"), None);
        assert_eq!(delete("k"), Ok(()));
        assert!(scan("", None, 10).is_empty());
        assert_eq!(scan_prefix("").count(), 0);
    }
}
