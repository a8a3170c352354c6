//! Poison events, retries, the dead-letter topic, and misbehaving guests
//! (the `misbehave` fixture in tests/guests) contained by the sandbox.

#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

use std::time::{Duration, Instant};

use weir_tests::resources::rss_kib;
use weir_tests::{
    ModulesDir, Producer, Received, Send, Topics, Weir, broker, committed, consume, eventually,
    free_addr, http_get, init_logging, module_status, produce, sample, test_config, test_guest,
    wait_committed, wait_committed_total,
};

struct Setup {
    t: Topics,
    modules: ModulesDir,
}

/// Topics, and the `misbehave` fixture installed as module `bad` with
/// `limits` (TOML lines for the `[limits]` table).
async fn setup(prefix: &str, limits: &str, create_dlq: bool) -> Setup {
    let t = Topics::create(prefix).await;
    if create_dlq {
        t.create_dlq().await;
    }
    let modules = ModulesDir::new();
    modules.install(
        "bad",
        &test_guest("misbehave"),
        t.manifest()
            .merge(&format!("[limits]\n{limits}\n"))
            .in_table("retry", "max-attempts", 3)
            .in_table("retry", "initial-backoff", "10ms")
            .dead_letters(&t.dlq),
    );
    Setup { t, modules }
}

impl Setup {
    /// The offset the group committed for input partition 0, if any.
    fn committed_p0(&self) -> Option<i64> {
        committed(&self.t.group, &self.t.input)[0]
    }

    /// Waits (30 s at most) until the group committed `offset` for input
    /// partition 0.
    async fn wait_committed_p0(&self, offset: i64) {
        wait_committed(
            &self.t.group,
            &self.t.input,
            Duration::from_secs(30),
            &format!("{offset} on partition 0"),
            |c| c[0] == Some(offset),
        )
        .await;
    }
}

async fn read(topic: &str, n: usize, quiet: Duration) -> Vec<Received> {
    consume(topic, n, Duration::from_secs(120), quiet).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_reaches_the_dead_letter_topic_with_exact_headers() {
    init_logging();
    let s = setup(
        "kinds",
        "timeout = \"1s\"\nmemory-mib = 32\nmax-event-bytes = 1000",
        true,
    )
    .await;
    let weir = Weir::start(s.modules.path(), &[]);
    let big = "x".repeat(2000);
    // (value, expected kind, expected attempts, a word of the message)
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("reject", "rejected", "1", "on purpose"),
        ("retry", "retries-exhausted", "3", "always asks for a retry"),
        ("panic", "trap", "3", "unreachable"),
        ("recurse", "trap", "3", "stack"),
        ("grow", "trap", "3", "memory"),
        ("loop", "timeout", "3", "time limit"),
        ("forbidden", "rejected", "1", "a-topic-nobody-allowed"),
        ("flood", "rejected", "1", "1000"),
        ("huge", "rejected", "1", "990000"),
        (big.as_str(), "oversized", "0", "max-event-bytes"),
    ];
    let mut records: Vec<Send> = cases
        .iter()
        .enumerate()
        .map(|(i, (v, ..))| Send::on(0, &format!("k{i}"), v))
        .collect();
    records.insert(1, Send::on(0, "flaky", "flaky"));
    records.push(Send::on(0, "fine", "fine"));
    produce(&s.t.input, &records).await;

    let dead = read(&s.t.dlq, cases.len(), Duration::from_secs(1)).await;
    assert_eq!(dead.len(), cases.len(), "{dead:#?}");
    for (value, kind, attempts, word) in &cases {
        // Dead letters are keyed like their events, so they spread over
        // partitions: find each by its value.
        let d = dead
            .iter()
            .find(|d| d.text() == *value)
            .expect("a dead letter per case");
        assert_eq!(d.text(), *value, "the dead letter keeps the value");
        let label = &value[..value.len().min(10)];
        assert_eq!(
            d.header("weir.error.kind").as_deref(),
            Some(*kind),
            "{label}"
        );
        assert_eq!(
            d.header("weir.attempts").as_deref(),
            Some(*attempts),
            "{label}"
        );
        let message = d.header("weir.error.message").unwrap();
        assert!(
            message.to_lowercase().contains(&word.to_lowercase()),
            "{label}: {message}"
        );
        assert_eq!(
            d.header("weir.source.topic").as_deref(),
            Some(s.t.input.as_str())
        );
        assert_eq!(d.header("weir.source.partition").as_deref(), Some("0"));
        assert_eq!(d.header("weir.module").as_deref(), Some("bad"));
        assert!(d.header("weir.source.timestamp").is_some());
        println!("dead letter: {kind:<10} attempts {attempts}  {message}");
    }
    let out = read(&s.t.output, 2, Duration::from_secs(1)).await;
    let mut values: Vec<String> = out.iter().map(Received::text).collect();
    values.sort();
    assert_eq!(
        values,
        ["fine", "flaky"],
        "retry-then-succeed and the good event come out"
    );
    wait_committed_total(
        &s.t.group,
        &s.t.input,
        records.len() as i64,
        Duration::from_secs(30),
    )
    .await;
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_holds_up_only_its_own_partition() {
    init_logging();
    let s = setup("loop", "timeout = \"1s\"", true).await;
    let weir = Weir::start(s.modules.path(), &[]);
    produce(&s.t.input, &[Send::on(1, "warm", "warm")]).await;
    assert_eq!(read(&s.t.output, 1, Duration::ZERO).await.len(), 1);

    // Partition 1's round trip (produce, handle, read back with a fresh
    // reader), first alone, then while partition 0 spins.
    let alone = round_trips(&s, "alone", 1).await;
    let started = Instant::now();
    produce(&s.t.input, &[Send::on(0, "spin", "loop")]).await;
    let during = round_trips(&s, "during", 6).await;
    let dead = read(&s.t.dlq, 1, Duration::ZERO).await;
    let to_dead_letter = started.elapsed();
    assert_eq!(
        dead[0].header("weir.error.kind").as_deref(),
        Some("timeout")
    );
    println!(
        "partition 1 round trip: median {:?} alone, {:?} while partition 0 loops (max {:?}); \
         the looping event (three 1 s attempts) was found in the dead-letter topic when read \
         {to_dead_letter:?} after it was sent, after the round trips above",
        alone[2], during[2], during[4]
    );
    assert!(
        during[4] < alone[4] + Duration::from_secs(2),
        "partition 1 waited for partition 0: alone {alone:?}, during {during:?}"
    );
    weir.stop().await.unwrap();
}

/// Five round trips on partition 1 (produce, handle, read back with a fresh
/// reader), sorted; `before` outputs exist already.
async fn round_trips(s: &Setup, label: &str, before: usize) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..5 {
        let sent = Instant::now();
        produce(&s.t.input, &[Send::on(1, &format!("{label}-{i}"), "ok")]).await;
        let out = read(&s.t.output, before + i + 1, Duration::ZERO).await;
        assert_eq!(out.len(), before + i + 1);
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_capped_and_rss_stays_bounded() {
    init_logging();
    let s = setup("bomb", "memory-mib = 16", true).await;
    let weir = Weir::start(s.modules.path(), &[]);
    produce(&s.t.input, &[Send::on(0, "warm", "warm")]).await;
    read(&s.t.output, 1, Duration::ZERO).await;
    let before = rss_kib();
    let bombs: Vec<Send> = (0..4)
        .map(|i| Send::on(i % 3, &format!("b{i}"), "grow"))
        .collect();
    produce(&s.t.input, &bombs).await;
    let dead = read(&s.t.dlq, 4, Duration::ZERO).await;
    let after = rss_kib();
    println!(
        "memory bombs: RSS {before} KiB before, {after} KiB after 4 x 3 attempts capped at 16 MiB"
    );
    assert_eq!(dead.len(), 4);
    assert!(
        dead.iter()
            .all(|d| d.header("weir.error.kind").as_deref() == Some("trap"))
    );
    assert!(
        after < before + 128 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_never_crash_the_host() {
    init_logging();
    let s = setup("odd", "max-event-bytes = 200000", true).await;
    let weir = Weir::start(s.modules.path(), &[]);
    // A tombstone without a key.
    let tombstone = Send {
        partition: Some(0),
        ..Send::default()
    };
    // Non-UTF-8 header values and 1,000 headers.
    let many = Send {
        key: Some(b"\xff\x00".to_vec()),
        value: Some(b"x".to_vec()),
        partition: Some(0),
        headers: (0..1000)
            .map(|i| (format!("h{i}"), vec![0xff, 0xfe, i as u8]))
            .collect(),
    };
    // An empty value, and one just under the event size limit.
    let empty = Send {
        value: Some(Vec::new()),
        partition: Some(0),
        ..Send::default()
    };
    let near = Send {
        value: Some(vec![b'n'; 199_990]),
        partition: Some(0),
        ..Send::default()
    };
    let producer = Producer::new();
    for record in [tombstone, many, empty, near] {
        producer.send(&s.t.input, &[record]).await;
    }

    let out = read(&s.t.output, 4, Duration::from_secs(1)).await;
    assert_eq!(out.len(), 4, "every odd event is echoed");
    // Records without a key spread over partitions: find each by content.
    let find = |pred: &dyn Fn(&Received) -> bool| out.iter().find(|r| pred(r)).cloned();
    let tombstone = find(&|r| r.value.is_none()).expect("the tombstone stays a tombstone");
    assert_eq!(tombstone.key, None);
    let headers = find(&|r| r.headers.len() == 1000).expect("1,000 headers kept");
    assert_eq!(headers.key.as_deref(), Some(&b"\xff\x00"[..]));
    assert_eq!(
        headers.headers[999],
        ("h999".to_owned(), vec![0xff, 0xfe, 231])
    );
    assert!(
        find(&|r| r.value.as_deref() == Some(&b""[..])).is_some(),
        "empty is not a tombstone"
    );
    assert!(find(&|r| r.value.as_ref().map(Vec::len) == Some(199_990)).is_some());
    weir.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_topic_pauses_the_partition_without_committing() {
    init_logging();
    let s = setup("nodlq", "", false).await;
    broker().withhold_topic(&s.t.dlq);
    let config = test_config(s.modules.path(), &[("message.timeout.ms", "2000")]);
    let (weir, status) = Weir::start_config(config);
    produce(&s.t.input, &[Send::on(0, "a", "reject")]).await;
    let why = eventually(
        Duration::from_secs(60),
        "the partition to report why it waits",
        || {
            let bad = module_status(&status, "bad")?;
            bad.stalled.get(&format!("{}[0]", s.t.input)).cloned()
        },
    )
    .await;
    assert!(why.contains("cannot write to dead-letter topic"), "{why}");
    assert!(why.contains(&s.t.dlq), "{why}");
    // The partition waits: a later event is not handled.
    produce(&s.t.input, &[Send::on(0, "b", "after")]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.committed_p0(),
        None,
        "nothing committed while the dead letter waits"
    );
    assert!(
        read(&s.t.output, 0, Duration::from_secs(1))
            .await
            .is_empty(),
        "the partition is paused"
    );

    broker().release_topic(&s.t.dlq).await;
    let dead = read(&s.t.dlq, 1, Duration::ZERO).await;
    assert_eq!(dead[0].text(), "reject");
    assert_eq!(
        read(&s.t.output, 1, Duration::ZERO).await[0].text(),
        "after"
    );
    s.wait_committed_p0(2).await;
    eventually(Duration::from_secs(10), "the status to clear", || {
        module_status(&status, "bad")?
            .stalled
            .is_empty()
            .then_some(())
    })
    .await;
    weir.stop().await.unwrap();
}

/// Calls run ahead of acknowledgements (a partition has several calls'
/// outputs in flight), but the commit never passes an event that is not
/// settled: here a later event's output is acknowledged while an earlier
/// event's dead letter cannot be written, and nothing is committed until it
/// is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_acknowledged_event_never_commits_past_an_unsettled_one() {
    init_logging();
    let s = setup("order", "", false).await;
    broker().withhold_topic(&s.t.dlq);
    let http = free_addr();
    // The dead letter times out after 5 s; until then the partition is not
    // held back, so the second event gets its own call meanwhile.
    let weir = Weir::start_with_http(s.modules.path(), &[("message.timeout.ms", "5000")], http);
    produce(&s.t.input, &[Send::on(0, "a", "reject")]).await;
    let calls = r#"weir_handler_duration_seconds_count{module="bad"}"#;
    eventually(Duration::from_secs(60), "the first call", || {
        let (_, _, text) = http_get(http, "/metrics").ok()?;
        (sample(&text, calls)? >= 1.0).then_some(())
    })
    .await;
    produce(&s.t.input, &[Send::on(0, "b", "after")]).await;
    let out = read(&s.t.output, 1, Duration::ZERO).await;
    assert_eq!(
        out[0].text(),
        "after",
        "the later event's output is acknowledged"
    );
    let (_, _, text) = http_get(http, "/metrics").unwrap();
    assert!(sample(&text, calls).unwrap() >= 2.0, "two calls: {text}");
    assert_eq!(
        s.committed_p0(),
        None,
        "nothing committed while the first event's dead letter waits"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.committed_p0(), None);

    broker().release_topic(&s.t.dlq).await;
    assert_eq!(read(&s.t.dlq, 1, Duration::ZERO).await[0].text(), "reject");
    s.wait_committed_p0(2).await;
    weir.stop().await.unwrap();
}
