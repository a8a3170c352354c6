//! Measures what the Rust, Python and JavaScript `json-enrich` components
//! cost in weir, without Kafka: component size, compile time
//! (`WasmEngine::load`, fresh engine), instantiation (`Invoker::new`), and
//! the per-event handler cost on a warm instance (`Invoker::call` over 256
//! order events, emit included), for `rounds` rounds. The Python and
//! JavaScript twins are measured in both worlds: per event (`handle`, 256
//! calls) and in batch mode (their `-batch` builds, `handle-batch`: one call
//! of 256 events), and the batch build must emit the same records.
//!
//! ```sh
//! scripts/build-guests.sh
//! cargo run --release -p weir-tests --example lang_cost [ROUNDS [MODULE...]]
//! ```
//!
//! ROUNDS defaults to 20; MODULEs (names of components in `target/modules`,
//! `-batch` ones in `target/modules-batch`,
//! each emitting one record per event) replace the default list.
//!
//! A measurement, not a test: it prints figures and fails only if a call
//! fails, emits the wrong number of records, or a batch build emits other
//! records than its per-event twin.
#![allow(clippy::print_stdout, reason = "a measurement tool prints its figures")]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;
use weir::bindings::weir::consumer::types::{Disposition, Event, Header, Outgoing};
use weir::engine::WasmEngine;
use weir::invoke::Invoker;

/// The modules measured; a `-batch` module is the batch build of the one
/// without the suffix, measured before it.
const MODULES: [&str; 5] = [
    "json-enrich",
    "python-json-enrich",
    "python-json-enrich-batch",
    "js-json-enrich",
    "js-json-enrich-batch",
];

/// One emitted record, comparable: topic, key, value, headers, partition.
type Output = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Vec<u8>)>,
    Option<i32>,
);

fn output(record: &Outgoing) -> Output {
    (
        record.topic.clone(),
        record.key.clone(),
        record.value.clone(),
        record
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
        record.partition,
    )
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ROUNDS must be a number")?,
        None => 20,
    };
    let names: Vec<String> = std::env::args().skip(2).collect();
    let modules: Vec<&str> = if names.is_empty() {
        MODULES.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let dir = weir_tests::repo_root().join("target/modules");
    let events: Vec<Event> = (0..256)
        .map(|i| Event {
            topic: "orders".into(),
            partition: 0,
            offset: i,
            timestamp_ms: Some(1_700_000_000_000 + i),
            key: Some(format!("order-{i}").into_bytes()),
            value: Some(
                format!(r#"{{"id":{i},"customer":"c-{}","price":2.5,"quantity":{},"note":"a typical order"}}"#, i % 17, i % 9)
                    .into_bytes(),
            ),
            headers: vec![Header { key: "trace-id".into(), value: b"abc".to_vec() }],
        })
        .collect();
    let stop = CancellationToken::new();
    println!(
        "{:<26} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "module", "mode", "bytes", "compile", "instantiate", "per event", "events/s"
    );
    // Per module: the records of the warm-up round and the median per event.
    let mut measured: Vec<(&str, Vec<Output>, f64)> = Vec::new();
    for name in modules {
        let wasm = if name.ends_with("-batch") {
            dir.with_file_name("modules-batch")
                .join(format!("{name}.wasm"))
        } else {
            dir.join(format!("{name}.wasm"))
        };
        let size = std::fs::metadata(&wasm)
            .with_context(|| format!("{}: run scripts/build-guests.sh first", wasm.display()))?
            .len();
        let engine = WasmEngine::new()?;
        let t = Instant::now();
        let module = Arc::new(engine.load(&wasm, 64 << 20)?);
        let compile = t.elapsed();
        let t = Instant::now();
        let mut invoker = Invoker::new(&engine, module)?;
        let instantiate = t.elapsed();
        let mode = if invoker.is_batch() { "batch" } else { "event" };
        // Warm-up round, then the measured ones.
        let mut per_round = Vec::with_capacity(rounds);
        let mut outputs = Vec::new();
        for round in 0..=rounds {
            let t = Instant::now();
            let result = invoker.call(&events, &stop, None, None);
            let elapsed = t.elapsed();
            if let Some(f) = result.failure {
                bail!("{name}: call failed: {}", f.reason);
            }
            let emitted: usize = result.emitted.iter().map(Vec::len).sum();
            if emitted != events.len() {
                bail!(
                    "{name}: {emitted} records emitted for {} events",
                    events.len()
                );
            }
            if let Some(d) = result
                .dispositions
                .iter()
                .find(|d| !matches!(d, Disposition::Ok))
            {
                bail!("{name}: an event was not ok: {d:?}");
            }
            if round == 0 {
                outputs = result.emitted.iter().flatten().map(output).collect();
            } else {
                per_round.push(elapsed.as_secs_f64() / events.len() as f64);
            }
        }
        per_round.sort_by(f64::total_cmp);
        let median = per_round[per_round.len() / 2];
        println!(
            "{name:<26} {mode:>6} {size:>10} {:>8.1} s {:>9.1} ms {:>9.1} µs {:>12.0}",
            compile.as_secs_f64(),
            instantiate.as_secs_f64() * 1e3,
            median * 1e6,
            1.0 / median
        );
        if let Some(twin) = name.strip_suffix("-batch") {
            let Some((_, twin_outputs, _)) = measured.iter().find(|(n, _, _)| *n == twin) else {
                bail!("{name}: its per-event twin {twin} is measured after it");
            };
            if *twin_outputs != outputs {
                bail!("{name}: the batch build emitted other records than {twin}");
            }
        }
        measured.push((name, outputs, median));
    }
    println!("(median of {rounds} rounds of 256 events per call; one warm instance; no Kafka)");
    for (name, _, batch) in &measured {
        if let Some(twin) = name.strip_suffix("-batch")
            && let Some((_, _, single)) = measured.iter().find(|(n, _, _)| *n == twin)
        {
            println!(
                "{twin}: batch mode {:.1}x cheaper per event ({:.1} µs -> {:.1} µs), same records",
                single / batch,
                single * 1e6,
                batch * 1e6
            );
        }
    }
    Ok(())
}
