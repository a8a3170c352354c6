//! Guest call cost, in this process without Kafka: component compile time
//! (`WasmEngine::load` on a fresh engine, so no cache hit), fresh instance
//! creation (`Invoker::new`) and the per-event cost of `Invoker::call` on a
//! warm instance of the identity components, with 256 events per call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use tokio_util::sync::CancellationToken;
use weir::bindings::weir::consumer::types::Event;
use weir::engine::{LoadedModule, WasmEngine};
use weir::invoke::Invoker;

use crate::pipe::{install_module, manifest};
use crate::report::median;
use crate::run::REPO;

/// Largest component the engine loads here, in bytes.
const MAX_MODULE_BYTES: u64 = 50 << 20;

/// The identity components measured.
const GUESTS: [&str; 2] = ["identity", "identity-batch"];

/// The micro part; `smoke` makes every loop short.
pub fn run(guests: &Path, smoke: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for g in GUESTS {
        install_module(
            tmp.path(),
            g,
            &guests.join(format!("{g}.wasm")),
            &manifest("in", "out", "g", 256),
        )?;
    }
    compile_times(&compiled_files(tmp.path()), if smoke { 1 } else { 3 })?;
    let engine = WasmEngine::new()?;
    for g in GUESTS {
        let module =
            Arc::new(engine.load(&tmp.path().join(format!("{g}.wasm")), MAX_MODULE_BYTES)?);
        instance_cost(&engine, &module, g, if smoke { 200 } else { 5000 })?;
        call_cost(&engine, &module, g, if smoke { 20 } else { 400 })?;
    }
    Ok(())
}

/// The identity components in `dir`, then the example modules the build
/// script put in `target/modules`, if any.
fn compiled_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = GUESTS
        .iter()
        .map(|g| dir.join(format!("{g}.wasm")))
        .collect();
    let examples = Path::new(REPO).join("target/modules");
    if let Ok(dir) = std::fs::read_dir(&examples) {
        let mut ex: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        ex.sort();
        files.extend(ex);
    }
    files
}

/// Prints the median compile time of each of `files` over `reps` loads,
/// each on a fresh engine.
fn compile_times(files: &[PathBuf], reps: usize) -> anyhow::Result<()> {
    println!("\ncompile (WasmEngine::load, fresh engine, median of {reps}):");
    for f in files {
        let mut times = Vec::new();
        for _ in 0..reps {
            let engine = WasmEngine::new()?;
            let t = Instant::now();
            engine.load(f, MAX_MODULE_BYTES)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "  {:<16} {:>8} B {:>7.1} ms",
            weir::engine::module_name(f),
            std::fs::metadata(f)?.len(),
            median(times.into_iter())
        );
    }
    Ok(())
}

/// Prints the cost of `iters` fresh instances of `module` (guest `g`),
/// after warming the pool slots.
fn instance_cost(
    engine: &WasmEngine,
    module: &Arc<LoadedModule>,
    g: &str,
    iters: usize,
) -> anyhow::Result<()> {
    for _ in 0..50 {
        drop(Invoker::new(engine, module.clone())?);
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let inv = Invoker::new(engine, module.clone())?;
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
    Ok(())
}

/// Prints the per-event cost of `rounds` calls with 256 events of 100 B,
/// then of 1 KiB, on one warm instance of `module` (guest `g`); fails
/// unless every event is emitted once.
fn call_cost(
    engine: &WasmEngine,
    module: &Arc<LoadedModule>,
    g: &str,
    rounds: usize,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut inv = Invoker::new(engine, module.clone())?;
    for size in [100usize, 1024] {
        let events = events(size);
        let mut emitted = 0;
        let t = Instant::now();
        for _ in 0..rounds {
            let r = inv.call(&events, &stop, None, None);
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
    Ok(())
}

/// 256 events with `size`-byte values.
fn events(size: usize) -> Vec<Event> {
    (0..256)
        .map(|i| Event {
            topic: "in".into(),
            partition: 0,
            offset: i,
            timestamp_ms: Some(1),
            key: None,
            value: Some(vec![b'x'; size]),
            headers: Vec::new(),
        })
        .collect()
}
