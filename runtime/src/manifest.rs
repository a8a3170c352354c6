//! Module manifests: the `<name>.toml` sidecar next to `<name>.wasm`.
//!
//! A manifest names the topics a module reads, the topics it may emit to,
//! its consumer group, its limits and its configuration map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a module starts reading when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetReset {
    /// From the oldest event still in the topic.
    #[default]
    Earliest,
    /// Only events produced after the module joined.
    Latest,
}

impl OffsetReset {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// Resource limits applied to every call into the module. The runtime
/// config's `[limits]` table sets the defaults; a manifest's `[limits]`
/// overrides them key by key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Time one handler call (one event, or one batch) may run: the time it
    /// holds a call slot, measured every 10 ms; waiting for its turn on a
    /// core does not count (see `crate::slots`). A call that runs longer is
    /// interrupted and its events rejected.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Maximum linear memory of one instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// Maximum number of records one event (or one batch) may emit.
    #[serde(default = "default_max_emits")]
    pub max_emits: u32,
    /// Maximum size of one emitted record (key + value + headers), in bytes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u32,
    /// Most bytes (records' keys, values and headers, plus state writes'
    /// keys and values) one event, or one batch, may emit; an emit or state
    /// write past it gets `too-many`. Bounds what one call makes the host
    /// hold (see `max-inflight-bytes` in weir.toml).
    #[serde(default = "default_max_emit_bytes")]
    pub max_emit_bytes: u32,
    /// Maximum number of events passed to one `handle-batch` call.
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
    /// Largest event (key + value + headers, in bytes) handed to the guest;
    /// a larger one fails with kind `oversized` without a call.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: u32,
    /// Maximum elements of one wasm table (function references), per
    /// instance.
    #[serde(default = "default_table_elements")]
    pub table_elements: u32,
    /// Stateful modules: most bytes (keys plus values of live entries) the
    /// state store of one input partition may hold; a write past it gets
    /// `quota-exceeded`.
    #[serde(default = "default_state_mib")]
    pub state_mib: u32,
    /// Longest state key, in bytes.
    #[serde(default = "default_max_state_key_bytes")]
    pub max_state_key_bytes: u32,
    /// Longest state value, in bytes.
    #[serde(default = "default_max_state_value_bytes")]
    pub max_state_value_bytes: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_memory_mib() -> u32 {
    64
}
fn default_max_emits() -> u32 {
    1_000
}
/// A little under librdkafka's default `message.max.bytes` (1,000,000),
/// which also counts the record's framing.
fn default_max_record_bytes() -> u32 {
    990_000
}
/// 16 MiB: sixteen records of the largest default size, or thousands of
/// ordinary ones, per event or batch.
fn default_max_emit_bytes() -> u32 {
    16 << 20
}
fn default_max_batch() -> u32 {
    256
}
/// Rust guests use a few hundred table entries; 10,000 leaves room for
/// large programs while bounding what a hostile one can allocate.
fn default_table_elements() -> u32 {
    10_000
}
fn default_state_mib() -> u32 {
    256
}
fn default_max_state_key_bytes() -> u32 {
    4_096
}
/// Half a MiB: a key and value together must fit in one changelog record.
fn default_max_state_value_bytes() -> u32 {
    512 * 1024
}
/// Kafka's default `max.message.bytes` for a topic is about 1 MiB.
fn default_max_event_bytes() -> u32 {
    1 << 20
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            memory_mib: default_memory_mib(),
            max_emits: default_max_emits(),
            max_record_bytes: default_max_record_bytes(),
            max_emit_bytes: default_max_emit_bytes(),
            max_batch: default_max_batch(),
            max_event_bytes: default_max_event_bytes(),
            table_elements: default_table_elements(),
            state_mib: default_state_mib(),
            max_state_key_bytes: default_max_state_key_bytes(),
            max_state_value_bytes: default_max_state_value_bytes(),
        }
    }
}

impl Limits {
    /// What is wrong with these limits, one line per key: those that must
    /// be greater than zero (`timeout`, `memory-mib`, `max-batch`,
    /// `max-record-bytes`, ...), named as in a `[limits]` table, e.g.
    /// "`limits.timeout` must be greater than zero", and a `max-emit-bytes`
    /// below `max-record-bytes`. Empty when they can be
    /// used. The one check of a manifest's `[limits]` and of the runtime
    /// config's default `[limits]` alike.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = zero_problems([
            ("limits.timeout", self.timeout.is_zero()),
            ("limits.memory-mib", self.memory_mib == 0),
            ("limits.max-batch", self.max_batch == 0),
            ("limits.max-record-bytes", self.max_record_bytes == 0),
            ("limits.state-mib", self.state_mib == 0),
            ("limits.max-state-key-bytes", self.max_state_key_bytes == 0),
            ("limits.max-emit-bytes", self.max_emit_bytes == 0),
        ]);
        if self.max_emit_bytes < self.max_record_bytes {
            problems.push(format!(
                "`limits.max-emit-bytes` ({}) is smaller than `limits.max-record-bytes` ({}): \
                 raise it, or no record of the largest size could be emitted",
                self.max_emit_bytes, self.max_record_bytes
            ));
        }
        problems
    }
}

/// How a module retries events whose handler returned `retry`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryPolicy {
    /// Total attempts for one event, the first included. When they are used
    /// up the event is rejected with the last reason.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles each time.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Upper bound of the backoff.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The parsed `<name>.toml` of one module.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Topics the module consumes. At least one.
    pub input_topics: Vec<String>,
    /// Topics the module may emit to; anything else is refused with
    /// `topic-not-allowed`.
    #[serde(default)]
    pub output_topics: Vec<String>,
    /// Lets the module consume what it writes: an input topic that is also
    /// one of its output topics, its dead-letter topic or its state
    /// changelog. Without it such a module is refused at load, and a ring
    /// of modules through it (A → B → A) is reported as a warning; with it
    /// the module must end the loop itself. See [`crate::cycles`].
    #[serde(default)]
    pub allow_cycles: bool,
    /// Consumer group; defaults to `weir-<module name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Start position when the group has no committed offset.
    #[serde(default)]
    pub offset_reset: OffsetReset,
    /// Start position by time, for partitions the group has no committed
    /// offset for: the first event whose timestamp is at or after this
    /// instant (RFC 3339, e.g. `2026-11-25T10:00:00Z`); the end of the
    /// partition when there is none. Overrides `offset-reset` for those
    /// partitions; committed offsets always win.
    #[serde(default, with = "humantime_serde::option")]
    pub start_at: Option<std::time::SystemTime>,
    /// Per-call limits.
    #[serde(default)]
    pub limits: Limits,
    /// Retry policy for `retry` dispositions.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What happens to an event that fails for good.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Delivery guarantee.
    #[serde(default)]
    pub delivery: Delivery,
    /// Durable state: a `[state]` table (even empty) gives the module a
    /// store per input partition, backed by a changelog topic.
    #[serde(default)]
    pub state: Option<StateSettings>,
    /// Key/value configuration the guest reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A stateful module's `[state]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSettings {
    /// The compacted changelog topic backing the module's stores; default
    /// `weir-state-<module name>`. weir creates it when missing, with one
    /// partition per input partition.
    #[serde(default)]
    pub changelog_topic: Option<String>,
}

impl StateSettings {
    /// The changelog topic of module `name`.
    pub fn changelog_topic(&self, name: &str) -> String {
        self.changelog_topic
            .clone()
            .unwrap_or_else(|| crate::state::changelog::default_topic(name))
    }
}

/// A module's delivery guarantee (`[delivery]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Delivery {
    /// `at-least-once` (default) or `exactly-once`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Exactly-once only: how long a partition's transaction stays open
    /// before it is committed (outputs become visible to `read_committed`
    /// readers at each commit).
    #[serde(default = "default_transaction_interval", with = "humantime_serde")]
    pub transaction_interval: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            guarantee: Guarantee::default(),
            transaction_interval: default_transaction_interval(),
        }
    }
}

fn default_transaction_interval() -> Duration {
    Duration::from_millis(100)
}

/// See [`Delivery::guarantee`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Outputs are acknowledged before the input offset is committed; a
    /// crash can repeat outputs, never lose them.
    #[default]
    AtLeastOnce,
    /// Read-process-write in Kafka transactions, one transactional producer
    /// per input partition: outputs, dead letters and the input offset
    /// commit together or not at all.
    ExactlyOnce,
}

/// What to do with an event that fails for good: rejected by the handler,
/// retries used up, a trap on the last attempt, an oversized event, or an
/// output the broker refuses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FailurePolicy {
    /// `dead-letter` (default): write the event to the dead-letter topic, then
    /// move on; `skip`: log it and move on; `stop`: halt the partition at the
    /// event (nothing after it is handled or committed) until a new version
    /// of the module is deployed, which gets the event again.
    #[serde(default)]
    pub action: FailureAction,
    /// Dead-letter topic; default `weir-dlq-<module name>`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

/// See [`FailurePolicy::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Write to the dead-letter topic, then settle.
    #[default]
    DeadLetter,
    /// Log and settle.
    Skip,
    /// Halt the partition until the module is replaced.
    Stop,
}

impl FailurePolicy {
    /// The dead-letter topic of module `name`.
    pub fn dead_letter_topic(&self, name: &str) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("weir-dlq-{name}"))
    }
}

/// One problem per key of `checks` that is zero: "`{key}` must be greater
/// than zero".
fn zero_problems<'a>(checks: impl IntoIterator<Item = (&'a str, bool)>) -> Vec<String> {
    checks
        .into_iter()
        .filter(|&(_, zero)| zero)
        .map(|(key, _)| format!("`{key}` must be greater than zero"))
        .collect()
}

/// A manifest that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No sidecar file next to the component.
    #[error("manifest `{}` not found: every module needs a `<name>.toml` next to its `.wasm`", .0.display())]
    Missing(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read manifest `{}`: {source}", .path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid manifest.
    #[error("invalid manifest `{}`: {message}", .path.display())]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Manifest {
    /// Reads the sidecar manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text =
            Self::read_text(path)?.ok_or_else(|| ManifestError::Missing(path.to_path_buf()))?;
        Self::parse(&text, path)
    }

    /// The text of the manifest file at `path`; `Ok(None)` when there is no
    /// such file. Every manifest weir loads is read here.
    pub fn read_text(path: &Path) -> Result<Option<String>, ManifestError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates manifest text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let manifest: Manifest =
            toml::from_str(text).map_err(|err| invalid(err.to_string().trim_end().to_owned()))?;
        let mut problems = Vec::new();
        if manifest.input_topics.is_empty() {
            problems.push("`input-topics` must name at least one topic".to_owned());
        }
        for (key, topics) in [
            ("input-topics", &manifest.input_topics),
            ("output-topics", &manifest.output_topics),
        ] {
            for topic in topics {
                if let Err(why) = check_topic_name(topic) {
                    problems.push(format!("`{key}`: topic {topic:?} {why}"));
                }
            }
        }
        if let Some(topic) = &manifest.on_failure.dead_letter_topic
            && let Err(why) = check_topic_name(topic)
        {
            problems.push(format!(
                "`on-failure.dead-letter-topic`: topic {topic:?} {why}"
            ));
        }
        if let Some(topic) = manifest
            .state
            .as_ref()
            .and_then(|s| s.changelog_topic.as_ref())
            && let Err(why) = check_topic_name(topic)
        {
            problems.push(format!("`state.changelog-topic`: topic {topic:?} {why}"));
        }
        if let Some(group) = &manifest.group_id
            && group.trim().is_empty()
        {
            problems.push("`group-id` must not be empty".to_owned());
        }
        problems.extend(manifest.limits.problems());
        problems.extend(zero_problems([
            ("retry.max-attempts", manifest.retry.max_attempts == 0),
            (
                "delivery.transaction-interval",
                manifest.delivery.transaction_interval.is_zero(),
            ),
        ]));
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(invalid(problems.join("; ")))
        }
    }

    /// [`Manifest::parse`] with the runtime's `[limits]` as defaults: the
    /// keys the manifest's own `[limits]` sets win, `defaults` fills the rest.
    pub fn parse_with(text: &str, path: &Path, defaults: &Limits) -> Result<Self, ManifestError> {
        let mut manifest = Self::parse(text, path)?;
        if *defaults == Limits::default() {
            return Ok(manifest);
        }
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let own = toml::from_str::<toml::Table>(text)
            .map_err(|e| invalid(e.to_string()))?
            .remove("limits")
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default();
        let mut merged = toml::Table::try_from(defaults).map_err(|e| invalid(e.to_string()))?;
        merged.extend(own);
        manifest.limits = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("[limits]: {e}")))?;
        Ok(manifest)
    }

    /// Refuses the manifest of module `name` (at `path`, for the message)
    /// when the module would consume what it writes and `allow-cycles` is
    /// not set; see [`crate::cycles::self_loop`]. The error names each
    /// looping topic and how to opt in.
    pub fn check_cycles(&self, name: &str, path: &Path) -> Result<(), ManifestError> {
        match crate::cycles::self_loop(name, self) {
            None => Ok(()),
            Some(message) => Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                message,
            }),
        }
    }

    /// The consumer group of module `name`.
    pub fn group_id(&self, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("weir-{name}"))
    }
}

/// Kafka's rules for topic names: 1–249 characters of `[a-zA-Z0-9._-]`, not
/// `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters long");
    }
    if topic == "." || topic == ".." {
        return Err("is not a valid topic name");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("mods/enrich.toml"))
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("input-topics = [\"orders\"]").unwrap();
        assert_eq!(m.group_id("enrich"), "weir-enrich");
        assert_eq!(m.offset_reset, OffsetReset::Earliest);
        assert_eq!(m.limits, Limits::default());
        assert!(m.output_topics.is_empty());
        assert!(m.config.is_empty());
    }

    #[test]
    fn full_manifest_parses() {
        let m = parse(
            r#"
            input-topics = ["a", "b"]
            output-topics = ["c"]
            group-id = "g1"
            offset-reset = "latest"
            [limits]
            timeout = "250ms"
            memory-mib = 16
            max-batch = 8
            [retry]
            max-attempts = 3
            initial-backoff = "10ms"
            [config]
            region = "eu"
            "#,
        )
        .unwrap();
        assert_eq!(m.group_id("x"), "g1");
        assert_eq!(m.offset_reset.as_kafka(), "latest");
        assert_eq!(m.limits.timeout, Duration::from_millis(250));
        assert_eq!(m.limits.max_batch, 8);
        assert_eq!(m.limits.max_emits, 1_000);
        assert_eq!(m.retry.max_attempts, 3);
        assert_eq!(m.config["region"], "eu");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse("input-topics = [\"a\"]\noutput-topic = [\"b\"]").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mods/enrich.toml"), "{text}");
        assert!(text.contains("unknown field `output-topic`"), "{text}");
    }

    #[test]
    fn missing_inputs_is_an_error() {
        let err = parse("output-topics = [\"b\"]").unwrap_err();
        assert!(
            err.to_string().contains("missing field `input-topics`"),
            "{err}"
        );
        let err = parse("input-topics = []").unwrap_err();
        assert!(
            err.to_string().contains("`input-topics` must name"),
            "{err}"
        );
    }

    #[test]
    fn bad_topic_and_values_are_reported_together() {
        let err = parse(
            "input-topics = [\"ok\", \"bad topic\"]\n[limits]\nmax-batch = 0\n[config]\nk = \"v\"",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"bad topic\""), "{text}");
        assert!(
            text.contains("`limits.max-batch` must be greater than zero"),
            "{text}"
        );
    }

    #[test]
    fn non_string_config_value_is_rejected() {
        let err = parse("input-topics = [\"a\"]\n[config]\nn = 3").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mods/enrich.toml"), "{text}");
        assert!(text.contains("line 3") && text.contains("n = 3"), "{text}");
        assert!(text.contains("expected a string"), "{text}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Manifest::load(Path::new("/nonexistent/zz.toml")).unwrap_err();
        assert!(matches!(err, ManifestError::Missing(_)));
        assert!(err.to_string().contains("/nonexistent/zz.toml"));
    }

    #[test]
    fn failure_policy_defaults_to_a_per_module_dead_letter_topic() {
        let m = parse("input-topics = [\"a\"]").unwrap();
        assert_eq!(m.on_failure.action, FailureAction::DeadLetter);
        assert_eq!(m.on_failure.dead_letter_topic("enrich"), "weir-dlq-enrich");
        let m = parse(
            "input-topics = [\"a\"]\n[on-failure]\naction = \"stop\"\ndead-letter-topic = \"dlq\"",
        )
        .unwrap();
        assert_eq!(m.on_failure.action, FailureAction::Stop);
        assert_eq!(m.on_failure.dead_letter_topic("x"), "dlq");
        let err = parse("input-topics = [\"a\"]\n[on-failure]\naction = \"drop\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `drop`"), "{err}");
    }

    #[test]
    fn runtime_limit_defaults_fill_what_the_manifest_leaves_out() {
        let defaults = Limits {
            timeout: Duration::from_secs(9),
            memory_mib: 8,
            ..Limits::default()
        };
        let m = Manifest::parse_with(
            "input-topics = [\"a\"]\n[limits]\nmemory-mib = 32\n",
            Path::new("m.toml"),
            &defaults,
        )
        .unwrap();
        assert_eq!(m.limits.timeout, Duration::from_secs(9), "from the runtime");
        assert_eq!(m.limits.memory_mib, 32, "the manifest wins");
        assert_eq!(m.limits.table_elements, 10_000);
        let m =
            Manifest::parse_with("input-topics = [\"a\"]", Path::new("m.toml"), &defaults).unwrap();
        assert_eq!(m.limits, defaults);
    }

    #[test]
    fn limits_problems_name_each_zero_key() {
        assert!(Limits::default().problems().is_empty());
        let zero = Limits {
            timeout: Duration::ZERO,
            memory_mib: 0,
            max_batch: 0,
            max_record_bytes: 0,
            max_emits: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.problems(),
            [
                "`limits.timeout` must be greater than zero",
                "`limits.memory-mib` must be greater than zero",
                "`limits.max-batch` must be greater than zero",
                "`limits.max-record-bytes` must be greater than zero",
            ],
            "`max-emits = 0` is allowed: the module may emit nothing"
        );
        // A manifest reports them with its own keys, in one message.
        let err = parse(
            "input-topics = [\"a\"]\n[limits]\ntimeout = \"0s\"\nmax-record-bytes = 0\n\
             [retry]\nmax-attempts = 0\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid manifest `mods/enrich.toml`: `limits.timeout` must be greater than zero; \
             `limits.max-record-bytes` must be greater than zero; \
             `retry.max-attempts` must be greater than zero"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(30), Duration::from_secs(5));
    }
}
