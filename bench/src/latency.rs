//! End-to-end latency at a fixed rate (by default half the native drain
//! rate for 100-byte values).
//!
//! Each variant runs in a fresh child process with fresh topics. The child
//! starts the pipe, produces events stamped with their send time at the
//! rate, reads the output from the beginning and takes, for every event sent
//! in the measured window (after a 5 s warm-up), arrival time minus send
//! time. The parent prints the percentiles and what weir adds to native.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};

use crate::cli::ChildArgs;
use crate::kafka::{Paced, now_ns, reader, sent_ns, settings};
use crate::run::Run;

/// Warm-up before the measured window.
const WARMUP: Duration = Duration::from_secs(5);

/// One latency run of one variant, as the child reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    /// native, event or batch.
    pub variant: String,
    /// Events per second produced.
    pub rate: u64,
    /// Events measured.
    pub samples: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
}

/// The latency part: every variant at `--latency-rate` (default: half of
/// `weir_rate_100`, weir's slower drain rate at 100 B, or 10,000/s
/// without it).
pub fn run(run: &mut Run, weir_rate_100: Option<f64>) -> anyhow::Result<()> {
    let weir = weir_rate_100.unwrap_or(20_000.0);
    let rate = run.opts.latency_rate.unwrap_or((weir / 2.0).round() as u64);
    println!(
        "\nlatency at {rate} events/s, 100 B, {} s after 5 s warm-up:",
        run.opts.latency_secs
    );
    let mut lat = BTreeMap::new();
    for (i, variant) in run.opts.variants.clone().into_iter().enumerate() {
        let input = run.topic(&format!("lat-in-{i}"), run.opts.partitions)?;
        let output = run.topic(&format!("lat-out-{i}"), run.opts.partitions)?;
        let c = ChildArgs {
            rate: Some(rate),
            latency_secs: run.opts.latency_secs,
            ..run.child_args(&variant, input, output)
        };
        let r = crate::child::run_child::<LatencyResult>(&run.broker.bootstrap, &c);
        let (shown, label) = (format!("  {variant:<6}"), format!("latency {variant}"));
        if let Some(r) = run.failures.check(r, &shown, &label) {
            println!(
                "{shown} p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms ({} samples)",
                r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms, r.samples
            );
            lat.insert(variant, r);
        }
    }
    print_added(&lat);
    Ok(())
}

/// Prints what each weir variant adds to the native p50 and p99.
fn print_added(lat: &BTreeMap<String, LatencyResult>) {
    if let Some(n) = lat.get("native") {
        for (v, r) in lat.iter().filter(|(v, _)| *v != "native") {
            println!(
                "  added by weir {v:<6}: p50 {:+.2} ms, p99 {:+.2} ms",
                r.p50_ms - n.p50_ms,
                r.p99_ms - n.p99_ms
            );
        }
    }
}

// ----------------------------------------------------------------- child --

/// In the child, with the pipe running: produces timestamped events at
/// `rate` while reading the output, and reports the end-to-end latency of
/// events sent after a 5 s warm-up.
pub fn measure(bootstrap: &str, c: &ChildArgs, rate: u64) -> anyhow::Result<LatencyResult> {
    let measure = Duration::from_secs(c.latency_secs);
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measure_from = now_ns() + WARMUP.as_nanos() as u64;
    let measure_to = measure_from + measure.as_nanos() as u64;
    let producer = Paced {
        config: settings(bootstrap, c.kafka.clone()).producer_config(),
        topic: c.input.clone(),
        size: c.size.max(8),
        rate,
        stop: done.clone(),
        // Keeps sending a little past the window, so the reader sees an
        // event sent after it and knows it has everything.
        until_ns: measure_to + 1_000_000_000,
    }
    .spawn();
    let reader = reader(
        bootstrap,
        "weir-bench-latency",
        &[
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "5"),
            ("fetch.queue.backoff.ms", "5"),
        ],
        &c.output,
        c.partitions,
    )?;
    let deadline = start + WARMUP + measure + Duration::from_secs(30);
    let (lat_ns, complete) = samples(&reader, measure_from..measure_to, deadline, &done);
    if !complete {
        eprintln!(
            "weir-bench: latency {}: the pipe fell behind; {} of ~{} samples arrived within 30 s",
            c.variant,
            lat_ns.len(),
            rate * c.latency_secs
        );
        if lat_ns.is_empty() {
            bail!("latency run: no outputs arrived");
        }
    }
    let _ = producer.join();
    Ok(LatencyResult::new(c.variant.clone(), rate, lat_ns))
}

/// Reads outputs until one sent after `window` arrives (complete: `true`)
/// or `deadline` passes (`false`), collecting the latency in ns of every
/// output sent within `window`; then sets `done`, which stops the producer.
fn samples(
    reader: &BaseConsumer,
    window: Range<u64>,
    deadline: Instant,
    done: &AtomicBool,
) -> (Vec<u64>, bool) {
    let mut lat_ns: Vec<u64> = Vec::new();
    let complete = loop {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            let now = now_ns();
            if let Some(sent) = sent_ns(&m) {
                if window.contains(&sent) {
                    lat_ns.push(now.saturating_sub(sent));
                }
                if sent >= window.end {
                    break true;
                }
            }
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    done.store(true, Ordering::Relaxed);
    (lat_ns, complete)
}

impl LatencyResult {
    /// The percentiles of the latencies `lat_ns` (ns) of `variant` at `rate`.
    fn new(variant: String, rate: u64, mut lat_ns: Vec<u64>) -> Self {
        lat_ns.sort_unstable();
        let pct = |q: f64| {
            lat_ns
                .get(((lat_ns.len() as f64 * q) as usize).min(lat_ns.len().saturating_sub(1)))
                .map_or(f64::NAN, |&x| x as f64 / 1e6)
        };
        Self {
            variant,
            rate,
            samples: lat_ns.len(),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
            max_ms: lat_ns.last().map_or(f64::NAN, |&x| x as f64 / 1e6),
        }
    }
}
