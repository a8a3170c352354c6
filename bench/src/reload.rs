//! Reload stall: how long event handling pauses when a module's component
//! is replaced under a steady stream.
//!
//! A fresh child process runs weir watching its modules folder with the
//! per-event echo-v1 component, produces timestamped events at a steady
//! rate and reads the output. After 10 s it renames echo-v2 over the
//! component, and 6 s later compares the worst end-to-end latency around
//! the swap with the p99 before it; outputs of v2 carry a `weir-version: v2`
//! header, so the first of them dates the swap's end.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio_util::sync::CancellationToken;
use weir::config::RunConfig;

use crate::cli::ReloadArgs;
use crate::kafka::{Paced, now_ns, reader, sent_ns, settings};
use crate::pipe::{install_module, manifest, weir_config};
use crate::run::Run;

/// weir's reload debounce in the child.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The reload part: `--reload-runs` child runs, each on fresh topics;
/// prints the line each reports.
pub fn run(run: &mut Run) -> anyhow::Result<()> {
    println!();
    for i in 0..run.opts.reload_runs {
        let input = run.topic(&format!("reload-in-{i}"), 1)?;
        let output = run.topic(&format!("reload-out-{i}"), 1)?;
        let cmd = run.command("reload", &input, &["--output", &output])?;
        let label = format!("reload {i}");
        if let Some(line) = run
            .failures
            .check(crate::child::output(cmd), &label, &label)
        {
            println!("reload {i}: {line}");
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- child --

/// One output the child read back.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When its event was sent (ns since the epoch).
    sent: u64,
    /// When it arrived (ns since the epoch).
    arrived: u64,
    /// Whether echo-v2 wrote it.
    v2: bool,
}

/// `weir-bench reload`: measures the stall (see the module doc), prints
/// one line and exits.
pub fn child(bootstrap: &str, a: &ReloadArgs) -> anyhow::Result<()> {
    let rt = crate::child::runtime()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let group = format!("bench-reload-{}", std::process::id());
    install_module(
        dir,
        "echo",
        &a.guests.join("echo-v1.wasm"),
        &manifest(&a.input, &a.output, &group, 64),
    )?;
    let config = RunConfig {
        watch: true,
        reload_debounce: DEBOUNCE,
        ..weir_config(bootstrap, dir.to_path_buf(), a.kafka.clone())
    };
    let token = CancellationToken::new();
    rt.spawn(async move { weir::runtime::run(config, token).await });

    let done = Arc::new(AtomicBool::new(false));
    Paced {
        config: settings(bootstrap, a.kafka.clone()).producer_config(),
        topic: a.input.clone(),
        size: 100,
        rate: a.rate,
        stop: done.clone(),
        until_ns: u64::MAX,
    }
    .spawn();
    let reader = reader(
        bootstrap,
        "weir-bench-reload",
        &[("fetch.wait.max.ms", "5")],
        &a.output,
        1,
    )?;
    let (seen, swap) = read_across_swap(&reader, dir, &a.guests)?;
    done.store(true, Ordering::Relaxed);
    println!("{}", summary(&seen, swap.context("no swap")?, a.rate)?);
    std::process::exit(0);
}

/// Reads outputs for 16 s, renaming echo-v2 over the component in `dir`
/// after 10 s; returns every output and when the rename happened.
fn read_across_swap(
    reader: &BaseConsumer,
    dir: &Path,
    guests: &Path,
) -> anyhow::Result<(Vec<Seen>, Option<u64>)> {
    let mut seen = Vec::new();
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
            let arrived = now_ns();
            let v2 = is_v2(&m);
            if let Some(sent) = sent_ns(&m) {
                seen.push(Seen { sent, arrived, v2 });
            }
        }
    }
    Ok((seen, swap_ns))
}

/// Whether echo-v2 wrote `m` (its `weir-version` header is `v2`).
fn is_v2(m: &BorrowedMessage<'_>) -> bool {
    m.headers().is_some_and(|h| {
        h.iter()
            .any(|x| x.key == "weir-version" && x.value == Some(b"v2".as_slice()))
    })
}

/// The report line: time from the rename at `swap` to the first v2 output,
/// p99 latency in the 3 s before the swap, the worst latency from 200 ms
/// before to 3 s after it, and their difference (the stall).
fn summary(seen: &[Seen], swap: u64, rate: u64) -> anyhow::Result<String> {
    let first_v2 = seen
        .iter()
        .filter(|s| s.v2)
        .map(|s| s.arrived)
        .min()
        .context("no output from v2 within 6 s of the swap")?;
    let mut before: Vec<u64> = seen
        .iter()
        .filter(|s| s.sent + 3_000_000_000 > swap && s.sent < swap)
        .map(|s| s.arrived - s.sent)
        .collect();
    before.sort_unstable();
    let around_max = seen
        .iter()
        .filter(|s| s.sent >= swap.saturating_sub(200_000_000) && s.sent < swap + 3_000_000_000)
        .map(|s| s.arrived - s.sent)
        .max()
        .unwrap_or(0);
    let p99_before = before.get(before.len() * 99 / 100).copied().unwrap_or(0);
    Ok(format!(
        "rename -> first v2 output {:.0} ms (includes the {} ms debounce, compile and the first v2 call); \
         e2e latency p99 before the swap {:.2} ms, max around the swap {:.2} ms => event-handling stall ≈ {:.2} ms \
         ({} events at {rate}/s, echo-v1 -> echo-v2, per-event world)",
        (first_v2.saturating_sub(swap)) as f64 / 1e6,
        DEBOUNCE.as_millis(),
        p99_before as f64 / 1e6,
        around_max as f64 / 1e6,
        around_max.saturating_sub(p99_before) as f64 / 1e6,
        seen.len(),
    ))
}
