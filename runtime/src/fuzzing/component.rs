//! The component targets: loading arbitrary component bytes, and the host
//! imports driven by the `fuzz-host` guest. Both call what loads through an
//! [`Invoker`] with an in-memory state store, as `weir replay` does, and
//! check the call's result against the module's limits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::bindings::weir::consumer::types::{Disposition, Event};
use crate::engine::{LoadError, LoadedModule, WasmEngine};
use crate::invoke::{CallResult, Invoker};
use crate::manifest::Manifest;
use crate::pipeline::failure::record_size;
use crate::state::call::SWEEP_PER_CALL;
use crate::state::{LocalStore, PartitionStore, StateHandle, changelog};

/// The manifest of every fuzzed module. Its `[config]` repeats `[limits]`
/// for the `fuzz-host` guest, which checks the host's answers against them
/// ([`fuzz_host`] asserts that the two agree).
const MANIFEST: &str = r#"
input-topics = ["fuzz-in"]
output-topics = ["fuzz-out", "fuzz-side"]

[limits]
timeout = "1s"
memory-mib = 32
max-emits = 64
max-record-bytes = 4096
state-mib = 1
max-state-key-bytes = 64
max-state-value-bytes = 65536

[state]

[config]
outputs = "fuzz-out,fuzz-side"
max-emits = "64"
max-record-bytes = "4096"
max-state-key-bytes = "64"
max-state-value-bytes = "65536"
"#;

/// How every reject or retry reason of `fuzz-host` starts, unless it
/// reports a broken promise (`BROKEN: ...`) or the harness is broken.
const ASKED: &str = "the fuzz input asked for a";

/// Byte that separates the events of a `host_imports` input.
const EVENT_SEPARATOR: u8 = 0xfe;

/// Most events one `host_imports` input is split into.
const MAX_EVENTS: usize = 4;

/// The engine every target shares (compiling it is the slow part).
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new().expect("create the wasm engine"))
}

fn manifest() -> Manifest {
    Manifest::parse(MANIFEST, Path::new("fuzz.toml")).expect("the fuzz manifest is valid")
}

/// Loads `data` as a component; what loads is instantiated and called with
/// one event. Errors are fine, panics and broken limits are not.
pub fn component_load(data: &[u8]) {
    let path = Path::new("fuzzed.wasm");
    match engine().load_bytes("fuzzed".into(), path, data, manifest()) {
        Ok(module) => exercise(Arc::new(module), &[event(0, b"fuzz")], 1, false),
        Err(err) => {
            let shown = err.to_string();
            assert!(shown.contains("fuzzed.wasm"), "{shown}");
            let header_ok = data.starts_with(b"\0asm\x0d\0\x01\0");
            let header_error = matches!(
                err,
                LoadError::NotWasm { .. } | LoadError::CoreModule { .. }
            );
            assert_eq!(header_ok, !header_error, "{shown}");
        }
    }
}

/// Where the `fuzz-host` component is: `$WEIR_FUZZ_HOST`, else
/// `target/test-guests/fuzz-host.wasm` of this checkout (built by
/// `scripts/build-guests.sh`).
pub fn fuzz_host_path() -> PathBuf {
    match std::env::var_os("WEIR_FUZZ_HOST") {
        Some(path) => path.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-guests/fuzz-host.wasm"),
    }
}

/// The `fuzz-host` module, loaded once.
fn fuzz_host() -> Arc<LoadedModule> {
    static MODULE: OnceLock<Arc<LoadedModule>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = fuzz_host_path();
            let manifest = manifest();
            let limits = &manifest.limits;
            for (key, limit) in [
                ("max-emits", limits.max_emits),
                ("max-record-bytes", limits.max_record_bytes),
                ("max-state-key-bytes", limits.max_state_key_bytes),
                ("max-state-value-bytes", limits.max_state_value_bytes),
            ] {
                assert_eq!(manifest.config[key], limit.to_string(), "[config] {key}");
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/build-guests.sh)", path.display())
            });
            let module = engine()
                .load_bytes("fuzz-host".into(), &path, &bytes, manifest)
                .unwrap_or_else(|e| panic!("load fuzz-host: {e}"));
            assert!(module.imports_state && !module.pre.is_batch());
            Arc::new(module)
        })
        .clone()
}

/// Runs the `fuzz-host` guest on `data`: split at `0xfe` into up to four
/// events of one partition, handled in one call, then again in a second
/// call that sees the state the first one's `ok` events wrote.
pub fn host_imports(data: &[u8]) {
    let events: Vec<Event> = data
        .split(|b| *b == EVENT_SEPARATOR)
        .take(MAX_EVENTS)
        .enumerate()
        .map(|(i, value)| event(i as i64, value))
        .collect();
    exercise(fuzz_host(), &events, 2, true);
}

fn event(offset: i64, value: &[u8]) -> Event {
    Event {
        topic: "fuzz-in".into(),
        partition: 0,
        offset,
        timestamp_ms: None,
        key: Some(b"k".to_vec()),
        value: Some(value.to_vec()),
        headers: Vec::new(),
    }
}

/// Calls `module` with `events` `rounds` times on one instance (re-created
/// after a trap) and an in-memory store, checking each result and applying
/// the state writes of the `ok` events between rounds, as a worker does.
fn exercise(module: Arc<LoadedModule>, events: &[Event], rounds: usize, fuzz_host: bool) {
    let store = Arc::new(PartitionStore::new(
        0,
        LocalStore::in_memory().expect("in-memory store"),
    ));
    store.register("fuzz-in", 0);
    let handle = StateHandle {
        store,
        topic: changelog::default_topic(&module.name).into(),
        writer: "fuzz-in".into(),
    };
    // Instantiation runs the component's start code, which may trap.
    let Ok(mut invoker) = Invoker::new(engine(), module.clone()) else {
        return;
    };
    let never = CancellationToken::new();
    for _ in 0..rounds {
        if !invoker.is_live() && invoker.reset(engine()).is_err() {
            return;
        }
        let result = invoker.call(events, &never, Some(&handle), None);
        check(&module, &handle.topic, events, &result, invoker.is_live());
        if fuzz_host {
            for d in &result.dispositions {
                if let Disposition::Retry(why) | Disposition::Reject(why) = d {
                    assert!(why.starts_with(ASKED), "{why}");
                }
            }
        }
        for (d, emitted) in result.dispositions.iter().zip(&result.emitted) {
            if module.pre.is_batch() || matches!(d, Disposition::Ok) {
                let writes = changelog::writes_in(&handle.topic, emitted);
                handle.store.write_through(writes).expect("apply writes");
            }
        }
    }
}

/// What a call may return: one disposition per handled event, records
/// within the limits, state writes only for `ok` events.
fn check(module: &LoadedModule, log: &str, events: &[Event], result: &CallResult, live: bool) {
    let limits = &module.manifest.limits;
    let handled = result.dispositions.len();
    assert_eq!(result.failure.is_none(), live, "{:?}", result.failure);
    if module.pre.is_batch() {
        assert!(handled == events.len() || (handled == 0 && result.failure.is_some()));
        assert!(result.emitted.len() <= 1);
    } else {
        assert_eq!(result.emitted.len(), handled);
        let retried = matches!(result.dispositions.last(), Some(Disposition::Retry(_)));
        // A call also ends between events once they emitted more than
        // `max-emit-bytes` (see `Invoker::call`).
        let emitted: usize = result.emitted.iter().flatten().map(record_size).sum();
        let spent = emitted > limits.max_emit_bytes as usize;
        let complete = result.failure.is_none() && !retried && !spent;
        assert!(handled <= events.len() && (!complete || handled == events.len()));
    }
    for (i, emitted) in result.emitted.iter().enumerate() {
        let ok = module.pre.is_batch() || matches!(result.dispositions[i], Disposition::Ok);
        let (writes, outputs): (Vec<_>, Vec<_>) = emitted.iter().partition(|r| r.topic == log);
        assert!(outputs.len() <= limits.max_emits as usize);
        let bytes: usize = outputs.iter().map(|r| record_size(r)).sum();
        assert!(
            bytes <= limits.max_emit_bytes as usize,
            "{bytes} bytes emitted"
        );
        for r in outputs {
            assert!(
                module.manifest.output_topics.contains(&r.topic),
                "{}",
                r.topic
            );
            assert!(r.partition.is_none_or(|p| p >= 0));
            let size = record_size(r);
            assert!(
                size <= limits.max_record_bytes as usize,
                "{size}-byte record"
            );
        }
        assert!(ok || writes.is_empty(), "writes of a failed event");
        assert!(writes.len() <= limits.max_emits as usize + SWEEP_PER_CALL);
        for w in writes {
            let key = w.key.as_deref().expect("a changelog record has a key");
            assert!(key.len() <= limits.max_state_key_bytes as usize);
            let value = w.value.as_deref().unwrap_or_default();
            assert!(value.len() <= limits.max_state_value_bytes as usize);
            assert_eq!(w.partition, Some(events[0].partition));
        }
    }
}
