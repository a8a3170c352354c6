//! Kafka's own command-line tools (the Java classes in the Maven jars that
//! `scripts/kafka.sh run` puts on the classpath), for tests that need a
//! client that is not weir and not librdkafka: the console producer and
//! consumer, ACLs, where a broker keeps a topic's log, and what codec each
//! stored record batch uses.
//!
//! Each call starts a JVM (1-3 s). They need Java 17 and the jars, as the
//! real broker does; run them only against a real broker.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// What a tool printed.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// How long it ran, JVM start included.
    pub elapsed: Duration,
}

/// Runs Kafka tool `class` with `args`, feeding it `stdin`, and waits for
/// it to exit.
pub fn run(class: &str, args: &[&str], stdin: Option<&[u8]>) -> ToolOutput {
    let t0 = Instant::now();
    let mut child = Command::new(repo_root().join("scripts/kafka.sh"))
        .arg("run")
        .arg(class)
        .args(args)
        // The jar cache of this checkout, as `crate::cluster` uses.
        .env("WEIR_KAFKA_LIB", repo_root().join(".kafka/lib"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/kafka.sh");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write the tool's input");
    }
    let out = child.wait_with_output().expect("wait for the tool");
    ToolOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
        elapsed: t0.elapsed(),
    }
}

/// [`run`], panicking with the tool's output when it fails.
pub fn run_ok(class: &str, args: &[&str], stdin: Option<&[u8]>) -> ToolOutput {
    let out = run(class, args, stdin);
    assert!(
        out.success,
        "{class} {args:?} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

/// Writes `records` (key, value; neither may hold a newline or a tab) to
/// `topic` with Kafka's console producer (the Java client), with `props`
/// as its producer properties (e.g. `compression.type`).
pub fn console_produce(
    bootstrap: &str,
    topic: &str,
    records: &[(String, String)],
    props: &[(&str, &str)],
) -> ToolOutput {
    let mut input = String::new();
    for (key, value) in records {
        assert!(
            !(key.contains(['\t', '\n']) || value.contains(['\t', '\n'])),
            "a console record holds a tab or a newline: {key:?} {value:?}"
        );
        input.push_str(&format!("{key}\t{value}\n"));
    }
    let mut args = vec![
        "--bootstrap-server".to_owned(),
        bootstrap.to_owned(),
        "--topic".to_owned(),
        topic.to_owned(),
        "--reader-property".to_owned(),
        "parse.key=true".to_owned(),
        "--reader-property".to_owned(),
        "key.separator=\t".to_owned(),
    ];
    for (k, v) in props {
        args.push("--command-property".to_owned());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(
        "org.apache.kafka.tools.ConsoleProducer",
        &args,
        Some(input.as_bytes()),
    )
}

/// Reads `topic` from the beginning with Kafka's console consumer (the Java
/// client) until `max` records arrived or nothing came for `timeout`;
/// returns their values, one per record, in the order read.
pub fn console_consume(bootstrap: &str, topic: &str, max: usize, timeout: Duration) -> Vec<String> {
    let (max, timeout) = (max.to_string(), timeout.as_millis().to_string());
    let out = run_ok(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &max,
            "--timeout-ms",
            &timeout,
        ],
        None,
    );
    out.stdout.lines().map(str::to_owned).collect()
}

/// The directory the broker at `bootstrap` keeps `topic`'s partitions in
/// (its `log.dirs` entry), or `None` when it reports none.
pub fn log_dir(bootstrap: &str, topic: &str) -> Option<PathBuf> {
    let out = run_ok(
        "org.apache.kafka.tools.LogDirsCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--topic-list",
            topic,
        ],
        None,
    );
    let json = out.stdout.lines().find(|l| l.starts_with('{'))?;
    let report: serde_json::Value = serde_json::from_str(json).ok()?;
    let dir = report["brokers"][0]["logDirs"][0]["logDir"].as_str()?;
    Some(PathBuf::from(dir))
}

/// The compression codec of every record batch stored in the log segment
/// files of `partitions` (directories under a log dir), counted by codec
/// name as the broker's DumpLogSegments tool prints it (`none`, `gzip`,
/// `snappy`, `lz4`, `zstd`); keyed by partition directory name.
pub fn batch_codecs(partitions: &[PathBuf]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut files: Vec<String> = Vec::new();
    for dir in partitions {
        for entry in std::fs::read_dir(dir).expect("a partition directory") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                files.push(path.display().to_string());
            }
        }
    }
    let mut codecs: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    if files.is_empty() {
        return codecs;
    }
    let joined = files.join(",");
    let out = run_ok(
        "org.apache.kafka.tools.DumpLogSegments",
        &["--files", &joined],
        None,
    );
    let mut current = String::new();
    for line in out.stdout.lines() {
        if let Some(file) = line.strip_prefix("Dumping ") {
            current = Path::new(file.trim())
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        } else if line.starts_with("baseOffset:")
            && let Some(codec) = line
                .split(" compresscodec: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
        {
            *codecs
                .entry(current.clone())
                .or_default()
                .entry(codec.to_lowercase())
                .or_default() += 1;
        }
    }
    codecs
}

/// Adds (`add`) or removes an ACL on the broker at `bootstrap` (connected
/// as a super user): `principal` may do `operation` on topic `topic`.
pub fn topic_acl(bootstrap: &str, add: bool, principal: &str, operation: &str, topic: &str) {
    let action = if add { "--add" } else { "--remove" };
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        action,
        "--allow-principal",
        principal,
        "--operation",
        operation,
        "--topic",
        topic,
    ];
    if !add {
        args.push("--force");
    }
    run_ok("org.apache.kafka.tools.AclCommand", &args, None);
}
