//! Every compression codec Kafka producers use, both ways, with clients
//! that are not weir: for each of gzip, snappy, lz4 and zstd, Kafka's own
//! console producer (the Java client) writes an input topic compressed
//! with the codec, a weir process whose `weir.toml` says
//! `[kafka] compression.type = "<codec>"` copies it with the identity
//! guest, and Kafka's console consumer reads the copy back: every record
//! exactly once, with its contents. The stored batches of both topics are
//! checked with the broker's DumpLogSegments tool to be in that codec.
//!
//! Needs the real broker (`WEIR_TEST_BROKERS`) and Java with the Kafka
//! jars (`scripts/kafka.sh run`); skipped on the embedded broker.

#![allow(
    clippy::print_stdout,
    reason = "the test prints the figures it measures"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use weir_tests::kafka::client_config;
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    Manifest, ModulesDir, PARTITIONS, broker, committed_total, init_logging, test_guest, tools,
    unique,
};

/// The codecs Kafka's producers offer (besides `none`).
const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];

/// Records per codec.
const RECORDS: usize = 2_000;

/// The value of record `i` of `codec`: unique, and compressible (librdkafka
/// sends a batch uncompressed when compressing does not make it smaller).
fn value(codec: &str, i: usize) -> String {
    format!("{codec}-{i:05}-{}", "payload".repeat(20))
}

/// Creates `topic` with [`PARTITIONS`] partitions and topic-level
/// `compression.type` = `compression` (`producer`: as the producer sent it).
async fn create_topic(bootstrap: &str, topic: &str, compression: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, &[])
        .create()
        .expect("admin client");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))
        .set("compression.type", compression);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await.expect("create") {
        result.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// One codec's topics, group and weir process.
struct Lane {
    codec: &'static str,
    input: String,
    output: String,
    group: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_is_read_and_written_exactly_by_and_for_java_clients() {
    init_logging();
    if !broker().is_real() {
        println!("codecs: skipped (needs a real broker and Kafka's Java tools: WEIR_TEST_BROKERS)");
        return;
    }
    let bootstrap = broker().bootstrap();
    let lanes: Vec<Lane> = CODECS
        .into_iter()
        .map(|codec| Lane {
            codec,
            input: unique(&format!("codec-{codec}-in")),
            output: unique(&format!("codec-{codec}-out")),
            group: unique(&format!("g-codec-{codec}")),
        })
        .collect();
    for lane in &lanes {
        // The broker keeps (or re-compresses to) the codec on the input, so
        // weir reads it whatever the producer did; the output keeps what
        // weir's producer sent.
        create_topic(&bootstrap, &lane.input, lane.codec).await;
        create_topic(&bootstrap, &lane.output, "producer").await;
    }

    // Kafka's console producer (the Java client) writes each input topic
    // compressed with its codec; all four at once.
    let t0 = Instant::now();
    let producers: Vec<_> = lanes
        .iter()
        .map(|lane| {
            let (bootstrap, topic, codec) = (bootstrap.clone(), lane.input.clone(), lane.codec);
            tokio::task::spawn_blocking(move || {
                let records: Vec<(String, String)> = (0..RECORDS)
                    .map(|i| (format!("k{i}"), value(codec, i)))
                    .collect();
                tools::console_produce(
                    &bootstrap,
                    &topic,
                    &records,
                    &[("compression.type", codec), ("linger.ms", "20")],
                )
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer thread");
    }
    let produced_in = t0.elapsed();

    // One weir process per codec: `[kafka] compression.type` is the
    // process's producer setting.
    let t0 = Instant::now();
    let mut weirs = Vec::new();
    let mut modules = Vec::new();
    for lane in &lanes {
        let dir = ModulesDir::new();
        dir.install(
            "copy",
            &test_guest("identity"),
            Manifest::pipe(&lane.input, &lane.output, &lane.group),
        );
        let mut config = ProcessConfig::new(dir.path());
        config
            .kafka
            .push(("compression.type".into(), lane.codec.into()));
        weirs.push(WeirProcess::start(
            &format!("codec-{}", lane.codec),
            &config,
        ));
        modules.push(dir);
    }
    for (lane, weir) in lanes.iter().zip(&weirs) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed_total(&lane.group, &lane.input) < RECORDS as i64 {
            assert!(
                Instant::now() < deadline,
                "{}: weir did not commit {RECORDS} records within 120 s (committed {}); \
                 /status: {}\nlog tail:\n{}",
                lane.codec,
                committed_total(&lane.group, &lane.input),
                weir.status().unwrap_or_default(),
                weir.log_tail(10)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let copied_in = t0.elapsed();

    // Kafka's console consumer reads every copy back.
    let t0 = Instant::now();
    let readers: Vec<_> = lanes
        .iter()
        .map(|lane| {
            let (bootstrap, topic) = (bootstrap.clone(), lane.output.clone());
            tokio::task::spawn_blocking(move || {
                tools::console_consume(&bootstrap, &topic, RECORDS, Duration::from_secs(20))
            })
        })
        .collect();
    let mut read = Vec::new();
    for r in readers {
        read.push(r.await.expect("reader thread"));
    }
    let read_in = t0.elapsed();

    for ((lane, values), weir) in lanes.iter().zip(&read).zip(&weirs) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for v in values {
            *seen.entry(v.as_str()).or_default() += 1;
        }
        let missing = (0..RECORDS)
            .filter(|&i| !seen.contains_key(value(lane.codec, i).as_str()))
            .count();
        let duplicates: usize = seen.values().map(|n| n - 1).sum();
        println!(
            "codec {:>6}: {RECORDS} produced by the Java producer, {} read back by the Java \
             consumer, missing {missing}, duplicates {duplicates}",
            lane.codec,
            values.len()
        );
        assert_eq!(
            (values.len(), missing, duplicates),
            (RECORDS, 0, 0),
            "{}: every record exactly once",
            lane.codec
        );
        let log = weir.log();
        assert!(
            !log.contains("CONFWARN") && !log.contains("Decompression"),
            "{}: weir warned about its configuration or a codec:\n{}",
            lane.codec,
            weir.log_tail(20)
        );
    }
    println!(
        "codecs: {RECORDS} records per codec; Java producers {produced_in:.1?}, weir copy \
         (start to all committed) {copied_in:.1?}, Java consumers {read_in:.1?}"
    );

    check_stored_codecs(&bootstrap, &lanes);
    for mut weir in weirs {
        weir.stop(Duration::from_secs(20));
    }
    drop(modules);
}

/// Every stored batch of each lane's input and output is in the lane's
/// codec, as the broker's DumpLogSegments tool reads the segment files
/// (when the broker keeps them on this machine).
fn check_stored_codecs(bootstrap: &str, lanes: &[Lane]) {
    let Some(dir) = tools::log_dir(bootstrap, &lanes[0].input).filter(|d| d.is_dir()) else {
        println!("codecs: the broker's log dir is not on this machine; stored codecs not checked");
        return;
    };
    let mut partitions = Vec::new();
    for lane in lanes {
        for topic in [&lane.input, &lane.output] {
            for p in 0..PARTITIONS {
                partitions.push(dir.join(format!("{topic}-{p}")));
            }
        }
    }
    let codecs = tools::batch_codecs(&partitions);
    for lane in lanes {
        for topic in [&lane.input, &lane.output] {
            let mut batches: BTreeMap<String, usize> = BTreeMap::new();
            for p in 0..PARTITIONS {
                for (codec, n) in codecs.get(&format!("{topic}-{p}")).into_iter().flatten() {
                    *batches.entry(codec.clone()).or_default() += n;
                }
            }
            println!(
                "codec {:>6}: stored batches of {topic}: {batches:?}",
                lane.codec
            );
            assert_eq!(
                batches.keys().map(String::as_str).collect::<Vec<_>>(),
                [lane.codec],
                "{topic}: every batch in {}",
                lane.codec
            );
        }
    }
}
