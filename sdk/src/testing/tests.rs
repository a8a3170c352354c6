use super::*;
use crate::{Context, EventBuilder, Record, config, info};

struct Echo;

impl Consumer for Echo {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        match event.value_str()? {
            Some("retry") => Err(Error::retry("not now")),
            Some("reject") => Err(Error::reject("never")),
            Some("panic") => panic!("consumer bug"),
            _ => {
                info!("echo {}", event.offset());
                let topic = config::get_or("to", "echo");
                ctx.emit(event.forward_to(topic))?;
                Ok(())
            }
        }
    }
}

fn event(offset: i64, value: &str) -> EventBuilder {
    Event::builder().offset(offset).value(value)
}

#[test]
fn run_collects_emits_logs_and_the_result() {
    let outcome = Harness::new()
        .config("to", "out")
        .run::<Echo>(event(5, "hi"));
    assert_eq!(outcome.disposition(), Disposition::Ok);
    assert_eq!(outcome.reason(), None);
    assert_eq!(outcome.produced().len(), 1);
    assert_eq!(outcome.emitted[0].topic(), "out");
    assert_eq!(
        outcome.logs,
        [LogLine {
            level: Level::Info,
            message: "echo 5".into()
        }]
    );
}

#[test]
fn failures_produce_nothing() {
    let outcome = Harness::new().run::<Echo>(event(0, "retry"));
    assert_eq!(outcome.disposition(), Disposition::Retry("not now".into()));
    assert!(outcome.produced().is_empty());
    let outcome = Harness::new().run::<Echo>(event(0, "reject"));
    assert_eq!(outcome.reason(), Some("never"));
}

#[test]
fn emits_are_refused_like_the_host_would() {
    let harness = Harness::new()
        .config("to", "elsewhere")
        .output_topics(["echo"]);
    let outcome = harness.run::<Echo>(event(0, "x"));
    assert_eq!(
        outcome.reason(),
        Some("topic `elsewhere` is not in the module's output-topics")
    );
    assert!(outcome.emitted.is_empty());

    let refused = Harness::new().max_emits(1).with(|| {
        let mut ctx = Context::new();
        ctx.emit(Record::to("a")).unwrap();
        let second = ctx.emit(Record::to("a"));
        let negative = ctx.emit(Record::to("a").partition(-2));
        assert_eq!(ctx.emitted(), 1);
        (second, negative)
    });
    assert_eq!(
        refused,
        (
            Err(EmitError::TooMany(1)),
            Err(EmitError::InvalidPartition(-2))
        )
    );
}

#[test]
fn default_batch_stops_at_the_first_retry() {
    let outcome = Harness::new().run_batch::<Echo>([
        event(10, "a"),
        event(11, "reject"),
        event(12, "retry"),
        event(13, "b"),
    ]);
    assert_eq!(
        outcome.dispositions(),
        [
            Disposition::Ok,
            Disposition::Reject("never".into()),
            Disposition::Retry("not now".into()),
            Disposition::Retry("batch will be retried: offset 12 asked for a retry".into()),
        ]
    );
    assert_eq!(outcome.emitted.len(), 1, "offset 13 must not be handled");
    assert!(outcome.produced().is_empty());
}

#[test]
fn batch_without_retry_produces_everything_emitted() {
    let outcome =
        Harness::new().run_batch::<Echo>([event(1, "a"), event(2, "reject"), event(3, "b")]);
    assert_eq!(outcome.results.len(), 3);
    assert_eq!(outcome.produced().len(), 2);
}

#[test]
fn a_panicking_consumer_leaves_the_thread_clean() {
    let harness = Harness::new().config("to", "x");
    let caught = std::panic::catch_unwind(|| harness.run::<Echo>(event(0, "panic")));
    assert!(caught.is_err());
    assert_eq!(config::get("to"), None, "session must be cleared");
    assert!(Harness::new().run::<Echo>(event(1, "ok")).is_ok());
}

#[test]
fn exports_map_results_to_wit_dispositions() {
    use crate::bindings::batch::exports::weir::consumer::batch_handler::Guest as _;
    use crate::bindings::consumer::exports::weir::consumer::handler::Guest as _;
    use crate::bindings::consumer::weir::consumer::types::Disposition as Wit;
    use crate::export::{BatchHandlerExport, HandlerExport};

    let results = Harness::new().with(|| {
        let one = HandlerExport::<Echo>::handle(event(0, "reject").build().0);
        let batch = BatchHandlerExport::<Echo>::handle_batch(vec![
            event(0, "a").build().0,
            event(1, "retry").build().0,
        ]);
        (one, batch)
    });
    assert_eq!(results.0, Wit::Reject("never".into()));
    assert_eq!(results.1.len(), 2);
    assert_eq!(results.1[0], Wit::Ok);
}

// ---- state ----

use std::time::Duration;

use crate::state::{self, StateError};

/// Runs the `;`-separated commands in the event value: `set K V`,
/// `ttl K V MS`, `del K`, `get K` (emits the value, or `none`, to `got`),
/// `retry`, `reject`, `panic`.
struct Kv;

impl Consumer for Kv {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        for command in event.value_str()?.unwrap_or_default().split(';') {
            let words: Vec<&str> = command.split_whitespace().collect();
            match words[..] {
                ["set", k, v] => state::set(k, v)?,
                ["ttl", k, v, ms] => {
                    state::set_with_ttl(k, v, Duration::from_millis(ms.parse().unwrap()))?;
                }
                ["del", k] => state::delete(k)?,
                ["get", k] => {
                    let value = state::get(k).unwrap_or_else(|| b"none".to_vec());
                    ctx.emit(Record::to("got").key(k).value(value))?;
                }
                ["retry"] => return Err(Error::retry("later")),
                ["reject"] => return Err(Error::reject("no")),
                ["panic"] => panic!("consumer bug"),
                _ => return Err(Error::reject(format!("bad command `{command}`"))),
            }
        }
        Ok(())
    }
}

fn got(outcome: &Outcome) -> Vec<&str> {
    outcome
        .emitted
        .iter()
        .map(|r| r.value_str().unwrap().unwrap())
        .collect()
}

fn kv(commands: &str) -> EventBuilder {
    Event::builder().value(commands)
}

#[test]
fn state_persists_across_runs_and_a_call_sees_its_own_writes() {
    let harness = Harness::new();
    let outcome = harness.run::<Kv>(kv("get a; set a 1; get a; set b 2; del b; get b"));
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(got(&outcome), ["none", "1", "none"]);
    assert_eq!(got(&harness.run::<Kv>(kv("get a"))), ["1"]);
    assert_eq!(harness.state_get("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(harness.state_get("b"), None);
    assert_eq!(harness.state_entries(), [(b"a".to_vec(), b"1".to_vec())]);
}

#[test]
fn writes_of_a_failed_call_are_discarded() {
    let harness = Harness::new().state("a", "0");
    for failure in ["retry", "reject"] {
        let outcome = harness.run::<Kv>(kv(&format!("set a 1; set n 1; del a; get a; {failure}")));
        assert!(!outcome.is_ok());
        assert_eq!(got(&outcome), ["none"], "the call saw its own writes");
        assert_eq!(harness.state_get("a").as_deref(), Some(&b"0"[..]));
        assert_eq!(harness.state_get("n"), None);
    }
    let caught = std::panic::catch_unwind(|| harness.run::<Kv>(kv("set a 1; panic")));
    assert!(caught.is_err());
    assert_eq!(harness.state_get("a").as_deref(), Some(&b"0"[..]));
    assert!(harness.run::<Kv>(kv("set a 2")).is_ok());
    assert_eq!(harness.state_get("a").as_deref(), Some(&b"2"[..]));
}

#[test]
fn batch_writes_are_discarded_only_when_the_batch_is_retried() {
    let harness = Harness::new();
    let outcome = harness.run_batch::<Kv>([kv("set a 1"), kv("get a; set b 2; reject")]);
    assert_eq!(outcome.emitted[0].value(), Some(&b"1"[..]));
    assert_eq!(
        harness.state_get("b").as_deref(),
        Some(&b"2"[..]),
        "reject keeps"
    );

    let outcome = harness.run_batch::<Kv>([kv("set c 3"), kv("retry"), kv("set d 4")]);
    assert!(outcome.produced().is_empty());
    assert_eq!(harness.state_get("c"), None);
    assert_eq!(harness.state_get("d"), None);

    // A batch uses the store of its (first) event's partition.
    harness.run_batch::<Kv>([kv("set e 5").partition(3)]);
    assert_eq!(harness.state_get("e"), None);
    assert_eq!(harness.state_get_in(3, "e").as_deref(), Some(&b"5"[..]));
}

#[test]
fn each_partition_has_its_own_store() {
    let harness = Harness::new().state_in(1, "a", "one").state("a", "zero");
    let outcome = harness.run::<Kv>(kv("get a; set b 1").partition(1));
    assert_eq!(got(&outcome), ["one"]);
    assert_eq!(
        got(&harness.run::<Kv>(kv("get a; get b"))),
        ["zero", "none"]
    );
    assert_eq!(harness.state_get_in(1, "b").as_deref(), Some(&b"1"[..]));
    assert_eq!(harness.state_entries_in(1).len(), 2);
    assert!(harness.state_entries_in(7).is_empty());
}

#[test]
fn clones_copy_the_stores() {
    let harness = Harness::new().state("a", "1");
    let copy = harness.clone();
    copy.run::<Kv>(kv("set a 2"));
    copy.advance(Duration::from_secs(1));
    assert_eq!(harness.state_get("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(copy.state_get("a").as_deref(), Some(&b"2"[..]));
}

#[test]
fn ttl_expires_by_the_harness_clock() {
    let harness = Harness::new();
    let outcome = harness.run::<Kv>(kv(
        "ttl a 1 1000; get a; ttl z 1 0; get z; ttl p 1 10; set p 2",
    ));
    assert_eq!(
        got(&outcome),
        ["1", "1"],
        "a zero ttl lasts one millisecond"
    );
    assert!(harness.state_get("z").is_some());
    harness.advance(Duration::from_millis(1));
    assert_eq!(harness.state_get("z"), None);
    harness.advance(Duration::from_millis(998));
    assert_eq!(got(&harness.run::<Kv>(kv("get a"))), ["1"]);
    harness.advance(Duration::from_millis(1));
    assert_eq!(got(&harness.run::<Kv>(kv("get a"))), ["none"]);
    assert_eq!(harness.state_get("a"), None);
    assert_eq!(
        harness.state_get("p").as_deref(),
        Some(&b"2"[..]),
        "set drops the ttl"
    );

    // The ttl counts from the write, and a rewrite restarts it.
    harness.run::<Kv>(kv("ttl b 1 100"));
    harness.advance(Duration::from_millis(60));
    harness.run::<Kv>(kv("ttl b 2 100"));
    harness.advance(Duration::from_millis(60));
    assert_eq!(harness.state_get("b").as_deref(), Some(&b"2"[..]));
    // Sub-millisecond durations round up, for ttls and the clock alike.
    harness.with(|| state::set_with_ttl("c", "1", Duration::from_nanos(1)).unwrap());
    assert!(harness.state_get("c").is_some());
    harness.advance(Duration::from_nanos(1));
    assert_eq!(harness.state_get("c"), None);
}

#[test]
fn key_and_value_sizes_are_limited() {
    let harness = Harness::new();
    let results = harness.with(|| {
        [
            state::set(vec![b'k'; 4096], "v"),
            state::set(vec![b'k'; 4097], "v"),
            state::delete(vec![b'k'; 4097]),
            state::set("k", vec![0; 524_288]),
            state::set("k", vec![0; 524_289]),
            state::set_with_ttl("k", vec![0; 524_289], Duration::ZERO),
        ]
    });
    assert_eq!(
        results,
        [
            Ok(()),
            Err(StateError::KeyTooLarge(4096)),
            Err(StateError::KeyTooLarge(4096)),
            Ok(()),
            Err(StateError::ValueTooLarge(524_288)),
            Err(StateError::ValueTooLarge(524_288)),
        ]
    );
    assert_eq!(state::get(vec![b'k'; 4097]), None);

    let small = Harness::new().state_limits(StateLimits {
        max_key_bytes: 2,
        max_value_bytes: 3,
        ..StateLimits::default()
    });
    let results = small.with(|| [state::set("abc", ""), state::set("ab", "abcd")]);
    assert_eq!(
        results,
        [
            Err(StateError::KeyTooLarge(2)),
            Err(StateError::ValueTooLarge(3))
        ]
    );
}

#[test]
fn the_store_quota_counts_live_keys_and_values() {
    const HALF: usize = 512 * 1024;
    let harness = Harness::new().state_limits(StateLimits {
        state_mib: 1,
        ..StateLimits::default()
    });
    harness.with(|| {
        // "a" + 524288 bytes, then "b" + 524288: two bytes over 1 MiB.
        assert_eq!(state::set("a", vec![0; HALF]), Ok(()));
        assert_eq!(
            state::set("b", vec![0; HALF]),
            Err(StateError::QuotaExceeded(1))
        );
        // Exactly 1 MiB fits.
        assert_eq!(state::set("b", vec![0; HALF - 2]), Ok(()));
        assert_eq!(state::set("c", ""), Err(StateError::QuotaExceeded(1)));
        // Replacing a value counts the difference; shrinking always works.
        assert_eq!(
            state::set("b", vec![0; HALF - 1]),
            Err(StateError::QuotaExceeded(1))
        );
        assert_eq!(state::set("b", vec![0; 10]), Ok(()));
        assert_eq!(state::delete("a"), Ok(()));
        assert_eq!(state::set("c", vec![0; HALF]), Ok(()));
    });

    // Expired entries do not count, and neither do discarded writes.
    let harness = Harness::new().state_limits(StateLimits {
        state_mib: 1,
        ..StateLimits::default()
    });
    harness.with(|| state::set_with_ttl("a", vec![0; HALF], Duration::from_secs(1)).unwrap());
    assert_eq!(
        harness.with(|| state::set("b", vec![0; HALF])),
        Err(StateError::QuotaExceeded(1))
    );
    harness.advance(Duration::from_secs(1));
    assert_eq!(harness.with(|| state::set("b", vec![0; HALF])), Ok(()));

    // A store already over its quota (a lowered limit) can still shrink.
    let over = Harness::new()
        .state_limits(StateLimits {
            state_mib: 1,
            ..StateLimits::default()
        })
        .state("a", vec![0; HALF])
        .state("b", vec![0; HALF]);
    let outcome = over.run::<Kv>(kv("set c 1"));
    assert_eq!(
        outcome.reason(),
        Some("state store is full: `limits.state-mib` (1 MiB) would be exceeded")
    );
    assert!(over.run::<Kv>(kv("set a 1; del b; set c 1")).is_ok());
}

#[test]
fn a_call_writes_at_most_max_emits_distinct_keys() {
    let harness = Harness::new().max_emits(2);
    let results = harness.with(|| {
        [
            state::set("a", "1"),
            state::set("a", "2"),
            state::set(vec![b'x'; 5000], "refused, not counted"),
            state::delete("b"),
            state::set("c", "1"),
            state::delete("c"),
            state::set("b", "1"),
        ]
    });
    assert_eq!(
        results,
        [
            Ok(()),
            Ok(()),
            Err(StateError::KeyTooLarge(4096)),
            Ok(()),
            Err(StateError::TooMany(2)),
            Err(StateError::TooMany(2)),
            Ok(())
        ]
    );
    // The count is per call.
    assert_eq!(harness.with(|| state::set("c", "1")), Ok(()));

    // The quota is checked before the count.
    let harness = Harness::new().max_emits(1).state_limits(StateLimits {
        state_mib: 1,
        ..StateLimits::default()
    });
    let results = harness.with(|| {
        [
            state::set("a", vec![0; 524_288]),
            state::set("b", vec![0; 524_288]),
            state::set("b", ""),
        ]
    });
    assert_eq!(
        results,
        [
            Ok(()),
            Err(StateError::QuotaExceeded(1)),
            Err(StateError::TooMany(1))
        ]
    );

    let harness = Harness::new();
    let last = harness.with(|| {
        for i in 0..DEFAULT_MAX_EMITS {
            state::set(i.to_string(), "").unwrap();
        }
        state::set("one more", "")
    });
    assert_eq!(last, Err(StateError::TooMany(1000)));
    let outcome = harness.run::<Kv>(kv(&(0..=1000)
        .map(|i| format!("del {i}"))
        .collect::<Vec<_>>()
        .join(";")));
    assert_eq!(
        outcome.reason(),
        Some("more than 1000 state keys written in one call (`limits.max-emits`)")
    );
    assert_eq!(
        harness.state_entries().len(),
        1000,
        "the failed call deleted nothing"
    );
}

#[test]
fn scan_pages_in_key_order_with_the_host_caps() {
    let harness = Harness::new()
        .state("j", "before")
        .state("l", "after")
        .state("k", "the prefix itself");
    harness.with(|| {
        for i in 0..1000 {
            state::set(format!("k/{i:04}"), i.to_string()).unwrap();
        }
        state::set_with_ttl("k/0005", "expiring", Duration::from_millis(5)).unwrap();
    });
    // At most 1000 distinct keys per call.
    for chunk in [1000..2000, 2000..2500] {
        harness.with(|| {
            for i in chunk {
                state::set(format!("k/{i:04}"), i.to_string()).unwrap();
            }
        });
    }
    harness.advance(Duration::from_millis(5));
    harness.with(|| {
        let page = state::scan("k/", None, 3);
        let keys: Vec<_> = page.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"k/0000", b"k/0001", b"k/0002"]);
        assert_eq!(page[2].1, b"2");

        let next = state::scan("k/", Some(b"k/0002"), 3);
        let keys: Vec<_> = next.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(
            keys,
            [b"k/0003", b"k/0004", b"k/0006"],
            "expired k/0005 skipped"
        );
        // `after` need not be a key in the store, nor start with the prefix.
        assert_eq!(state::scan("k/", Some(b"k/00055"), 1)[0].0, b"k/0006");
        assert_eq!(state::scan("k/", Some(b"a"), 1)[0].0, b"k/0000");
        assert!(state::scan("k/", Some(b"k/2499"), 10).is_empty());
        assert!(state::scan("k/", None, 0).is_empty());
        assert_eq!(state::scan("k/", None, 5000).len(), 1000, "capped");

        let all: Vec<_> = state::scan_prefix("k/").collect();
        assert_eq!(all.len(), 2499);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(all.last().unwrap().1, b"2499");
        assert_eq!(state::scan_prefix("").count(), 2502);
        assert_eq!(state::scan_prefix("k").count(), 2500);
        assert_eq!(state::scan_prefix("nothing").count(), 0);
    });
}

#[test]
fn a_scan_page_holds_at_most_4_mib() {
    let harness = Harness::new();
    harness.with(|| {
        for i in 0..10 {
            state::set(format!("big/{i}"), vec![i; 500_000]).unwrap();
        }
        // 8 entries of 500,005 bytes fit in 4 MiB, 9 do not.
        let page = state::scan("big/", None, 100);
        assert_eq!(page.len(), 8);
        let rest = state::scan("big/", Some(&page[7].0), 100);
        assert_eq!(rest.len(), 2);
        assert_eq!(state::scan_prefix("big/").count(), 10);
    });
    // A single entry larger than a page is still returned, alone.
    let harness = Harness::new().state_limits(StateLimits {
        max_value_bytes: 5 << 20,
        ..StateLimits::default()
    });
    harness.with(|| {
        state::set("a", vec![0; 5 << 20]).unwrap();
        state::set("b", "").unwrap();
        assert_eq!(state::scan("", None, 10).len(), 1);
        assert_eq!(state::scan_prefix("").count(), 2);
    });
}

#[cfg(feature = "json")]
#[test]
fn json_helpers_round_trip_and_reject_bad_values() {
    use serde_json::{Value, json};

    let harness = Harness::new()
        .state_json("j", &json!({"n": 1}))
        .state("bad", "{");
    harness.with(|| {
        assert_eq!(state::get_json::<Value>("j"), Ok(Some(json!({"n": 1}))));
        assert_eq!(state::get_json::<Value>("missing"), Ok(None));
        let error = state::get_json::<Value>("bad").unwrap_err();
        assert!(error.is_reject());
        assert!(
            error
                .message()
                .starts_with("state value of key `bad` is not the expected JSON"),
            "{error}"
        );
        state::set_json("list", &[1, 2]).unwrap();
        let error = state::set_json(vec![0; 5000], &1).unwrap_err();
        assert_eq!(
            error.message(),
            "state key is longer than `limits.max-state-key-bytes` (4096 bytes)"
        );
    });
    assert_eq!(harness.state_get("list").as_deref(), Some(&b"[1,2]"[..]));
}
