//! The event a handler receives, and a builder for making one in tests.

use std::fmt;

use crate::bindings::consumer::weir::consumer::types as wit;
use crate::error::Error;
use crate::record::RecordBuilder;

/// One event read from a Kafka topic.
///
/// Accessors borrow from the event, nothing is copied. `topic`, `partition`
/// and `offset` identify the event uniquely, which makes them a natural
/// idempotency key under weir's at-least-once delivery.
#[derive(Clone, PartialEq, Eq)]
#[repr(transparent)]
pub struct Event(pub(crate) wit::Event);

impl Event {
    /// A builder for events in unit tests; see [`EventBuilder`].
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// Topic the event was read from.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// Partition the event was read from.
    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    /// Offset of the event in its partition.
    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// Record timestamp in milliseconds since the Unix epoch, if one was set.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp_ms
    }

    /// The record key; `None` for a record without a key.
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    /// The key as UTF-8 text; a key that is not UTF-8 is a reject.
    pub fn key_str(&self) -> Result<Option<&str>, Error> {
        utf8(self.key(), "key")
    }

    /// The record value; `None` for a tombstone, which is not the same as an
    /// empty value.
    pub fn value(&self) -> Option<&[u8]> {
        self.0.value.as_deref()
    }

    /// The value as UTF-8 text; a value that is not UTF-8 is a reject.
    pub fn value_str(&self) -> Result<Option<&str>, Error> {
        utf8(self.value(), "value")
    }

    /// The value parsed as JSON into `T` (which may borrow from the event).
    ///
    /// A tombstone or a value that does not parse is a reject whose message
    /// says why, so `event.value_json()?` is usually all a handler needs.
    #[cfg(feature = "json")]
    pub fn value_json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, Error> {
        let value = self
            .value()
            .ok_or_else(|| Error::reject("value is a tombstone, expected JSON"))?;
        serde_json::from_slice(value)
            .map_err(|e| Error::reject(format!("value is not the expected JSON: {e}")))
    }

    /// `true` when the event is a tombstone (it has no value).
    pub fn is_tombstone(&self) -> bool {
        self.0.value.is_none()
    }

    /// Every header as `(name, value)`, in the order the producer wrote them.
    /// Kafka allows the same name more than once.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        headers(&self.0.headers)
    }

    /// The value of the **last** header called `name` (later headers win,
    /// as with Kafka's `lastHeader`); `None` if there is none.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.0.headers, name)
    }

    /// [`Event::header`] as UTF-8 text; a value that is not UTF-8 is a reject.
    pub fn header_str(&self, name: &str) -> Result<Option<&str>, Error> {
        utf8(self.header(name), "header value")
    }

    /// A record for `topic` with this event's key, value and headers: the
    /// starting point for forwarding, filtering and routing.
    pub fn forward_to(&self, topic: impl Into<String>) -> RecordBuilder {
        RecordBuilder::from_parts(
            topic.into(),
            self.0.key.clone(),
            self.0.value.clone(),
            self.0.headers.clone(),
        )
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("topic", &self.0.topic)
            .field("partition", &self.0.partition)
            .field("offset", &self.0.offset)
            .field("timestamp_ms", &self.0.timestamp_ms)
            .field("key", &self.0.key.as_deref().map(Bytes))
            .field("value", &self.0.value.as_deref().map(Bytes))
            .field("headers", &HeadersDebug(&self.0.headers))
            .finish()
    }
}

/// Builds an [`Event`] for unit tests.
///
/// Defaults: topic `"test"`, partition 0, offset 0, no timestamp, no key,
/// no headers and **no value** (a tombstone) until [`EventBuilder::value`]
/// or [`EventBuilder::json`] sets one.
///
/// ```
/// use weir_sdk::Event;
///
/// let event = Event::builder()
///     .topic("orders")
///     .offset(42)
///     .key("order-1")
///     .value(r#"{"price": 2.5}"#)
///     .header("source", "web")
///     .build();
/// assert_eq!(event.key_str().unwrap(), Some("order-1"));
/// assert_eq!(event.header("source"), Some(&b"web"[..]));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder {
    event: wit::Event,
}

impl Default for EventBuilder {
    fn default() -> Self {
        Self {
            event: wit::Event {
                topic: "test".to_owned(),
                partition: 0,
                offset: 0,
                timestamp_ms: None,
                key: None,
                value: None,
                headers: Vec::new(),
            },
        }
    }
}

impl EventBuilder {
    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.event.topic = topic.into();
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.event.partition = partition;
        self
    }

    /// Sets the offset.
    pub fn offset(mut self, offset: i64) -> Self {
        self.event.offset = offset;
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.event.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.event.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.event.value = Some(value.into());
        self
    }

    /// Sets the value to `value` serialised as JSON.
    ///
    /// # Panics
    ///
    /// If `value` cannot be serialised (a map with non-string keys, say);
    /// this is a test helper.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.value(bytes),
            Err(e) => panic!("EventBuilder::json: value does not serialise: {e}"),
        }
    }

    /// Removes the value, making the event a tombstone.
    pub fn tombstone(mut self) -> Self {
        self.event.value = None;
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.event.headers.push(wit::Header {
            key: name.into(),
            value: value.into(),
        });
        self
    }

    /// The finished event.
    pub fn build(self) -> Event {
        Event(self.event)
    }
}

impl From<EventBuilder> for Event {
    fn from(builder: EventBuilder) -> Self {
        builder.build()
    }
}

pub(crate) fn utf8<'a>(bytes: Option<&'a [u8]>, what: &str) -> Result<Option<&'a str>, Error> {
    bytes
        .map(|b| {
            std::str::from_utf8(b).map_err(|e| Error::reject(format!("{what} is not UTF-8: {e}")))
        })
        .transpose()
}

pub(crate) fn headers(
    headers: &[wit::Header],
) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
    headers.iter().map(|h| (h.key.as_str(), h.value.as_slice()))
}

pub(crate) fn header<'a>(headers: &'a [wit::Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|h| h.key == name)
        .map(|h| h.value.as_slice())
}

/// Shows bytes as text when they are UTF-8, which keeps test failures legible.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(text) => write!(f, "b{text:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

pub(crate) struct HeadersDebug<'a>(pub(crate) &'a [wit::Header]);

impl fmt::Debug for HeadersDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| (&h.key, Bytes(&h.value))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_defaults_to_a_tombstone_on_topic_test() {
        let event = Event::builder().build();
        assert_eq!(event.topic(), "test");
        assert_eq!((event.partition(), event.offset()), (0, 0));
        assert!(event.is_tombstone());
        assert_eq!(event.key(), None);
        assert_eq!(event.timestamp_ms(), None);
        assert_eq!(event.value_str(), Ok(None));
    }

    #[test]
    fn accessors_return_what_the_builder_set() {
        let event = Event::builder()
            .topic("orders")
            .partition(3)
            .offset(7)
            .timestamp_ms(1_700_000_000_000)
            .key("k")
            .value(vec![0xff])
            .header("h", "first")
            .header("h", "second")
            .header("other", "x")
            .build();
        assert_eq!(event.partition(), 3);
        assert_eq!(event.timestamp_ms(), Some(1_700_000_000_000));
        assert_eq!(event.key_str(), Ok(Some("k")));
        assert_eq!(event.header_str("h"), Ok(Some("second")));
        assert_eq!(event.header("missing"), None);
        assert_eq!(event.headers().len(), 3);
        let error = event.value_str().unwrap_err();
        assert!(error.is_reject());
        assert!(error.message().starts_with("value is not UTF-8"), "{error}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn value_json_parses_and_rejects_with_a_reason() {
        #[derive(Debug, serde::Deserialize)]
        struct Order<'a> {
            id: &'a str,
        }
        let event = Event::builder()
            .json(&serde_json::json!({"id": "o-1"}))
            .build();
        assert_eq!(event.value_json::<Order<'_>>().unwrap().id, "o-1");

        let bad = Event::builder().value("{").build();
        let error = bad.value_json::<Order<'_>>().unwrap_err();
        assert!(
            error
                .message()
                .starts_with("value is not the expected JSON"),
            "{error}"
        );
        let error = Event::builder().build().value_json::<serde_json::Value>();
        assert_eq!(
            error.unwrap_err(),
            Error::reject("value is a tombstone, expected JSON")
        );
    }

    #[test]
    fn debug_shows_text_values_as_text() {
        let event = Event::builder().key("k").value(vec![0, 159]).build();
        let shown = format!("{event:?}");
        assert!(shown.contains(r#"key: Some(b"k")"#), "{shown}");
        assert!(shown.contains("value: Some([0, 159])"), "{shown}");
    }
}
