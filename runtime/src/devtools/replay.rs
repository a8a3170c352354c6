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
//! are not handled). Input and output formats: README, "Developer loop"
//! (and the `events` module).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::events::{Recorded, parse, record_json};
use super::{ModuleOptions, check};
use crate::bindings::weir::consumer::types::{Disposition, Event, Outgoing};
use crate::dispatch::event_size;
use crate::engine::{HandlerPre, LoadedModule, WasmEngine};
use crate::invoke::{CallResult, Invoker};
use crate::manifest::FailureAction;
use crate::metrics::{DENY_REASONS, Metrics, ModuleMetrics};

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
    /// `ok`, `rejected`, `retries-exhausted`, `trap`, `timeout`,
    /// `oversized` (not called: over `limits.max-event-bytes`) or
    /// `not-handled` (its partition stopped earlier, `on-failure = stop`).
    pub disposition: &'static str,
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

/// Replays the JSON-lines file `events` (`-` for stdin) through the module
/// of `opts`, writing one result per event to `out` in input order.
pub fn replay(
    opts: &ModuleOptions,
    events: &std::path::Path,
    format: Format,
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
    let mut session = Session::new(engine, Arc::new(module));
    let mut by_partition: BTreeMap<(String, i32), Vec<Recorded>> = BTreeMap::new();
    for r in recorded {
        let tp = (r.event.topic.clone(), r.event.partition);
        by_partition.entry(tp).or_default().push(r);
    }
    let mut outcomes = Vec::new();
    for events in by_partition.into_values() {
        outcomes.extend(session.partition(events)?);
    }
    outcomes.sort_by_key(|o| o.line);
    for outcome in &outcomes {
        match format {
            Format::Json => writeln!(out, "{}", serde_json::to_string(outcome)?)?,
            Format::Text => write_text(outcome, out)?,
        }
    }
    out.flush()?;
    let ok = outcomes.iter().filter(|o| o.disposition == "ok").count();
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
        o.line, o.topic, o.partition, o.offset, o.disposition
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

/// The module, its metrics (for denied emits) and the batch counter.
struct Session {
    engine: WasmEngine,
    module: Arc<LoadedModule>,
    metrics: Arc<Metrics>,
    module_metrics: Arc<ModuleMetrics>,
    batches: usize,
    never: CancellationToken,
}

/// The partition's state while replaying it.
struct Partition {
    invoker: Option<Invoker>,
    /// Set once `on-failure = stop` halted the partition.
    stopped: Option<String>,
}

impl Session {
    fn new(engine: WasmEngine, module: Arc<LoadedModule>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let module_metrics = metrics.module(&module.name);
        Self {
            engine,
            module,
            metrics,
            module_metrics,
            batches: 0,
            never: CancellationToken::new(),
        }
    }

    /// Replays one partition's events in offset order.
    fn partition(&mut self, events: Vec<Recorded>) -> anyhow::Result<Vec<EventOutcome>> {
        let limits = self.module.manifest.limits.clone();
        let mut state = Partition {
            invoker: None,
            stopped: None,
        };
        let mut outcomes = Vec::new();
        let mut rest: &[Recorded] = &events;
        while let Some(first) = rest.first() {
            let take = if let Some(why) = &state.stopped {
                outcomes.push(self.outcome(first, "not-handled", Some(why.clone()), 0));
                1
            } else if event_size(&first.event) > limits.max_event_bytes as usize {
                let reason = format!(
                    "the event is {} bytes, over `limits.max-event-bytes` ({})",
                    event_size(&first.event),
                    limits.max_event_bytes
                );
                outcomes.push(self.outcome(first, "oversized", Some(reason), 0));
                1
            } else if matches!(self.module.pre, HandlerPre::Batch(_)) {
                let n = rest
                    .iter()
                    .take(limits.max_batch as usize)
                    .take_while(|r| event_size(&r.event) <= limits.max_event_bytes as usize)
                    .count();
                outcomes.extend(self.batch(&mut state, &rest[..n])?);
                n
            } else {
                outcomes.push(self.single(&mut state, first)?);
                1
            };
            let start = outcomes.len() - take;
            for outcome in &mut outcomes[start..] {
                self.apply_failure_action(&mut state, outcome);
            }
            rest = &rest[take..];
        }
        Ok(outcomes)
    }

    /// Records the `on-failure` action of a failed event; `stop` halts the
    /// partition after it.
    fn apply_failure_action(&self, state: &mut Partition, outcome: &mut EventOutcome) {
        if matches!(outcome.disposition, "ok" | "not-handled") {
            return;
        }
        let on_failure = &self.module.manifest.on_failure;
        outcome.on_failure = Some(match on_failure.action {
            FailureAction::DeadLetter => {
                format!(
                    "dead-letter to {}",
                    on_failure.dead_letter_topic(&self.module.name)
                )
            }
            FailureAction::Skip => "skip".to_owned(),
            FailureAction::Stop => {
                state.stopped = Some(format!(
                    "the partition stopped at offset {} (`on-failure = stop`)",
                    outcome.offset
                ));
                "stop".to_owned()
            }
        });
    }

    /// World `consumer`: one event, retried up to `retry.max-attempts`.
    fn single(&mut self, state: &mut Partition, r: &Recorded) -> anyhow::Result<EventOutcome> {
        let max_attempts = self.module.manifest.retry.max_attempts;
        let denied_before = self.denied();
        let mut attempt = 1;
        let mut outcome = loop {
            let result = self.call(state, std::slice::from_ref(&r.event))?;
            let last = attempt >= max_attempts;
            let (kind, reason) = match (result.failure, result.dispositions.into_iter().next()) {
                (Some(f), _) => (if f.timed_out { "timeout" } else { "trap" }, Some(f.reason)),
                (None, Some(Disposition::Ok)) => {
                    let mut o = self.outcome(r, "ok", None, attempt);
                    o.emitted = emitted_json(result.emitted.into_iter().flatten());
                    break o;
                }
                (None, Some(Disposition::Reject(why))) => {
                    break self.outcome(r, "rejected", Some(why), attempt);
                }
                (None, Some(Disposition::Retry(why))) => ("retries-exhausted", Some(why)),
                (None, None) => ("trap", Some("the handler returned no disposition".into())),
            };
            if last {
                break self.outcome(r, kind, reason, attempt);
            }
            attempt += 1;
        };
        outcome.denied = self.denied_since(&denied_before);
        Ok(outcome)
    }

    /// World `batch-consumer`: one `handle-batch` call for `events` (one
    /// partition), settled as the dispatcher settles it.
    fn batch(
        &mut self,
        state: &mut Partition,
        events: &[Recorded],
    ) -> anyhow::Result<Vec<EventOutcome>> {
        let max_attempts = self.module.manifest.retry.max_attempts;
        let mut outcomes = Vec::new();
        let (mut done, mut attempt, mut isolate) = (0, 1, 0);
        while done < events.len() {
            let take = if isolate > 0 { 1 } else { events.len() - done };
            let chunk = &events[done..done + take];
            let calls: Vec<Event> = chunk.iter().map(|r| r.event.clone()).collect();
            let denied_before = self.denied();
            let result = self.call(state, &calls)?;
            let last = attempt >= max_attempts;
            self.batches += 1;
            let batch = self.batches;
            if let Some(failure) = result.failure {
                if take > 1 {
                    isolate = take; // re-run one event at a time
                } else if last {
                    let kind = if failure.timed_out { "timeout" } else { "trap" };
                    let mut o = self.outcome(&chunk[0], kind, Some(failure.reason), attempt);
                    o.batch = Some(batch);
                    outcomes.push(o);
                    (done, attempt, isolate) = (done + 1, 1, isolate.saturating_sub(1));
                } else {
                    attempt += 1;
                }
                continue;
            }
            let retry = result
                .dispositions
                .iter()
                .any(|d| matches!(d, Disposition::Retry(_)));
            if retry && !last {
                attempt += 1;
                continue;
            }
            let denied = self.denied_since(&denied_before);
            for (index, (r, d)) in chunk.iter().zip(result.dispositions).enumerate() {
                let mut o = match d {
                    Disposition::Ok => self.outcome(r, "ok", None, attempt),
                    Disposition::Reject(why) => self.outcome(r, "rejected", Some(why), attempt),
                    Disposition::Retry(why) => {
                        self.outcome(r, "retries-exhausted", Some(why), attempt)
                    }
                };
                o.batch = Some(batch);
                if index == 0 {
                    o.emitted = emitted_json(result.emitted.iter().flatten().cloned());
                    o.denied = denied.clone();
                }
                outcomes.push(o);
            }
            (done, attempt, isolate) = (done + take, 1, isolate.saturating_sub(take));
        }
        Ok(outcomes)
    }

    /// Calls the partition's instance, creating (or, after a trap,
    /// re-creating) it first.
    fn call(&mut self, state: &mut Partition, events: &[Event]) -> anyhow::Result<CallResult> {
        match &mut state.invoker {
            Some(invoker) if invoker.is_live() => {}
            Some(invoker) => invoker.reset(&self.engine)?,
            None => {
                let mut invoker = Invoker::new(&self.engine, self.module.clone())?;
                invoker.observe(self.module_metrics.clone());
                state.invoker = Some(invoker);
            }
        }
        let invoker = state.invoker.as_mut().context("no instance")?;
        Ok(invoker.call(events, &self.never))
    }

    fn outcome(
        &self,
        r: &Recorded,
        disposition: &'static str,
        reason: Option<String>,
        attempts: u32,
    ) -> EventOutcome {
        EventOutcome {
            line: r.line,
            topic: r.event.topic.clone(),
            partition: r.event.partition,
            offset: r.event.offset,
            disposition,
            reason,
            attempts,
            emitted: Vec::new(),
            denied: BTreeMap::new(),
            on_failure: None,
            batch: None,
        }
    }

    /// `weir_emits_denied_total` of the module, by reason.
    fn denied(&self) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for family in self.metrics.registry().gather() {
            if family.name() != "weir_emits_denied_total" {
                continue;
            }
            for m in family.get_metric() {
                if let Some(l) = m.get_label().iter().find(|l| l.name() == "reason") {
                    counts.insert(l.value().to_owned(), m.get_counter().get_value() as u64);
                }
            }
        }
        counts
    }

    fn denied_since(&self, before: &HashMap<String, u64>) -> BTreeMap<&'static str, u64> {
        let now = self.denied();
        DENY_REASONS
            .iter()
            .filter_map(|&reason| {
                let n = now.get(reason).copied().unwrap_or(0)
                    - before.get(reason).copied().unwrap_or(0);
                (n > 0).then_some((reason, n))
            })
            .collect()
    }
}

fn emitted_json(records: impl IntoIterator<Item = Outgoing>) -> Vec<serde_json::Value> {
    records.into_iter().map(|r| record_json(&r)).collect()
}
