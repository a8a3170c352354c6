//! The replay formats: recorded events in (JSON lines), results out (JSON
//! lines or text).
//!
//! Input, one event per line (blank lines and lines starting with `#` are
//! skipped):
//!
//! ```json
//! {"key": "k1", "value": {"price": 2}, "headers": {"source": "web"},
//!  "topic": "orders", "partition": 0, "offset": 7, "timestamp": 1700000000000}
//! ```
//!
//! - `key`: a UTF-8 string, or `null`/absent for no key; `key_b64`: bytes
//!   in standard base64 instead.
//! - `value`: a string is taken as its UTF-8 bytes; any other JSON (object,
//!   array, number, boolean) as its compact JSON text; `null`/absent is a
//!   tombstone; `value_b64`: bytes in standard base64 instead.
//! - `headers`: an object of UTF-8 values (applied in name order), or a list
//!   of `[name, value]` pairs (order and duplicates kept).
//! - `topic`: default the manifest's first input topic, and it must be one
//!   of them; `partition`: default 0; `offset`: default one past the
//!   previous event of the partition (from 0); `timestamp`: milliseconds
//!   since the epoch, default none.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bindings::weir::consumer::types::{Event, Header, Outgoing};

/// One input line, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_b64: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    headers: Option<Headers>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Headers {
    Map(BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

/// An event read from the input, with its line number (from 1).
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) line: usize,
    pub(crate) event: Event,
}

/// Parses the JSON-lines `text`; `inputs` are the module's input topics.
pub(crate) fn parse(text: &str, source: &str, inputs: &[String]) -> anyhow::Result<Vec<Recorded>> {
    let mut next_offset: HashMap<(String, i32), i64> = HashMap::new();
    let mut events = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let at = || format!("{source}:{line}");
        let parsed: Line = serde_json::from_str(raw).with_context(|| {
            format!(
                "{}: not a replay event (expected {{\"key\", \"value\", \"headers\", \"topic\", \
                 \"partition\", \"offset\", \"timestamp\"}}, `key_b64`/`value_b64` for bytes)",
                at()
            )
        })?;
        let event = to_event(parsed, inputs, &mut next_offset).with_context(at)?;
        events.push(Recorded { line, event });
    }
    Ok(events)
}

fn to_event(
    line: Line,
    inputs: &[String],
    next_offset: &mut HashMap<(String, i32), i64>,
) -> anyhow::Result<Event> {
    let key = bytes_field("key", line.key.map(Value::String), line.key_b64)?;
    let value = bytes_field("value", line.value, line.value_b64)?;
    let topic = match line.topic {
        Some(topic) if inputs.contains(&topic) => topic,
        Some(topic) => bail!(
            "topic `{topic}` is not one of the module's input-topics {inputs:?}: weir would \
             never hand it this event"
        ),
        None => inputs
            .first()
            .cloned()
            .context("the manifest has no input-topics")?,
    };
    let partition = line.partition.unwrap_or(0);
    if partition < 0 {
        bail!("partition {partition} is negative");
    }
    let next = next_offset.entry((topic.clone(), partition)).or_insert(0);
    let offset = line.offset.unwrap_or(*next);
    if offset < *next {
        bail!(
            "offset {offset} does not follow the previous event of {topic}/{partition}: offsets \
             of a partition must increase"
        );
    }
    *next = offset
        .checked_add(1)
        .with_context(|| format!("offset {offset} is too large: no event can follow it"))?;
    let headers = match line.headers {
        None => Vec::new(),
        Some(Headers::Map(map)) => map.into_iter().collect(),
        Some(Headers::List(list)) => list,
    };
    Ok(Event {
        topic,
        partition,
        offset,
        timestamp_ms: line.timestamp,
        key,
        value,
        headers: headers
            .into_iter()
            .map(|(key, value)| Header {
                key,
                value: value.into_bytes(),
            })
            .collect(),
    })
}

/// The bytes of `name` (text or JSON) or `name_b64`, at most one of them.
fn bytes_field(
    name: &str,
    text: Option<Value>,
    b64: Option<String>,
) -> anyhow::Result<Option<Vec<u8>>> {
    match (text, b64) {
        (Some(Value::Null) | None, None) => Ok(None),
        (Some(Value::Null) | None, Some(encoded)) => B64
            .decode(encoded.trim())
            .map(Some)
            .with_context(|| format!("`{name}_b64` is not valid base64")),
        (Some(Value::String(s)), None) => Ok(Some(s.into_bytes())),
        (Some(other), None) => Ok(Some(other.to_string().into_bytes())),
        (Some(_), Some(_)) => bail!("give `{name}` or `{name}_b64`, not both"),
    }
}

/// `bytes` as a JSON string when UTF-8, under `name`; else under
/// `<name>_b64`; nothing for `None` (JSON `null` under `name`).
pub(super) fn put_bytes(
    object: &mut serde_json::Map<String, Value>,
    name: &str,
    bytes: Option<&[u8]>,
) {
    match bytes.map(std::str::from_utf8) {
        None => {
            object.insert(name.to_owned(), Value::Null);
        }
        Some(Ok(text)) => {
            object.insert(name.to_owned(), text.into());
        }
        Some(Err(_)) => {
            object.insert(
                format!("{name}_b64"),
                B64.encode(bytes.unwrap_or_default()).into(),
            );
        }
    }
}

/// An emitted record as JSON: `topic`, `key`, `value` (or `key_b64`,
/// `value_b64`), `headers` (an object; a list of pairs when a name repeats;
/// non-UTF-8 values as `{"b64": ...}`) and `partition` when set.
pub(crate) fn record_json(record: &Outgoing) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("topic".into(), record.topic.clone().into());
    put_bytes(&mut object, "key", record.key.as_deref());
    put_bytes(&mut object, "value", record.value.as_deref());
    let value = |h: &Header| match std::str::from_utf8(&h.value) {
        Ok(text) => Value::from(text),
        Err(_) => json!({ "b64": B64.encode(&h.value) }),
    };
    let mut names: Vec<&str> = record.headers.iter().map(|h| h.key.as_str()).collect();
    names.sort_unstable();
    let unique = names.windows(2).all(|w| w[0] != w[1]);
    let headers = if unique {
        Value::Object(
            record
                .headers
                .iter()
                .map(|h| (h.key.clone(), value(h)))
                .collect(),
        )
    } else {
        record
            .headers
            .iter()
            .map(|h| json!([h.key, value(h)]))
            .collect()
    };
    object.insert("headers".into(), headers);
    if let Some(p) = record.partition {
        object.insert("partition".into(), p.into());
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> anyhow::Result<Event> {
        let mut events = parse(line, "t", &["in".to_owned()])?;
        Ok(events.remove(0).event)
    }

    #[test]
    fn values_are_text_json_base64_or_tombstones() {
        assert_eq!(
            one(r#"{"value": "abc"}"#).unwrap().value,
            Some(b"abc".to_vec())
        );
        assert_eq!(
            one(r#"{"value": {"b": [1, 2]}}"#).unwrap().value,
            Some(br#"{"b":[1,2]}"#.to_vec())
        );
        assert_eq!(
            one(r#"{"value_b64": "AP8="}"#).unwrap().value,
            Some(vec![0, 255])
        );
        assert_eq!(one(r#"{"value": null}"#).unwrap().value, None);
        assert_eq!(one(r#"{"key": "k"}"#).unwrap().value, None);
        assert!(one(r#"{"value_b64": "!!"}"#).is_err());
    }

    #[test]
    fn offsets_default_per_partition_and_must_increase() {
        let text =
            "{\"partition\": 1}\n{}\n{\"partition\": 1, \"offset\": 9}\n{\"partition\": 1}\n";
        let offsets: Vec<(i32, i64)> = parse(text, "t", &["in".to_owned()])
            .unwrap()
            .iter()
            .map(|r| (r.event.partition, r.event.offset))
            .collect();
        assert_eq!(offsets, [(1, 0), (0, 0), (1, 9), (1, 10)]);
        let err = parse(
            "{\"offset\": 5}\n{\"offset\": 5}\n",
            "f.jsonl",
            &["in".to_owned()],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("f.jsonl:2: offset 5 does not follow"),
            "{err:#}"
        );
    }

    #[test]
    fn the_largest_offset_is_refused_not_overflowed() {
        let err = one(r#"{"offset": 9223372036854775807}"#).unwrap_err();
        assert!(format!("{err:#}").contains("too large"), "{err:#}");
    }

    #[test]
    fn header_lists_keep_order_and_duplicates() {
        let event = one(r#"{"headers": [["b", "1"], ["a", "2"], ["b", "3"]]}"#).unwrap();
        let pairs: Vec<(&str, &[u8])> = event
            .headers
            .iter()
            .map(|h| (h.key.as_str(), &h.value[..]))
            .collect();
        assert_eq!(pairs, [("b", &b"1"[..]), ("a", b"2"), ("b", b"3")]);
        let record = Outgoing {
            topic: "t".into(),
            key: Some(vec![0xff]),
            value: None,
            headers: event.headers,
            partition: Some(2),
        };
        assert_eq!(
            record_json(&record),
            json!({"topic": "t", "key_b64": "/w==", "value": null, "partition": 2,
                   "headers": [["b", "1"], ["a", "2"], ["b", "3"]]})
        );
    }
}
