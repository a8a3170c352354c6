//! Broken components and bad manifests are reported clearly, naming the
//! file, and do not stop the modules that are fine.

use tokio_util::sync::CancellationToken;
use weir::bindings::weir::consumer::types::{Disposition, Event};
use weir::engine::WasmEngine;
use weir::invoke::Invoker;
use weir::modules::load_dir;
use weir_tests::devtools::weir;
use weir_tests::{ModulesDir, guest, init_logging, test_guest};

const GOOD: &str = "input-topics = [\"in\"]\noutput-topics = [\"out\"]\n[config]\nregion = \"r\"\n";

#[test]
fn each_broken_module_is_reported_with_its_file_and_the_rest_load() {
    init_logging();
    let dir = ModulesDir::new();
    dir.add("good", "json-enrich", GOOD);
    dir.write("garbage.wasm", b"definitely not wasm")
        .write("garbage.toml", GOOD.as_bytes());
    // A core module (version 1) instead of a component.
    dir.write("core.wasm", b"\0asm\x01\0\0\0")
        .write("core.toml", GOOD.as_bytes());
    // A component whose body is cut short.
    let full = std::fs::read(guest("filter")).unwrap();
    dir.write("truncated.wasm", &full[..full.len() / 2])
        .write("truncated.toml", GOOD.as_bytes());
    // A component with no manifest, and one with a misspelt key.
    dir.copy("orphan.wasm", &guest("filter"));
    dir.add(
        "typo",
        "filter",
        "input-topics = [\"in\"]\noutput-topic = [\"out\"]\n",
    );
    // Precompiled artifacts are never loaded.
    dir.write("native.cwasm", b"whatever");

    let engine = WasmEngine::new().unwrap();
    let report = load_dir(&engine, dir.path(), 50 << 20).unwrap();
    let loaded: Vec<&str> = report.loaded.iter().map(|m| &*m.name).collect();
    assert_eq!(loaded, vec!["good"]);
    let errors: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    let find = |file: &str| {
        errors
            .iter()
            .find(|e| e.contains(file))
            .unwrap_or_else(|| panic!("no error names {file}: {errors:#?}"))
            .clone()
    };
    assert!(find("garbage.wasm").contains("not a WebAssembly component"));
    assert!(find("core.wasm").contains("core WebAssembly module, not a component"));
    assert!(find("truncated.wasm").contains("cannot compile"));
    assert!(find("orphan.toml").contains("not found"));
    let typo = find("typo.toml");
    assert!(typo.contains("unknown field `output-topic`"), "{typo}");
}

#[test]
fn run_exits_non_zero_naming_the_file_when_nothing_loads() {
    let dir = ModulesDir::new();
    dir.write("broken.wasm", b"nope")
        .write("broken.toml", GOOD.as_bytes());
    weir(
        dir.path(),
        &[
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--modules",
            dir.path().to_str().unwrap(),
        ],
    )
    .failure(&["no module could be loaded", "broken.wasm"]);
}

#[test]
fn reserved_kafka_keys_in_the_config_file_exit_with_usage_error() {
    let dir = ModulesDir::new();
    dir.write(
        "weir.toml",
        b"brokers = \"127.0.0.1:1\"\nmodules = \".\"\n[kafka]\n\"enable.auto.commit\" = \"true\"\n",
    );
    let cfg = dir.file("weir.toml");
    weir(dir.path(), &["run", "--config", cfg.to_str().unwrap()])
        .exited(2, &["`enable.auto.commit` is managed by weir", "weir.toml"]);
}

#[test]
fn a_component_importing_files_and_sockets_loads_but_reaches_neither() {
    init_logging();
    let dir = ModulesDir::new();
    dir.install("files", &test_guest("uses-files"), GOOD);
    let engine = WasmEngine::new().unwrap();
    let report = load_dir(&engine, dir.path(), 50 << 20).unwrap();
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    let module = report.loaded.into_iter().next().unwrap();
    let mut invoker = Invoker::new(&engine, module).unwrap();
    let event = |value: &[u8]| Event {
        topic: "in".into(),
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        value: Some(value.to_vec()),
        headers: Vec::new(),
    };
    // `file` reads /etc/passwd: no directory is preopened. `net` connects to
    // 127.0.0.1:9: TCP is disabled and every address denied. Both fail
    // inside the guest, which rejects with the error.
    for (value, error) in [
        (&b"file"[..], "No such file or directory"),
        (b"net", "Permission denied"),
    ] {
        let result = invoker.call(&[event(value)], &CancellationToken::new(), None, None);
        assert!(result.failure.is_none(), "{:?}", result.failure);
        let [Disposition::Reject(reason)] = result.dispositions.as_slice() else {
            panic!("a reject expected: {:?}", result.dispositions)
        };
        assert!(reason.contains(error), "{reason}");
        assert!(result.emitted.iter().all(Vec::is_empty));
    }
}

#[test]
fn a_component_importing_an_unsupported_interface_is_refused_naming_it() {
    init_logging();
    // `(component (import "wasi:http/outgoing-handler@0.2.0" (instance
    // (export "handle" (func)))))`, encoded by hand: weir links no wasi:http.
    let name = b"wasi:http/outgoing-handler@0.2.0";
    let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
    // Type section: an instance type exporting `handle: func()`.
    wasm.extend(b"\x07\x13\x01\x42\x02\x01\x40\x00\x01\x00\x04\x00\x06handle\x01\x00");
    // Import section: that instance, under the WASI name.
    wasm.extend([10, u8::try_from(name.len() + 5).unwrap(), 1, 0]);
    wasm.push(u8::try_from(name.len()).unwrap());
    wasm.extend(name);
    wasm.extend([5, 0]);
    let dir = ModulesDir::new();
    dir.write("http.wasm", &wasm)
        .write("http.toml", GOOD.as_bytes());
    let engine = WasmEngine::new().unwrap();
    let report = load_dir(&engine, dir.path(), 50 << 20).unwrap();
    assert!(report.loaded.is_empty());
    let error = report.failed[0].to_string();
    assert!(error.contains("http.wasm"), "{error}");
    assert!(
        error.contains("wasi:http/outgoing-handler@0.2.0"),
        "{error}"
    );
    assert!(error.contains("-d http fetch-event"), "{error}");
}
