//! Drain throughput: the native rdkafka pipe against weir (per-event and
//! batch identity components).
//!
//! For each value size the parent prefills an input topic with N events,
//! then every repetition drains it once per variant, each in a fresh child
//! process with a fresh consumer group and output topic, rotating the order
//! every repetition. The child counts only records the broker acknowledged
//! (the output topic's end offsets), timed from the first output to the
//! last; CPU is the child's getrusage. The parent prints each run and the
//! medians per variant.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::cli::ChildArgs;
use crate::kafka::{end_offsets, prefill, watcher};
use crate::report::{loadavg, median};
use crate::run::Run;

/// One drain of one variant, as the child reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainResult {
    /// native, event or batch.
    pub variant: String,
    /// Events timed (those output after the first sample).
    pub events: u64,
    /// Wall-clock seconds from the first output to the last.
    pub secs: f64,
    /// CPU seconds (user + system) the child spent meanwhile.
    pub cpu_secs: f64,
    /// Events per second.
    pub rate: f64,
    /// Value megabytes per second.
    pub mb_s: f64,
    /// CPU microseconds per event.
    pub cpu_us_per_event: f64,
    /// Rust allocations (and reallocations) per event in the child: weir,
    /// rdkafka's Rust side, the harness's own end-offset polling; not
    /// librdkafka's C allocations.
    #[serde(default)]
    pub allocs_per_event: f64,
}

/// Every drain of one size, by variant.
type Results = BTreeMap<String, Vec<DrainResult>>;

/// The drain part for every `--sizes` value; returns weir's maximum rate
/// for 100-byte values: the slower weir variant's median (the latency
/// part's default rate is half of it).
pub fn run(run: &mut Run) -> anyhow::Result<Option<f64>> {
    let mut weir_rate_100 = None;
    for size in run.opts.sizes.clone() {
        let weir = drain_size(run, size)?;
        if size <= 100 {
            weir_rate_100 = weir;
        }
    }
    Ok(weir_rate_100)
}

/// Prefills a topic with `size`-byte events, drains it with every variant
/// `--reps` times and prints the medians; returns the slower weir
/// variant's median rate.
fn drain_size(run: &mut Run, size: usize) -> anyhow::Result<Option<f64>> {
    let (n, partitions) = (run.opts.events_for(size), run.opts.partitions);
    if run.broker.is_embedded() && n / partitions as u64 > 30_000 {
        bail!(
            "the embedded broker keeps only ~39k events per partition; {n} events in {partitions} \
             partition(s) would be silently truncated: use --brokers or fewer events"
        );
    }
    let input = run.topic(&format!("in-{size}"), partitions)?;
    let t = Instant::now();
    prefill(
        &run.broker.bootstrap,
        &run.kafka,
        &input,
        partitions,
        n,
        size,
    )?;
    println!(
        "\nprefilled {n} x {size} B into {input} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut results = Results::new();
    for rep in 0..run.opts.reps {
        for variant in rotation(&run.opts.variants, rep) {
            let output = run.topic(&format!("out-{size}-{variant}-{rep}"), partitions)?;
            let c = ChildArgs {
                events: n,
                size,
                ..run.child_args(&variant, input.clone(), output)
            };
            let r = crate::child::run_child::<DrainResult>(&run.broker.bootstrap, &c);
            let shown = format!("  {size:>5} B rep {rep} {variant:<6}");
            let label = format!("{size} B {variant} rep {rep}");
            if let Some(r) = run.failures.check(r, &shown, &label) {
                print_run(&shown, &r);
                results.entry(variant).or_default().push(r);
            }
        }
    }
    Ok(print_medians(size, n, run.opts.reps, &results))
}

/// The variants in the order of repetition `rep`: rotated by `rep`, and
/// reversed every other repetition.
fn rotation(variants: &[String], rep: usize) -> Vec<String> {
    let mut order = variants.to_vec();
    let len = order.len().max(1);
    order.rotate_left(rep % len);
    if rep % 2 == 1 {
        order.reverse();
    }
    order
}

/// Prints one drain, after `shown` (size, repetition, variant).
fn print_run(shown: &str, r: &DrainResult) {
    println!(
        "{shown} {:>9.0} ev/s {:>7.1} MB/s {:>6.2} µs CPU/ev {:>5.2} allocs/ev ({} ev in {:.2} s, load {})",
        r.rate,
        r.mb_s,
        r.cpu_us_per_event,
        r.allocs_per_event,
        r.events,
        r.secs,
        loadavg()
    );
}

/// Prints the medians per variant and returns the slowest weir variant's
/// median rate.
fn print_medians(size: usize, n: u64, reps: usize, results: &Results) -> Option<f64> {
    println!("\nmedians, {size} B values, {n} events, {reps} reps:");
    println!(
        "  {:<7} {:>10} {:>8} {:>10} {:>10} {:>12} {:>14}",
        "variant", "events/s", "MB/s", "CPU µs/ev", "allocs/ev", "vs native", "CPU − native"
    );
    let native_cpu = results
        .get("native")
        .map(|r| median(r.iter().map(|x| x.cpu_us_per_event)));
    let native = results
        .get("native")
        .map(|r| median(r.iter().map(|x| x.rate)));
    for (variant, rs) in results {
        let rate = median(rs.iter().map(|x| x.rate));
        let mb = median(rs.iter().map(|x| x.mb_s));
        let cpu = median(rs.iter().map(|x| x.cpu_us_per_event));
        let allocs = median(rs.iter().map(|x| x.allocs_per_event));
        let ratio = native.map_or(String::from("-"), |n| format!("{:.1} %", 100.0 * rate / n));
        let extra = native_cpu.map_or(String::from("-"), |n| format!("{:+.2} µs", cpu - n));
        println!(
            "  {variant:<7} {rate:>10.0} {mb:>8.1} {cpu:>10.2} {allocs:>10.2} {ratio:>12} {extra:>14}"
        );
    }
    results
        .iter()
        .filter(|(variant, _)| *variant != "native")
        .map(|(_, rs)| median(rs.iter().map(|x| x.rate)))
        .reduce(f64::min)
}

// ----------------------------------------------------------------- child --

/// CPU seconds (user + system) this process has used.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// In the child, with the pipe running: waits until `c.events` outputs are
/// acknowledged on `c.output` and times them from the first one. Fails if
/// the count stalls for 30 s.
pub fn measure(bootstrap: &str, c: &ChildArgs) -> anyhow::Result<DrainResult> {
    let w = watcher(bootstrap)?;
    let started = Instant::now();
    let mut first: Option<(Instant, f64, u64, i64)> = None;
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        // A sample that times out (a starved machine, a child under
        // valgrind) is skipped; the no-progress guard below still ends a
        // drain that stalls.
        let count = match end_offsets(&w, &c.output, c.partitions) {
            Ok(count) => count,
            Err(err) => {
                eprintln!(
                    "weir-bench: end offsets of {}: {err:#}; sampling again",
                    c.output
                );
                last_count
            }
        };
        let now = Instant::now();
        if count > 0 && first.is_none() {
            first = Some((now, cpu_secs(), crate::alloc::allocations(), count));
        }
        if count >= c.events as i64 {
            return Ok(result(c, first.unwrap_or((started, 0.0, 0, 0)), now, count));
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

/// The drain result from the first sample `(t0, cpu0, a0, c0)` (time, CPU
/// seconds, allocations, outputs) to `count` outputs at `now`.
fn result(
    c: &ChildArgs,
    (t0, cpu0, a0, c0): (Instant, f64, u64, i64),
    now: Instant,
    count: i64,
) -> DrainResult {
    let cpu = cpu_secs();
    let allocs = crate::alloc::allocations();
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
    DrainResult {
        variant: c.variant.clone(),
        events,
        secs,
        cpu_secs: cpu - cpu0,
        rate,
        mb_s: rate * c.size as f64 / 1e6,
        cpu_us_per_event: (cpu - cpu0) * 1e6 / events as f64,
        allocs_per_event: (allocs - a0) as f64 / events as f64,
    }
}
