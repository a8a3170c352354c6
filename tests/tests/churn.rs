//! 1,000 alternating hot reloads: memory, threads and file descriptors stay
//! bounded. A test binary of its own, so that no other test shares the
//! process whose figures it reads.

#![allow(
    clippy::print_stdout,
    reason = "the test prints the figures it measures"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use weir::status::{ModuleState, StatusBoard};
use weir_tests::{
    ModulesDir, Weir, broker, consume, eventually, init_logging, install_atomically, test_guest,
    unique,
};

fn digest(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

struct Topics {
    input: String,
    output: String,
}

async fn setup(prefix: &str) -> (Topics, ModulesDir) {
    let t = Topics {
        input: unique(&format!("{prefix}-in")),
        output: unique(&format!("{prefix}-out")),
    };
    broker().create_topic(&t.input).await;
    broker().create_topic(&t.output).await;
    let modules = ModulesDir::new();
    modules.write(
        "echo.toml",
        format!(
            "input-topics = [\"{}\"]\noutput-topics = [\"{}\"]\ngroup-id = \"{}\"\n\
             [config]\noutput = \"{}\"\n",
            t.input,
            t.output,
            unique("g-churn"),
            t.output
        )
        .as_bytes(),
    );
    (t, modules)
}

async fn running(status: &StatusBoard, name: &str, digest: &str) {
    eventually(Duration::from_secs(30), "module running", || {
        status
            .snapshot()
            .into_iter()
            .find(|m| m.name == name && m.digest.as_deref() == Some(digest))
            .filter(|m| m.state == ModuleState::Running)
            .map(|_| ())
    })
    .await;
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker().bootstrap())
        .create()
        .unwrap()
}

async fn send(producer: &FutureProducer, topic: &str, n: usize) {
    let value = format!(r#"{{"n":{n}}}"#);
    let key = format!("k{n}");
    let record = FutureRecord::to(topic).key(&key).payload(&value);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap();
}

async fn read(topic: &str, n: usize) -> usize {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consume(
            &topic,
            n,
            Duration::from_secs(90),
            Duration::from_millis(500),
        )
        .len()
    })
    .await
    .unwrap()
}

/// Reads a `/proc/self/status` field in kB, the thread count and open fds.
fn process_figures() -> (u64, usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    (rss_kb, threads, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alternating_reloads_keep_memory_threads_and_fds_bounded() {
    init_logging();
    let (t, modules) = setup("churn").await;
    let wasm = modules.path().join("echo.wasm");
    let versions = [test_guest("echo-v1"), test_guest("echo-v2")];
    let digests: Vec<String> = versions.iter().map(|p| digest(p)).collect();
    install_atomically(&versions[0], &wasm);
    let (weir, status): (Weir, Arc<StatusBoard>) =
        Weir::start_watching(modules.path(), Duration::from_millis(20));
    running(&status, "echo", &digests[0]).await;
    let producer = producer();

    let reloads = 1_000;
    let warmup = 50;
    let mut before = (0, 0, 0);
    let started = Instant::now();
    let mut sent = 0;
    for i in 1..=reloads {
        if i == warmup {
            before = process_figures();
        }
        install_atomically(&versions[i % 2], &wasm);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !status
            .snapshot()
            .iter()
            .any(|m| m.name == "echo" && m.digest.as_deref() == Some(digests[i % 2].as_str()))
        {
            assert!(Instant::now() < deadline, "reload {i} did not happen");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i % 100 == 0 {
            // Traffic now and then, so instances of new versions are made.
            send(&producer, &t.input, sent).await;
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(read(&t.output, sent).await, sent);
    let after = process_figures();
    println!(
        "{reloads} reloads in {:.1} s: RSS {} -> {} KiB, threads {} -> {}, fds {} -> {}",
        elapsed.as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    let echo = status
        .snapshot()
        .into_iter()
        .find(|m| m.name == "echo")
        .unwrap();
    assert_eq!(echo.loads, reloads as u64 + 1);
    assert!(
        after.0 < before.0 + 64 * 1024,
        "RSS grew by more than 64 MiB"
    );
    assert!(after.1 <= before.1 + 4, "threads grew");
    assert!(after.2 <= before.2 + 8, "file descriptors grew");
    weir.stop().await.unwrap();
}
