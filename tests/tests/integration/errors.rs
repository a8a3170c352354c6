//! Broken components and bad manifests are reported clearly, naming the
//! file, and do not stop the modules that are fine.

use std::process::Command;

use weir::engine::WasmEngine;
use weir::modules::load_dir;
use weir_tests::{ModulesDir, init_logging, weir_binary};

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
    let full = std::fs::read(weir_tests::guest("filter")).unwrap();
    dir.write("truncated.wasm", &full[..full.len() / 2])
        .write("truncated.toml", GOOD.as_bytes());
    // A component with no manifest, and one with a misspelt key.
    std::fs::copy(weir_tests::guest("filter"), dir.path().join("orphan.wasm")).unwrap();
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
    let out = Command::new(weir_binary())
        .args(["run", "--brokers", "127.0.0.1:1", "--modules"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no module could be loaded"), "{stderr}");
    assert!(stderr.contains("broken.wasm"), "{stderr}");
}

#[test]
fn reserved_kafka_keys_in_the_config_file_exit_with_usage_error() {
    let dir = ModulesDir::new();
    let cfg = dir.path().join("weir.toml");
    std::fs::write(
        &cfg,
        "brokers = \"127.0.0.1:1\"\nmodules = \".\"\n[kafka]\n\"enable.auto.commit\" = \"true\"\n",
    )
    .unwrap();
    let out = Command::new(weir_binary())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`enable.auto.commit` is managed by weir"),
        "{stderr}"
    );
    assert!(stderr.contains("weir.toml"), "{stderr}");
}

#[test]
fn a_component_importing_the_filesystem_is_refused_naming_the_import() {
    init_logging();
    let dir = ModulesDir::new();
    std::fs::copy(
        weir_tests::test_guest("uses-files"),
        dir.path().join("files.wasm"),
    )
    .unwrap();
    dir.write("files.toml", GOOD.as_bytes());
    let engine = WasmEngine::new().unwrap();
    let report = load_dir(&engine, dir.path(), 50 << 20).unwrap();
    assert!(report.loaded.is_empty());
    let error = report.failed[0].to_string();
    assert!(error.contains("files.wasm"), "{error}");
    assert!(error.contains("wasi:filesystem/"), "{error}");
}
