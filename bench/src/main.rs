//! `weir-bench`: weir against a plain rdkafka consume→produce pipe.
//!
//! One run, one broker (a real one with `--brokers`, or the embedded mock):
//!
//! 1. prefills an input topic per value size with N events;
//! 2. drains it with (a) a native rdkafka pipe, (b) weir with the
//!    per-event identity component, (c) weir with the batch identity
//!    component, each in a fresh child process (`weir-bench child ...`) and a
//!    fresh consumer group and output topic, rotating the order every
//!    repetition; throughput counts only records the broker acknowledged
//!    (the output topic's end offsets), CPU is the child's getrusage;
//! 3. measures end-to-end latency at a fixed rate (half the native maximum);
//! 4. measures component compile time, fresh instance creation, per-call
//!    cost, reload pause and RSS.
//!
//! See docs/BENCHMARKS.md for the method and the latest numbers.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod cli;
mod kafka;
mod pipe;

use crate::cli::{Args, ChildArgs, Internal, Opts};
use crate::kafka::{
    Paced, end_offsets, kafka_args, kafka_map, now_ns, prefill, reader, sent_ns, settings, watcher,
};
use crate::pipe::{install_module, manifest, weir_config};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(internal) = args.child else {
        return parent(args.opts);
    };
    let bootstrap = args.opts.brokers.as_deref().context("--brokers")?;
    match internal {
        Internal::Child(c) => child(bootstrap, c),
        Internal::Rss(a) => rss_child(bootstrap, a.modules, &a.input, &a.guests, &a.kafka),
        Internal::Reload(a) => {
            reload_child(bootstrap, &a.input, &a.output, &a.guests, a.rate, &a.kafka)
        }
    }
}

// ---------------------------------------------------------------- parent --

struct Broker {
    bootstrap: String,
    embedded: Option<weir::embedded::EmbeddedKafka>,
    rt: tokio::runtime::Runtime,
}

impl Broker {
    fn create(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        match &self.embedded {
            Some(e) => e.create_topic(topic, partitions),
            None => self.rt.block_on(weir::kafka::create_topics(
                &settings(&self.bootstrap, BTreeMap::new()),
                &[topic.to_owned()],
                partitions,
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DrainResult {
    variant: String,
    events: u64,
    secs: f64,
    cpu_secs: f64,
    rate: f64,
    mb_s: f64,
    cpu_us_per_event: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LatencyResult {
    variant: String,
    rate: u64,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

fn parent(mut o: Opts) -> anyhow::Result<()> {
    o.apply_smoke()?;
    let guests = o
        .guests
        .clone()
        .unwrap_or_else(|| Path::new(REPO).join("target/test-guests"));
    for g in ["identity.wasm", "identity-batch.wasm"] {
        if !guests.join(g).is_file() {
            bail!(
                "{} is missing: run scripts/build-guests.sh first",
                guests.join(g).display()
            );
        }
    }
    let kafka = kafka_map(&o.kafka);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let broker = match &o.brokers {
        Some(b) => Broker {
            bootstrap: b.clone(),
            embedded: None,
            rt,
        },
        None => {
            let e = weir::embedded::EmbeddedKafka::start()?;
            Broker {
                bootstrap: e.bootstrap_servers(),
                embedded: Some(e),
                rt,
            }
        }
    };
    let embedded = broker.embedded.is_some();
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 1_000_000;
    println!(
        "weir-bench: broker {} ({}), partitions {}, max-batch {}, run {run_id}",
        broker.bootstrap,
        if embedded { "embedded mock" } else { "real" },
        o.partitions,
        o.max_batch
    );
    println!("kafka settings (all clients): {kafka:?}");
    println!("load at start: {}", loadavg());
    let mut failures = Vec::new();
    let mut native_rate_100 = None;

    if !o.skips("drain") {
        for &size in &o.sizes {
            let n = o.events_for(size);
            if embedded && n / o.partitions as u64 > 30_000 {
                bail!(
                    "the embedded broker keeps only ~39k events per partition; {n} events in {} \
                     partition(s) would be silently truncated: use --brokers or fewer events",
                    o.partitions
                );
            }
            let input = format!("bench-{run_id}-in-{size}");
            broker.create(&input, o.partitions)?;
            let t = Instant::now();
            prefill(&broker.bootstrap, &kafka, &input, o.partitions, n, size)?;
            println!(
                "\nprefilled {n} x {size} B into {input} in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let mut results: BTreeMap<String, Vec<DrainResult>> = BTreeMap::new();
            for rep in 0..o.reps {
                let mut order = o.variants.clone();
                let len = order.len().max(1);
                order.rotate_left(rep % len);
                if rep % 2 == 1 {
                    order.reverse();
                }
                for variant in order {
                    let output = format!("bench-{run_id}-out-{size}-{variant}-{rep}");
                    broker.create(&output, o.partitions)?;
                    let c = ChildArgs {
                        variant: variant.clone(),
                        input: input.clone(),
                        output,
                        partitions: o.partitions,
                        events: n,
                        max_batch: o.max_batch,
                        guests: guests.clone(),
                        rate: None,
                        size,
                        latency_secs: 0,
                        kafka: kafka.clone().into_iter().collect(),
                    };
                    match run_child::<DrainResult>(&broker.bootstrap, &c) {
                        Ok(r) => {
                            println!(
                                "  {size:>5} B rep {rep} {variant:<6} {:>9.0} ev/s {:>7.1} MB/s {:>6.2} µs CPU/ev ({} ev in {:.2} s, load {})",
                                r.rate,
                                r.mb_s,
                                r.cpu_us_per_event,
                                r.events,
                                r.secs,
                                loadavg()
                            );
                            results.entry(variant).or_default().push(r);
                        }
                        Err(e) => {
                            println!("  {size:>5} B rep {rep} {variant:<6} FAILED: {e:#}");
                            failures.push(format!("{size} B {variant} rep {rep}: {e:#}"));
                        }
                    }
                }
            }
            println!("\nmedians, {size} B values, {n} events, {} reps:", o.reps);
            println!(
                "  {:<7} {:>10} {:>8} {:>10} {:>12}",
                "variant", "events/s", "MB/s", "CPU µs/ev", "vs native"
            );
            let native = results
                .get("native")
                .map(|r| median(r.iter().map(|x| x.rate)));
            for (variant, rs) in &results {
                let rate = median(rs.iter().map(|x| x.rate));
                let mb = median(rs.iter().map(|x| x.mb_s));
                let cpu = median(rs.iter().map(|x| x.cpu_us_per_event));
                let ratio =
                    native.map_or(String::from("-"), |n| format!("{:.1} %", 100.0 * rate / n));
                println!("  {variant:<7} {rate:>10.0} {mb:>8.1} {cpu:>10.2} {ratio:>12}");
            }
            if size <= 100 {
                native_rate_100 = native;
            }
        }
    }

    if !o.skips("latency") && o.latency_secs > 0 {
        let native = native_rate_100.unwrap_or(20_000.0);
        let rate = o.latency_rate.unwrap_or((native / 2.0).round() as u64);
        println!(
            "\nlatency at {rate} events/s, 100 B, {} s after 5 s warm-up:",
            o.latency_secs
        );
        let mut lat = BTreeMap::new();
        for (i, variant) in o.variants.iter().enumerate() {
            let input = format!("bench-{run_id}-lat-in-{i}");
            let output = format!("bench-{run_id}-lat-out-{i}");
            broker.create(&input, o.partitions)?;
            broker.create(&output, o.partitions)?;
            let c = ChildArgs {
                variant: variant.clone(),
                input,
                output,
                partitions: o.partitions,
                events: 0,
                max_batch: o.max_batch,
                guests: guests.clone(),
                rate: Some(rate),
                size: 100,
                latency_secs: o.latency_secs,
                kafka: kafka.clone().into_iter().collect(),
            };
            match run_child::<LatencyResult>(&broker.bootstrap, &c) {
                Ok(r) => {
                    println!(
                        "  {variant:<6} p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms ({} samples)",
                        r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms, r.samples
                    );
                    lat.insert(variant.clone(), r);
                }
                Err(e) => {
                    println!("  {variant:<6} FAILED: {e:#}");
                    failures.push(format!("latency {variant}: {e:#}"));
                }
            }
        }
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

    if !o.skips("micro")
        && let Err(e) = micro(&guests, o.smoke)
    {
        failures.push(format!("micro: {e:#}"));
        println!("micro FAILED: {e:#}");
    }

    if !o.skips("reload") {
        let input = format!("bench-{run_id}-reload-in");
        let output = format!("bench-{run_id}-reload-out");
        broker.create(&input, 1)?;
        broker.create(&output, 1)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["reload", "--brokers", &broker.bootstrap, "--input", &input])
            .args(["--output", &output, "--guests"])
            .arg(&guests)
            .args(kafka_args(&kafka));
        match child_output(cmd) {
            Ok(line) => println!("\nreload: {line}"),
            Err(e) => {
                println!("reload FAILED: {e:#}");
                failures.push(format!("reload: {e:#}"));
            }
        }
    }

    if !o.skips("rss") {
        let input = format!("bench-{run_id}-rss-in");
        broker.create(&input, 1)?;
        let mut rss = BTreeMap::new();
        for k in [1usize, 10] {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(["rss", "--brokers", &broker.bootstrap, "--input", &input])
                .args(["--modules", &k.to_string(), "--guests"])
                .arg(&guests)
                .args(kafka_args(&kafka));
            match child_output(cmd) {
                Ok(line) => {
                    let kib: f64 = line.trim().parse().context("rss child output")?;
                    rss.insert(k, kib);
                }
                Err(e) => failures.push(format!("rss {k}: {e:#}")),
            }
        }
        if let (Some(one), Some(ten)) = (rss.get(&1), rss.get(&10)) {
            println!(
                "\nRSS: 1 module {:.1} MiB, 10 modules {:.1} MiB, per extra module {:.2} MiB (each module: consumer + 1 live instance)",
                one / 1024.0,
                ten / 1024.0,
                (ten - one) / 9.0 / 1024.0
            );
        }
    }

    println!("\nload at end: {}", loadavg());
    if !failures.is_empty() {
        bail!(
            "{} part(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    println!("weir-bench: ok");
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run_child<T: for<'de> Deserialize<'de>>(bootstrap: &str, c: &ChildArgs) -> anyhow::Result<T> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["child", "--brokers", bootstrap, "--variant", &c.variant])
        .args(["--input", &c.input, "--output", &c.output])
        .args(["--partitions", &c.partitions.to_string()])
        .args(["--events", &c.events.to_string()])
        .args(["--max-batch", &c.max_batch.to_string()])
        .args(["--size", &c.size.to_string()])
        .args(["--latency-secs", &c.latency_secs.to_string()])
        .arg("--guests")
        .arg(&c.guests)
        .args(kafka_args(&c.kafka.iter().cloned().collect()));
    if let Some(rate) = c.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let line = child_output(cmd)?;
    serde_json::from_str(&line).with_context(|| format!("child printed `{line}`"))
}

/// Runs a child and returns the last line of its stdout.
fn child_output(mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("child exited with {}: {}", out.status, stdout.trim());
    }
    stdout
        .lines()
        .last()
        .map(str::to_owned)
        .context("child printed nothing")
}

// ----------------------------------------------------------------- child --

fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn child(bootstrap: &str, c: ChildArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let group = format!("bench-{}-{}", c.output, std::process::id());
    let _cancel = pipe::start(bootstrap, &c, &group, &rt, tmp.path())?;
    let line = match c.rate {
        None => serde_json::to_string(&drain(bootstrap, &c)?)?,
        Some(rate) => serde_json::to_string(&latency(bootstrap, &c, rate)?)?,
    };
    println!("{line}");
    // Skip the graceful shutdown: every run uses a fresh group and topics.
    std::process::exit(0);
}

fn drain(bootstrap: &str, c: &ChildArgs) -> anyhow::Result<DrainResult> {
    let w = watcher(bootstrap)?;
    let started = Instant::now();
    let mut first: Option<(Instant, f64, i64)> = None;
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        let count = end_offsets(&w, &c.output, c.partitions)?;
        let now = Instant::now();
        if count > 0 && first.is_none() {
            first = Some((now, cpu_secs(), count));
        }
        if count >= c.events as i64 {
            let cpu = cpu_secs();
            let (t0, cpu0, c0) = first.unwrap_or((started, 0.0, 0));
            if (count - c0) * 2 < c.events as i64 {
                eprintln!(
                    "weir-bench: {}: {c0} of {} outputs were already there at the first sample; \
                     too few events to time (use more)",
                    c.variant, c.events
                );
            }
            let events = (count - c0).max(1) as u64;
            let secs = now.duration_since(t0).as_secs_f64().max(1e-6);
            let rate = events as f64 / secs;
            return Ok(DrainResult {
                variant: c.variant.clone(),
                events,
                secs,
                cpu_secs: cpu - cpu0,
                rate,
                mb_s: rate * c.size as f64 / 1e6,
                cpu_us_per_event: (cpu - cpu0) * 1e6 / events as f64,
            });
        }
        if count != last_count {
            (last_count, last_progress) = (count, now);
        } else if now.duration_since(last_progress) > Duration::from_secs(30) {
            bail!(
                "outputs missing: {count} of {} acknowledged on {} and no progress for 30 s",
                c.events,
                c.output
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Produces timestamped events at `rate` while reading the output, and
/// reports the end-to-end latency of events sent after a 5 s warm-up.
fn latency(bootstrap: &str, c: &ChildArgs, rate: u64) -> anyhow::Result<LatencyResult> {
    let warmup = Duration::from_secs(5);
    let measure = Duration::from_secs(c.latency_secs);
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measure_from = now_ns() + warmup.as_nanos() as u64;
    let measure_to = measure_from + measure.as_nanos() as u64;
    let producer_thread = Paced {
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
    let mut lat_ns: Vec<u64> = Vec::new();
    let deadline = start + warmup + measure + Duration::from_secs(30);
    loop {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            let now = now_ns();
            if let Some(sent) = sent_ns(&m) {
                if (measure_from..measure_to).contains(&sent) {
                    lat_ns.push(now.saturating_sub(sent));
                }
                if sent >= measure_to {
                    done.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            done.store(true, Ordering::Relaxed);
            eprintln!(
                "weir-bench: latency {}: the pipe fell behind; {} of ~{} samples arrived within 30 s",
                c.variant,
                lat_ns.len(),
                rate * c.latency_secs
            );
            if lat_ns.is_empty() {
                bail!("latency run: no outputs arrived");
            }
            break;
        }
    }
    let _ = producer_thread.join();
    lat_ns.sort_unstable();
    let pct = |q: f64| {
        lat_ns
            .get(((lat_ns.len() as f64 * q) as usize).min(lat_ns.len().saturating_sub(1)))
            .map_or(f64::NAN, |&x| x as f64 / 1e6)
    };
    Ok(LatencyResult {
        variant: c.variant.clone(),
        rate,
        samples: lat_ns.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: lat_ns.last().map_or(f64::NAN, |&x| x as f64 / 1e6),
    })
}

// ------------------------------------------------------------ micro-bench --

fn micro(guests: &Path, smoke: bool) -> anyhow::Result<()> {
    use weir::bindings::weir::consumer::types::Event;
    use weir::engine::WasmEngine;
    use weir::invoke::Invoker;

    let tmp = tempfile::tempdir()?;
    for g in ["identity", "identity-batch"] {
        install_module(
            tmp.path(),
            g,
            &guests.join(format!("{g}.wasm")),
            &manifest("in", "out", "g", 256),
        )?;
    }
    // Compile time: a fresh engine per load (no digest cache hit).
    let mut files: Vec<PathBuf> = vec![
        tmp.path().join("identity.wasm"),
        tmp.path().join("identity-batch.wasm"),
    ];
    let examples = Path::new(REPO).join("target/modules");
    if let Ok(dir) = std::fs::read_dir(&examples) {
        let mut ex: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        ex.sort();
        files.extend(ex);
    }
    let reps = if smoke { 1 } else { 3 };
    println!("\ncompile (WasmEngine::load, fresh engine, median of {reps}):");
    for f in &files {
        let mut times = Vec::new();
        for _ in 0..reps {
            let engine = WasmEngine::new()?;
            let t = Instant::now();
            engine.load(f, 50 << 20)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "  {:<16} {:>8} B {:>7.1} ms",
            weir::engine::module_name(f),
            std::fs::metadata(f)?.len(),
            median(times.into_iter())
        );
    }
    let engine = WasmEngine::new()?;
    let iters = if smoke { 200 } else { 5000 };
    let stop = CancellationToken::new();
    for g in ["identity", "identity-batch"] {
        let module = Arc::new(engine.load(&tmp.path().join(format!("{g}.wasm")), 50 << 20)?);
        // Warm the pool slots.
        for _ in 0..50 {
            drop(Invoker::new(&engine, module.clone())?);
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let inv = Invoker::new(&engine, module.clone())?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            drop(inv);
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(f64::total_cmp);
        println!(
            "fresh instance {g:<15} (Invoker::new: Store + InstancePre::instantiate): median {:.1} µs, p99 {:.1} µs, mean {mean:.1} µs ({iters} iters)",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
        // Per-call cost on a warm instance, 100 B and 1 KiB values.
        let mut inv = Invoker::new(&engine, module.clone())?;
        for size in [100usize, 1024] {
            let events: Vec<Event> = (0..256)
                .map(|i| Event {
                    topic: "in".into(),
                    partition: 0,
                    offset: i,
                    timestamp_ms: Some(1),
                    key: None,
                    value: Some(vec![b'x'; size]),
                    headers: Vec::new(),
                })
                .collect();
            let rounds = if smoke { 20 } else { 400 };
            let mut emitted = 0;
            let t = Instant::now();
            for _ in 0..rounds {
                let r = inv.call(&events, &stop);
                if r.failure.is_some() {
                    bail!("{g}: call failed: {:?}", r.failure);
                }
                emitted += r.emitted.iter().map(Vec::len).sum::<usize>();
            }
            let per = t.elapsed().as_secs_f64() * 1e9 / (rounds * events.len()) as f64;
            if emitted != rounds * events.len() {
                bail!(
                    "{g}: emitted {emitted} records for {} events",
                    rounds * events.len()
                );
            }
            println!(
                "  call {g:<15} {size:>5} B: {per:>6.0} ns/event (Invoker::call, 256 events per call, emit included)"
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------ reload, RSS --

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn rss_child(
    bootstrap: &str,
    k: usize,
    input: &str,
    guests: &Path,
    kafka: &[(String, String)],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let pid = std::process::id();
    for i in 0..k {
        install_module(
            tmp.path(),
            &format!("id{i}"),
            &guests.join("identity.wasm"),
            &manifest(input, input, &format!("bench-rss-{pid}-{i}"), 64),
        )?;
    }
    let config = weir_config(bootstrap, tmp.path().to_path_buf(), kafka.to_vec());
    let token = CancellationToken::new();
    rt.spawn(async move { weir::runtime::run(config, token).await });
    // Let every module join its group and sit idle.
    std::thread::sleep(Duration::from_secs(10));
    println!("{}", rss_kib());
    std::process::exit(0);
}

fn reload_child(
    bootstrap: &str,
    input: &str,
    output: &str,
    guests: &Path,
    rate: u64,
    kafka: &[(String, String)],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let group = format!("bench-reload-{}", std::process::id());
    install_module(
        dir,
        "echo",
        &guests.join("echo-v1.wasm"),
        &manifest(input, output, &group, 64),
    )?;
    let debounce = Duration::from_millis(100);
    let config = weir::config::RunConfig {
        watch: true,
        reload_debounce: debounce,
        ..weir_config(bootstrap, dir.to_path_buf(), kafka.to_vec())
    };
    let token = CancellationToken::new();
    rt.spawn(async move { weir::runtime::run(config, token).await });

    let done = Arc::new(AtomicBool::new(false));
    Paced {
        config: settings(bootstrap, kafka.to_vec()).producer_config(),
        topic: input.to_owned(),
        size: 100,
        rate,
        stop: done.clone(),
        until_ns: u64::MAX,
    }
    .spawn();
    let reader = reader(
        bootstrap,
        "weir-bench-reload",
        &[("fetch.wait.max.ms", "5")],
        output,
        1,
    )?;
    // (send ns, arrival ns, version)
    let mut seen: Vec<(u64, u64, bool)> = Vec::new();
    let start = Instant::now();
    let mut swap_ns = None;
    while start.elapsed() < Duration::from_secs(16) {
        if swap_ns.is_none() && start.elapsed() > Duration::from_secs(10) {
            let tmpfile = dir.join(".echo.wasm.tmp");
            std::fs::copy(guests.join("echo-v2.wasm"), &tmpfile)?;
            swap_ns = Some(now_ns());
            std::fs::rename(&tmpfile, dir.join("echo.wasm"))?;
        }
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(20)) {
            let now = now_ns();
            use rdkafka::message::Headers;
            let v2 = m.headers().is_some_and(|h| {
                h.iter()
                    .any(|x| x.key == "weir-version" && x.value == Some(b"v2".as_slice()))
            });
            if let Some(sent) = sent_ns(&m) {
                seen.push((sent, now, v2));
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let swap = swap_ns.context("no swap")?;
    let first_v2 = seen
        .iter()
        .filter(|s| s.2)
        .map(|s| s.1)
        .min()
        .context("no output from v2 within 6 s of the swap")?;
    let mut before: Vec<u64> = seen
        .iter()
        .filter(|s| s.0 + 3_000_000_000 > swap && s.0 < swap)
        .map(|s| s.1 - s.0)
        .collect();
    before.sort_unstable();
    let around_max = seen
        .iter()
        .filter(|s| s.0 >= swap.saturating_sub(200_000_000) && s.0 < swap + 3_000_000_000)
        .map(|s| s.1 - s.0)
        .max()
        .unwrap_or(0);
    let p99_before = before.get(before.len() * 99 / 100).copied().unwrap_or(0);
    println!(
        "rename -> first v2 output {:.0} ms (includes the {} ms debounce, compile and the first v2 call); \
         e2e latency p99 before the swap {:.2} ms, max around the swap {:.2} ms => event-handling stall ≈ {:.2} ms \
         ({} events at {rate}/s, echo-v1 -> echo-v2, per-event world)",
        (first_v2.saturating_sub(swap)) as f64 / 1e6,
        debounce.as_millis(),
        p99_before as f64 / 1e6,
        around_max as f64 / 1e6,
        around_max.saturating_sub(p99_before) as f64 / 1e6,
        seen.len(),
    );
    std::process::exit(0);
}
