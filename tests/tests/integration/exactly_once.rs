//! `[delivery] guarantee = "exactly-once"`: outputs, dead letters and input
//! offsets commit in one Kafka transaction per partition.

#![allow(clippy::print_stdout, reason = "tests print the counts they measure")]

use std::collections::HashMap;
use std::time::Duration;

use weir_tests::{
    ModulesDir, PARTITIONS, Received, Send, Weir, broker, committed, consume_as, eventually,
    init_logging, produce, test_guest, unique,
};

struct Topics {
    input: String,
    output: String,
    dlq: String,
    group: String,
}

async fn topics(prefix: &str) -> Topics {
    let t = Topics {
        input: unique(&format!("{prefix}-in")),
        output: unique(&format!("{prefix}-out")),
        dlq: unique(&format!("{prefix}-dlq")),
        group: unique(&format!("g-{prefix}")),
    };
    broker().create_topic(&t.input).await;
    broker().create_topic(&t.output).await;
    t
}

/// The `misbehave` fixture (echoes every value but `reject`, which it
/// rejects) as an exactly-once module.
fn install(t: &Topics) -> ModulesDir {
    let dir = ModulesDir::new();
    std::fs::copy(test_guest("misbehave"), dir.path().join("eos.wasm")).unwrap();
    dir.write(
        "eos.toml",
        format!(
            "input-topics = [\"{}\"]\noutput-topics = [\"{}\"]\ngroup-id = \"{}\"\n\
             [delivery]\nguarantee = \"exactly-once\"\ntransaction-interval = \"50ms\"\n\
             [on-failure]\ndead-letter-topic = \"{}\"\n[config]\noutput = \"{}\"\n",
            t.input, t.output, t.group, t.dlq, t.output
        )
        .as_bytes(),
    );
    dir
}

fn events(n: usize) -> Vec<Send> {
    (0..n)
        .map(|i| Send {
            partition: Some((i % PARTITIONS as usize) as i32),
            ..Send::kv(&format!("k{i}"), &format!("v{i}"))
        })
        .collect()
}

/// (missing, duplicates) of `values` against `v0..v{n}`.
fn audit(out: &[Received], n: usize) -> (usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in out {
        *seen.entry(r.text()).or_default() += 1;
    }
    let missing = (0..n)
        .filter(|i| !seen.contains_key(&format!("v{i}")))
        .count();
    let duplicates = seen.values().map(|c| c - 1).sum();
    (missing, duplicates)
}

/// The mock cluster neither hides aborted transactions from `read_committed`
/// readers nor reports offsets committed through a transaction (observed:
/// aborted outputs read back, committed offsets never appear), so these
/// tests need a real broker.
fn real_broker_only(test: &str) -> bool {
    if broker().is_real() {
        return true;
    }
    println!(
        "{test}: skipped on the embedded mock cluster (no transaction isolation); set WEIR_TEST_BROKERS"
    );
    false
}

async fn read(topic: &str, n: usize, isolation: &'static str) -> Vec<Received> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consume_as(
            &topic,
            n,
            Duration::from_secs(120),
            Duration::from_secs(2),
            isolation,
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_commits_outputs_with_the_input_offsets() {
    init_logging();
    if !real_broker_only("exactly_once_commits_outputs_with_the_input_offsets") {
        return;
    }
    let t = topics("eos").await;
    let modules = install(&t);
    let weir = Weir::start(modules.path(), &[]);
    let n = 600;
    produce(&t.input, &events(n)).await;
    let out = read(&t.output, n, "read_committed").await;
    let (missing, duplicates) = audit(&out, n);
    println!(
        "exactly-once: produced={n} consumed={} missing={missing} duplicates={duplicates}",
        out.len()
    );
    assert_eq!((missing, duplicates), (0, 0));
    let per_partition = (n / PARTITIONS as usize) as i64;
    eventually(
        Duration::from_secs(30),
        "offsets committed by the transactions",
        || {
            let c = committed(&t.group, &t.input);
            c.iter().all(|o| *o == Some(per_partition)).then_some(())
        },
    )
    .await;
    weir.stop().await.unwrap();
}

/// A dead letter that cannot be written aborts the transaction holding it
/// (and the outputs already written in it); the partition is handled again
/// from the transaction's first event until the dead-letter topic is back.
/// `read_committed` readers see every output once; `read_uncommitted` ones
/// also see the aborted attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_invisible_and_handled_again() {
    init_logging();
    if !real_broker_only("aborted_transactions_are_invisible_and_handled_again") {
        return;
    }
    let t = topics("eos-abort").await;
    let modules = install(&t);
    // Dead letters time out after 3 s, so each attempt aborts quickly.
    let weir = Weir::start(
        modules.path(),
        &[
            ("message.timeout.ms", "3000"),
            ("transaction.timeout.ms", "10000"),
        ],
    );
    let n = 30;
    let mut sends = events(n);
    sends.push(Send {
        partition: Some(0),
        ..Send::kv("poison", "reject")
    });
    produce(&t.input, &sends).await;
    // Wait for at least one aborted attempt: its outputs reach the log.
    let dirty = read(&t.output, 1, "read_uncommitted").await;
    assert!(
        !dirty.is_empty(),
        "an attempt wrote outputs before aborting"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        committed(&t.group, &t.input)[0],
        None,
        "partition 0 commits nothing while its dead letter cannot be written"
    );
    // Auto-creation is off on the real broker: the topic did not exist.
    broker().create_topic(&t.dlq).await;
    let dead = read(&t.dlq, 1, "read_committed").await;
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(dead[0].text(), "reject");
    let out = read(&t.output, n, "read_committed").await;
    let (missing, duplicates) = audit(&out, n);
    let all = read(&t.output, n, "read_uncommitted").await;
    println!(
        "exactly-once after aborts: produced={n} consumed={} missing={missing} duplicates={duplicates} \
         (read_uncommitted sees {} records)",
        out.len(),
        all.len()
    );
    assert_eq!((missing, duplicates), (0, 0));
    assert!(
        all.len() > out.len(),
        "aborted attempts were really written"
    );
    weir.stop().await.unwrap();
}
