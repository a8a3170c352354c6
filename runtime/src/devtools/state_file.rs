//! `weir replay --state-in/--state-out`: a stateful module's stores as
//! JSON lines, one entry per line:
//!
//! ```json
//! {"partition": 0, "key": "k1", "value": "42", "expires_ms": 1700000000000}
//! ```
//!
//! `key` and `value` are UTF-8 strings, or `key_b64`/`value_b64` in
//! standard base64 for other bytes; `partition` defaults to 0;
//! `expires_ms` (milliseconds since the epoch) is present only for entries
//! written with a time-to-live. Blank lines and lines starting with `#` are
//! skipped. `--state-out` writes the same format, sorted by partition and
//! key, expired entries left out.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::Value;

use super::events::put_bytes;
use crate::state::{StateHandle, Write};

/// Most entries read from or written to one partition's file section at
/// a time when exporting.
const PAGE: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    partition: i32,
    key: Option<String>,
    key_b64: Option<String>,
    value: Option<String>,
    value_b64: Option<String>,
    expires_ms: Option<u64>,
}

/// One entry to seed: partition, key, write.
pub type Entry = (i32, Vec<u8>, Write);

fn bytes(text: Option<String>, b64: Option<String>, name: &str) -> anyhow::Result<Vec<u8>> {
    match (text, b64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(b64)) => B64
            .decode(b64)
            .with_context(|| format!("`{name}_b64` is not valid base64")),
        (Some(_), Some(_)) => bail!("give `{name}` or `{name}_b64`, not both"),
        (None, None) => bail!("`{name}` (or `{name}_b64`) is missing"),
    }
}

/// Reads a state file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read state file `{}`", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a state file; `source` names it in errors.
pub fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("`{source}` line {}", n + 1);
        let parsed: Line = serde_json::from_str(line).with_context(at)?;
        let key = bytes(parsed.key, parsed.key_b64, "key").with_context(at)?;
        let value = bytes(parsed.value, parsed.value_b64, "value").with_context(at)?;
        let write = Write::Put {
            value,
            expires_ms: parsed.expires_ms,
        };
        entries.push((parsed.partition, key, write));
    }
    Ok(entries)
}

/// Writes every live entry of `stores` to `path`.
pub fn write(path: &Path, stores: &BTreeMap<i32, StateHandle>, now_ms: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path)
            .with_context(|| format!("cannot create state file `{}`", path.display()))?,
    );
    for (partition, handle) in stores {
        let local = handle.store.local();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = local.scan(b"", after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, stored) in page {
                if stored.expires_ms.is_some_and(|at| at <= now_ms) {
                    continue;
                }
                let mut object = serde_json::Map::new();
                object.insert("partition".into(), (*partition).into());
                put_bytes(&mut object, "key", Some(&key));
                put_bytes(&mut object, "value", Some(&stored.value));
                if let Some(at) = stored.expires_ms {
                    object.insert("expires_ms".into(), at.into());
                }
                writeln!(out, "{}", Value::Object(object))?;
            }
        }
    }
    out.flush()
        .with_context(|| format!("cannot write state file `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::{LocalStore, PartitionStore};

    #[test]
    fn entries_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(
            &input,
            "# seed\n{\"key\": \"a\", \"value\": \"1\"}\n\
             {\"partition\": 1, \"key_b64\": \"/w==\", \"value\": \"x\", \"expires_ms\": 99}\n\
             {\"partition\": 1, \"key\": \"gone\", \"value\": \"x\", \"expires_ms\": 5}\n",
        )
        .unwrap();
        let entries = read(&input).unwrap();
        assert_eq!(entries.len(), 3);
        let mut stores = BTreeMap::new();
        for (partition, key, write) in entries {
            let handle = stores.entry(partition).or_insert_with(|| StateHandle {
                store: Arc::new(PartitionStore::new(
                    partition,
                    LocalStore::in_memory().unwrap(),
                )),
                topic: "log".into(),
                writer: "in".into(),
            });
            handle.store.write_through(vec![(key, write)]).unwrap();
        }
        let output = dir.path().join("out.jsonl");
        write(&output, &stores, 10).unwrap();
        let text = std::fs::read_to_string(&output).unwrap();
        assert_eq!(
            text,
            "{\"key\":\"a\",\"partition\":0,\"value\":\"1\"}\n\
             {\"expires_ms\":99,\"key_b64\":\"/w==\",\"partition\":1,\"value\":\"x\"}\n"
        );
        assert!(read(&output).is_ok());
        std::fs::write(&input, "{\"key\": \"a\"}\n").unwrap();
        let err = format!("{:#}", read(&input).unwrap_err());
        assert!(err.contains("line 1") && err.contains("`value`"), "{err}");
    }
}
