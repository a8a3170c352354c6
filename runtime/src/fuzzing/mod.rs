//! Entry points of the fuzz targets in `fuzz/`, shared with the stable
//! corpus replay test (`tests/tests/fuzz_corpora.rs`). Not part of weir's
//! API: hidden from the docs and free to change.
//!
//! Each function takes one raw fuzz input. Any input may be refused with an
//! error; none may panic, except through the `assert!`s here, which state
//! what weir promises about the inputs it accepts (a panic is a finding).
//!
//! - [`config`]: `weir.toml` ([`RunConfig`]).
//! - [`manifest`]: a module's `<name>.toml` ([`Manifest`]).
//! - [`replay_events`]: the JSON lines of `weir replay --events` and of
//!   `--state-in`.
//! - [`component_load`]: component bytes through the loader, and a call
//!   into whatever loads.
//! - [`host_imports`]: the host imports, driven by the `fuzz-host` test
//!   guest (`tests/guests/fuzz-host`) from the input bytes.

mod component;

use std::collections::HashMap;
use std::path::Path;

use crate::bindings::weir::consumer::types::{Header, Outgoing};
use crate::config::RunConfig;
use crate::devtools::events::{self, Recorded};
use crate::manifest::{Limits, Manifest};

pub use component::{component_load, fuzz_host_path, host_imports};

/// Input topics the replay reader is given.
const INPUTS: [&str; 2] = ["fuzz-in", "fuzz-other"];

/// A `weir.toml`: parsed, validated, printed.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match RunConfig::from_toml(text, Some(Path::new("weir.toml"))) {
        Ok(config) => config,
        Err(err) => {
            assert_eq!(err.problems.len(), 1, "{err}");
            return;
        }
    };
    check_redacted(&config);
    match config.validate(None) {
        Ok(()) => {
            assert!(!config.brokers().trim().is_empty());
            let _ = config.modules_dir();
            // The runtime's `[limits]` are every manifest's defaults: a
            // manifest without `[limits]` gets exactly them.
            let text = "input-topics = [\"in\"]\n";
            let merged = Manifest::parse_with(text, Path::new("m.toml"), &config.limits)
                .unwrap_or_else(|e| panic!("defaults {:?} refused: {e}", config.limits));
            assert_eq!(merged.limits, config.limits);
        }
        Err(err) => assert!(!err.problems.is_empty()),
    }
}

/// The `Debug` output of a configuration never shows a secret `[kafka]`
/// value (one that would not show anyway, as part of another field).
fn check_redacted(config: &RunConfig) {
    let shown = format!("{config:?}");
    let mut blanked = config.clone();
    for (key, value) in blanked.kafka.iter_mut() {
        if crate::secrets::is_secret_key(key) {
            value.clear();
        }
    }
    let elsewhere = format!("{blanked:?}");
    for (key, value) in &config.kafka {
        if crate::secrets::is_secret_key(key) && !value.is_empty() && !elsewhere.contains(value) {
            assert!(!shown.contains(value.as_str()), "secret `{key}` shown");
        }
    }
}

/// A module manifest: parsed alone and with runtime defaults.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let parsed = Manifest::parse(text, path);
    let defaults = Limits {
        max_emits: 7,
        max_batch: 3,
        ..Limits::default()
    };
    let with = Manifest::parse_with(text, path, &defaults);
    let (manifest, with) = match (parsed, with) {
        (Ok(manifest), Ok(with)) => (manifest, with),
        (Err(err), Err(_)) => {
            assert!(err.to_string().contains("fuzz.toml"), "{err}");
            return;
        }
        (parsed, with) => panic!("parse {parsed:?} but parse_with {with:?}"),
    };
    assert!(!manifest.input_topics.is_empty());
    assert!(manifest.limits.problems().is_empty());
    assert!(!manifest.group_id("m").is_empty());
    let _ = manifest.on_failure.dead_letter_topic("m");
    if let Some(state) = &manifest.state {
        assert!(!state.changelog_topic("m").is_empty());
    }
    let retry = &manifest.retry;
    let mut last = std::time::Duration::ZERO;
    for attempt in [0, 1, 2, 3, 31, 32, 33, 64, u32::MAX] {
        let backoff = retry.backoff(attempt);
        assert!(backoff <= retry.max_backoff && backoff >= last);
        last = backoff;
    }
    // `parse_with`: the keys the manifest's `[limits]` sets win, the
    // defaults fill the rest.
    let own: toml::Table = toml::from_str(text).expect("parsed once already");
    let own_limits = own.get("limits").and_then(toml::Value::as_table);
    let table = |l: &Limits| toml::Table::try_from(l).expect("limits serialize");
    let (parsed_limits, default_limits) = (table(&manifest.limits), table(&defaults));
    for (key, value) in table(&with.limits) {
        let set = own_limits.is_some_and(|t| t.contains_key(&key));
        let expected = if set { &parsed_limits } else { &default_limits };
        assert_eq!(Some(&value), expected.get(&key), "limits.{key}");
    }
    assert_eq!(
        Manifest {
            limits: manifest.limits.clone(),
            ..with
        },
        manifest
    );
}

/// The JSON lines of `weir replay`: events, and state entries.
pub fn replay_events(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inputs = INPUTS.map(str::to_owned);
    match events::parse(text, "fuzz.jsonl", &inputs) {
        Ok(recorded) => check_events(&recorded, &inputs),
        Err(err) => assert!(format!("{err:#}").starts_with("fuzz.jsonl:"), "{err:#}"),
    }
    if let Err(err) = crate::devtools::state_file::parse(text, "state.jsonl") {
        assert!(
            format!("{err:#}").starts_with("`state.jsonl` line"),
            "{err:#}"
        );
    }
}

/// Events read from a file: on the module's topics, in offset order, and
/// unchanged when an emitted record made of one is read back.
fn check_events(recorded: &[Recorded], inputs: &[String]) {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    let mut line = 0;
    for r in recorded {
        let e = &r.event;
        assert!(r.line > line);
        line = r.line;
        assert!(inputs.contains(&e.topic) && e.partition >= 0);
        let offset = next.entry((&e.topic, e.partition)).or_insert(0);
        assert!(e.offset >= *offset, "offsets must increase");
        *offset = e.offset.saturating_add(1);

        let record = Outgoing {
            topic: e.topic.clone(),
            key: e.key.clone(),
            value: e.value.clone(),
            headers: e.headers.clone(),
            partition: Some(e.partition),
        };
        let json = events::record_json(&record).to_string();
        let back = events::parse(&json, "back", inputs)
            .unwrap_or_else(|err| panic!("{json} not read back: {err:#}"));
        let [back] = &back[..] else {
            panic!("{json} read back as {} events", back.len())
        };
        let b = &back.event;
        assert_eq!((&b.topic, b.partition), (&e.topic, e.partition));
        assert_eq!((&b.key, &b.value), (&e.key, &e.value), "{json}");
        // Unique names come back in name order (a JSON object).
        assert_eq!(sorted(&b.headers), sorted(&e.headers), "{json}");
    }
}

/// Header names and values, sorted.
fn sorted(headers: &[Header]) -> Vec<(&str, &[u8])> {
    let mut pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_slice()))
        .collect();
    pairs.sort_unstable();
    pairs
}
