//! A `weir replay` session: the partition worker's settlement policy
//! ([`crate::pipeline::policy`]) driven over recorded events, synchronously
//! and without backoff sleeps or Kafka, reporting each event's ending.
//!
//! Per-event modules are called one event at a time (so denied emits are
//! attributed to the event that made them); batch modules with up to
//! `limits.max-batch` events, as the worker does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::events::{Recorded, record_json};
use super::replay::{Ending, EventOutcome};
use crate::bindings::weir::consumer::types::Event;
use crate::engine::{LoadedModule, WasmEngine};
use crate::invoke::{CallResult, Invoker};
use crate::manifest::FailureAction;
use crate::metrics::{DenyReason, Metrics, ModuleMetrics};
use crate::pipeline::Version as _;
use crate::pipeline::failure::Failure;
use crate::pipeline::policy::{Next, Progress, Rules, Settlement, Verdict};
use crate::state::{LocalStore, PartitionStore, StateHandle, changelog};

/// The module, its metrics (for denied emits) and the batch counter.
pub(super) struct Session {
    engine: WasmEngine,
    module: Arc<LoadedModule>,
    metrics: Arc<Metrics>,
    module_metrics: Arc<ModuleMetrics>,
    batches: usize,
    never: CancellationToken,
    /// Stateful modules: each partition's store, kept in memory across the
    /// replayed events.
    stores: BTreeMap<i32, StateHandle>,
}

impl Session {
    /// A session of `module`.
    pub(super) fn new(engine: WasmEngine, module: Arc<LoadedModule>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let module_metrics = metrics.module(&module.name);
        Self {
            engine,
            module,
            metrics,
            module_metrics,
            batches: 0,
            never: CancellationToken::new(),
            stores: BTreeMap::new(),
        }
    }

    /// Replays one partition's events in offset order.
    pub(super) fn partition(&mut self, events: &[Recorded]) -> anyhow::Result<Vec<EventOutcome>> {
        let rules = Rules::of(&self.module.manifest, self.module.is_batch());
        let max = if rules.batch {
            self.module.manifest.limits.max_batch as usize
        } else {
            1
        };
        let mut invoker = None;
        let mut progress = Progress::default();
        let mut outcomes = Vec::new();
        let mut done = 0;
        while done < events.len() {
            let rest = &events[done..];
            let denied_before = self.denied();
            let (plan, batch) = match progress.next(rest.iter().map(|r| &r.event), max, &rules) {
                Next::Oversized => (progress.oversized(&rest[0].event, &rules), None),
                Next::Call(n) => {
                    let calls: Vec<Event> = rest[..n].iter().map(|r| r.event.clone()).collect();
                    let result = self.call(&mut invoker, &calls)?;
                    let batch = rules.batch.then(|| {
                        self.batches += 1;
                        self.batches
                    });
                    (progress.settle(&calls, result, &rules), batch)
                }
            };
            if let Some(first) = rest.first() {
                self.apply(first.event.partition, &plan)?;
            }
            let denied = self.denied_since(&denied_before);
            outcomes.extend(self.settled(&rest[..plan.settled], &plan, denied, batch));
            done += plan.settled;
            if let Some(failure) = &plan.halt {
                outcomes.extend(self.halted(&events[done..], failure, batch));
                break;
            }
        }
        Ok(outcomes)
    }

    /// The store of `partition` (a stateful module only), created empty
    /// the first time.
    pub(super) fn store(
        &mut self,
        partition: i32,
        topic: &str,
    ) -> anyhow::Result<Option<&StateHandle>> {
        let Some(settings) = &self.module.manifest.state else {
            return Ok(None);
        };
        if !self.stores.contains_key(&partition) {
            let local = LocalStore::in_memory()?;
            let store = Arc::new(PartitionStore::new(partition, local));
            store.register(topic, 0);
            let handle = StateHandle {
                store,
                topic: settings.changelog_topic(&self.module.name).into(),
                writer: topic.into(),
            };
            self.stores.insert(partition, handle);
        }
        Ok(self.stores.get(&partition))
    }

    /// The stores of the partitions replayed so far.
    pub(super) fn stores(&self) -> &BTreeMap<i32, StateHandle> {
        &self.stores
    }

    /// Applies the state writes a settled call produces, as the worker does.
    fn apply(&mut self, partition: i32, plan: &Settlement) -> anyhow::Result<()> {
        if let Some(handle) = self.stores.get(&partition) {
            let writes =
                changelog::writes_in(&handle.topic, plan.produce.iter().map(|p| &p.record));
            handle.store.write_through(writes)?;
        }
        Ok(())
    }

    /// The outcomes of a call's settled events.
    fn settled(
        &self,
        events: &[Recorded],
        plan: &Settlement,
        denied: BTreeMap<&'static str, u64>,
        batch: Option<usize>,
    ) -> Vec<EventOutcome> {
        let mut outcomes = Vec::with_capacity(events.len());
        for (index, r) in events.iter().enumerate() {
            let (verdict, attempts) = plan.verdict(index, &r.event);
            let mut o = match verdict {
                Verdict::Ok => self.outcome(r, Ending::Ok, None, attempts),
                Verdict::Failed(failure) => self.failed(r, &failure),
            };
            o.emitted = plan
                .produce
                .iter()
                .filter(|p| p.owner == r.event.offset)
                .map(|p| record_json(&p.record))
                .collect();
            if index == 0 {
                o.denied = denied.clone();
            }
            o.batch = batch;
            outcomes.push(o);
        }
        outcomes
    }

    /// The event the partition stopped at, and the ones after it.
    fn halted(
        &self,
        events: &[Recorded],
        failure: &Failure,
        batch: Option<usize>,
    ) -> Vec<EventOutcome> {
        let mut outcomes = Vec::with_capacity(events.len());
        let Some((first, rest)) = events.split_first() else {
            return outcomes;
        };
        let mut o = self.failed(first, failure);
        o.batch = batch;
        outcomes.push(o);
        let why = format!(
            "the partition stopped at offset {} (`on-failure = stop`)",
            failure.offset
        );
        for r in rest {
            outcomes.push(self.outcome(r, Ending::NotHandled, Some(why.clone()), 0));
        }
        outcomes
    }

    /// The outcome of an event that failed for good, with what `on-failure`
    /// does with it.
    fn failed(&self, r: &Recorded, failure: &Failure) -> EventOutcome {
        let ending = Ending::Failed(failure.kind);
        let mut o = self.outcome(r, ending, Some(failure.reason.clone()), failure.attempts);
        let on_failure = &self.module.manifest.on_failure;
        o.on_failure = Some(match on_failure.action {
            FailureAction::DeadLetter => {
                format!(
                    "dead-letter to {}",
                    on_failure.dead_letter_topic(&self.module.name)
                )
            }
            FailureAction::Skip => "skip".to_owned(),
            FailureAction::Stop => "stop".to_owned(),
        });
        o
    }

    /// Calls the partition's instance, creating (or, after a trap,
    /// re-creating) it first.
    fn call(
        &mut self,
        invoker: &mut Option<Invoker>,
        events: &[Event],
    ) -> anyhow::Result<CallResult> {
        match invoker {
            Some(invoker) if invoker.is_live() => {}
            Some(invoker) => invoker.reset(&self.engine)?,
            None => {
                let mut new = Invoker::new(&self.engine, self.module.clone())?;
                new.observe(self.module_metrics.clone());
                *invoker = Some(new);
            }
        }
        let invoker = invoker.as_mut().context("no instance")?;
        let state = match events.first() {
            Some(e) => self.store(e.partition, &e.topic)?.cloned(),
            None => None,
        };
        Ok(invoker.call(events, &self.never, state.as_ref(), None))
    }

    fn outcome(
        &self,
        r: &Recorded,
        disposition: Ending,
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
        DenyReason::ALL
            .iter()
            .filter_map(|reason| {
                let label = reason.as_str();
                let n =
                    now.get(label).copied().unwrap_or(0) - before.get(label).copied().unwrap_or(0);
                (n > 0).then_some((label, n))
            })
            .collect()
    }
}
