//! The Python (componentize-py) and JavaScript (ComponentizeJS) twins of
//! `json-enrich` give the Rust example's outputs for the same inputs, read
//! back from the broker: outputs, tombstones and rejections (through the
//! dead-letter topic).
//!
//! The batch builds of the twins (`-batch`, world `batch-consumer`) give
//! the per-event builds' outputs and rejections.
//!
//! Python: byte-identical values (its helper writes JSON as serde_json
//! does). JavaScript: JSON-equal values with numbers compared as `f64`
//! (JavaScript numbers drop the integer/float distinction: Rust writes
//! `10.0` where JavaScript writes `10`). Keys and headers are identical.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use weir_tests::{
    Manifest, ModulesDir, Received, Send, Topics, Weir, broker, consume, init_logging, produce,
    unique,
};

/// The examples compared, by their module file name in `target/modules`.
const LANGUAGES: [&str; 3] = ["json-enrich", "python-json-enrich", "js-json-enrich"];

/// (case, value): each case is produced with key `case` and header
/// `trace: <case>`; `None` is a tombstone.
fn cases() -> Vec<(&'static str, Option<&'static str>)> {
    vec![
        (
            "float-total",
            Some(r#"{"price": 2.5, "quantity": 4, "id": 1}"#),
        ),
        ("int-total", Some(r#"{"quantity": 7, "price": 3}"#)),
        ("string-price", Some(r#"{"price": "3", "quantity": 7}"#)),
        (
            "nested-unicode",
            Some(
                r#"{"z": [1, 2.5, {"b": null, "a": true}], "name": "café ☕ \"q\"\n", "price": 1e-7, "quantity": 3}"#,
            ),
        ),
        ("overflow", Some(r#"{"price": 1e300, "quantity": 1e10}"#)),
        (
            "small-and-large",
            Some(r#"{"a": 0.00001, "b": 1.5e-9, "c": 1e16, "d": 123456.789, "e": -0.5}"#),
        ),
        ("tombstone", None),
        ("array", Some("[1, 2]")),
        ("not-json", Some("not json")),
    ]
}

/// Cases rejected by every language, with the reason's expected prefix.
const REJECTED: [(&str, &str); 2] = [
    ("array", "value is not a JSON object"),
    ("not-json", "value is not the expected JSON: "),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_json_enrich_match_the_rust_one_on_the_broker() {
    let _cpu = weir_tests::resources::cpu_heavy().lock().await;
    init_logging();
    let input = unique("lang-orders");
    broker().create_topic(&input).await;
    let modules = ModulesDir::new();
    let mut topics = BTreeMap::new();
    for lang in LANGUAGES {
        // Each language reads the shared input in a group of its own.
        let t = Topics::named(lang);
        broker().create_topic(&t.output).await;
        t.create_dlq().await;
        let manifest = Manifest::pipe(&input, &t.output, &t.group)
            .dead_letters(&t.dlq)
            .config("region", "eu-west");
        modules.add(lang, lang, manifest);
        topics.insert(lang, t);
    }
    let records: Vec<Send> = cases()
        .into_iter()
        .map(|(case, value)| {
            Send {
                key: Some(case.into()),
                value: value.map(Into::into),
                ..Send::default()
            }
            .header("trace", case)
        })
        .collect();
    produce(&input, &records).await;
    let weir = Weir::start(modules.path(), &[]);

    let emitted = cases().len() - REJECTED.len();
    let mut outputs = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for (lang, t) in &topics {
        // Loading a Python or JS component compiles ~12-18 MB of Wasm: allow
        // minutes on a busy 2-core machine (a bound, not a measurement).
        let out = consume(
            &t.output,
            emitted,
            Duration::from_secs(300),
            Duration::from_secs(2),
        )
        .await;
        let dlq = consume(
            &t.dlq,
            REJECTED.len(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
        .await;
        outputs.insert(*lang, by_key(lang, out));
        dead.insert(*lang, by_key(lang, dlq));
    }
    weir.stop().await.unwrap();

    let rust = &outputs["json-enrich"];
    assert_eq!(rust.len(), emitted, "rust outputs: {rust:#?}");
    // The Rust outputs themselves, so the comparison is not vacuous.
    let value = |case: &str| rust[case].text();
    assert_eq!(
        value("float-total"),
        r#"{"id":1,"price":2.5,"quantity":4,"region":"eu-west","total":10.0}"#
    );
    assert_eq!(
        value("int-total"),
        r#"{"price":3,"quantity":7,"region":"eu-west","total":21}"#
    );
    assert!(rust["tombstone"].value.is_none());
    for lang in ["python-json-enrich", "js-json-enrich"] {
        let other = &outputs[lang];
        assert_eq!(
            other.keys().collect::<Vec<_>>(),
            rust.keys().collect::<Vec<_>>(),
            "{lang}: the same cases produce outputs"
        );
        for (case, want) in rust {
            let got = &other[case];
            assert_eq!(got.headers, want.headers, "{lang} {case}: headers");
            assert_eq!(got.key, want.key, "{lang} {case}: key");
            match (&want.value, &got.value) {
                (None, None) => {}
                (Some(w), Some(g)) if lang == "python-json-enrich" => assert_eq!(
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w),
                    "{lang} {case}: byte-identical value"
                ),
                (Some(_), Some(_)) => assert!(
                    json_equal(&want.json(), &got.json()),
                    "{lang} {case}: JSON-equal value\n rust: {}\n {lang}: {}",
                    want.text(),
                    got.text()
                ),
                (w, g) => panic!("{lang} {case}: tombstone mismatch: rust {w:?}, {lang} {g:?}"),
            }
        }
    }
    for lang in LANGUAGES {
        let rejected = &dead[lang];
        assert_eq!(
            rejected.len(),
            REJECTED.len(),
            "{lang}: dead letters {rejected:#?}"
        );
        for (case, reason) in REJECTED {
            let record = &rejected[case];
            assert_eq!(
                record.header("weir.error.kind").as_deref(),
                Some("rejected")
            );
            let message = record.header("weir.error.message").unwrap_or_default();
            assert!(
                message.starts_with(reason),
                "{lang} {case}: reason {message:?} should start with {reason:?}"
            );
        }
    }
}

/// The batch builds (`handle-batch`, many events per call) of the Python
/// and JavaScript twins emit exactly what the per-event builds emit, and
/// reject the same events with the same reasons, on enough events that the
/// batches hold good events around rejected ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_builds_of_the_twins_match_the_per_event_ones_on_the_broker() {
    let _cpu = weir_tests::resources::cpu_heavy().lock().await;
    const MODULES: [&str; 4] = [
        "python-json-enrich",
        "python-json-enrich-batch",
        "js-json-enrich",
        "js-json-enrich-batch",
    ];
    init_logging();
    let input = unique("lang-batch-orders");
    broker().create_topic(&input).await;
    let modules = ModulesDir::new();
    let mut topics = BTreeMap::new();
    for module in MODULES {
        let t = Topics::named(module);
        broker().create_topic(&t.output).await;
        t.create_dlq().await;
        let manifest = Manifest::pipe(&input, &t.output, &t.group)
            .dead_letters(&t.dlq)
            .config("region", "eu-west");
        modules.add(module, module, manifest);
        topics.insert(module, t);
    }
    // The cases, then 120 orders with every 7th one not an object: all in
    // the topic before weir starts, so calls take up to max-batch events.
    let mut records: Vec<Send> = cases()
        .into_iter()
        .map(|(case, value)| Send {
            key: Some(case.into()),
            value: value.map(Into::into),
            ..Send::default()
        })
        .collect();
    let mut rejected = REJECTED.len();
    for i in 0..120 {
        let value = if i % 7 == 3 {
            rejected += 1;
            format!("[{i}]")
        } else {
            format!(r#"{{"id":{i},"price":{}.25,"quantity":{}}}"#, i % 10, i % 4)
        };
        records.push(Send {
            key: Some(format!("order-{i:03}").into_bytes()),
            value: Some(value.into_bytes()),
            ..Send::default()
        });
    }
    let emitted = records.len() - rejected;
    produce(&input, &records).await;
    let weir = Weir::start(modules.path(), &[]);
    let mut outputs = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for (module, t) in &topics {
        // A bound for compiling the components on a busy machine.
        let out = consume(
            &t.output,
            emitted,
            Duration::from_secs(300),
            Duration::from_secs(2),
        )
        .await;
        let dlq = consume(
            &t.dlq,
            rejected,
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
        .await;
        outputs.insert(*module, by_key(module, out));
        dead.insert(*module, by_key(module, dlq));
    }
    weir.stop().await.unwrap();

    for single in ["python-json-enrich", "js-json-enrich"] {
        let batch = format!("{single}-batch");
        let (want, got) = (&outputs[single], &outputs[batch.as_str()]);
        assert_eq!(want.len(), emitted, "{single}: outputs");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{batch}: the same events produce outputs"
        );
        for (key, w) in want {
            let g = &got[key];
            assert_eq!(g.headers, w.headers, "{batch} {key}: headers");
            assert_eq!(g.value, w.value, "{batch} {key}: value, byte for byte");
        }
        // Not vacuous: an order's output is the enriched object.
        assert!(
            want["order-005"].text().contains(r#""region":"eu-west""#),
            "{single}: {}",
            want["order-005"].text()
        );
        let (want, got) = (&dead[single], &dead[batch.as_str()]);
        assert_eq!(want.len(), rejected, "{single}: dead letters");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{batch}: the same events rejected"
        );
        for (key, w) in want {
            let reason = |r: &Received| r.header("weir.error.message");
            assert_eq!(reason(&got[key]), reason(w), "{batch} {key}: reason");
            assert_eq!(got[key].value, w.value, "{batch} {key}: original value");
        }
    }
}

/// Records by key (the case name), failing on duplicates.
fn by_key(lang: &str, records: Vec<Received>) -> BTreeMap<String, Received> {
    let mut map = BTreeMap::new();
    for r in records {
        let key = r.key_text();
        assert!(map.insert(key.clone(), r).is_none(), "{lang}: {key} twice");
    }
    map
}

/// JSON equality with every number compared as `f64`.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && json_equal(vx, vy))
        }
        _ => a == b,
    }
}

/// The helpers' failure paths give the Rust SDK's reasons: a missing config
/// key, and a record the host refuses (`emit-error`), called in-process.
#[test]
fn helpers_reject_config_and_emit_errors_like_the_rust_sdk() {
    use tokio_util::sync::CancellationToken;
    use weir::bindings::weir::consumer::types::{Disposition, Event};
    use weir::engine::WasmEngine;
    use weir::invoke::Invoker;

    init_logging();
    let event = Event {
        topic: "orders".into(),
        partition: 0,
        offset: 7,
        timestamp_ms: None,
        key: None,
        value: Some(br#"{"price": 1, "quantity": 2}"#.to_vec()),
        headers: Vec::new(),
    };
    // (manifest, expected reason)
    let cases = [
        (
            "input-topics = [\"orders\"]\noutput-topics = [\"out\"]\n[config]\noutput = \"out\"\n",
            "config key `region` is not set",
        ),
        (
            "input-topics = [\"orders\"]\noutput-topics = [\"out\"]\n[config]\nregion = \"r\"\noutput = \"elsewhere\"\n",
            "topic `elsewhere` is not in the module's output-topics",
        ),
    ];
    let engine = WasmEngine::new().unwrap();
    for lang in LANGUAGES {
        for (i, (manifest, reason)) in cases.iter().enumerate() {
            let dir = ModulesDir::new();
            dir.add(lang, lang, manifest);
            // The engine caches the compiled component by digest.
            let module = std::sync::Arc::new(
                engine
                    .load(&dir.path().join(format!("{lang}.wasm")), 50 << 20)
                    .unwrap(),
            );
            let mut invoker = Invoker::new(&engine, module).unwrap();
            let result = invoker.call(
                std::slice::from_ref(&event),
                &CancellationToken::new(),
                None,
                None,
            );
            assert!(
                result.failure.is_none(),
                "{lang} case {i}: {:?}",
                result.failure
            );
            match result.dispositions.as_slice() {
                [Disposition::Reject(got)] => assert_eq!(got, reason, "{lang} case {i}"),
                other => panic!("{lang} case {i}: a reject expected, got {other:?}"),
            }
        }
    }
}

/// The Python and JavaScript state helpers on weir's own host (`weir
/// replay`, which runs the partition worker's policy and store): the same
/// events give the same outputs in both languages. Covers get/set (JSON),
/// set-with-ttl, delete, scan paging, a rejected event's writes discarded,
/// a value over `limits.max-state-value-bytes` refused (uncaught: the event
/// is rejected naming the limit; caught: the error's kind), and the stores
/// saved with `--state-out`.
#[test]
fn python_and_js_state_helpers_behave_alike_on_the_host() {
    let events = [
        r#"{"key": "a", "value": "x"}"#,
        r#"{"key": "a", "value": "x"}"#,
        r#"{"key": "b", "value": "x"}"#,
        r#"{"key": "a", "value": "reject"}"#,
        r#"{"key": "a", "value": "x"}"#,
        r#"{"key": "a", "value": "big"}"#,
        r#"{"key": "a", "value": "catch"}"#,
        r#"{"key": "b", "value": "delete"}"#,
        r#"{"value": "x"}"#,
    ]
    .join("\n");
    let manifest = "input-topics = [\"state-in\"]\noutput-topics = [\"state-out\"]\n[state]\n";
    let expected: Vec<Value> = [
        r#"{"boom":false,"count":1,"key":"a","keys":1,"seen":"0"}"#,
        r#"{"boom":false,"count":2,"key":"a","keys":1,"seen":"1"}"#,
        r#"{"boom":false,"count":1,"key":"b","keys":2,"seen":"2"}"#,
        "rejected",
        r#"{"boom":false,"count":3,"key":"a","keys":2,"seen":"4"}"#,
        "rejected",
        r#"{"boom":false,"caught":"value-too-large","count":4,"key":"a","keys":2,"seen":"6"}"#,
        r#"{"boom":false,"count":null,"key":"b","keys":1,"seen":"7"}"#,
        r#"{"boom":false,"count":1,"key":"none","keys":2,"seen":"8"}"#,
    ]
    .iter()
    .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::from(*s)))
    .collect();
    for language in ["python-state", "js-state"] {
        let lines =
            weir_tests::devtools::replay(&weir_tests::test_guest(language), manifest, &events);
        let got: Vec<Value> = lines
            .iter()
            .map(|line| match line["disposition"].as_str() {
                Some("ok") => {
                    let out = line["emitted"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|r| r["topic"] == "state-out")
                        .unwrap_or_else(|| panic!("{language}: no output in {line}"));
                    serde_json::from_str(out["value"].as_str().unwrap()).unwrap()
                }
                _ => line["disposition"].clone(),
            })
            .collect();
        assert_eq!(got, expected, "{language}");
        let big = &lines[5]["reason"];
        assert!(
            big.as_str()
                .unwrap()
                .contains("limits.max-state-value-bytes"),
            "{language}: {big}"
        );
        // The rejected event wrote nothing to the changelog; the others did.
        let writes = |i: usize| {
            lines[i]["emitted"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["topic"] == "weir-state-m")
                .count()
        };
        assert_eq!(writes(3), 0, "{language}");
        assert_eq!(writes(0), 2, "{language}: count and seen");
    }
}
