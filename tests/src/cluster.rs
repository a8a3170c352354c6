//! Brokers the broker-fault and security tests start themselves through
//! `scripts/kafka.sh`: a single node with a SASL_SSL listener, and a
//! three-node KRaft cluster. Each is stopped when its guard drops (also when
//! a test fails). Plus clients that take extra librdkafka properties (the
//! SASL_SSL ones) and count what they wrote and read.
//!
//! Ports (override for parallel checkouts on one machine):
//! `WEIR_TEST_SECURE_PORT` (default 19292; uses it, +1 and +2) and
//! `WEIR_TEST_CLUSTER_PORT` (default 19300; uses six ports from it).
//!
//! These tests need Java 17 and the Kafka jars (`scripts/kafka.sh` fetches
//! them with Maven). They run when `WEIR_TEST_BROKERS` is set (as in CI,
//! where `scripts/test.sh` sets it) or `WEIR_TEST_OWN_BROKERS=1`; see
//! [`own_brokers_enabled`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use crate::kafka::{Producer, Send, assign_from_beginning, client_config, poll_until};
use crate::{PARTITIONS, repo_root, unique};

/// Whether the tests that start their own brokers should run: yes when
/// `WEIR_TEST_OWN_BROKERS=1` or when `WEIR_TEST_BROKERS` names a real broker
/// (so Java and the jars are there); no when `WEIR_TEST_OWN_BROKERS=0`.
pub fn own_brokers_enabled() -> bool {
    match std::env::var("WEIR_TEST_OWN_BROKERS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => std::env::var("WEIR_TEST_BROKERS").is_ok_and(|b| !b.trim().is_empty()),
    }
}

fn port_from_env(var: &str, default: u16) -> u16 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var} must be a port number, got {v:?}")),
        Err(_) => default,
    }
}

/// Runs `scripts/kafka.sh <args>` with `env`; returns the last stdout line.
/// Panics with the script's stderr when it fails.
fn kafka_sh(env: &[(&str, String)], args: &[&str]) -> String {
    let mut cmd = Command::new(repo_root().join("scripts/kafka.sh"));
    cmd.args(args)
        .env("WEIR_KAFKA_LIB", repo_root().join(".kafka/lib"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scripts/kafka.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/kafka.sh {args:?} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Runs `scripts/kafka.sh <command>` with `env`, ignoring the outcome: the
/// guards' clean-up on drop.
fn kafka_sh_quietly(env: &[(&str, String)], command: &str) {
    let _ = Command::new(repo_root().join("scripts/kafka.sh"))
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output();
}

fn state_dir(name: &str) -> PathBuf {
    repo_root().join("target/kafka-tests").join(name)
}

/// A single broker with a SASL_SSL listener (PLAIN and SCRAM-SHA-512, one
/// user with a password made up for this run) besides its PLAINTEXT one;
/// stopped on drop.
#[derive(Debug)]
pub struct SecureBroker {
    env: Vec<(&'static str, String)>,
    /// PLAINTEXT bootstrap address (test setup only).
    pub plaintext: String,
    /// SASL_SSL bootstrap address.
    pub secure: String,
    /// The throwaway CA the broker certificate is signed by.
    pub ca: PathBuf,
    /// The SASL user.
    pub user: String,
    /// Its password (PLAIN and SCRAM-SHA-512).
    pub password: String,
    /// How long the start took.
    pub startup: Duration,
}

impl SecureBroker {
    /// Starts a fresh secure broker (previous data wiped, new password).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`SecureBroker::start`] with the ACL authorizer on: the PLAINTEXT
    /// listener (test setup) is a super user, the SASL user may do
    /// anything on a resource without ACLs and only what they allow on one
    /// with ACLs ([`crate::tools::topic_acl`]).
    pub fn start_with_acls() -> Self {
        Self::start_with(true)
    }

    /// The principal of the SASL user, for ACLs.
    pub fn principal(&self) -> String {
        format!("User:{}", self.user)
    }

    fn start_with(acls: bool) -> Self {
        let port = port_from_env("WEIR_TEST_SECURE_PORT", 19292);
        let home = state_dir("secure");
        // Letters and digits only (kafka.sh's rule), different every run.
        let password = format!("pw{}", unique("x").replace('-', "").replace('x', "Z"));
        let user = "weir-test".to_owned();
        let env = vec![
            ("WEIR_KAFKA_HOME", home.display().to_string()),
            ("WEIR_KAFKA_PORT", port.to_string()),
            ("WEIR_KAFKA_SASL", "1".to_owned()),
            ("WEIR_KAFKA_SASL_USER", user.clone()),
            ("WEIR_KAFKA_SASL_PASSWORD", password.clone()),
            ("WEIR_KAFKA_ACLS", if acls { "1" } else { "0" }.to_owned()),
        ];
        // The guard exists before the start, so a failed start is stopped too.
        let mut broker = Self {
            plaintext: String::new(),
            secure: format!("127.0.0.1:{}", port + 2),
            ca: home.join("tls/ca.pem"),
            user,
            password,
            startup: Duration::ZERO,
            env,
        };
        kafka_sh(&broker.env, &["wipe"]);
        let t0 = Instant::now();
        broker.plaintext = kafka_sh(&broker.env, &["start"]);
        broker.startup = t0.elapsed();
        broker
    }

    /// The `[kafka]` properties of a SASL_SSL client with `mechanism`
    /// (`PLAIN`, `SCRAM-SHA-512`) and `password`.
    pub fn client_props(&self, mechanism: &str, password: &str) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", mechanism),
            ("sasl.username", &self.user),
            ("sasl.password", password),
            ("ssl.ca.location", &self.ca.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        kafka_sh_quietly(&self.env, "stop");
    }
}

/// Three combined broker+controller nodes (node ids 1-3), replication
/// factor 3, `min.insync.replicas=2`; stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    env: Vec<(&'static str, String)>,
    /// Bootstrap list of all three nodes.
    pub bootstrap: String,
    /// How long `cluster-start` took (format included).
    pub startup: Duration,
}

impl Cluster {
    /// Starts a fresh cluster (previous data wiped).
    pub fn start() -> Self {
        let env = vec![
            (
                "WEIR_KAFKA_HOME",
                repo_root().join(".kafka").display().to_string(),
            ),
            (
                "WEIR_KAFKA_CLUSTER_HOME",
                state_dir("cluster").display().to_string(),
            ),
            (
                "WEIR_KAFKA_CLUSTER_PORT",
                port_from_env("WEIR_TEST_CLUSTER_PORT", 19300).to_string(),
            ),
        ];
        // The guard exists before the start, so a failed start is stopped too.
        let mut cluster = Self {
            env,
            bootstrap: String::new(),
            startup: Duration::ZERO,
        };
        kafka_sh(&cluster.env, &["cluster-wipe"]);
        let t0 = Instant::now();
        cluster.bootstrap = kafka_sh(&cluster.env, &["cluster-start"]);
        cluster.startup = t0.elapsed();
        cluster
    }

    /// SIGKILLs node `id`.
    pub fn kill_node(&self, id: i32) {
        kafka_sh(&self.env, &["kill-node", &id.to_string()]);
    }

    /// Starts node `id` again and waits until it serves.
    pub fn start_node(&self, id: i32) {
        kafka_sh(&self.env, &["start-node", &id.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        kafka_sh_quietly(&self.env, "cluster-stop");
    }
}

/// Creates `topics` with [`PARTITIONS`] partitions, `replication` replicas
/// and `min.insync.replicas` = `min_isr`.
pub async fn create_topics(bootstrap: &str, topics: &[&str], replication: i32, min_isr: u32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, &[])
        .create()
        .expect("admin client");
    let min_isr = min_isr.to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(replication))
                .set("min.insync.replicas", &min_isr)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await.expect("create") {
        result.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Produces records `from..to` to `topic` (key `k<i>`, value `<i>`),
/// waiting for every acknowledgement; returns the values acknowledged.
/// Failed deliveries are logged, not fatal: the caller counts them.
pub async fn produce_range(producer: &Producer, topic: &str, from: u64, to: u64) -> Vec<u64> {
    let pending: Vec<_> = (from..to)
        .map(|i| {
            let record = Send::kv(&format!("k{i}"), &i.to_string());
            (i, producer.enqueue(topic, &record))
        })
        .collect();
    let mut acked = Vec::new();
    for (i, delivery) in pending {
        match delivery.await {
            Ok(Ok(_)) => acked.push(i),
            Ok(Err((e, _))) => tracing::error!(value = i, error = %e, "test record not delivered"),
            Err(_) => tracing::error!(value = i, "test producer dropped"),
        }
    }
    acked
}

/// Sum of the high watermarks of `topic`'s partitions (records written so
/// far), or `None` while a partition has no reachable leader.
pub fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(2))
                .ok()
                .map(|(_, high)| high)
        })
        .sum()
}

/// The node leading partition `partition` of `topic`.
pub fn leader_of(consumer: &BaseConsumer, topic: &str, partition: i32) -> i32 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .expect("partition in metadata")
}

/// Reads every partition of `topic` from the beginning until `expected`
/// records arrived or `timeout` passed, then `quiet` longer to catch
/// extras; returns the values, parsed as numbers. Reads on a blocking
/// thread.
pub async fn read_values(
    bootstrap: &str,
    props: &[(String, String)],
    topic: &str,
    expected: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<u64> {
    let (bootstrap, props, topic) = (bootstrap.to_owned(), props.to_vec(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap, &props)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        assign_from_beginning(&consumer, &topic, PARTITIONS);
        let mut values = Vec::new();
        poll_until(&consumer, expected, timeout, quiet, |m| {
            values.push(
                std::str::from_utf8(m.payload().unwrap_or_default())
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .expect("numeric value"),
            );
        });
        values
    })
    .await
    .expect("the reading thread")
}

/// What a copy run delivered: every number sent must arrive exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records acknowledged to the input topic.
    pub produced: usize,
    /// Records read back from the output topic.
    pub consumed: usize,
    /// Produced values never seen in the output.
    pub missing: usize,
    /// Output records beyond the first copy of a value.
    pub duplicates: usize,
}

impl Counts {
    /// Compares the values produced with those read back.
    pub fn of(produced: &[u64], consumed: &[u64]) -> Self {
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for v in consumed {
            *seen.entry(*v).or_default() += 1;
        }
        Self {
            produced: produced.len(),
            consumed: consumed.len(),
            missing: produced.iter().filter(|v| !seen.contains_key(v)).count(),
            duplicates: seen.values().map(|n| n - 1).sum(),
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "produced={} consumed={} missing={} duplicates={}",
            self.produced, self.consumed, self.missing, self.duplicates
        )
    }
}
