//! The developer loop through the real `weir` binary: `weir new` → `weir
//! build` → `weir check` on the Rust template, `weir check` on the examples
//! and on components weir refuses, and `weir replay` of the examples and of
//! the misbehaving fixture with exact expected results. No broker involved.

use serde_json::{Value, json};
use weir_tests::devtools::{replay, weir, weir_with_env};
use weir_tests::{ModulesDir, guest, repo_root, test_guest};

/// The example's manifest, and the effective manifest `weir check` printed.
fn effective_manifest(stdout: &str) -> toml::Table {
    let (_, text) = stdout
        .split_once("--- effective manifest ---\n")
        .unwrap_or_else(|| panic!("no manifest section in:\n{stdout}"));
    text.parse().expect("the printed manifest is TOML")
}

#[test]
fn check_reports_world_and_manifest_of_each_example() {
    for (example, world) in [
        ("json-enrich", "consumer"),
        ("filter", "consumer"),
        ("router", "batch-consumer"),
    ] {
        let wasm = guest(example);
        let run = weir(
            &repo_root(),
            &["check", wasm.to_str().unwrap(), "--require-manifest"],
        );
        let run = run.success();
        assert!(
            run.stdout.contains(&format!("\nworld: {world} (exports ")),
            "{example}: {run}"
        );
        assert!(run.stdout.contains("links: ok"), "{example}: {run}");
        let shown = effective_manifest(&run.stdout);
        let source = std::fs::read_to_string(
            repo_root().join(format!("guest-examples/{example}/manifest.toml")),
        )
        .unwrap();
        let source: toml::Table = source.parse().unwrap();
        for key in ["input-topics", "output-topics", "config"] {
            assert_eq!(
                shown.get(key),
                source.get(key),
                "{example}: `{key}` in {run}"
            );
        }
        assert_eq!(
            shown["group-id"].as_str(),
            Some(format!("weir-{example}").as_str())
        );
        assert_eq!(shown["limits"]["max-batch"].as_integer(), Some(256));
        assert_eq!(
            shown["delivery"]["guarantee"].as_str(),
            Some("at-least-once")
        );
    }
    // A weir.toml's [limits] are the defaults under the manifest's own.
    let dir = ModulesDir::new();
    dir.write("weir.toml", b"[limits]\nmax-batch = 3\ntimeout = \"2s\"\n");
    let router = guest("router");
    let run = weir(
        dir.path(),
        &["check", router.to_str().unwrap(), "--config", "weir.toml"],
    )
    .success();
    assert!(
        run.stdout
            .contains("up to limits.max-batch = 3 events per call"),
        "{run}"
    );
    assert_eq!(
        effective_manifest(&run.stdout)["limits"]["timeout"].as_str(),
        Some("2s")
    );
}

#[test]
fn check_explains_what_weir_would_refuse() {
    let dir = ModulesDir::new();
    dir.copy("wrong.wasm", &test_guest("wrong-world"));
    let run = weir(dir.path(), &["check", "wrong.wasm"]).failure(&[
        "exports neither `weir:consumer/handler@0.2.0` nor `weir:consumer/batch-handler@0.2.0`",
        "hint: a weir module is built against wit/consumer.wit",
        "export_consumer!",
    ]);
    // What it does export is still listed.
    assert!(
        run.stdout.contains("exports:\n  wasi:cli/run@0.2.0: run"),
        "{run}"
    );

    dir.write("garbage.wasm", b"this is not wasm at all");
    weir(dir.path(), &["check", "garbage.wasm"]).failure(&[
        "`garbage.wasm` is not a WebAssembly component (bad header)",
        "hint:",
    ]);

    dir.write("core.wasm", b"\0asm\x01\0\0\0"); // an empty core module
    weir(dir.path(), &["check", "core.wasm"]).failure(&[
        "is a core WebAssembly module, not a component",
        "rustup target add wasm32-wasip2",
    ]);

    // A component importing an interface weir does not provide.
    let unknown = wat::parse_str(
        r#"(component (import "example:nowhere/thing@1.0.0" (instance (export "f" (func)))))"#,
    )
    .unwrap();
    dir.write("unknown.wasm", &unknown);
    let run = weir(dir.path(), &["check", "unknown.wasm"]).failure(&[
        "component imports instance `example:nowhere/thing@1.0.0`",
        "hint: weir does not provide the import named above",
    ]);
    assert!(
        run.stdout
            .contains("imports:\n  example:nowhere/thing@1.0.0: f"),
        "{run}"
    );

    // No manifest: shown with defaults, an error only when one is required.
    dir.copy("lonely.wasm", &guest("filter"));
    let run = weir(dir.path(), &["check", "lonely.wasm"]).success();
    assert!(
        run.stdout
            .contains("manifest: none (`lonely.toml` not found"),
        "{run}"
    );
    assert_eq!(
        effective_manifest(&run.stdout)["input-topics"],
        toml::Value::Array(vec![])
    );
    weir(dir.path(), &["check", "lonely.wasm", "--require-manifest"])
        .failure(&["manifest `lonely.toml` not found", "hint: create it"]);
    weir(
        dir.path(),
        &["replay", "lonely.wasm", "--events", "none.jsonl"],
    )
    .failure(&["replay needs the module's manifest `lonely.toml`"]);

    dir.write(
        "lonely.toml",
        b"input-topics = [\"in\"]\noutput-topics = [\"in\"]\nbogus = 1\n",
    );
    weir(dir.path(), &["check", "lonely.wasm"])
        .failure(&["invalid manifest", "unknown field `bogus`"]);
}

/// Emitted record values are compared as JSON (key order is the guest's).
fn parsed_values(mut line: Value) -> Value {
    for record in line["emitted"].as_array_mut().into_iter().flatten() {
        if let Some(text) = record["value"].as_str() {
            record["value"] = serde_json::from_str(text).expect("an emitted JSON value");
        }
    }
    line
}

fn assert_lines(actual: Vec<Value>, expected: Vec<Value>) {
    assert_eq!(actual.len(), expected.len(), "{actual:#?}");
    for (a, e) in actual.into_iter().zip(expected) {
        assert_eq!(parsed_values(a), e);
    }
}

const ENRICH_EVENTS: &str = r#"{"key": "o-1", "value": {"id": 1, "price": 5, "quantity": 3}, "headers": {"source": "web"}}
{"key": "o-2", "value": "not json"}
# a comment, then a tombstone
{"key": "o-3", "value": null}
{"value_b64": "eyJwcmljZSI6MiwicXVhbnRpdHkiOjR9", "partition": 2, "offset": 40, "timestamp": 1700000000000}
"#;

#[test]
fn replay_json_enrich() {
    let manifest = "input-topics = [\"orders\"]\noutput-topics = [\"orders-enriched\"]\n[config]\nregion = \"eu-west\"\n";
    let lines = replay(&guest("json-enrich"), manifest, ENRICH_EVENTS);
    let enriched = |key: Value, value: Value, headers: Value| json!({"topic": "orders-enriched", "key": key, "value": value, "headers": headers});
    let mut rejected = lines[1].clone();
    let reason = rejected["reason"].take();
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with("value is not the expected JSON"),
        "{reason}"
    );
    assert_lines(
        lines,
        vec![
            json!({"line": 1, "topic": "orders", "partition": 0, "offset": 0, "disposition": "ok", "attempts": 1,
            "emitted": [enriched("o-1".into(), json!({"id": 1, "price": 5, "quantity": 3, "region": "eu-west", "total": 15}),
                json!({"source": "web", "weir-enriched-by": "json-enrich"}))]}),
            json!({"line": 2, "topic": "orders", "partition": 0, "offset": 1, "disposition": "rejected", "attempts": 1,
            "reason": reason, "emitted": [], "on_failure": "dead-letter to weir-dlq-m"}),
            json!({"line": 4, "topic": "orders", "partition": 0, "offset": 2, "disposition": "ok", "attempts": 1,
            "emitted": [enriched("o-3".into(), Value::Null, json!({"weir-enriched-by": "json-enrich"}))]}),
            json!({"line": 5, "topic": "orders", "partition": 2, "offset": 40, "disposition": "ok", "attempts": 1,
            "emitted": [enriched(Value::Null, json!({"price": 2, "quantity": 4, "region": "eu-west", "total": 8}),
                json!({"weir-enriched-by": "json-enrich"}))]}),
        ],
    );
}

/// The Python and JavaScript twins of json-enrich replay to the Rust
/// example's exact output lines (dispositions, records), and the same
/// reasons up to the JSON parser's own words.
#[test]
fn replay_python_and_js_examples_like_the_rust_one() {
    let manifest = "input-topics = [\"orders\"]\noutput-topics = [\"orders-enriched\"]\n[config]\nregion = \"eu-west\"\n";
    const PARSE: &str = "value is not the expected JSON: ";
    let normalise = |mut lines: Vec<Value>| {
        for line in &mut lines {
            if let Some(reason) = line["reason"].as_str()
                && reason.starts_with(PARSE)
            {
                line["reason"] = PARSE.into();
            }
        }
        lines
    };
    let rust = normalise(replay(&guest("json-enrich"), manifest, ENRICH_EVENTS));
    assert!(rust.iter().any(|l| l["reason"] == PARSE), "{rust:?}");
    for twin in ["python-json-enrich", "js-json-enrich"] {
        let lines = normalise(replay(&guest(twin), manifest, ENRICH_EVENTS));
        assert_eq!(lines, rust, "{twin} replays differently from json-enrich");
    }
}

#[test]
fn replay_refuses_emits_to_topics_outside_output_topics() {
    // The guest is configured to emit where its manifest does not allow.
    let manifest = "input-topics = [\"orders\"]\noutput-topics = [\"orders-enriched\"]\n\
                    on-failure.action = \"skip\"\n[config]\nregion = \"r\"\noutput = \"elsewhere\"\n";
    let lines = replay(
        &guest("json-enrich"),
        manifest,
        "{\"key\": \"k\", \"value\": {\"price\": 1}}\n",
    );
    assert_lines(
        lines,
        vec![
            json!({"line": 1, "topic": "orders", "partition": 0, "offset": 0,
        "disposition": "rejected", "attempts": 1, "emitted": [], "on_failure": "skip",
        "reason": "topic `elsewhere` is not in the module's output-topics",
        "denied": {"topic_not_allowed": 1}}),
        ],
    );
}

#[test]
fn replay_filter() {
    let manifest =
        std::fs::read_to_string(repo_root().join("guest-examples/filter/manifest.toml")).unwrap();
    let events = r#"{"key": "a", "value": "{\"status\":\"paid\",\"n\":1}", "headers": [["h", "1"], ["h", "2"]]}
{"key": "b", "value": "{\"status\":\"open\"}"}
{"key": "c", "value_b64": "//4="}
"#;
    let lines = replay(&guest("filter"), &manifest, events);
    assert!(
        lines[2]["reason"].as_str().unwrap().contains("JSON"),
        "{:?}",
        lines[2]
    );
    let reason = lines[2]["reason"].clone();
    assert_eq!(
        lines,
        vec![
            json!({"line": 1, "topic": "orders", "partition": 0, "offset": 0, "disposition": "ok", "attempts": 1,
            "emitted": [{"topic": "orders-paid", "key": "a", "value": "{\"status\":\"paid\",\"n\":1}",
                "headers": [["h", "1"], ["h", "2"]]}]}),
            json!({"line": 2, "topic": "orders", "partition": 0, "offset": 1, "disposition": "ok", "attempts": 1,
            "emitted": []}),
            json!({"line": 3, "topic": "orders", "partition": 0, "offset": 2, "disposition": "rejected", "attempts": 1,
            "reason": reason, "emitted": [], "on_failure": "dead-letter to weir-dlq-m"}),
        ]
    );
}

#[test]
fn replay_router_in_batches_of_max_batch() {
    let manifest = "input-topics = [\"orders\"]\n\
        output-topics = [\"orders-eu\", \"orders-us\", \"orders-other\", \"orders-audit\"]\n\
        limits.max-batch = 2\n[config]\neu = \"DE,FR\"\naudit-above = \"1000\"\n";
    let events = r#"{"key": "1", "value": "{\"country\":\"DE\",\"total\":50}"}
{"key": "2", "value": "{\"country\":\"us\",\"price\":5000}"}
{"key": "3", "value": "not json"}
{"key": "4", "value": "{\"country\":\"JP\"}"}
"#;
    let lines = replay(&guest("router"), manifest, events);
    let reason = lines[2]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("JSON"), "{reason}");
    let out = |topic: &str, key: &str, value: &str| json!({"topic": topic, "key": key, "value": value, "headers": {}});
    let us = "{\"country\":\"us\",\"price\":5000}";
    // Two calls of two events; a call's records are listed under its first event.
    assert_eq!(
        lines,
        vec![
            json!({"line": 1, "topic": "orders", "partition": 0, "offset": 0, "disposition": "ok", "attempts": 1, "batch": 1,
            "emitted": [out("orders-eu", "1", "{\"country\":\"DE\",\"total\":50}"),
                        out("orders-us", "2", us), out("orders-audit", "2", us)]}),
            json!({"line": 2, "topic": "orders", "partition": 0, "offset": 1, "disposition": "ok", "attempts": 1, "batch": 1,
            "emitted": []}),
            json!({"line": 3, "topic": "orders", "partition": 0, "offset": 2, "disposition": "rejected", "attempts": 1, "batch": 2,
            "reason": reason, "emitted": [out("orders-other", "4", "{\"country\":\"JP\"}")],
            "on_failure": "dead-letter to weir-dlq-m"}),
            json!({"line": 4, "topic": "orders", "partition": 0, "offset": 3, "disposition": "ok", "attempts": 1, "batch": 2,
            "emitted": []}),
        ]
    );
}

#[test]
fn replay_applies_limits_retries_and_traps_like_weir_run() {
    let manifest = "input-topics = [\"in\"]\noutput-topics = [\"out\"]\n\
        limits.timeout = \"300ms\"\nlimits.max-emits = 10\nlimits.max-event-bytes = 16\n\
        retry.max-attempts = 3\n[config]\noutput = \"out\"\n";
    let values = [
        "echo",
        "flaky",
        "panic",
        "loop",
        "forbidden",
        "retry",
        "flood",
        "0123456789abcdefX",
        "last",
    ];
    let events: String = values
        .iter()
        .map(|v| format!("{{\"value\": \"{v}\"}}\n"))
        .collect();
    let lines = replay(&test_guest("misbehave"), manifest, &events);
    let summary: Vec<(String, u64, Option<&str>)> = lines
        .iter()
        .map(|l| {
            (
                l["disposition"].as_str().unwrap().to_owned(),
                l["attempts"].as_u64().unwrap(),
                l["denied"]
                    .as_object()
                    .and_then(|d| d.keys().next())
                    .map(String::as_str),
            )
        })
        .collect();
    let expected: Vec<(String, u64, Option<&str>)> = [
        ("ok", 1, None),                            // echo
        ("ok", 3, None),                            // two retries, then ok
        ("trap", 3, None),                          // panics on every attempt
        ("timeout", 3, None),                       // limits.timeout interrupts it
        ("rejected", 1, Some("topic_not_allowed")), // emit refused, guest rejects
        ("retries-exhausted", 3, None),             // retry.max-attempts used up
        ("rejected", 1, Some("too_many")),          // limits.max-emits
        ("oversized", 0, None),                     // limits.max-event-bytes: never called
        ("ok", 1, None),                            // a fresh instance after the traps
    ]
    .into_iter()
    .map(|(d, a, r)| (d.to_owned(), a, r))
    .collect();
    assert_eq!(summary, expected, "{lines:#?}");
    assert!(
        lines[2]["reason"].as_str().unwrap().contains("unreachable"),
        "{:?}",
        lines[2]
    );
    assert!(
        lines[3]["reason"]
            .as_str()
            .unwrap()
            .contains("limits.timeout"),
        "{:?}",
        lines[3]
    );
    assert_eq!(
        lines[1]["emitted"],
        json!([{"topic": "out", "key": null, "value": "flaky", "headers": {}}])
    );
    assert_eq!(
        lines[8]["emitted"],
        json!([{"topic": "out", "key": null, "value": "last", "headers": {}}])
    );
}

#[test]
fn replay_stops_the_partition_with_on_failure_stop() {
    let manifest = "input-topics = [\"in\"]\noutput-topics = [\"out\"]\n\
        on-failure.action = \"stop\"\n[config]\noutput = \"out\"\n";
    let events = "{\"value\": \"a\"}\n{\"value\": \"reject\"}\n{\"value\": \"b\"}\n\
                  {\"value\": \"c\", \"partition\": 1}\n";
    let lines = replay(&test_guest("misbehave"), manifest, events);
    let got: Vec<(&str, Option<&str>)> = lines
        .iter()
        .map(|l| (l["disposition"].as_str().unwrap(), l["on_failure"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ok", None),
            ("rejected", Some("stop")),
            ("not-handled", None),
            ("ok", None)
        ]
    );
    assert_eq!(
        lines[2]["reason"],
        "the partition stopped at offset 1 (`on-failure = stop`)"
    );
}

#[test]
fn replay_reports_bad_input_lines_with_their_location() {
    let dir = ModulesDir::new();
    dir.install(
        "f",
        &guest("filter"),
        "input-topics = [\"orders\"]\n[config]\nfield = \"a\"\nequals = \"b\"\n",
    );
    dir.write("bad.jsonl", b"{\"value\": \"x\"}\n{\"vaule\": \"typo\"}\n");
    weir(dir.path(), &["replay", "f.wasm", "--events", "bad.jsonl"])
        .failure(&["bad.jsonl:2: not a replay event"]);
    dir.write("bad.jsonl", b"{\"value\": \"x\", \"topic\": \"other\"}\n");
    weir(dir.path(), &["replay", "f.wasm", "--events", "bad.jsonl"]).failure(&[
        "bad.jsonl:1",
        "topic `other` is not one of the module's input-topics",
    ]);
    dir.write(
        "bad.jsonl",
        b"{\"value\": \"x\", \"value_b64\": \"eA==\"}\n",
    );
    weir(dir.path(), &["replay", "f.wasm", "--events", "bad.jsonl"])
        .failure(&["give `value` or `value_b64`, not both"]);
}

/// `weir new` → `weir build` → `weir check` → `weir replay` on the Rust
/// template, built outside the repository (weir-sdk by path).
#[test]
fn rust_template_builds_checks_and_replays() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path();
    let run = weir(dir, &["new", "order-tagger", "--lang", "rust"]).success();
    assert!(run.stdout.contains("order-tagger.toml"), "{run}");
    weir(dir, &["new", "order-tagger"]).failure(&["already exists and is not empty"]);
    weir(dir, &["new", "x", "--lang", "cobol"])
        .failure(&["no `cobol` template in this weir binary (it has: ", "rust"]);
    weir(dir, &["new", "Not_Kebab"]).failure(&["invalid module name \"Not_Kebab\""]);

    let project = dir.join("order-tagger");
    // Pin the dependency versions the guest examples were built with, so
    // that the build reuses their compiled dependencies (the harness points
    // CARGO_TARGET_DIR there) and a new crates.io release cannot change it.
    std::fs::copy(
        repo_root().join("guest-examples/Cargo.lock"),
        project.join("Cargo.lock"),
    )
    .unwrap();
    let run = weir(&project, &["build"]).success();
    assert!(
        run.stdout
            .contains("\nworld: consumer (exports weir:consumer/handler@0.2.0)"),
        "{run}"
    );
    assert!(project.join("dist/order-tagger.toml").is_file());
    let run = weir(
        &project,
        &["check", "dist/order-tagger.wasm", "--require-manifest"],
    )
    .success();
    assert_eq!(
        effective_manifest(&run.stdout)["output-topics"],
        toml::Value::Array(vec!["order-tagger-out".into()])
    );

    let run = weir(
        &project,
        &[
            "replay",
            "dist/order-tagger.wasm",
            "--events",
            "events.jsonl",
        ],
    )
    .success();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{run}");
    assert_eq!(
        parsed_values(lines[0].clone())["emitted"],
        json!([{"topic": "order-tagger-out", "key": "k1",
        "value": {"a": 1, "tag": "order-tagger"}, "headers": {"source": "example"}}])
    );
    assert_eq!(lines[1]["disposition"], "rejected");
}

/// Every template under `runtime/templates/` (Rust, and whichever other
/// languages are there) creates a project that `weir build` turns into a
/// component passing `weir check`, and whose sample events replay.
#[test]
fn every_template_builds_and_passes_check() {
    // Builds with componentize-py and ComponentizeJS: keep timed tests away.
    let _cpu = weir_tests::resources::cpu_heavy().blocking_lock();
    let mut langs: Vec<String> = std::fs::read_dir(repo_root().join("runtime/templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    langs.sort();
    assert!(langs.contains(&"rust".to_owned()), "{langs:?}");
    for lang in langs {
        let parent = tempfile::tempdir().unwrap();
        let name = format!("tpl-{lang}");
        weir(parent.path(), &["new", &name, "--lang", &lang]).success();
        let project = parent.path().join(&name);
        if lang == "rust" {
            // As in rust_template_builds_checks_and_replays.
            std::fs::copy(
                repo_root().join("guest-examples/Cargo.lock"),
                project.join("Cargo.lock"),
            )
            .unwrap();
        }
        let run = weir(&project, &["build"]).success();
        assert!(run.stdout.contains("\nworld: "), "{lang}: {run}");
        assert!(run.stdout.contains("\nlinks: ok"), "{lang}: {run}");
        // `weir build` ran `weir check --require-manifest` on the result.
        let wasm = format!("dist/{name}.wasm");
        let events = project.join("events.jsonl");
        if events.is_file() {
            let run = weir(&project, &["replay", &wasm, "--events", "events.jsonl"]).success();
            let expected = std::fs::read_to_string(&events)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
                .count();
            assert_eq!(run.stdout.lines().count(), expected, "{lang}: {run}");
        }
        if let Some((app, edits)) = batch_switch(&lang) {
            // The template's documented switch to batch mode: `weir build`
            // then builds world `batch-consumer`, and the events replay.
            let path = project.join(app);
            let mut text = std::fs::read_to_string(&path).unwrap();
            for (per_event, batch) in edits {
                assert!(text.contains(per_event), "{lang}: {app} has `{per_event}`");
                text = text.replace(per_event, batch);
            }
            std::fs::write(&path, text).unwrap();
            let run = weir(&project, &["build"]).success();
            assert!(
                run.stdout.contains("\nworld: batch-consumer"),
                "{lang}: {run}"
            );
            if events.is_file() {
                let run = weir(&project, &["replay", &wasm, "--events", "events.jsonl"]).success();
                assert!(!run.stdout.trim().is_empty(), "{lang} batch: {run}");
            }
        }
    }
}

/// How a template's app switches to the batch world (the file, and the
/// per-event text to replace with the batch one), for the languages whose
/// templates document it.
type Edits = &'static [(&'static str, &'static str)];
fn batch_switch(lang: &str) -> Option<(&'static str, Edits)> {
    match lang {
        "python" => Some((
            "app.py",
            &[(
                "Handler = weir_sdk.export(Module)",
                "BatchHandler = weir_sdk.export_batch(Module)",
            )],
        )),
        "js" => Some((
            "app.js",
            &[
                ("import { exportConsumer,", "import { exportBatchConsumer,"),
                (
                    "export const handler = exportConsumer(",
                    "export const batchHandler = exportBatchConsumer(",
                ),
            ],
        )),
        _ => None,
    }
}

/// A toolchain without the wasm32-wasip2 target: rustup (a stand-in on
/// `PATH` that lists only the host target) is asked before cargo runs.
#[test]
fn build_without_the_wasm_target_says_how_to_add_it() {
    let parent = tempfile::tempdir().unwrap();
    weir(parent.path(), &["new", "no-target"]).success();
    let bin = parent.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let rustup = bin.join("rustup");
    std::fs::write(&rustup, "#!/bin/sh\necho x86_64-unknown-linux-gnu\n").unwrap();
    std::fs::set_permissions(&rustup, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let project = parent.path().join("no-target");
    weir_with_env(&project, &["build"], &[("PATH", bin.as_os_str())]).failure(&[
        "the Rust target wasm32-wasip2 is not installed",
        "run `rustup target add wasm32-wasip2`",
    ]);
    weir(parent.path(), &["build", "--dir", "missing"])
        .failure(&["cannot open project directory `missing`"]);
}
