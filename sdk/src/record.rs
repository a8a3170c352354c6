//! Records a consumer emits, and why the host may refuse one.

use std::fmt;

use crate::bindings::consumer::weir::consumer::types as wit;
use crate::error::Error;
use crate::event::{Bytes, HeadersDebug, header, headers, utf8};

/// A record for the host to produce, as passed to
/// [`Context::emit`](crate::Context::emit) and as seen in test outcomes.
///
/// Build one with [`Record::to`] or [`Event::forward_to`](crate::Event::forward_to).
#[derive(Clone, PartialEq, Eq)]
pub struct Record(pub(crate) wit::Outgoing);

impl Record {
    /// Starts a record for `topic`, with no key, no headers, no explicit
    /// partition and **no value** (a tombstone) until one is set.
    ///
    /// The topic must be in the module manifest's `output-topics`.
    pub fn to(topic: impl Into<String>) -> RecordBuilder {
        RecordBuilder::from_parts(topic.into(), None, None, Vec::new())
    }

    /// Destination topic.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// Record key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    /// The key as UTF-8 text; a key that is not UTF-8 is a reject.
    pub fn key_str(&self) -> Result<Option<&str>, Error> {
        utf8(self.key(), "key")
    }

    /// Record value; `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.0.value.as_deref()
    }

    /// The value as UTF-8 text; a value that is not UTF-8 is a reject.
    pub fn value_str(&self) -> Result<Option<&str>, Error> {
        utf8(self.value(), "value")
    }

    /// The value parsed as JSON; a tombstone or bad JSON is a reject.
    #[cfg(feature = "json")]
    pub fn value_json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, Error> {
        let value = self
            .value()
            .ok_or_else(|| Error::reject("value is a tombstone, expected JSON"))?;
        serde_json::from_slice(value)
            .map_err(|e| Error::reject(format!("value is not the expected JSON: {e}")))
    }

    /// `true` when the record has no value.
    pub fn is_tombstone(&self) -> bool {
        self.0.value.is_none()
    }

    /// Every header as `(name, value)`, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        headers(&self.0.headers)
    }

    /// The value of the last header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.0.headers, name)
    }

    /// Explicit partition, if one was set.
    pub fn partition(&self) -> Option<i32> {
        self.0.partition
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.0.topic)
            .field("key", &self.0.key.as_deref().map(Bytes))
            .field("value", &self.0.value.as_deref().map(Bytes))
            .field("headers", &HeadersDebug(&self.0.headers))
            .field("partition", &self.0.partition)
            .finish()
    }
}

/// Builds a [`Record`]; every method consumes and returns the builder.
///
/// ```
/// use weir_sdk::{Error, Record};
///
/// # fn main() -> Result<(), Error> {
/// let record: Record = Record::to("orders-enriched")
///     .key("order-1")
///     .json(&serde_json::json!({"total": 5.0}))?
///     .header("weir-enriched-by", "json-enrich")
///     .partition(2)
///     .into();
/// assert_eq!(record.value_str()?, Some(r#"{"total":5.0}"#));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a record does nothing until it is passed to `Context::emit`"]
pub struct RecordBuilder {
    record: Record,
}

impl RecordBuilder {
    pub(crate) fn from_parts(
        topic: String,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<wit::Header>,
    ) -> Self {
        Self {
            record: Record(wit::Outgoing {
                topic,
                key,
                value,
                headers,
                partition: None,
            }),
        }
    }

    /// Sets the destination topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.record.0.topic = topic.into();
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.record.0.key = Some(key.into());
        self
    }

    /// Removes the key.
    pub fn no_key(mut self) -> Self {
        self.record.0.key = None;
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.record.0.value = Some(value.into());
        self
    }

    /// Sets the value to `value` serialised as JSON; a value that cannot be
    /// serialised is a reject.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::reject(format!("cannot serialise the record value: {e}")))?;
        Ok(self.value(bytes))
    }

    /// Removes the value, making the record a tombstone.
    pub fn tombstone(mut self) -> Self {
        self.record.0.value = None;
        self
    }

    /// Appends a header (Kafka allows the same name more than once).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.record.0.headers.push(wit::Header {
            key: name.into(),
            value: value.into(),
        });
        self
    }

    /// Removes every header called `name`.
    pub fn remove_header(mut self, name: &str) -> Self {
        self.record.0.headers.retain(|h| h.key != name);
        self
    }

    /// Removes every header.
    pub fn no_headers(mut self) -> Self {
        self.record.0.headers.clear();
        self
    }

    /// Sends the record to `partition` instead of letting the producer's
    /// partitioner choose (by key hash when there is a key).
    pub fn partition(mut self, partition: i32) -> Self {
        self.record.0.partition = Some(partition);
        self
    }

    /// The finished record.
    pub fn build(self) -> Record {
        self.record
    }
}

impl From<RecordBuilder> for Record {
    fn from(builder: RecordBuilder) -> Self {
        builder.record
    }
}

/// Why the host refused an emitted record, mirroring the WIT `emit-error`.
///
/// It implements [`std::error::Error`], so `ctx.emit(record)?` rejects the
/// event with the message below; match on it to decide otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EmitError {
    /// The topic is not in the module's `output-topics`.
    TopicNotAllowed(String),
    /// Key, value and headers together exceed this many bytes.
    TooLarge(u32),
    /// The event (or batch) already emitted this many records, as many as
    /// its limits allow: by count (`limits.max-emits`) or by bytes
    /// (`limits.max-emit-bytes`).
    TooMany(u32),
    /// The partition number is negative.
    InvalidPartition(i32),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TopicNotAllowed(topic) => {
                write!(f, "topic `{topic}` is not in the module's output-topics")
            }
            Self::TooLarge(limit) => write!(f, "record is larger than the limit of {limit} bytes"),
            Self::TooMany(max) => write!(
                f,
                "emit limit reached after {max} records for one call \
                 (limits.max-emits or limits.max-emit-bytes)"
            ),
            Self::InvalidPartition(p) => write!(f, "partition {p} is negative"),
        }
    }
}

impl std::error::Error for EmitError {}

impl From<wit::EmitError> for EmitError {
    fn from(error: wit::EmitError) -> Self {
        match error {
            wit::EmitError::TopicNotAllowed(topic) => Self::TopicNotAllowed(topic),
            wit::EmitError::TooLarge(limit) => Self::TooLarge(limit),
            wit::EmitError::TooMany(max) => Self::TooMany(max),
            wit::EmitError::InvalidPartition(p) => Self::InvalidPartition(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    #[test]
    fn forward_keeps_key_value_and_headers() {
        let event = Event::builder()
            .key("k")
            .value("v")
            .header("a", "1")
            .header("b", "2")
            .build();
        let record = event
            .forward_to("out")
            .remove_header("a")
            .header("c", "3")
            .build();
        assert_eq!(record.topic(), "out");
        assert_eq!(record.key_str(), Ok(Some("k")));
        assert_eq!(record.value_str(), Ok(Some("v")));
        let names: Vec<_> = record.headers().map(|(name, _)| name).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(record.partition(), None);
    }

    #[test]
    fn builder_sets_and_clears_fields() {
        let record = Record::to("a")
            .topic("b")
            .key("k")
            .no_key()
            .value("v")
            .tombstone()
            .header("h", "x")
            .no_headers()
            .partition(4)
            .build();
        assert_eq!(record.topic(), "b");
        assert_eq!(record.key(), None);
        assert!(record.is_tombstone());
        assert_eq!(record.headers().len(), 0);
        assert_eq!(record.partition(), Some(4));
    }

    #[test]
    fn emit_errors_read_well_and_reject_through_question_mark() {
        let error = EmitError::from(wit::EmitError::TopicNotAllowed("x".into()));
        assert_eq!(
            error.to_string(),
            "topic `x` is not in the module's output-topics"
        );
        let converted: Error = EmitError::TooMany(3).into();
        assert!(converted.is_reject());
        assert_eq!(
            converted.message(),
            "emit limit reached after 3 records for one call \
             (limits.max-emits or limits.max-emit-bytes)"
        );
        assert_eq!(
            EmitError::TooLarge(10).to_string(),
            "record is larger than the limit of 10 bytes"
        );
        assert_eq!(
            EmitError::InvalidPartition(-1).to_string(),
            "partition -1 is negative"
        );
    }
}
