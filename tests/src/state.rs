//! Stateful modules: their state folders, the local stores weir keeps
//! there, the changelog topics behind them, and what weir logs and reports
//! about restoring them.
//!
//! - [`restores`]: the `restoring state` / `state restored` log lines of a
//!   [`WeirProcess`], paired per partition.
//! - [`state_stores`]: a module's `state-stores` in `/status`.
//! - [`local_checkpoint`]: the checkpoint of a local store file, read with
//!   weir's own store code.
//! - [`counts_by_key`]: the values per key of a keyed output, in order.
//! - [`describe_topic`]: a topic as Kafka's own `TopicCommand` describes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::kafka::Received;
use crate::process::WeirProcess;
use crate::{Broker, broker, repo_root};

/// One restore of a partition's store, from weir's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The input partition number.
    pub partition: i32,
    /// The changelog offset it started from (the local checkpoint);
    /// `None`: the start (no local copy).
    pub from: Option<i64>,
    /// Changelog records it read.
    pub records: u64,
    /// The changelog offset it reached.
    pub next: i64,
    /// Entries in the store at its end.
    pub keys: u64,
}

/// The completed restores of `module`'s stores in the log of `weir` (JSON
/// lines), in order: each `state restored` line with the `from` of the
/// `restoring state` line of its partition before it.
pub fn restores(weir: &WeirProcess, module: &str) -> Vec<Restore> {
    let mut from: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    let mut out = Vec::new();
    for line in weir.log().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        if f["module"] != module {
            continue;
        }
        let Some(partition) = f["partition"].as_i64() else {
            continue;
        };
        match f["message"].as_str() {
            Some("restoring state") => {
                // Logged with `Debug`: `None` or `Some(<offset>)`.
                let text = f["from"].as_str().unwrap_or("None");
                let offset = text
                    .strip_prefix("Some(")
                    .and_then(|t| t.strip_suffix(')'))
                    .map(|t| t.parse().expect("a checkpoint offset"));
                from.insert(partition, offset);
            }
            Some("state restored") => out.push(Restore {
                partition: i32::try_from(partition).expect("partition"),
                from: from.remove(&partition).flatten(),
                records: f["records"].as_u64().expect("records"),
                next: f["next"].as_i64().expect("next"),
                keys: f["keys"].as_u64().unwrap_or_default(),
            }),
            _ => {}
        }
    }
    out
}

/// The `state-stores` of module `module` in a `/status` document, by
/// partition number (empty when it has none).
pub fn state_stores(status: &serde_json::Value, module: &str) -> BTreeMap<i32, serde_json::Value> {
    status
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == module))
        .and_then(|m| m["state-stores"].as_object())
        .map(|stores| {
            stores
                .iter()
                .map(|(p, s)| (p.parse().expect("a partition number"), s.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Module `module`'s entry in a `/status` document.
pub fn module_entry(status: &serde_json::Value, module: &str) -> Option<serde_json::Value> {
    status
        .as_array()?
        .iter()
        .find(|m| m["name"] == module)
        .cloned()
}

/// The path of the local store of `module`'s partition `partition` under
/// `state_dir`: `<state-dir>/<module>/<changelog>/<partition>.redb`.
pub fn store_path(
    state_dir: &Path,
    module: &str,
    changelog: &str,
    partition: i32,
) -> std::path::PathBuf {
    state_dir
        .join(module)
        .join(changelog)
        .join(format!("{partition}.redb"))
}

/// The checkpoint recorded in a local store file (the changelog offset a
/// restore starts from), read with weir's store code; `None` when the file
/// is missing or has none. The process that owns the file must have
/// exited.
pub fn local_checkpoint(
    state_dir: &Path,
    module: &str,
    changelog: &str,
    partition: i32,
) -> Option<i64> {
    let path = store_path(state_dir, module, changelog, partition);
    if !path.is_file() {
        return None;
    }
    weir::state::LocalStore::open(&path)
        .and_then(|s| s.checkpoint())
        .unwrap_or_else(|e| panic!("read the checkpoint of `{}`: {e}", path.display()))
}

/// The values of the records whose key starts with `prefix`, per key, in
/// offset order, parsed as decimal numbers (what `count-by-key` emits).
/// Panics on a value that is not a number. Every record of a key is in
/// one partition (keyed records), so offset order is the order they were
/// written in.
pub fn counts_by_key(records: &[Received], prefix: &str) -> BTreeMap<String, Vec<u64>> {
    let mut sorted: Vec<&Received> = records
        .iter()
        .filter(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| k.starts_with(prefix.as_bytes()))
        })
        .collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in sorted {
        let count = r
            .text()
            .parse()
            .unwrap_or_else(|_| panic!("a count that is not a number: {r:?}"));
        out.entry(r.key_text()).or_default().push(count);
    }
    out
}

/// `topic` as Kafka's own `kafka-topics --describe` prints it
/// (`org.apache.kafka.tools.TopicCommand`, run by `scripts/kafka.sh run`
/// from the jars of `WEIR_KAFKA_HOME`, default `<repo>/.kafka`), e.g. a
/// first line `Topic: t ... PartitionCount: 3 ... Configs:
/// cleanup.policy=compact`. `Err` with why when the tool cannot be run
/// (the mock cluster, no jars).
pub fn describe_topic(topic: &str) -> Result<String, String> {
    let Broker::External(bootstrap) = broker() else {
        return Err("the mock cluster has no Kafka command-line tools".into());
    };
    let home = std::env::var_os("WEIR_KAFKA_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".kafka"));
    if !home.join("lib").is_dir() {
        return Err(format!(
            "no Kafka jars under {} (set WEIR_KAFKA_HOME to the state folder of scripts/kafka.sh)",
            home.display()
        ));
    }
    let out = Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "run",
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--topic",
            topic,
        ])
        .env("WEIR_KAFKA_HOME", &home)
        .output()
        .map_err(|e| format!("run scripts/kafka.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "TopicCommand --describe {topic} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// Where `state-probe` replies (see `tests/guests/state-probe`).
pub const PROBE_OUT: &str = "probe-out";

/// Drives a `state-probe` module: produces commands to its input topic,
/// each keyed uniquely, and waits for the reply the probe writes to
/// [`PROBE_OUT`] under the same key. Blocking. `probe-out` is shared by
/// every test; replies are told apart by their keys.
pub struct Probe {
    input: String,
    prefix: String,
    sent: usize,
    producer: rdkafka::producer::BaseProducer,
    replies: rdkafka::consumer::BaseConsumer,
    seen: std::collections::HashMap<Vec<u8>, Received>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("input", &self.input)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe writing commands to `input`, reading the replies written to
    /// [`PROBE_OUT`] from now on. Creates `probe-out` when missing (on a
    /// runtime of its own: call it outside any async context).
    pub fn new(input: &str) -> Self {
        use rdkafka::consumer::Consumer as _;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(broker().create_topic(PROBE_OUT));
        let partitions = crate::partition_count(PROBE_OUT).expect("probe-out exists");
        let ends = crate::end_offsets(PROBE_OUT, partitions);
        let mut config = crate::kafka::client_config(&broker().bootstrap(), &[]);
        config
            .set("group.id", crate::unique("probe-replies"))
            .set("enable.auto.commit", "false");
        let replies: rdkafka::consumer::BaseConsumer = config.create().expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (p, o) in (0..).zip(ends) {
            tpl.add_partition_offset(PROBE_OUT, p, rdkafka::Offset::Offset(o))
                .expect("tpl");
        }
        replies.assign(&tpl).expect("assign");
        let producer = crate::kafka::client_config(&broker().bootstrap(), &[])
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        Self {
            input: input.to_owned(),
            prefix: crate::unique("probe"),
            sent: 0,
            producer,
            replies,
            seen: std::collections::HashMap::new(),
        }
    }

    /// Produces `command` to partition `partition` of the input topic under
    /// a key of its own, and waits for the acknowledgement; returns the key
    /// its reply will have.
    pub fn send(&mut self, partition: i32, command: &str) -> String {
        let key = format!("{}-{}", self.prefix, self.sent);
        self.sent += 1;
        self.send_keyed(partition, &key, command);
        key
    }

    /// Produces `command` to partition `partition` of the input topic under
    /// `key`, and waits for the acknowledgement.
    pub fn send_keyed(&mut self, partition: i32, key: &str, command: &str) {
        use rdkafka::producer::Producer as _;
        let record = rdkafka::producer::BaseRecord::<str, str>::to(&self.input)
            .key(key)
            .payload(command)
            .partition(partition);
        self.producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("enqueue a probe command");
        self.producer
            .flush(std::time::Duration::from_secs(30))
            .expect("probe command acknowledged");
    }

    /// The reply written under `key`, waiting up to `timeout`; `None` if
    /// none came.
    pub fn reply(&mut self, key: &str, timeout: std::time::Duration) -> Option<Received> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self.seen.get(key.as_bytes()) {
                return Some(r.clone());
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            if let Some(Ok(m)) = self.replies.poll(std::time::Duration::from_millis(100)) {
                let r = Received::from(&m);
                if let Some(k) = r.key.clone() {
                    self.seen.insert(k, r);
                }
            }
        }
    }

    /// [`Probe::send`] then [`Probe::reply`] within 60 s: the reply's value
    /// as text, `None` if none came.
    pub fn ask(&mut self, partition: i32, command: &str) -> Option<String> {
        let key = self.send(partition, command);
        self.reply(&key, std::time::Duration::from_secs(60))
            .map(|r| r.text())
    }
}
