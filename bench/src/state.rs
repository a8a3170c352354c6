//! State stores: what a stateful module pays for its store.
//!
//! - local load: 1M entries (16-byte keys, 100-byte values) applied to a
//!   fresh redb store in batches, as a restore does: entries/s, file size
//!   and the process's resident memory before and after;
//! - get + set per event: `count-by-key` (one `get` and one `set` per
//!   event, plus an emit) called through `Invoker::call` with 256 events per
//!   call on that 1M-entry store, the writes applied as the partition worker
//!   does; beside it the identity component on the same events, so the
//!   difference is the cost of the state calls;
//! - restore from Kafka: a changelog partition of 1M records (30k on the
//!   embedded broker) restored by `Stores::open` into an empty state dir
//!   (records/s), then reopened from its checkpoint (the tail only).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::producer::{BaseRecord, Producer as _};
use tokio_util::sync::CancellationToken;
use weir::bindings::weir::consumer::types::{Disposition, Event};
use weir::engine::WasmEngine;
use weir::invoke::Invoker;
use weir::kafka::changelog::KafkaChangelog;
use weir::metrics::Metrics;
use weir::state::{LocalStore, PartitionStore, StateHandle, Stores, Write, changelog};
use weir::status::StatusBoard;

use crate::kafka::{counting_producer, settings};
use crate::pipe::install_module;
use crate::run::{REPO, Run};

/// Entries of the local load and the get + set store.
const ENTRIES: u64 = 1_000_000;
/// Changelog records restored on the embedded broker (it keeps ~39k per
/// partition).
const EMBEDDED_RECORDS: u64 = 30_000;

/// The state part.
pub fn run(run: &mut Run) -> anyhow::Result<()> {
    let entries = if run.opts.smoke { 20_000 } else { ENTRIES };
    let dir = tempfile::tempdir()?;
    println!("\nstate stores (load {}):", crate::report::loadavg());
    let store = local_load(&dir.path().join("load.redb"), entries)?;
    get_set(run, store, entries)?;
    restore(run, dir.path())
}

/// The next xorshift number from `seed`, below `n`: a random existing key.
fn random_below(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

/// Loads `entries` entries into a fresh store at `path`.
fn local_load(path: &Path, entries: u64) -> anyhow::Result<Arc<PartitionStore>> {
    let rss0 = crate::rss::rss_kib();
    let store = LocalStore::open(path)?;
    // A decimal count (99 zeros and a 1), as count-by-key reads it.
    let value = format!("{:0>100}", 1).into_bytes();
    let t = Instant::now();
    let mut i = 0;
    while i < entries {
        let batch: Vec<(Vec<u8>, Write)> = (i..(i + 4096).min(entries))
            .map(|n| {
                let write = Write::Put {
                    value: value.clone(),
                    expires_ms: None,
                };
                (key(n), write)
            })
            .collect();
        store.apply(batch.iter().map(|(k, w)| (k.as_slice(), w)), None)?;
        i += 4096;
    }
    store.flush(Some(0))?;
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(path)?.len();
    println!(
        "  local load: {entries} entries (16 B keys, 100 B values) in {secs:.2} s: {:.0} entries/s; \
         file {:.1} MiB ({:.0} B/entry); RSS {:.0} -> {:.0} MiB",
        entries as f64 / secs,
        size as f64 / (1 << 20) as f64,
        size as f64 / entries as f64,
        rss0 / 1024.0,
        crate::rss::rss_kib() / 1024.0
    );
    let store = Arc::new(PartitionStore::new(0, store));
    store.register("clicks", 0);
    Ok(store)
}

/// Host-side costs without a guest: one `get` on the local store, and one
/// call's worth (256) of get + set through `CallState` with the writes
/// applied, per event.
fn host_costs(store: &Arc<PartitionStore>, entries: u64, seed: &mut u64) -> anyhow::Result<()> {
    let mut next = || key(random_below(seed, entries));
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(store.local().get(&next())?);
    }
    let get = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    let handle = StateHandle {
        store: store.clone(),
        topic: "weir-state-count-by-key".into(),
        writer: "clicks".into(),
    };
    let limits = weir::state::StateLimits::of(&weir::manifest::Limits::default());
    let calls = 400;
    let t = Instant::now();
    let mut applying = Duration::ZERO;
    let mut run = 0;
    for _ in 0..calls {
        let mut state = weir::state::CallState::new(&handle, limits, weir::state::now_ms())?;
        let mut records = Vec::with_capacity(256);
        for _ in 0..256 {
            let k = next();
            let v = state.get(&k)?.unwrap_or_default();
            let _ = state.set(k, v, None)?;
            records.extend(state.end_event(true));
        }
        let a = Instant::now();
        // As the partition worker does: pending at settle, into the local
        // copy once acknowledged (here at once).
        run += 1;
        let writes = changelog::writes_in(&handle.topic, &records);
        store.apply("clicks", writes, run)?;
        store.landed("clicks", run, None)?;
        applying += a.elapsed();
    }
    let events = calls as f64 * 256.0;
    let get_set = t.elapsed().as_secs_f64() * 1e9 / events;
    let apply = applying.as_secs_f64() * 1e9 / events;
    println!(
        "  host only: {get:.0} ns per get (local store, own read transaction); {get_set:.0} ns per \
         event for get + set + changelog record + apply (CallState, 256 events per call), of \
         which {apply:.0} ns applying the writes"
    );
    Ok(())
}

/// Per-event cost of count-by-key (get + set + emit) against identity.
fn get_set(run: &Run, store: Arc<PartitionStore>, entries: u64) -> anyhow::Result<()> {
    let modules = tempfile::tempdir()?;
    let counter = Path::new(REPO).join("target/modules/count-by-key.wasm");
    if !counter.is_file() {
        bail!(
            "{} is missing: run scripts/build-guests.sh first",
            counter.display()
        );
    }
    install_module(
        modules.path(),
        "count-by-key",
        &counter,
        "input-topics = [\"clicks\"]\noutput-topics = [\"click-counts\"]\n[limits]\nmax-batch = 256\n[state]\n",
    )?;
    install_module(
        modules.path(),
        "identity",
        &run.guests.join("identity.wasm"),
        &crate::pipe::manifest("clicks", "click-counts", "g", 256),
    )?;
    let engine = WasmEngine::new()?;
    let rounds = if run.opts.smoke { 20 } else { 400 };
    let handle = StateHandle {
        store,
        topic: "weir-state-count-by-key".into(),
        writer: "clicks".into(),
    };
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    host_costs(&handle.store, entries, &mut seed)?;
    let mut per_event = Vec::new();
    for (name, state) in [("identity", None), ("count-by-key", Some(&handle))] {
        let module = Arc::new(engine.load(&modules.path().join(format!("{name}.wasm")), 50 << 20)?);
        let mut inv = Invoker::new(&engine, module)?;
        let stop = CancellationToken::new();
        let t = Instant::now();
        for round in 0..rounds {
            let events: Vec<Event> = (0..256)
                .map(|i| event(round * 256 + i, key(random_below(&mut seed, entries))))
                .collect();
            let r = inv.call(&events, &stop, state, None);
            if let Some(f) = r.failure {
                bail!("{name}: call failed: {}", f.reason);
            }
            if let Some(d) = r
                .dispositions
                .iter()
                .find(|d| !matches!(d, Disposition::Ok))
            {
                bail!("{name}: an event was not handled: {d:?}");
            }
            if let Some(state) = state {
                let writes = changelog::writes_in(&state.topic, r.emitted.iter().flatten());
                if writes.len() != events.len() {
                    bail!(
                        "{name}: {} writes for {} events",
                        writes.len(),
                        events.len()
                    );
                }
                let run = 1_000_000 + round;
                state.store.apply("clicks", writes, run)?;
                state.store.landed("clicks", run, None)?;
            }
        }
        let ns = t.elapsed().as_secs_f64() * 1e9 / (rounds as f64 * 256.0);
        per_event.push(ns);
        println!(
            "  {name:<13} {ns:>7.0} ns/event (Invoker::call, 256 events per call, 100 B values)"
        );
    }
    println!(
        "  one get + one set: {:.0} ns/event more than identity (store of {entries} entries, random keys, \
         writes applied once per call)",
        per_event[1] - per_event[0]
    );
    Ok(())
}

fn event(offset: u64, key: Vec<u8>) -> Event {
    Event {
        topic: "clicks".into(),
        partition: 0,
        offset: offset as i64,
        timestamp_ms: Some(1),
        key: Some(key),
        value: Some(vec![b'x'; 100]),
        headers: Vec::new(),
    }
}

/// Restores a changelog partition of fresh records into an empty dir, then
/// again from the checkpoint.
fn restore(run: &mut Run, dir: &Path) -> anyhow::Result<()> {
    let records = if run.broker.is_embedded() || run.opts.smoke {
        EMBEDDED_RECORDS.min(if run.opts.smoke { 5_000 } else { u64::MAX })
    } else {
        ENTRIES
    };
    let topic = run.topic("state-changelog", 1)?;
    let bootstrap = run.broker.bootstrap.clone();
    let kafka = settings(&bootstrap, run.kafka.clone());
    let mut config = kafka.producer_config();
    config.set("linger.ms", "20");
    let (producer, acked) = counting_producer(&config)?;
    let value = [b'v'; 100];
    for i in 0..records {
        let k = key(i);
        let mut record = BaseRecord::<[u8], [u8]>::to(&topic)
            .key(&k[..])
            .payload(&value[..])
            .partition(0);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let ok = acked.ok.load(std::sync::atomic::Ordering::Relaxed);
    if ok != records {
        bail!("restore: {ok} of {records} changelog records acknowledged");
    }
    let metrics = Metrics::new();
    let stores = Stores::new(
        "bench".into(),
        dir,
        &topic,
        Arc::new(KafkaChangelog {
            settings: kafka,
            group: format!("weir-bench-{}", run.run_id),
        }),
        metrics.state("bench"),
        Arc::new(StatusBoard::default()),
    );
    let rss0 = crate::rss::rss_kib();
    let t = Instant::now();
    let store = stores.open("in", 0).context("restore")?;
    let secs = t.elapsed().as_secs_f64();
    let keys = store.local().keys();
    if store.restored_records() != records || keys != records {
        bail!(
            "restore read {} records into {keys} keys, expected {records}",
            store.restored_records()
        );
    }
    println!(
        "  restore from Kafka: {records} records in {secs:.2} s: {:.0} records/s (RSS {:.0} -> {:.0} MiB)",
        records as f64 / secs,
        rss0 / 1024.0,
        crate::rss::rss_kib() / 1024.0
    );
    drop(store);
    stores.release("in", 0);
    let t = Instant::now();
    let store = stores.open("in", 0)?;
    println!(
        "  reopen from the checkpoint: {} records read in {:.0} ms",
        store.restored_records(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
