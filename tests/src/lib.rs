//! The one shared way weir's integration tests get a broker, topics, guest
//! components and a running weir.
//!
//! - Broker: `WEIR_TEST_BROKERS` names an external cluster (CI starts a real
//!   Apache Kafka with `scripts/kafka.sh`); without it each test binary
//!   starts librdkafka's in-memory mock cluster.
//! - Guests: components built by `scripts/build-guests.sh` into
//!   `target/modules` (or `WEIR_TEST_MODULES`).
//! - weir: in-process through [`weir::runtime::run`], or the built `weir`
//!   binary for command-line behaviour.

pub mod cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use weir::config::RunConfig;
use weir::embedded::EmbeddedKafka;
use weir::kafka::KafkaSettings;

pub mod devtools;
pub mod process;

/// Partitions of every topic the tests create.
pub const PARTITIONS: i32 = 3;

/// Initialises test logging once per binary (`RUST_LOG` overrides).
pub fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .init();
    });
}

/// The broker the tests run against.
pub enum Broker {
    /// A cluster named by `WEIR_TEST_BROKERS`.
    External(String),
    /// The in-memory mock cluster.
    Embedded(EmbeddedKafka),
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker({})", self.bootstrap())
    }
}

/// The broker shared by all tests of this binary.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| match std::env::var("WEIR_TEST_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Broker::External(b),
        _ => Broker::Embedded(EmbeddedKafka::start().expect("start the embedded broker")),
    })
}

impl Broker {
    /// Bootstrap servers.
    pub fn bootstrap(&self) -> String {
        match self {
            Self::External(b) => b.clone(),
            Self::Embedded(e) => e.bootstrap_servers(),
        }
    }

    /// Whether this is a real broker (as opposed to the mock).
    pub fn is_real(&self) -> bool {
        matches!(self, Self::External(_))
    }

    /// Creates `topic` with [`PARTITIONS`] partitions.
    pub async fn create_topic(&self, topic: &str) {
        match self {
            Self::External(b) => {
                let settings = KafkaSettings {
                    brokers: b.clone(),
                    passthrough: BTreeMap::new(),
                };
                weir::kafka::create_topics(&settings, &[topic.to_owned()], PARTITIONS)
                    .await
                    .expect("create topic");
            }
            Self::Embedded(e) => e.create_topic(topic, PARTITIONS).expect("create topic"),
        }
    }
}

/// A topic (or group) name unique to this run: `<prefix>-<pid>-<n>-<ms>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{}-{ms}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A component built by `scripts/build-guests.sh`, e.g. `json-enrich`.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEIR_TEST_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/modules"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest component `{}` is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
}

/// A temporary modules folder.
#[derive(Debug)]
pub struct ModulesDir {
    dir: tempfile::TempDir,
}

impl ModulesDir {
    /// An empty folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs guest `component` as module `name` with `manifest`.
    pub fn add(&self, name: &str, component: &str, manifest: &str) -> &Self {
        std::fs::copy(guest(component), self.path().join(format!("{name}.wasm"))).expect("copy");
        self.write(&format!("{name}.toml"), manifest.as_bytes())
    }

    /// Writes an arbitrary file into the folder.
    pub fn write(&self, file: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.path().join(file), bytes).expect("write");
        self
    }
}

impl Default for ModulesDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The configuration tests run weir with: the test broker, `modules`,
/// commits every 200 ms, a 20 s drain budget, no HTTP endpoint, and `kafka`
/// passed through to librdkafka.
pub fn test_config(modules: &Path, kafka: &[(&str, &str)]) -> RunConfig {
    RunConfig {
        brokers: Some(broker().bootstrap()),
        modules: Some(modules.to_path_buf()),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(20),
        http_listen: weir::http::HttpListen::Disabled,
        kafka: kafka
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RunConfig::default()
    }
}

/// weir running in-process.
#[derive(Debug)]
pub struct Weir {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Weir {
    /// Starts weir on `modules` against the test broker, committing every
    /// 200 ms. `kafka` entries pass through to librdkafka.
    pub fn start(modules: &Path, kafka: &[(&str, &str)]) -> Self {
        Self::start_config(test_config(modules, kafka)).0
    }

    /// Starts weir with `config`; returns it with the status board its
    /// supervisor reports to.
    pub fn start_config(config: RunConfig) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        let status = std::sync::Arc::new(weir::status::StatusBoard::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(weir::runtime::run_with_status(
            config,
            status.clone(),
            cancel.clone(),
        ));
        (Self { cancel, task }, status)
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await?
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers (null values as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    /// The value as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).expect("json value")
    }

    /// The first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Send {
    /// Key.
    pub key: Option<String>,
    /// Value; `None` is a tombstone.
    pub value: Option<String>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl Send {
    /// A keyed record.
    pub fn kv(key: &str, value: &str) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

/// Produces `records` in order and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[Send]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for r in records {
        let mut record = FutureRecord::<str, str>::to(topic);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some(v) = &r.value {
            record = record.payload(v);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        record = record.headers(headers);
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    for d in deliveries {
        d.await.expect("delivery").expect("acknowledged");
    }
}

/// Reads `topic` from the beginning until `expected` records arrived (or
/// `timeout` passed), then keeps reading for `quiet` to catch extras.
/// Records of aborted transactions are not seen (`read_committed`).
pub fn consume(topic: &str, expected: usize, timeout: Duration, quiet: Duration) -> Vec<Received> {
    consume_as(topic, expected, timeout, quiet, "read_committed")
}

/// [`consume`] with the given `isolation.level` (`read_uncommitted` also
/// sees records of aborted and open transactions).
pub fn consume_as(
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
    isolation: &str,
) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if quiet_until.is_some_and(|q| now >= q) || (quiet_until.is_none() && now >= deadline) {
            break;
        }
        if quiet_until.is_none() && out.len() >= expected {
            quiet_until = Some(now + quiet);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => tracing::warn!(error = %e, "test consumer error"),
            None => {}
        }
    }
    out
}

/// The committed offset of `group` for each partition of `topic`
/// (`None` where nothing is committed).
pub fn committed(group: &str, topic: &str) -> Vec<Option<i64>> {
    committed_in(group, topic, PARTITIONS)
}

/// [`committed`] for a topic with `partitions` partitions.
pub fn committed_in(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after
/// `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Path of the `weir` binary built beside the test executable.
pub fn weir_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("weir");
    assert!(
        bin.is_file(),
        "`{}` is missing: build it with `cargo build -p weir` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl Weir {
    /// Like [`Weir::start`], with the HTTP endpoint (`/metrics`, `/livez`,
    /// `/readyz`) on `listen`.
    pub fn start_with_http(
        modules: &Path,
        kafka: &[(&str, &str)],
        listen: std::net::SocketAddr,
    ) -> Self {
        let config = RunConfig {
            http_listen: weir::http::HttpListen::Addr(listen),
            ..test_config(modules, kafka)
        };
        Self::start_config(config).0
    }
}

/// A plain HTTP/1.1 GET: `(status, content type, body)`. Blocking.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, content_type, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `series` (name and labels exactly as exposed,
/// e.g. `weir_x_total{module="a"}`) in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A test fixture component from `tests/guests`, built by
/// `scripts/build-guests.sh` into `target/test-guests`.
pub fn test_guest(name: &str) -> PathBuf {
    let path = repo_root().join(format!("target/test-guests/{name}.wasm"));
    assert!(
        path.is_file(),
        "test fixture `{}` is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
}

impl Weir {
    /// Like [`Weir::start`], watching the folder with `debounce`, and
    /// returning the status board the supervisor reports to. The HTTP
    /// endpoint is off.
    pub fn start_watching(
        modules: &Path,
        debounce: Duration,
    ) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        Self::start_watching_with_http(modules, debounce, weir::http::HttpListen::Disabled)
    }

    /// [`Weir::start_watching`] with the HTTP endpoint on `http`.
    pub fn start_watching_with_http(
        modules: &Path,
        debounce: Duration,
        http: weir::http::HttpListen,
    ) -> (Self, std::sync::Arc<weir::status::StatusBoard>) {
        Self::start_config(RunConfig {
            http_listen: http,
            watch: true,
            reload_debounce: debounce,
            ..test_config(modules, &[])
        })
    }
}

/// Replaces `dest` atomically with the bytes of `src`: write a hidden
/// temporary file in the same folder, then rename it over `dest`.
pub fn install_atomically(src: &Path, dest: &Path) {
    let tmp = dest.with_file_name(format!(
        ".{}.tmp",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::copy(src, &tmp).expect("copy to temp");
    std::fs::rename(&tmp, dest).expect("rename over");
}
