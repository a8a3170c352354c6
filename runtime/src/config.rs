//! Process configuration: the `weir.toml` file and the command-line flags
//! that override it.
//!
//! librdkafka properties pass through verbatim in the `[kafka]` table, except
//! the few that weir must own to keep its delivery guarantees; those are
//! rejected with a message saying what to use instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::Limits;

/// Everything `weir run` needs, after the file and the flags are merged.
/// Its `Debug` output redacts secret `[kafka]` values (see
/// [`crate::secrets`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunConfig {
    /// Kafka bootstrap servers, e.g. `"127.0.0.1:9092"` (librdkafka's
    /// `bootstrap.servers`).
    #[serde(default)]
    pub brokers: Option<String>,

    /// Folder holding the consumer components (`<name>.wasm`) and their
    /// manifests (`<name>.toml`). Optional when `[[oci]]` entries name the
    /// modules.
    #[serde(default)]
    pub modules: Option<PathBuf>,

    /// Modules pulled from OCI registries, one per `[[oci]]` entry (see
    /// [`crate::oci`]); they run beside the folder's.
    #[serde(default)]
    pub oci: Vec<crate::oci::OciModule>,

    /// How often each `[[oci]]` tag is checked for a new version.
    #[serde(default = "default_oci_poll_interval", with = "humantime_serde")]
    pub oci_poll_interval: Duration,

    /// Folder caching pulled artifacts by digest; default `<state-dir>/oci`.
    #[serde(default)]
    pub oci_cache: Option<PathBuf>,

    /// How often each module commits the offsets of fully handled events.
    /// Offsets are also committed synchronously when partitions are revoked
    /// and at shutdown.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,

    /// How long a graceful shutdown may take: in-flight events finish, their
    /// outputs are acknowledged and offsets committed within this budget.
    /// Anything left after it is redelivered on the next start.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,

    /// Largest component file weir will load, in bytes.
    #[serde(default = "default_max_module_bytes")]
    pub max_module_bytes: u64,

    /// Address of the read-only HTTP endpoint serving `/metrics`, `/livez`
    /// and `/readyz`, e.g. `"127.0.0.1:9464"` or `"0.0.0.0:9464"`; `"none"`
    /// disables it. Unset: `127.0.0.1:9464` (loopback only), skipped with a
    /// warning if that port is taken. See [`crate::http::HttpListen`].
    #[serde(default)]
    pub http_listen: crate::http::HttpListen,

    /// Default limits of every module; a manifest's `[limits]` overrides
    /// them key by key (see [`Limits`]).
    #[serde(default)]
    pub limits: Limits,

    /// Wasm stack available to a guest call, in bytes (the same for every
    /// module); deeper recursion traps.
    #[serde(default = "default_max_wasm_stack")]
    pub max_wasm_stack: usize,

    /// Watch the modules folder and apply changes live: new files load,
    /// changed ones reload, removed ones unload. Off: the folder is read
    /// once at start.
    #[serde(default = "default_watch")]
    pub watch: bool,

    /// How long the folder must be quiet before changes are applied; a burst
    /// of writes is handled once, with the last content.
    #[serde(default = "default_reload_debounce", with = "humantime_serde")]
    pub reload_debounce: Duration,

    /// Output bytes the process may hold at once, over all modules: what
    /// guest calls in progress may still emit (each reserves its
    /// `limits.max-emit-bytes`, twice that for a per-event call over
    /// several events) plus the records produced and not yet acknowledged.
    /// When it is spent, calls wait for acknowledgements (backpressure).
    /// librdkafka holds its own copy of records in flight, so the host
    /// memory for outputs is at most twice this.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: u64,

    /// Folder of the stateful modules' local stores
    /// (`<state-dir>/<module>/<changelog topic>/<partition>.redb`). Only a
    /// cache of the changelog topics: deleting it costs a full restore.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,

    /// librdkafka properties applied to every consumer and to the producer,
    /// verbatim (see librdkafka's CONFIGURATION.md). Keys weir owns are
    /// rejected; see [`RESERVED_KAFKA_KEYS`].
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,

    /// This process's name in its consumer groups, for static membership
    /// (KIP-345), e.g. a StatefulSet pod name (`weir-0`); also
    /// `--instance-id` or `WEIR_INSTANCE_ID`. Each module consumer joins
    /// with `group.instance.id = <instance-id>-<module>`, so a restarted
    /// process gets its partitions back at once instead of after the dead
    /// one's `session.timeout.ms`. It must be unique among the processes
    /// of a group: a second process with the same name fences the first.
    /// Letters, digits, `.`, `_` and `-`.
    #[serde(default)]
    pub instance_id: Option<String>,

    /// Bearer token of the mutating HTTP endpoints (`POST /admin/...`:
    /// pause, resume, offsets reset); also `WEIR_ADMIN_TOKEN`. Without a
    /// token (here, in `admin-token-file` or the environment) they refuse
    /// every request.
    #[serde(default)]
    pub admin_token: Option<String>,

    /// A file holding the admin token (surrounding whitespace ignored),
    /// e.g. a mounted Kubernetes Secret.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,

    /// Set by `weir dev`: the brokers are librdkafka's in-memory mock
    /// cluster, which does not answer `DescribeConfigs`, so a changelog
    /// topic's `cleanup.policy` is not checked. Not a `weir.toml` key.
    #[serde(skip)]
    pub embedded: bool,
}

fn default_oci_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_wasm_stack() -> usize {
    crate::engine::DEFAULT_MAX_WASM_STACK
}

/// 256 MiB: a few hundred thousand ordinary records in flight.
fn default_max_inflight_bytes() -> u64 {
    256 << 20
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("weir-state")
}

fn default_watch() -> bool {
    true
}

fn default_reload_debounce() -> Duration {
    Duration::from_millis(500)
}

/// 50 MiB: larger than any reasonable consumer, small enough that a stray
/// file cannot make the compiler spin for minutes.
fn default_max_module_bytes() -> u64 {
    50 * 1024 * 1024
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            modules: None,
            oci: Vec::new(),
            oci_poll_interval: default_oci_poll_interval(),
            oci_cache: None,
            commit_interval: default_commit_interval(),
            shutdown_timeout: default_shutdown_timeout(),
            max_module_bytes: default_max_module_bytes(),
            http_listen: crate::http::HttpListen::Default,
            limits: Limits::default(),
            max_wasm_stack: default_max_wasm_stack(),
            watch: default_watch(),
            reload_debounce: default_reload_debounce(),
            max_inflight_bytes: default_max_inflight_bytes(),
            state_dir: default_state_dir(),
            kafka: BTreeMap::new(),
            instance_id: None,
            admin_token: None,
            admin_token_file: None,
            embedded: false,
        }
    }
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            brokers,
            modules,
            oci,
            oci_poll_interval,
            oci_cache,
            commit_interval,
            shutdown_timeout,
            max_module_bytes,
            http_listen,
            limits,
            max_wasm_stack,
            watch,
            reload_debounce,
            max_inflight_bytes,
            state_dir,
            kafka,
            instance_id,
            admin_token,
            admin_token_file,
            embedded,
        } = self;
        f.debug_struct("RunConfig")
            .field("brokers", brokers)
            .field("modules", modules)
            .field("oci", oci)
            .field("oci_poll_interval", oci_poll_interval)
            .field("oci_cache", oci_cache)
            .field("commit_interval", commit_interval)
            .field("shutdown_timeout", shutdown_timeout)
            .field("max_module_bytes", max_module_bytes)
            .field("http_listen", http_listen)
            .field("limits", limits)
            .field("max_wasm_stack", max_wasm_stack)
            .field("watch", watch)
            .field("reload_debounce", reload_debounce)
            .field("max_inflight_bytes", max_inflight_bytes)
            .field("state_dir", state_dir)
            .field("kafka", &crate::secrets::redacted(kafka))
            .field("instance_id", instance_id)
            .field("admin_token", &admin_token.as_ref().map(|_| "***"))
            .field("admin_token_file", admin_token_file)
            .field("embedded", embedded)
            .finish()
    }
}

/// librdkafka properties that weir sets itself, with what to do instead.
pub const RESERVED_KAFKA_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers` (or --brokers)"),
    ("metadata.broker.list", "use `brokers` (or --brokers)"),
    ("group.id", "set `group-id` in the module's manifest"),
    (
        "enable.auto.commit",
        "weir commits offsets itself, only after outputs are acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "weir commits offsets itself, only after outputs are acknowledged",
    ),
    (
        "auto.commit.interval.ms",
        "use `commit-interval`; weir commits offsets itself",
    ),
    (
        "auto.offset.reset",
        "set `offset-reset` in the module's manifest",
    ),
    ("enable.partition.eof", "weir reads partitions continuously"),
    ("enable.idempotence", "weir's producer is always idempotent"),
    (
        "acks",
        "weir's producer always waits for all in-sync replicas",
    ),
    (
        "request.required.acks",
        "weir's producer always waits for all in-sync replicas",
    ),
    ("transactional.id", "transactions are not supported yet"),
];

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_suffix(.source_path), .problems.join("\n  - "))]
pub struct ConfigError {
    /// The file the configuration came from, if any.
    pub source_path: Option<PathBuf>,
    /// One line per problem.
    pub problems: Vec<String>,
}

/// A TOML error said by its position and message only: the parser's own
/// text quotes the offending line, which may hold a secret (a `[kafka]`
/// password).
fn parse_problem(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.len() - start + 1;
            // The key (the text before `=`), never the value.
            let key = text[start..]
                .lines()
                .next()
                .and_then(|l| l.split_once('='))
                .map(|(key, _)| format!(" (`{}`)", key.trim()))
                .unwrap_or_default();
            format!("line {line}, column {column}{key}: {message}")
        }
        None => message.to_owned(),
    }
}

fn source_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in `{}`", p.display()))
        .unwrap_or_default()
}

impl RunConfig {
    /// Parses a `weir.toml` document. `path` is only used in messages.
    pub fn from_toml(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError {
            source_path: path.map(Path::to_path_buf),
            problems: vec![parse_problem(text, &err)],
        })
    }

    /// Reads and parses a `weir.toml` file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            source_path: Some(path.to_path_buf()),
            problems: vec![format!("cannot read the file: {err}")],
        })?;
        Self::from_toml(&text, Some(path))
    }

    /// Checks everything that can be checked without a broker and returns
    /// all problems at once.
    pub fn validate(&self, path: Option<&Path>) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match &self.brokers {
            None => problems.push("`brokers` is not set (use --brokers or `brokers = ...`)".into()),
            Some(b) if b.trim().is_empty() => problems.push("`brokers` is empty".into()),
            Some(_) => {}
        }
        if self.modules.is_none() && self.oci.is_empty() {
            problems.push(
                "`modules` is not set (use --modules, `modules = ...` or `[[oci]]` entries)".into(),
            );
        }
        problems.extend(crate::oci::config::problems(&self.oci));
        if self.oci_poll_interval.is_zero() {
            problems.push("`oci-poll-interval` must be greater than zero".into());
        }
        for key in self.kafka.keys() {
            if let Some((_, instead)) = RESERVED_KAFKA_KEYS.iter().find(|(k, _)| k == key) {
                problems.push(format!("[kafka] `{key}` is managed by weir: {instead}"));
            }
        }
        if self.commit_interval.is_zero() {
            problems.push("`commit-interval` must be greater than zero".into());
        }
        problems.extend(self.limits.problems());
        if self.max_wasm_stack < 64 * 1024 {
            problems.push("`max-wasm-stack` must be at least 65536 bytes".into());
        }
        if self.max_module_bytes == 0 {
            problems.push("`max-module-bytes` must be greater than zero".into());
        }
        if self.max_inflight_bytes < u64::from(self.limits.max_emit_bytes) {
            problems.push(format!(
                "`max-inflight-bytes` ({}) is smaller than `limits.max-emit-bytes` ({}): one \
                 call could not emit what it may",
                self.max_inflight_bytes, self.limits.max_emit_bytes
            ));
        }
        if let Some(id) = &self.instance_id
            && let Err(why) = crate::kafka::membership::check_instance_id(id)
        {
            problems.push(format!("`instance-id`: {why}"));
        }
        if self.kafka.contains_key("group.instance.id") {
            problems.push(
                "[kafka] `group.instance.id` is managed by weir: set `instance-id` (each module's \
                 consumer gets `<instance-id>-<module>`)"
                    .into(),
            );
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            problems.push("`admin-token` is empty".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source_path: path.map(Path::to_path_buf),
                problems,
            })
        }
    }

    /// The bootstrap servers; only valid after [`RunConfig::validate`].
    pub fn brokers(&self) -> &str {
        self.brokers.as_deref().unwrap_or_default()
    }

    /// The admin token: `admin-token`, else the content of
    /// `admin-token-file` (trimmed); `None` when neither is set.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(token) = &self.admin_token {
            return Ok(Some(token.trim().to_owned()));
        }
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let problem = |why: String| ConfigError {
            source_path: None,
            problems: vec![format!("`admin-token-file` `{}`: {why}", path.display())],
        };
        let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(problem("the file is empty".into()));
        }
        Ok(Some(token.to_owned()))
    }

    /// The modules folder; `.` when only `[[oci]]` entries are set.
    pub fn modules_dir(&self) -> &Path {
        self.modules.as_deref().unwrap_or(Path::new("."))
    }

    /// The OCI cache folder: `oci-cache`, or `<state-dir>/oci`.
    pub fn oci_cache_dir(&self) -> PathBuf {
        crate::oci::config::cache_dir(self.oci_cache.as_deref(), &self.state_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` parsed as a `weir.toml` with no file name.
    fn parsed(text: &str) -> RunConfig {
        RunConfig::from_toml(text, None).unwrap()
    }

    #[test]
    fn parse_errors_say_where_without_quoting_the_line() {
        let text = "brokers = \"k:9092\"\n[kafka]\n\"sasl.password\" = \"hunter2\"\n\
                    \"sasl.password\" = \"hunter2\"\n";
        let err = RunConfig::from_toml(text, None).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 4, column 1"), "{err}");
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn full_file_parses_with_durations_and_passthrough() {
        let cfg = parsed(
            r#"
            brokers = "k1:9092,k2:9092"
            modules = "/srv/modules"
            commit-interval = "250ms"
            shutdown-timeout = "10s"
            [kafka]
            "security.protocol" = "ssl"
            "fetch.min.bytes" = "1"
            "#,
        );
        cfg.validate(None).unwrap();
        assert_eq!(cfg.brokers(), "k1:9092,k2:9092");
        assert_eq!(cfg.commit_interval, Duration::from_millis(250));
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(cfg.kafka["security.protocol"], "ssl");
    }

    #[test]
    fn debug_output_redacts_kafka_secrets() {
        let cfg = parsed(
            r#"
            brokers = "k1:9093"
            modules = "m"
            [kafka]
            "security.protocol" = "SASL_SSL"
            "sasl.username" = "weir"
            "sasl.password" = "p4ss-in-toml"
            "ssl.key.password" = "key-p4ss"
            "#,
        );
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("p4ss-in-toml"), "{shown}");
        assert!(!shown.contains("key-p4ss"), "{shown}");
        assert!(shown.contains(r#""sasl.password": "***""#), "{shown}");
        assert!(
            shown.contains("SASL_SSL") && shown.contains("k1:9093"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_apply() {
        let cfg = RunConfig::from_toml("brokers = \"b\"\nmodules = \"m\"", None).unwrap();
        assert_eq!(cfg.commit_interval, Duration::from_secs(1));
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(cfg.max_module_bytes, 50 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err =
            RunConfig::from_toml("brokers = \"b\"\nmodule = \"m\"", Some(Path::new("w.toml")))
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("w.toml"), "{text}");
        assert!(text.contains("unknown field `module`"), "{text}");
    }

    #[test]
    fn reserved_kafka_keys_are_all_reported() {
        let cfg = RunConfig::from_toml(
            r#"
            [kafka]
            "enable.auto.commit" = "true"
            "group.id" = "g"
            "linger.ms" = "5"
            "#,
            None,
        )
        .unwrap();
        let err = cfg.validate(Some(Path::new("weir.toml"))).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`enable.auto.commit` is managed by weir"),
            "{text}"
        );
        assert!(text.contains("`group.id` is managed by weir"), "{text}");
        assert!(text.contains("`brokers` is not set"), "{text}");
        assert!(text.contains("`modules` is not set"), "{text}");
        assert!(!text.contains("linger.ms"), "{text}");
        assert_eq!(err.problems.len(), 4);
    }

    #[test]
    fn runtime_limits_are_defaults_and_checked() {
        let cfg = RunConfig::from_toml(
            "brokers = \"b\"\nmodules = \"m\"\nmax-wasm-stack = 1048576\n[limits]\ntimeout = \"2s\"\nmemory-mib = 16\n",
            None,
        )
        .unwrap();
        cfg.validate(None).unwrap();
        assert_eq!(cfg.limits.timeout, Duration::from_secs(2));
        assert_eq!(cfg.limits.memory_mib, 16);
        assert_eq!(cfg.limits.max_batch, 256, "unset keys keep their defaults");
        assert_eq!(cfg.max_wasm_stack, 1 << 20);
        let err = RunConfig::from_toml(
            "[limits]
memory = 3",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `memory`"), "{err}");
        let cfg = RunConfig::from_toml(
            "brokers = \"b\"\nmodules = \"m\"\nmax-wasm-stack = 10",
            None,
        )
        .unwrap();
        assert!(
            cfg.validate(None)
                .unwrap_err()
                .to_string()
                .contains("max-wasm-stack")
        );
    }

    #[test]
    fn zero_default_limits_are_reported_like_a_manifest_s() {
        let cfg =
            parsed("brokers = \"b\"\nmodules = \"m\"\n[limits]\nmemory-mib = 0\nmax-batch = 0\n");
        let err = cfg.validate(Some(Path::new("weir.toml"))).unwrap_err();
        assert_eq!(err.problems, cfg.limits.problems());
        assert_eq!(
            err.problems,
            [
                "`limits.memory-mib` must be greater than zero",
                "`limits.max-batch` must be greater than zero",
            ]
        );
    }

    #[test]
    fn instance_id_and_admin_token_are_checked_and_redacted() {
        let cfg = parsed(
            "brokers = \"b\"\nmodules = \"m\"\ninstance-id = \"weir-0\"\nadmin-token = \"s3cret-tok\"\n",
        );
        cfg.validate(None).unwrap();
        assert_eq!(cfg.instance_id.as_deref(), Some("weir-0"));
        assert_eq!(cfg.admin_token().unwrap().as_deref(), Some("s3cret-tok"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-tok"), "{shown}");

        let bad = parsed(
            "brokers = \"b\"\nmodules = \"m\"\ninstance-id = \"weir 0/x\"\n[kafka]\n\"group.instance.id\" = \"x\"\n",
        );
        let err = bad.validate(None).unwrap_err().to_string();
        assert!(err.contains("`instance-id`"), "{err}");
        assert!(
            err.contains("`group.instance.id` is managed by weir"),
            "{err}"
        );
    }

    #[test]
    fn admin_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  from-file\n").unwrap();
        let mut cfg = parsed("brokers = \"b\"\nmodules = \"m\"\n");
        assert_eq!(cfg.admin_token().unwrap(), None);
        cfg.admin_token_file = Some(path.clone());
        assert_eq!(cfg.admin_token().unwrap().as_deref(), Some("from-file"));
        std::fs::write(&path, "\n").unwrap();
        assert!(cfg.admin_token().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = RunConfig::from_toml("commit-interval = \"soon\"", None).unwrap_err();
        assert!(err.to_string().contains("commit-interval"), "{err}");
    }
}
