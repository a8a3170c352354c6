//! Table-driven tests of the settlement rules.

use super::*;
use crate::bindings::weir::consumer::types::Header;

fn event(offset: i64, bytes: usize) -> Event {
    Event {
        topic: "in".into(),
        partition: 0,
        offset,
        timestamp_ms: Some(offset * 10),
        key: None,
        value: Some(vec![b'x'; bytes]),
        headers: vec![Header {
            key: "h".into(),
            value: Vec::new(),
        }],
    }
}

fn out(tag: &str) -> Outgoing {
    Outgoing {
        topic: "out".into(),
        key: None,
        value: Some(tag.as_bytes().to_vec()),
        headers: Vec::new(),
        partition: None,
    }
}

fn rules(batch: bool, action: FailureAction) -> Rules {
    Rules {
        max_attempts: 3,
        max_event_bytes: 100,
        action,
        batch,
    }
}

fn ok() -> Disposition {
    Disposition::Ok
}
fn reject() -> Disposition {
    Disposition::Reject("no".into())
}
fn retry() -> Disposition {
    Disposition::Retry("later".into())
}

fn call(dispositions: Vec<Disposition>, trap: Option<bool>, batch: bool) -> CallResult {
    let emitted = if batch {
        if trap.is_some() {
            Vec::new()
        } else {
            vec![vec![out("b0"), out("b1")]]
        }
    } else {
        dispositions
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Disposition::Ok => vec![out(&format!("e{i}"))],
                _ => vec![out("discarded")],
            })
            .collect()
    };
    CallResult {
        dispositions,
        emitted,
        failure: trap.map(|timed_out| CallFailure {
            reason: if timed_out {
                "slow".into()
            } else {
                "boom".into()
            },
            timed_out,
        }),
    }
}

/// One row: the progress before, the call, and what must come out.
struct Row {
    name: &'static str,
    batch: bool,
    action: FailureAction,
    attempt: u32,
    isolate: usize,
    events: usize,
    dispositions: Vec<Disposition>,
    trap: Option<bool>,
    settled: usize,
    produced: &'static [&'static str],
    rejects: &'static [(i64, FailureKind, u32)],
    retry: bool,
    halt: Option<(i64, FailureKind)>,
    next_attempt: u32,
    next_isolate: usize,
}

fn row(name: &'static str) -> Row {
    Row {
        name,
        batch: false,
        action: FailureAction::DeadLetter,
        attempt: 1,
        isolate: 0,
        events: 1,
        dispositions: vec![ok()],
        trap: None,
        settled: 1,
        produced: &["e0"],
        rejects: &[],
        retry: false,
        halt: None,
        next_attempt: 1,
        next_isolate: 0,
    }
}

/// Builders for the table's rows: the call, then what must come out.
impl Row {
    fn batch(self) -> Self {
        Self {
            batch: true,
            ..self
        }
    }
    fn on_failure(self, action: FailureAction) -> Self {
        Self { action, ..self }
    }
    fn at(self, attempt: u32, isolate: usize) -> Self {
        Self {
            attempt,
            isolate,
            ..self
        }
    }
    fn call(self, events: usize, dispositions: Vec<Disposition>) -> Self {
        Self {
            events,
            dispositions,
            ..self
        }
    }
    fn traps(self, timed_out: bool) -> Self {
        Self {
            trap: Some(timed_out),
            ..self
        }
    }
    fn settles(self, settled: usize, produced: &'static [&'static str]) -> Self {
        Self {
            settled,
            produced,
            ..self
        }
    }
    fn rejects(self, rejects: &'static [(i64, FailureKind, u32)]) -> Self {
        Self { rejects, ..self }
    }
    fn retries(self) -> Self {
        Self {
            retry: true,
            ..self
        }
    }
    fn halts(self, offset: i64, kind: FailureKind) -> Self {
        Self {
            halt: Some((offset, kind)),
            ..self
        }
    }
    fn then(self, next_attempt: u32, next_isolate: usize) -> Self {
        Self {
            next_attempt,
            next_isolate,
            ..self
        }
    }
}

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use FailureAction::{Skip, Stop};
    use FailureKind as K;
    vec![
        row("ok"),
        row("ok x3").call(3, vec![ok(), ok(), ok()]).settles(3, &["e0", "e1", "e2"]),
        row("reject").call(1, vec![reject()]).settles(1, &[]).rejects(&[(0, K::Rejected, 1)]),
        row("reject after ok").call(2, vec![ok(), reject()]).settles(2, &["e0"]).rejects(&[(1, K::Rejected, 1)]),
        row("retry").call(1, vec![retry()]).settles(0, &[]).retries().then(2, 0),
        row("retries exhausted").at(3, 0).call(1, vec![retry()]).settles(1, &[]).rejects(&[(0, K::RetriesExhausted, 3)]),
        row("a later retry waits without counting an attempt").call(3, vec![ok(), retry()]).settles(1, &["e0"]),
        row("trap").call(1, vec![]).traps(false).settles(0, &[]).retries().then(2, 0),
        row("trap on the last attempt").at(3, 0).call(1, vec![]).traps(false).settles(1, &[]).rejects(&[(0, K::Trap, 3)]),
        row("timeout on the last attempt").at(3, 0).call(1, vec![]).traps(true).settles(1, &[]).rejects(&[(0, K::Timeout, 3)]),
        row("trap after a handled event").call(3, vec![ok()]).traps(false).settles(1, &["e0"]),
        row("stop").on_failure(Stop).call(3, vec![ok(), reject(), ok()]).settles(1, &["e0"]).halts(1, K::Rejected),
        row("stop at a trap").on_failure(Stop).at(3, 0).call(1, vec![]).traps(false).settles(0, &[]).halts(0, K::Trap),
        row("skip").on_failure(Skip).call(1, vec![reject()]).settles(1, &[]).rejects(&[(0, K::Rejected, 1)]),
        // Batch mode: what a call emitted belongs to its first event.
        row("batch ok").batch().call(2, vec![ok(), ok()]).settles(2, &["b0", "b1"]),
        row("batch reject").batch().call(2, vec![ok(), reject()]).settles(2, &["b0", "b1"]).rejects(&[(1, K::Rejected, 1)]),
        row("batch retry").batch().call(2, vec![ok(), retry()]).settles(0, &[]).retries().then(2, 0),
        row("batch retries exhausted").batch().at(3, 0).call(2, vec![ok(), retry()]).settles(2, &["b0", "b1"])
            .rejects(&[(1, K::RetriesExhausted, 3)]),
        row("batch trap isolates").batch().call(3, vec![]).traps(false).settles(0, &[]).then(1, 3),
        row("isolated event ok").batch().at(1, 3).call(1, vec![ok()]).settles(1, &["b0", "b1"]).then(1, 2),
        row("isolated event traps").batch().at(1, 2).call(1, vec![]).traps(false).settles(0, &[]).retries().then(2, 2),
        row("isolated event times out for good").batch().at(3, 2).call(1, vec![]).traps(true).settles(1, &[])
            .rejects(&[(0, K::Timeout, 3)]).then(1, 1),
        row("batch stop keeps what the first event owns").batch().on_failure(Stop).call(3, vec![ok(), reject(), ok()])
            .settles(1, &["b0", "b1"]).halts(1, K::Rejected),
    ]
}

#[test]
fn every_disposition_settles_as_the_table_says() {
    for r in table() {
        let rules = rules(r.batch, r.action);
        let chunk: Vec<Event> = (0..r.events as i64).map(|o| event(o, 10)).collect();
        let mut progress = Progress {
            attempt: r.attempt,
            isolate: r.isolate,
        };
        let plan = progress.settle(&chunk, call(r.dispositions, r.trap, r.batch), &rules);
        let name = r.name;
        assert_eq!(plan.settled, r.settled, "{name}: settled");
        let produced: Vec<String> = plan
            .produce
            .iter()
            .map(|p| String::from_utf8_lossy(p.record.value.as_deref().unwrap()).into_owned())
            .collect();
        assert_eq!(produced, r.produced, "{name}: produced");
        let rejects: Vec<(i64, FailureKind, u32)> = plan
            .rejects
            .iter()
            .map(|f| (f.offset, f.kind, f.attempts))
            .collect();
        assert_eq!(rejects, r.rejects, "{name}: rejects");
        assert_eq!(plan.retry.is_some(), r.retry, "{name}: retry");
        assert_eq!(
            plan.halt.map(|f| (f.offset, f.kind)),
            r.halt,
            "{name}: halt"
        );
        assert_eq!(progress.attempt, r.next_attempt, "{name}: next attempt");
        assert_eq!(progress.isolate, r.next_isolate, "{name}: next isolate");
    }
}

#[test]
fn per_event_outputs_carry_their_events_timestamp_and_batch_outputs_the_producers() {
    let rules = rules(false, FailureAction::DeadLetter);
    let chunk = vec![event(4, 1), event(5, 1)];
    let plan = Progress::default().settle(&chunk, call(vec![ok(), ok()], None, false), &rules);
    let owners: Vec<(i64, Option<i64>)> = plan
        .produce
        .iter()
        .map(|p| (p.owner, p.timestamp_ms))
        .collect();
    assert_eq!(owners, [(4, Some(40)), (5, Some(50))]);
    let batch = rules_batch();
    let plan = Progress::default().settle(&chunk, call(vec![ok(), ok()], None, true), &batch);
    assert!(
        plan.produce
            .iter()
            .all(|p| p.owner == 4 && p.timestamp_ms.is_none())
    );
}

fn rules_batch() -> Rules {
    rules(true, FailureAction::DeadLetter)
}

#[test]
fn oversized_events_fail_without_a_call_and_cut_the_call_before_them() {
    let rules = rules(false, FailureAction::DeadLetter);
    let head = [event(0, 10), event(1, 10), event(2, 500), event(3, 10)];
    let mut progress = Progress::default();
    assert_eq!(progress.next(&head, 10, &rules), Next::Call(2));
    assert_eq!(progress.next(&head[2..], 10, &rules), Next::Oversized);
    assert_eq!(progress.next(&head, 1, &rules), Next::Call(1));
    let plan = progress.oversized(&head[2], &rules);
    assert_eq!(plan.settled, 1);
    assert_eq!(plan.rejects[0].kind, FailureKind::Oversized);
    assert_eq!(plan.rejects[0].attempts, 0);
    assert!(
        plan.rejects[0]
            .reason
            .contains("over `limits.max-event-bytes` (100)")
    );
    let stop = Rules {
        action: FailureAction::Stop,
        ..rules
    };
    let plan = Progress::default().oversized(&head[2], &stop);
    assert_eq!((plan.settled, plan.halt.map(|f| f.offset)), (0, Some(2)));
}

#[test]
fn isolation_calls_one_event_at_a_time() {
    let rules = rules_batch();
    let head = [event(0, 1), event(1, 1), event(2, 1)];
    let progress = Progress {
        attempt: 1,
        isolate: 2,
    };
    assert_eq!(progress.next(&head, 256, &rules), Next::Call(1));
}

#[test]
fn verdicts_name_each_settled_events_end_and_attempts() {
    let rules = rules(false, FailureAction::DeadLetter);
    let chunk = vec![event(0, 1), event(1, 1)];
    let mut progress = Progress {
        attempt: 2,
        isolate: 0,
    };
    let plan = progress.settle(&chunk, call(vec![ok(), reject()], None, false), &rules);
    assert_eq!(plan.verdict(0, &chunk[0]), (Verdict::Ok, 2));
    match plan.verdict(1, &chunk[1]) {
        (Verdict::Failed(f), 1) => assert_eq!(f.kind, FailureKind::Rejected),
        other => panic!("{other:?}"),
    }
}

#[test]
fn outcomes_count_every_attempt() {
    let rules = rules(false, FailureAction::DeadLetter);
    let chunk = vec![event(0, 1), event(1, 1), event(2, 1)];
    let plan = Progress::default().settle(
        &chunk,
        call(vec![ok(), reject(), retry()], None, false),
        &rules,
    );
    assert_eq!(
        (
            plan.outcomes.count(Outcome::Ok),
            plan.outcomes.count(Outcome::Rejected),
            plan.outcomes.count(Outcome::Retry)
        ),
        (1, 1, 1)
    );
}
