//! `weir replay <file.wasm> --events events.jsonl`: runs a module offline on
//! recorded events and reports, per event, its disposition and what it
//! emitted. No Kafka is involved.
//!
//! The module runs as under `weir run`: the same engine, manifest (with a
//! `weir.toml`'s `[limits]` as defaults when `--config` is given), limits
//! (timeout, memory, emits, record and event sizes), emit checks (a record
//! to a topic outside `output-topics` is refused to the guest), one
//! instance per partition kept across events, batches of up to
//! `limits.max-batch` events of one partition for a `batch-consumer`, a
//! fresh instance after a trap, `retry` up to `retry.max-attempts` (without
//! the backoff sleeps), a failed batch re-run one event at a time, and the
//! `on-failure` action reported (with `stop`, later events of the partition
//! are not handled). The decisions are the partition worker's own: the
//! session ([`super::session`]) drives the same settlement policy. Input and
//! output formats: README, "Developer loop" (and the `events` module).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;

use super::events::{Recorded, parse};
use super::session::Session;
use super::{ModuleOptions, check};
use crate::pipeline::failure::FailureKind;

/// Output format of `weir replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per event (what scripts and tests parse).
    #[default]
    Json,
    /// A readable summary per event.
    Text,
}

/// What happened to one replayed event; serialized as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct EventOutcome {
    /// Line of the event in the input (from 1).
    pub line: usize,
    /// Topic, partition and offset the event was given.
    pub topic: String,
    /// See `topic`.
    pub partition: i32,
    /// See `topic`.
    pub offset: i64,
    /// How it ended: `ok`, `rejected`, `retries-exhausted`, `trap`,
    /// `timeout`, `oversized` (not called: over `limits.max-event-bytes`) or
    /// `not-handled` (its partition stopped earlier, `on-failure = stop`).
    pub disposition: Ending,
    /// The handler's or the trap's reason, for anything but `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Handler calls made for the event.
    pub attempts: u32,
    /// Records weir would produce for it. In batch mode everything a call
    /// emitted is listed under the call's first event, as weir attributes it.
    pub emitted: Vec<serde_json::Value>,
    /// Emits the host refused to the guest during its calls, by reason
    /// (`topic_not_allowed`, `invalid_partition`, `too_large`, `too_many`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub denied: BTreeMap<&'static str, u64>,
    /// For a failed event: what `on-failure` does with it (`dead-letter to
    /// <topic>`, `skip` or `stop`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Batch mode: the index of the `handle-batch` call that settled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

/// How a replayed event ended: the pipeline's verdict, or not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Handled; its records would be produced.
    Ok,
    /// Failed for good, for this reason.
    Failed(FailureKind),
    /// Not handled: its partition stopped earlier (`on-failure = stop`).
    NotHandled,
}

impl Ending {
    /// The `disposition` value of the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed(kind) => kind.as_str(),
            Self::NotHandled => "not-handled",
        }
    }
}

impl Serialize for Ending {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Where a stateful module's stores come from and go to (`--state-in`,
/// `--state-out`; see [`super::state_file`]).
#[derive(Debug, Clone, Default)]
pub struct StateFiles {
    /// Entries to seed the stores with before the first event.
    pub input: Option<std::path::PathBuf>,
    /// Where to write the stores after the last event.
    pub output: Option<std::path::PathBuf>,
}

/// Replays the JSON-lines file `events` (`-` for stdin) through the module
/// of `opts`, writing one result per event to `out` in input order. A
/// stateful module keeps one store per partition across the events.
pub fn replay(
    opts: &ModuleOptions,
    events: &std::path::Path,
    format: Format,
    state: &StateFiles,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<EventOutcome>> {
    let config = opts.run_config()?;
    let (source, manifest) = opts.read(&config)?;
    let manifest = manifest.with_context(|| {
        format!(
            "replay needs the module's manifest `{}` (its output-topics, config and limits): \
             create it with `input-topics = [\"<topic>\"]` and `output-topics = [...]`, or pass \
             --manifest <file>",
            source.manifest_path.display()
        )
    })?;
    let text = read_events(events)?;
    let recorded = parse(&text, &events.display().to_string(), &manifest.input_topics)?;
    let engine = ModuleOptions::engine(&config)?;
    let name = source.name.clone();
    let module = source
        .compile(&engine, manifest)
        .map_err(check::CheckError::from)?;
    if module.manifest.state.is_none() && (state.input.is_some() || state.output.is_some()) {
        anyhow::bail!(
            "--state-in/--state-out need a stateful module: add a `[state]` table to `{}`",
            source.manifest_path.display()
        );
    }
    let writer = module.manifest.input_topics[0].clone();
    let mut session = Session::new(engine, Arc::new(module));
    if let Some(path) = &state.input {
        for (partition, key, write) in super::state_file::read(path)? {
            if let Some(handle) = session.store(partition, &writer)? {
                handle.store.write_through(vec![(key, write)])?;
            }
        }
    }
    let mut by_partition: BTreeMap<(String, i32), Vec<Recorded>> = BTreeMap::new();
    for r in recorded {
        let tp = (r.event.topic.clone(), r.event.partition);
        by_partition.entry(tp).or_default().push(r);
    }
    let mut outcomes = Vec::new();
    for events in by_partition.into_values() {
        outcomes.extend(session.partition(&events)?);
    }
    outcomes.sort_by_key(|o| o.line);
    for outcome in &outcomes {
        match format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(outcome)?)?,
            Format::Text => write_text(outcome, out)?,
        }
    }
    out.flush()?;
    if let Some(path) = &state.output {
        super::state_file::write(path, session.stores(), crate::state::now_ms())?;
    }
    let ok = outcomes
        .iter()
        .filter(|o| o.disposition == Ending::Ok)
        .count();
    tracing::info!(
        module = &*name,
        events = outcomes.len(),
        ok,
        failed = outcomes.len() - ok,
        "replay finished"
    );
    Ok(outcomes)
}

fn read_events(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("cannot read events from stdin");
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read events file `{}`", path.display()))
}

fn write_text(o: &EventOutcome, out: &mut dyn Write) -> std::io::Result<()> {
    write!(
        out,
        "line {} {}[{}]@{}: {}",
        o.line,
        o.topic,
        o.partition,
        o.offset,
        o.disposition.as_str()
    )?;
    if let Some(reason) = &o.reason {
        write!(out, " ({reason})")?;
    }
    writeln!(out, ", {} attempt(s)", o.attempts)?;
    for record in &o.emitted {
        writeln!(out, "  emit {record}")?;
    }
    for (reason, n) in &o.denied {
        writeln!(out, "  denied {n} emit(s): {reason}")?;
    }
    if let Some(action) = &o.on_failure {
        writeln!(out, "  on-failure: {action}")?;
    }
    Ok(())
}
