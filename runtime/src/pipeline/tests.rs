//! A partition worker driven by fakes (see [`super::fakes`]): ordering, the
//! watermark, delivery retries, exactly-once aborts and reloads, with no
//! broker and no Wasm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::fakes::{Act, Answer, FakeSink, FakeTxns, FakeVersion, Rig, event, record, text};
use super::{Fault, TopicPartition, worker};
use crate::sync::lock;

const FAST_RETRY: &str = "[retry]\ninitial-backoff = \"1ms\"\nmax-backoff = \"2ms\"\n";

/// Echoes each event's value to `out`; rejects `bad`.
fn echo(e: &super::Event) -> Act {
    let value = String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into_owned();
    if value == "bad" {
        Act::Reject("bad event".into())
    } else {
        Act::Ok(vec![record("out", &value)])
    }
}

fn start(rig: &Rig, txns: Option<FakeTxns>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task = worker::spawn(
        rig.module.clone(),
        TopicPartition::new("in", 0),
        rig.source.clone(),
        txns,
        stop.clone(),
    );
    (stop, task)
}

async fn finish(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("worker stops")
        .expect("worker does not panic");
}

/// The value of a record's header `key`, as text.
fn header(record: &crate::bindings::weir::consumer::types::Outgoing, key: &str) -> Option<String> {
    let h = record.headers.iter().find(|h| h.key == key)?;
    Some(String::from_utf8_lossy(&h.value).into_owned())
}

fn values(values: &[&str]) -> Vec<super::Event> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| event(i as i64, v))
        .collect()
}

#[tokio::test]
async fn outputs_keep_offset_order_and_the_watermark_follows_acknowledgements() {
    let rig = Rig::new(FakeVersion::new("v1", "", echo), FakeSink::default());
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b", "c"]));
    rig.until("3 settled", |r| r.watermark() == Some(3)).await;
    rig.source.push([event(3, "d")]);
    rig.until("4 settled", |r| r.watermark() == Some(4)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b", "c", "d"]);
    finish(stop, task).await;
}

#[tokio::test]
async fn the_next_call_runs_while_the_previous_calls_records_are_produced() {
    // A run is sent only once the call after it has started: a worker that
    // called and produced in turn would never send anything.
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let given = permits.clone();
    let handler = move |e: &super::Event| {
        if e.offset > 0 {
            given.add_permits(1);
        }
        echo(e)
    };
    let limits = "[limits]\nmax-batch = 1\n";
    let sink = FakeSink::default().gated(permits.clone());
    let rig = Rig::new(FakeVersion::new("v1", limits, handler), sink);
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b", "c"]));
    rig.until("2 settled", |r| r.watermark() == Some(2)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b"]);
    // The last run waits for a call that never comes; let it go.
    permits.add_permits(1);
    rig.until("3 settled", |r| r.watermark() == Some(3)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b", "c"]);
    finish(stop, task).await;
}

#[tokio::test]
async fn calls_wait_for_the_output_budget_while_records_are_unacknowledged() {
    let gate = Arc::new(Notify::new());
    let held = gate.clone();
    let sink = FakeSink::answering(move |_, _| Answer::Hold(held.clone()));
    // One event per call, each reserving 1 KiB: a 3 KiB budget lets three
    // calls' records be on their way at once.
    let limits = "[limits]\nmax-batch = 1\nmax-record-bytes = 100\nmax-emit-bytes = 1024\n";
    let rig = Rig::with_budget(FakeVersion::new("v1", limits, echo), sink, 3 * 1024);
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b", "c", "d", "e"]));
    rig.until("3 sent", |r| lock(&r.module.sink.sent).len() == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        lock(&rig.module.sink.sent).len(),
        3,
        "the fourth call waits for the budget"
    );
    assert!(rig.module.budget.try_reserve(1).is_none(), "budget spent");
    // Each acknowledgement gives one call's bytes back.
    while rig.watermark() != Some(5) {
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b", "c", "d", "e"]);
    assert_eq!(
        rig.module.budget.try_reserve(3 * 1024).map(|r| r.bytes()),
        Some(3 * 1024),
        "all given back"
    );
    finish(stop, task).await;
}

#[tokio::test]
async fn an_exactly_once_partition_out_of_budget_commits_early_instead_of_waiting() {
    // Its open transaction holds the budget until it commits, an hour
    // away: waiting for it would never end.
    let toml = "[limits]\nmax-batch = 1\nmax-record-bytes = 100\nmax-emit-bytes = 1024\n\
                [delivery]\nguarantee = \"exactly-once\"\ntransaction-interval = \"1h\"\n";
    let rig = Rig::with_budget(
        FakeVersion::new("v1", toml, echo),
        FakeSink::default(),
        3 * 1024,
    );
    let txns = FakeTxns::default();
    let (stop, task) = start(&rig, Some(txns.clone()));
    rig.source.push(values(&["a", "b", "c", "d", "e"]));
    rig.until("a to d committed", |_| lock(&txns.log).committed.len() >= 3)
        .await;
    finish(stop, task).await;
    let log = lock(&txns.log);
    let committed: Vec<String> = log.committed.iter().map(text).collect();
    assert_eq!(committed, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        log.offsets.first(),
        Some(&3),
        "committed once 3 calls filled the budget"
    );
}

#[tokio::test]
async fn the_watermark_never_passes_an_event_whose_dead_letter_is_unacknowledged() {
    let gate = Arc::new(Notify::new());
    let held = gate.clone();
    let sink = FakeSink::answering(move |r, _| {
        if r.topic.starts_with("weir-dlq-") {
            Answer::Hold(held.clone())
        } else {
            Answer::Ack
        }
    });
    let rig = Rig::new(FakeVersion::new("v1", "", echo), sink);
    let (stop, task) = start(&rig, None);
    rig.source.push([event(0, "bad")]);
    rig.until("the dead letter sent", |r| {
        lock(&r.module.sink.sent).len() == 1
    })
    .await;
    rig.source.push([event(1, "b")]);
    rig.until("event 1's output acknowledged", |r| {
        r.module.sink.acked_to("out") == ["b"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rig.watermark(), None, "event 0 is not settled yet");
    gate.notify_one();
    rig.until("both settled", |r| r.watermark() == Some(2))
        .await;
    assert_eq!(rig.module.sink.acked_to("weir-dlq-fake"), ["bad"]);
    finish(stop, task).await;
}

#[tokio::test]
async fn transient_delivery_failures_are_produced_again_in_order_and_only_those() {
    // The first sends of `b` and `c` fail, as an idempotent producer fails
    // every record behind a failed one on the same partition.
    let sink = FakeSink::answering(|r, before| match (text(r).as_str(), before) {
        ("b" | "c", 0) => Answer::Fail(Fault::Transient),
        _ => Answer::Ack,
    });
    let rig = Rig::new(FakeVersion::new("v1", "", echo), sink);
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b", "c"]));
    rig.until("3 settled", |r| r.watermark() == Some(3)).await;
    let sent: Vec<String> = lock(&rig.module.sink.sent).iter().map(text).collect();
    assert_eq!(
        sent,
        ["a", "b", "c", "b", "c"],
        "only the failed ones again"
    );
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b", "c"]);
    finish(stop, task).await;
}

#[tokio::test]
async fn a_permanently_refused_output_fails_its_event_to_the_dead_letter_topic() {
    let sink = FakeSink::answering(|r, _| match text(r).as_str() {
        "huge" if r.topic == "out" => Answer::Fail(Fault::Permanent),
        _ => Answer::Ack,
    });
    let rig = Rig::new(FakeVersion::new("v1", "", echo), sink);
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "huge", "c"]));
    rig.until("3 settled", |r| r.watermark() == Some(3)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "c"]);
    let letters = lock(&rig.module.sink.acked).clone();
    let letter = letters
        .iter()
        .find(|r| r.topic == "weir-dlq-fake")
        .expect("a dead letter");
    assert_eq!(
        header(letter, "weir.error.kind").as_deref(),
        Some("refused")
    );
    finish(stop, task).await;
}

/// The defect this layout was written to fix: with exactly-once and
/// `on-failure = stop`, a transaction that aborts at the halt used to leave
/// the later events in the worker's hands; after the halt they were handled
/// ahead of, and again after, the redelivered ones.
#[tokio::test]
async fn an_aborted_transaction_at_a_stop_rewinds_without_duplicates_or_reordering() {
    let toml = format!(
        "{FAST_RETRY}[on-failure]\naction = \"stop\"\n[delivery]\nguarantee = \"exactly-once\"\n\
         transaction-interval = \"1h\"\n"
    );
    let rig = Rig::new(FakeVersion::new("v1", &toml, echo), FakeSink::default());
    let txns = FakeTxns::default();
    lock(&txns.log).fail_commits = 1;
    let (stop, task) = start(&rig, Some(txns.clone()));
    rig.source.push(values(&["a", "b", "bad", "c", "d"]));
    rig.until("the aborted transaction rewound", |r| {
        lock(&r.source.log).rewinds == [0]
    })
    .await;
    // Time to handle the partition again up to the halt.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new version handles the event it stopped at.
    let fixed = FakeVersion::new("v2", &toml, |e| match echo(e) {
        Act::Reject(_) => Act::Ok(vec![record("out", "fixed")]),
        other => other,
    });
    rig.deploy(fixed);
    rig.until("the rest produced in the open transaction", |_| {
        txns.sink.acked_to("out").contains(&"d".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    finish(stop, task).await;
    let log = lock(&txns.log);
    let committed: Vec<String> = log.committed.iter().map(text).collect();
    assert_eq!(committed, ["a", "b", "fixed", "c", "d"]);
    assert_eq!(log.offsets, [2, 5]);
    assert_eq!(log.aborted, 1);
}

#[tokio::test]
async fn a_reload_during_a_call_settles_it_with_the_settings_of_the_version_it_ran_on() {
    let (entered, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (e, r) = (entered.clone(), release.clone());
    let v1 = FakeVersion::new(
        "v1",
        &format!("{FAST_RETRY}[on-failure]\ndead-letter-topic = \"dlq-v1\"\n"),
        move |_| {
            e.store(true, Ordering::SeqCst);
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Act::Reject("v1 rejects".into())
        },
    );
    let rig = Rig::new(v1, FakeSink::default());
    let (stop, task) = start(&rig, None);
    rig.source.push([event(0, "x")]);
    rig.until("the call started", |_| entered.load(Ordering::SeqCst))
        .await;
    rig.deploy(FakeVersion::new(
        "v2",
        "[on-failure]\naction = \"skip\"\n",
        |_| Act::Reject("v2 rejects".into()),
    ));
    release.store(true, Ordering::SeqCst);
    rig.until("event 0 settled", |r| r.watermark() == Some(1))
        .await;
    rig.source.push([event(1, "y")]);
    rig.until("event 1 settled", |r| r.watermark() == Some(2))
        .await;
    let acked = lock(&rig.module.sink.acked).clone();
    let topics: Vec<&str> = acked.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics, ["dlq-v1"], "v1's call dead-letters by v1; v2 skips");
    finish(stop, task).await;
}

#[tokio::test]
async fn retries_then_gives_up_and_dead_letters_after_max_attempts() {
    let toml = format!("{FAST_RETRY}max-attempts = 3\n");
    let v1 = FakeVersion::new("v1", &toml, |e| match e.offset {
        0 => Act::Retry("later".into()),
        _ => echo(e),
    });
    let rig = Rig::new(v1, FakeSink::default());
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b"]));
    rig.until("both settled", |r| r.watermark() == Some(2))
        .await;
    assert_eq!(rig.module.sink.acked_to("out"), ["b"]);
    let letters = lock(&rig.module.sink.acked).clone();
    let letter = letters.iter().find(|r| r.topic == "weir-dlq-fake");
    let attempts = header(letter.expect("a dead letter"), "weir.attempts");
    assert_eq!(attempts.as_deref(), Some("3"));
    finish(stop, task).await;
}

#[tokio::test]
async fn a_trap_replaces_the_instance_and_retries_the_event() {
    let trapped = Arc::new(AtomicBool::new(false));
    let t = trapped.clone();
    let v1 = FakeVersion::new("v1", FAST_RETRY, move |e| {
        if e.offset == 1 && !t.swap(true, Ordering::SeqCst) {
            Act::Trap("boom".into())
        } else {
            echo(e)
        }
    });
    let rig = Rig::new(v1, FakeSink::default());
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "b", "c"]));
    rig.until("3 settled", |r| r.watermark() == Some(3)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["a", "b", "c"]);
    finish(stop, task).await;
}

/// Exactly-once state: the writes of an aborted transaction never reach
/// the store (the events are handled again against the store as it was),
/// and the committed ones are applied once.
#[tokio::test]
async fn an_aborted_transaction_leaves_the_state_store_as_it_was() {
    let toml = format!(
        "{FAST_RETRY}[delivery]\nguarantee = \"exactly-once\"\ntransaction-interval = \"20ms\"\n\
         [state]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let count = |_: &super::Event| Act::Count("k".into());
    let rig = Rig::with_state(
        FakeVersion::new("v1", &toml, count),
        FakeSink::default(),
        Some(super::fakes::stores(dir.path())),
    );
    let txns = FakeTxns::default();
    lock(&txns.log).fail_commits = 1;
    let (stop, task) = start(&rig, Some(txns.clone()));
    rig.source.push(values(&["a", "b", "c"]));
    rig.until("the aborted transaction rewound", |r| {
        lock(&r.source.log).rewinds == [0]
    })
    .await;
    rig.until("handled again", |_| {
        txns.sink.acked_to("out").contains(&"3".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    finish(stop, task).await;
    let log = lock(&txns.log);
    let outputs: Vec<String> = log
        .committed
        .iter()
        .filter(|r| r.topic == "out")
        .map(text)
        .collect();
    assert_eq!(outputs, ["1", "2", "3"], "counted from an untouched store");
    let changelog: Vec<String> = log
        .committed
        .iter()
        .filter(|r| r.topic == "weir-state-fake")
        .map(text)
        .collect();
    assert_eq!(changelog, ["1", "2", "3"]);
    // The store was checkpointed and closed when the worker ended.
    let store =
        crate::state::LocalStore::open(&dir.path().join("fake/weir-state-fake/0.redb")).unwrap();
    assert_eq!(
        store.get(b"k").unwrap().map(|s| s.value),
        Some(b"3".to_vec())
    );
}

/// At-least-once state: a write is visible to the next call before its
/// changelog record is acknowledged, and a rejected event's write is not.
#[tokio::test]
async fn later_calls_see_settled_writes_and_never_rejected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let handler = |e: &super::Event| match e.value.as_deref() {
        Some(b"bad") => Act::Reject("bad".into()),
        _ => Act::Count("k".into()),
    };
    let rig = Rig::with_state(
        FakeVersion::new("v1", "[state]\n[limits]\nmax-batch = 1\n", handler),
        FakeSink::default(),
        Some(super::fakes::stores(dir.path())),
    );
    let (stop, task) = start(&rig, None);
    rig.source.push(values(&["a", "bad", "b", "c"]));
    rig.until("all settled", |r| r.watermark() == Some(4)).await;
    assert_eq!(rig.module.sink.acked_to("out"), ["1", "2", "3"]);
    assert_eq!(rig.module.sink.acked_to("weir-state-fake"), ["1", "2", "3"]);
    finish(stop, task).await;
}
