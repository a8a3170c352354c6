//! Partitions that cannot make progress for a reason only the broker knows,
//! on a SASL_SSL broker with ACLs (`SecureBroker::start_with_acls`; weir
//! connects as the SASL user, the test sets up over the super-user
//! PLAINTEXT listener):
//!
//! - weir may describe its input topic but not read it: every partition
//!   shows `stalled` with the broker's reason in `/status`, is counted in
//!   `weir_partition_stalls_total` and `weir_stalled_partitions`, and
//!   `/readyz` says why; the stall is logged once per partition, not at
//!   every fetch; nothing is committed. Once Read is granted the stalls
//!   clear and every event is copied exactly once.
//! - weir may not write its output topic: the broker's refusal dead-letters
//!   the events with its reason; nothing reaches the output.
//!
//! (A missing output topic is in `offsets.rs`.) Runs when
//! `WEIR_TEST_BROKERS` is set (so Java and the Kafka jars are there) or
//! `WEIR_TEST_OWN_BROKERS=1`; the broker's ports come from
//! `WEIR_TEST_SECURE_PORT` (see `weir_tests::cluster`).

#![allow(
    clippy::print_stdout,
    reason = "the tests print the counts and times they measure"
)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::cluster::{
    Counts, SecureBroker, create_topics, own_brokers_enabled, produce_range, read_values,
};
use weir_tests::http::promtool_check;
use weir_tests::kafka::{Received, assign_from_beginning, client_config, poll_until};
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    Manifest, ModulesDir, PARTITIONS, Producer, eventually, http_get, init_logging, sample,
    test_guest, tools, unique,
};

/// Events per scenario.
const N: u64 = 300;

/// The offsets `group` committed on `topic`, per partition, read over the
/// PLAINTEXT listener.
fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = client_config(bootstrap, &[])
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Reads `topic` over PLAINTEXT from the beginning until `n` records
/// arrived (or 90 s passed), then 1 s more: each record's value and its
/// `weir.error.message` header.
async fn read_dead_letters(bootstrap: &str, topic: &str, n: usize) -> Vec<(String, String)> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap, &[])
            .set("group.id", unique("dlq-reader"))
            .create()
            .expect("consumer");
        assign_from_beginning(&consumer, &topic, PARTITIONS);
        let mut dead = Vec::new();
        poll_until(
            &consumer,
            n,
            Duration::from_secs(90),
            Duration::from_secs(1),
            |m| {
                let r = Received::from(m);
                dead.push((r.text(), r.header("weir.error.message").unwrap_or_default()));
            },
        );
        dead
    })
    .await
    .expect("the reading thread")
}

/// `weir run` on the secure listener as the SASL user (SCRAM), with the
/// identity guest copying `input` to `output` in `group`.
fn start_weir(broker: &SecureBroker, modules: &ModulesDir) -> WeirProcess {
    let mut config = ProcessConfig::new(modules.path());
    config.brokers = Some(broker.secure.clone());
    config.commit_interval = Duration::from_millis(200);
    config
        .kafka
        .extend(broker.client_props("SCRAM-SHA-512", &broker.password));
    WeirProcess::start("stalls", &config)
}

/// `/metrics` of `weir`, checked by promtool.
fn metrics(weir: &WeirProcess) -> String {
    let (code, _, body) = http_get(weir.http(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    promtool_check(&body);
    body
}

/// The `stalled` map of module `copy` in `/status`.
fn stalled(weir: &WeirProcess) -> Option<serde_json::Map<String, serde_json::Value>> {
    let status = weir.status()?;
    let module = status.as_array()?.iter().find(|m| m["name"] == "copy")?;
    module["stalled"].as_object().cloned()
}

/// One broker for both scenarios (a start costs 10-20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_weir_may_not_read_or_write_on_an_acl_broker() {
    if !own_brokers_enabled() {
        println!(
            "stalls: skipped (starts its own Kafka broker: set WEIR_TEST_OWN_BROKERS=1, or \
             WEIR_TEST_BROKERS as scripts/test.sh does)"
        );
        return;
    }
    init_logging();
    let broker = tokio::task::block_in_place(SecureBroker::start_with_acls);
    println!("ACL broker started in {:.1?}", broker.startup);
    an_unreadable_input_stalls_visibly_until_read_is_granted(&broker).await;
    an_unwritable_output_is_dead_lettered_with_the_brokers_reason(&broker).await;
}

async fn an_unreadable_input_stalls_visibly_until_read_is_granted(broker: &SecureBroker) {
    let (input, output, group) = (unique("acl-in"), unique("acl-out"), unique("g-acl"));
    create_topics(&broker.plaintext, &[&input, &output], 1, 1).await;
    // An ACL on the topic: the SASL user may describe it (metadata,
    // offsets, group membership work) but not read it.
    tokio::task::block_in_place(|| {
        tools::topic_acl(
            &broker.plaintext,
            true,
            &broker.principal(),
            "Describe",
            &input,
        )
    });
    let produced = produce_range(&Producer::connect(&broker.plaintext, &[]), &input, 0, N).await;
    let modules = ModulesDir::new();
    modules.install(
        "copy",
        &test_guest("identity"),
        Manifest::pipe(&input, &output, &group),
    );
    let t0 = Instant::now();
    let mut weir = start_weir(broker, &modules);

    // Every partition is shown stalled with the broker's reason.
    let shown = eventually(Duration::from_secs(60), "3 stalled partitions", || {
        stalled(&weir).filter(|s| s.len() == PARTITIONS as usize)
    })
    .await;
    println!(
        "unreadable input: {} partitions stalled {:.1?} after weir started: {shown:?}",
        shown.len(),
        t0.elapsed()
    );
    for p in 0..PARTITIONS {
        let why = shown[&format!("{input}[{p}]")].as_str().unwrap_or_default();
        assert!(why.contains("Topic authorization failed"), "{why}");
    }
    let text = metrics(&weir);
    let stalls = r#"weir_partition_stalls_total{module="copy",reason="authorization"}"#;
    let gauge = r#"weir_stalled_partitions{module="copy"}"#;
    assert_eq!(sample(&text, stalls), Some(f64::from(PARTITIONS)), "{text}");
    assert_eq!(sample(&text, gauge), Some(f64::from(PARTITIONS)), "{text}");
    let (code, body) = weir.readyz().expect("/readyz answers");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!("partition {input}[0] cannot be consumed"))
            && body.contains("Topic authorization failed"),
        "{body}"
    );
    println!("unreadable input: /readyz {code}: {}", body.trim());
    // librdkafka retries the fetch every 5 s: still one log line per
    // partition, and nothing committed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let logged = weir.logged(
        "partition stalled: the consumer cannot fetch it; nothing past it \
         is committed until it makes progress",
    );
    assert_eq!(logged.len(), PARTITIONS as usize, "{logged:?}");
    let nothing = vec![None; PARTITIONS as usize];
    let before = tokio::task::block_in_place(|| committed(&broker.plaintext, &group, &input));
    assert_eq!(before, nothing, "nothing committed while stalled");

    // Granting Read: the partitions resume and every event is copied once.
    let granted = Instant::now();
    tokio::task::block_in_place(|| {
        tools::topic_acl(&broker.plaintext, true, &broker.principal(), "Read", &input)
    });
    eventually(Duration::from_secs(60), "the stalls to clear", || {
        stalled(&weir).filter(serde_json::Map::is_empty)
    })
    .await;
    let cleared = granted.elapsed();
    let consumed = read_values(
        &broker.plaintext,
        &[],
        &output,
        N as usize,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let counts = Counts::of(&produced, &consumed);
    println!(
        "unreadable input: stalls cleared {cleared:.1?} after Read was granted; {counts} \
         ({:.1?} after the grant)",
        granted.elapsed()
    );
    assert_eq!(
        (counts.consumed, counts.missing, counts.duplicates),
        (N as usize, 0, 0),
        "{counts}"
    );
    // The gauge follows the stalls' clearing; give a loaded machine a
    // moment before reading the rest.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut text = metrics(&weir);
    while sample(&text, gauge) != Some(0.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        text = metrics(&weir);
    }
    assert_eq!(sample(&text, gauge), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, stalls),
        Some(f64::from(PARTITIONS)),
        "a counter"
    );
    let (code, body) = weir.readyz().expect("/readyz answers");
    assert_eq!(code, 200, "{body}");
    let resumed = weir.logged("stalled partition makes progress again");
    assert_eq!(resumed.len(), PARTITIONS as usize, "{resumed:?}");
    eventually(Duration::from_secs(20), "all offsets committed", || {
        let c = committed(&broker.plaintext, &group, &input);
        (c.iter().flatten().sum::<i64>() == N as i64).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| weir.stop(Duration::from_secs(30)));
}

async fn an_unwritable_output_is_dead_lettered_with_the_brokers_reason(broker: &SecureBroker) {
    let (input, output, dlq, group) = (
        unique("acl-in"),
        unique("acl-out"),
        unique("acl-dlq"),
        unique("g-acl"),
    );
    create_topics(&broker.plaintext, &[&input, &output, &dlq], 1, 1).await;
    // The SASL user may describe the output topic but not write it.
    tokio::task::block_in_place(|| {
        tools::topic_acl(
            &broker.plaintext,
            true,
            &broker.principal(),
            "Describe",
            &output,
        )
    });
    let modules = ModulesDir::new();
    modules.install(
        "copy",
        &test_guest("identity"),
        Manifest::pipe(&input, &output, &group).dead_letters(&dlq),
    );
    let produced = produce_range(&Producer::connect(&broker.plaintext, &[]), &input, 0, N).await;
    let t0 = Instant::now();
    let mut weir = start_weir(broker, &modules);
    let dead = read_dead_letters(&broker.plaintext, &dlq, N as usize).await;
    let took = t0.elapsed();
    let values: Vec<u64> = dead
        .iter()
        .map(|(value, _)| value.parse().expect("numeric value"))
        .collect();
    let counts = Counts::of(&produced, &values);
    println!(
        "unwritable output: {counts} in the dead-letter topic {took:.1?} after weir started; \
         first reason: {:?}",
        dead.first().map(|(_, why)| why)
    );
    assert_eq!(
        (counts.consumed, counts.missing, counts.duplicates),
        (N as usize, 0, 0),
        "{counts}"
    );
    for (_, why) in &dead {
        assert!(why.contains("Topic authorization failed"), "{why}");
    }
    let written = read_values(
        &broker.plaintext,
        &[],
        &output,
        0,
        Duration::ZERO,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        written.is_empty(),
        "{} records reached the output",
        written.len()
    );
    tokio::task::block_in_place(|| weir.stop(Duration::from_secs(30)));
}
