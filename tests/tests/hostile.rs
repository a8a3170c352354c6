//! Guests that abuse what the host shares: output bytes (the amplifying
//! guest against `limits.max-emit-bytes` and `max-inflight-bytes`) and the
//! cores (a spinning module against the call slots).
//!
//! A test binary of its own: cargo runs test binaries one after another,
//! so the latency measured here is never disturbed by the integration
//! tests' component builds and broker load (in one binary, on the
//! harness's second thread, they took the spinning test's p99 from ~22 ms
//! to 125-138 ms in three CI rehearsals, while it passed alone).

#![allow(clippy::print_stdout, reason = "tests print the figures they measure")]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_tests::kafka::client_config;
use weir_tests::process::{ProcessConfig, WeirProcess};
use weir_tests::{
    ModulesDir, PARTITIONS, Producer, Send, Topics, Weir, broker, end_offsets, free_addr, http_get,
    init_logging, read_from, sample, test_guest, wait_committed_total,
};

/// `VmHWM` (peak resident set) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/<pid>/status")
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc/<pid>/status")
}

/// 64 MiB: the budget the amplifying test runs weir with.
const BUDGET: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amplifying_guest_stays_within_the_memory_bound_and_every_event_settles() {
    init_logging();
    let t = Topics::create_with("amp", 3).await;
    t.create_dlq().await;
    let modules = ModulesDir::new();
    // Default `max-emit-bytes` (16 MiB): 18 records of 900 KB fit, the 19th
    // is refused. 16 MiB of guest memory each: the guest holds one record
    // at a time.
    modules.install(
        "amp",
        &test_guest("misbehave"),
        t.manifest()
            .merge("[limits]\nmemory-mib = 16\ntimeout = \"30s\"\n")
            .in_table("retry", "max-attempts", 1)
            .dead_letters(&t.dlq),
    );
    let config = ProcessConfig {
        extra_toml: format!("max-inflight-bytes = {BUDGET}\n"),
        ..ProcessConfig::new(modules.path())
    };
    let mut weir = WeirProcess::start("amplify", &config);
    weir.wait_ready(Duration::from_secs(60));
    Producer::new()
        .send(&t.input, &[Send::on(0, "warm", "warm")])
        .await;
    wait_committed_total(&t.group, &t.input, 1, Duration::from_secs(30)).await;
    let baseline = rss_kib(weir.pid());

    // Per partition: one event that gives up at the first refusal, and four
    // that emit until refused: 12 x 18 records of 900 KB (194 MB) through a
    // 64 MiB budget.
    let mut events = Vec::new();
    for p in 0..3 {
        events.push(Send::on(p, &format!("strict-{p}"), "amplify"));
        for i in 0..4 {
            events.push(Send::on(p, &format!("lenient-{p}-{i}"), "amplify-lenient"));
        }
    }
    let started = Instant::now();
    Producer::new().send(&t.input, &events).await;
    wait_committed_total(
        &t.group,
        &t.input,
        1 + events.len() as i64,
        Duration::from_secs(120),
    )
    .await;
    let elapsed = started.elapsed();
    let peak = peak_rss_kib(weir.pid());
    let (_, _, metrics) = http_get(weir.http(), "/metrics").expect("GET /metrics");
    weir.stop(Duration::from_secs(20));

    // Every event settled: the lenient ones emitted 18 records each, the
    // strict ones were dead-lettered saying why.
    let outputs: i64 = end_offsets(&t.output, 3).iter().sum();
    assert_eq!(outputs, 1 + 12 * 18, "warm-up record plus 12 x 18");
    let from = vec![0; PARTITIONS as usize];
    let dead = read_from(&t.dlq, &from, "read_uncommitted", Duration::from_secs(10));
    assert_eq!(dead.len(), 3, "the three strict events");
    for d in &dead {
        let reason = d.header("weir.error.message").unwrap_or_default();
        assert!(
            reason.contains("max-emit-bytes"),
            "dead letter says why: {reason}"
        );
    }
    let waits = sample(&metrics, "weir_inflight_waits_total").unwrap_or(0.0);
    let held = sample(&metrics, "weir_inflight_bytes")
        .unwrap_or_else(|| panic!("weir_inflight_bytes in:\n{metrics}"));
    // The documented bound of what outputs add to the host: the budget
    // held by weir, librdkafka's copy of the records in flight, and the
    // guest memory of the three instances; 32 MiB for everything else.
    let bound_kib = (2 * BUDGET + 3 * (16 << 20) + (32 << 20)) / 1024;
    println!(
        "amplifying guest: 12 events x 18 records of 900 KB ({} MB) and 3 refused in {elapsed:?}; \
         RSS {baseline} KiB after warm-up, VmHWM {peak} KiB (growth {} KiB, bound {bound_kib} \
         KiB); calls waited for the budget {waits} times; {held} bytes held at the end",
        12 * 18 * 900_000 / 1_000_000,
        peak.saturating_sub(baseline),
    );
    assert!(
        peak.saturating_sub(baseline) <= bound_kib,
        "peak RSS grew by {} KiB, past the bound of {bound_kib} KiB",
        peak.saturating_sub(baseline)
    );
    assert!(waits > 0.0, "194 MB through a 64 MiB budget must wait");
    assert_eq!(held, 0.0, "everything given back once acknowledged");
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// Sends `n` events to partition 0 of `input`, one every 10 ms, each
/// carrying its send time, and reads their echoes from `output` (one
/// partition, read from `from`): the sorted end-to-end latencies.
async fn latencies(input: &str, output: &str, from: i64, n: usize) -> Vec<Duration> {
    let reader: BaseConsumer = client_config(
        &broker().bootstrap(),
        &[
            ("group.id".into(), weir_tests::unique("lat")),
            ("fetch.wait.max.ms".into(), "5".into()),
        ],
    )
    .create()
    .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(output, 0, Offset::Offset(from))
        .unwrap();
    reader.assign(&tpl).unwrap();
    let (connected, ready) = std::sync::mpsc::channel();
    let read = tokio::task::spawn_blocking(move || {
        // Connected and fetching before the first send, so that the reader's
        // start is not counted in the first latencies.
        for _ in 0..4 {
            assert!(reader.poll(Duration::from_millis(250)).is_none());
        }
        connected.send(()).unwrap();
        let mut got = Vec::with_capacity(n);
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < n && Instant::now() < deadline {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
                let sent: u64 = std::str::from_utf8(m.payload().unwrap_or_default())
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .expect("a send time");
                got.push(Duration::from_micros(now_us().saturating_sub(sent)));
            }
        }
        got
    });
    let producer = Producer::new();
    tokio::task::spawn_blocking(move || ready.recv().unwrap())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..n {
        tick.tick().await;
        let record = Send::on(0, &format!("e{i}"), &now_us().to_string());
        deliveries.push(producer.enqueue(input, &record));
    }
    for d in deliveries {
        d.await.expect("delivery").expect("acknowledged");
    }
    let mut got = read.await.unwrap();
    assert_eq!(got.len(), n, "every echo read back");
    got.sort();
    got
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_spinning_on_all_its_partitions_does_not_slow_the_others() {
    init_logging();
    let good = Topics::create_with("fair-good", 1).await;
    let spin = Topics::create_with("fair-spin", 2).await;
    spin.create_dlq().await;
    let modules = ModulesDir::new();
    modules.install("good", &test_guest("misbehave"), good.manifest());
    modules.install(
        "spin",
        &test_guest("misbehave"),
        spin.manifest()
            .merge("[limits]\ntimeout = \"2s\"\n")
            .in_table("retry", "max-attempts", 2)
            .in_table("retry", "initial-backoff", "10ms")
            .dead_letters(&spin.dlq),
    );
    let weir = Weir::start_with_http(modules.path(), &[], free_addr());
    Producer::new()
        .send(&good.input, &[Send::on(0, "warm", "0")])
        .await;
    wait_committed_total(&good.group, &good.input, 1, Duration::from_secs(60)).await;

    let alone = latencies(&good.input, &good.output, 1, 200).await;
    // Both partitions of `spin` loop until their 2 s limit, twice per
    // event, for three events each: 12 s of spinning per partition, more
    // than the measurement below.
    let loops: Vec<Send> = (0..6)
        .map(|i| Send::on(i % 2, &format!("loop-{i}"), "loop"))
        .collect();
    Producer::new().send(&spin.input, &loops).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spinning_since = Instant::now();
    let during = latencies(&good.input, &good.output, 201, 200).await;
    let measured = spinning_since.elapsed();
    let still_spinning = end_offsets(&spin.dlq, PARTITIONS).iter().sum::<i64>() < 6;
    println!(
        "`good` end-to-end latency, 200 events at 100/s: p50 {:?} / p99 {:?} alone; \
         p50 {:?} / p99 {:?} while `spin` loops on both its partitions ({measured:?} of \
         measurement, spinning throughout: {still_spinning})",
        alone[100],
        p99(&alone),
        during[100],
        p99(&during)
    );
    assert!(
        still_spinning,
        "the spinning module ended before the measurement did"
    );
    assert!(
        p99(&during) <= p99(&alone) + Duration::from_millis(50),
        "p99 {:?} while another module spins, {:?} alone",
        p99(&during),
        p99(&alone)
    );
    weir.stop().await.unwrap();
}
