//! Offsets are committed only for events whose outputs the broker
//! acknowledged, and a restart resumes from them.

#![allow(clippy::print_stdout, reason = "tests say why they skip")]

use std::time::{Duration, Instant};

use weir_tests::{
    Broker, ModulesDir, Send, Weir, broker, committed, consume, eventually, init_logging, produce,
    unique,
};

fn manifest(component_output_key: &str, input: &str, output: &str, group: &str) -> String {
    format!(
        "input-topics = [\"{input}\"]\noutput-topics = [\"{output}\"]\ngroup-id = \"{group}\"\n\
         [config]\nregion = \"r\"\nfield = \"status\"\nequals = \"paid\"\n{component_output_key} = \"{output}\"\n"
    )
}

fn total(offsets: &[Option<i64>]) -> i64 {
    offsets.iter().map(|o| o.unwrap_or(0)).sum()
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
    if let Broker::Embedded(e) = broker() {
        e.set_topic_unavailable(&blocked_out, true).unwrap();
    }
    let modules = ModulesDir::new();
    modules.add(
        "blocked",
        "json-enrich",
        &manifest("output", &input, &blocked_out, &blocked_group),
    );
    modules.add(
        "witness",
        "json-enrich",
        &manifest("output", &input, &witness_out, &witness_group),
    );
    // Fail undeliverable records after 2 s instead of librdkafka's 300 s.
    let weir = Weir::start(modules.path(), &[("message.timeout.ms", "2000")]);

    let records: Vec<Send> = (0..12)
        .map(|i| Send::kv(&format!("k{i}"), &format!(r#"{{"i":{i}}}"#)))
        .collect();
    produce(&input, &records).await;

    // The witness module proves weir has read and handled every event...
    let w = witness_out.clone();
    let seen = tokio::task::spawn_blocking(move || {
        consume(&w, 12, Duration::from_secs(60), Duration::ZERO)
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 12);
    eventually(Duration::from_secs(20), "witness commits", || {
        (total(&committed(&witness_group, &input)) == 12).then_some(())
    })
    .await;
    // ...while the blocked module, whose outputs are never acknowledged,
    // commits nothing, across several failed deliveries.
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
    match broker() {
        Broker::Embedded(e) => {
            // The mock creates topics on first use; clearing the error is enough.
            e.set_topic_unavailable(&blocked_out, false).unwrap();
        }
        Broker::External(_) => broker().create_topic(&blocked_out).await,
    }
    let b = blocked_out.clone();
    let out = tokio::task::spawn_blocking(move || {
        consume(&b, 12, Duration::from_secs(90), Duration::from_secs(1))
    })
    .await
    .unwrap();
    let mut ids: Vec<i64> = out
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids,
        (0..12).collect::<Vec<_>>(),
        "every event's output arrives"
    );
    eventually(Duration::from_secs(30), "blocked module commits", || {
        (total(&committed(&blocked_group, &input)) == 12).then_some(())
    })
    .await;
    weir.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offsets_without_duplicates() {
    init_logging();
    let (input, output, group) = (
        unique("resume-in"),
        unique("resume-out"),
        unique("g-resume"),
    );
    broker().create_topic(&input).await;
    broker().create_topic(&output).await;
    let modules = ModulesDir::new();
    modules.add(
        "enrich",
        "json-enrich",
        &manifest("output", &input, &output, &group),
    );
    let batch = |from: usize| -> Vec<Send> {
        (from..from + 30)
            .map(|i| Send::kv(&format!("k{i}"), &format!(r#"{{"i":{i}}}"#)))
            .collect()
    };

    let weir = Weir::start(modules.path(), &[]);
    produce(&input, &batch(0)).await;
    let o = output.clone();
    let first = tokio::task::spawn_blocking(move || {
        consume(&o, 30, Duration::from_secs(60), Duration::ZERO)
    })
    .await
    .unwrap();
    assert_eq!(first.len(), 30);
    weir.stop().await.expect("clean shutdown");
    assert_eq!(
        total(&committed(&group, &input)),
        30,
        "a clean stop commits everything handled"
    );

    let weir = Weir::start(modules.path(), &[]);
    produce(&input, &batch(30)).await;
    let o = output.clone();
    let all = tokio::task::spawn_blocking(move || {
        consume(&o, 60, Duration::from_secs(60), Duration::from_secs(3))
    })
    .await
    .unwrap();
    let mut ids: Vec<i64> = all
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
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
    let (input, output, group) = (
        unique("startat-in"),
        unique("startat-out"),
        unique("g-startat"),
    );
    broker().create_topic(&input).await;
    broker().create_topic(&output).await;
    let batch = |tag: &str| -> Vec<Send> {
        (0..12)
            .map(|i| Send::kv(&format!("k{i}"), &format!(r#"{{"tag":"{tag}","i":{i}}}"#)))
            .collect()
    };
    produce(&input, &batch("old")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&input, &batch("new")).await;

    let modules = ModulesDir::new();
    let text = format!(
        "start-at = \"{}\"\n{}",
        humantime::format_rfc3339_millis(at),
        manifest("output", &input, &output, &group)
    );
    modules.add("enrich", "json-enrich", &text);
    let weir = Weir::start(modules.path(), &[]);
    let o = output.clone();
    let out = tokio::task::spawn_blocking(move || {
        consume(&o, 12, Duration::from_secs(60), Duration::from_secs(3))
    })
    .await
    .unwrap();
    let tags: Vec<String> = out
        .iter()
        .map(|r| r.json()["tag"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(out.len(), 12, "only the events after `start-at`: {tags:?}");
    assert!(tags.iter().all(|t| t == "new"), "{tags:?}");
    eventually(Duration::from_secs(30), "offsets committed", || {
        (total(&committed(&group, &input)) == 24).then_some(())
    })
    .await;
    weir.stop().await.expect("clean shutdown");
}
