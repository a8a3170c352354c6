//! Offsets are committed only for events whose outputs the broker
//! acknowledged, and a restart resumes from them.

#![allow(clippy::print_stdout, reason = "tests say why they skip")]

use std::time::{Duration, Instant};

use weir_tests::{
    Manifest, ModulesDir, Send, Topics, Weir, broker, committed, committed_total, consume,
    eventually, init_logging, module_status, produce, test_config, unique, wait_committed_total,
};

/// json-enrich reading `input` in `group` and writing `output`.
fn manifest(input: &str, output: &str, group: &str) -> Manifest {
    Manifest::pipe(input, output, group)
        .config("region", "r")
        .config("field", "status")
        .config("equals", "paid")
}

/// The sorted `i` of every record read.
fn ids(out: &[weir_tests::Received]) -> Vec<i64> {
    let mut ids: Vec<i64> = out
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_only_after_outputs_are_acknowledged() {
    init_logging();
    let input = unique("acks-in");
    let (blocked_out, witness_out) = (unique("acks-blocked"), unique("acks-witness"));
    let (blocked_group, witness_group) = (unique("g-blocked"), unique("g-witness"));
    broker().create_topic(&input).await;
    broker().create_topic(&witness_out).await;
    // The blocked module's output topic does not exist yet (real broker,
    // auto-create off) or answers "unknown topic" (embedded broker).
    broker().withhold_topic(&blocked_out);
    let modules = ModulesDir::new();
    modules.add(
        "blocked",
        "json-enrich",
        manifest(&input, &blocked_out, &blocked_group),
    );
    modules.add(
        "witness",
        "json-enrich",
        manifest(&input, &witness_out, &witness_group),
    );
    // Fail undeliverable records after 2 s instead of librdkafka's 300 s.
    let (weir, status) = Weir::start_config(test_config(
        modules.path(),
        &[("message.timeout.ms", "2000")],
    ));

    produce(&input, &Send::numbered(0..12)).await;

    // The witness module proves weir has read and handled every event...
    let seen = consume(&witness_out, 12, Duration::from_secs(60), Duration::ZERO).await;
    assert_eq!(seen.len(), 12);
    wait_committed_total(&witness_group, &input, 12, Duration::from_secs(20)).await;
    // ...while the blocked module, whose outputs are never acknowledged,
    // shows its partitions stalled with the reason...
    let stalled = eventually(
        Duration::from_secs(30),
        "blocked partitions stalled",
        || {
            module_status(&status, "blocked")
                .map(|m| m.stalled)
                .filter(|s| !s.is_empty())
        },
    )
    .await;
    println!("missing output topic: /status stalled = {stalled:?}");
    for why in stalled.values() {
        assert!(
            why.contains(&format!("cannot write outputs to `{blocked_out}`")),
            "{why}"
        );
    }
    // ...and commits nothing, across several failed deliveries.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert_eq!(
            committed(&blocked_group, &input),
            vec![None, None, None],
            "no offset may be committed before its outputs are acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Once the topic is there, the outputs get through and offsets follow.
    broker().release_topic(&blocked_out).await;
    let out = consume(
        &blocked_out,
        12,
        Duration::from_secs(90),
        Duration::from_secs(1),
    )
    .await;
    let mut ids = ids(&out);
    ids.dedup();
    assert_eq!(
        ids,
        (0..12).collect::<Vec<_>>(),
        "every event's output arrives"
    );
    wait_committed_total(&blocked_group, &input, 12, Duration::from_secs(30)).await;
    let cleared = module_status(&status, "blocked").map(|m| m.stalled);
    assert_eq!(cleared, Some(Default::default()), "the stalls clear");
    weir.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offsets_without_duplicates() {
    init_logging();
    let t = Topics::create("resume").await;
    let modules = ModulesDir::new();
    modules.add(
        "enrich",
        "json-enrich",
        manifest(&t.input, &t.output, &t.group),
    );

    let weir = Weir::start(modules.path(), &[]);
    produce(&t.input, &Send::numbered(0..30)).await;
    let first = consume(&t.output, 30, Duration::from_secs(60), Duration::ZERO).await;
    assert_eq!(first.len(), 30);
    weir.stop().await.expect("clean shutdown");
    assert_eq!(
        committed_total(&t.group, &t.input),
        30,
        "a clean stop commits everything handled"
    );

    let weir = Weir::start(modules.path(), &[]);
    produce(&t.input, &Send::numbered(30..60)).await;
    let all = consume(
        &t.output,
        60,
        Duration::from_secs(60),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        ids(&all),
        (0..60).collect::<Vec<_>>(),
        "no event lost or handled twice across a clean restart"
    );
    weir.stop().await.expect("clean shutdown");
}

/// `start-at`: a new group starts at the first event at or after the
/// instant (events before it are never handled); once it has committed
/// offsets, those win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_a_timestamp_skips_older_events_for_a_new_group() {
    init_logging();
    if !broker().is_real() {
        // Observed: the mock answers every lookup by timestamp with the
        // partition's end offset.
        println!(
            "start_at: skipped on the embedded mock cluster (no offsets by timestamp); set WEIR_TEST_BROKERS"
        );
        return;
    }
    let t = Topics::create("startat").await;
    let batch = |tag: &str| -> Vec<Send> {
        (0..12)
            .map(|i| Send::kv(&format!("k{i}"), &format!(r#"{{"tag":"{tag}","i":{i}}}"#)))
            .collect()
    };
    produce(&t.input, &batch("old")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&t.input, &batch("new")).await;

    let modules = ModulesDir::new();
    modules.add(
        "enrich",
        "json-enrich",
        manifest(&t.input, &t.output, &t.group)
            .set("start-at", humantime::format_rfc3339_millis(at).to_string()),
    );
    let weir = Weir::start(modules.path(), &[]);
    let out = consume(
        &t.output,
        12,
        Duration::from_secs(60),
        Duration::from_secs(3),
    )
    .await;
    let tags: Vec<String> = out
        .iter()
        .map(|r| r.json()["tag"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(out.len(), 12, "only the events after `start-at`: {tags:?}");
    assert!(tags.iter().all(|t| t == "new"), "{tags:?}");
    wait_committed_total(&t.group, &t.input, 24, Duration::from_secs(30)).await;
    weir.stop().await.expect("clean shutdown");
}
