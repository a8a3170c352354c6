use std::time::Duration;

use weir_sdk::prelude::*;

use super::{DEFAULT_TTL, Dedupe, OUTPUT, parse_duration};

fn harness() -> Harness {
    Harness::new().output_topics([OUTPUT])
}

fn event(id: &str, value: &str) -> weir_sdk::EventBuilder {
    Event::builder()
        .topic("events")
        .key(id)
        .value(value)
        .header("trace-id", "t-1")
}

#[test]
fn forwards_the_first_event_unchanged_and_drops_its_duplicates() {
    let harness = harness();
    let outcome = harness.run::<Dedupe>(event("e-1", "first"));
    assert!(outcome.is_ok(), "{outcome:?}");
    let [record] = outcome.produced() else {
        panic!("one record expected: {outcome:?}")
    };
    assert_eq!(record.topic(), OUTPUT);
    assert_eq!(record.key(), Some(&b"e-1"[..]));
    assert_eq!(record.value(), Some(&b"first"[..]));
    assert_eq!(record.header("trace-id"), Some(&b"t-1"[..]));

    let outcome = harness.run::<Dedupe>(event("e-1", "again"));
    assert!(outcome.is_ok());
    assert!(outcome.emitted.is_empty(), "a duplicate is dropped");

    let outcome = harness.run::<Dedupe>(event("e-2", "other id"));
    assert_eq!(outcome.produced().len(), 1);
}

#[test]
fn an_id_is_forgotten_after_the_ttl() {
    let harness = harness();
    harness.run::<Dedupe>(event("e-1", "a"));
    harness.advance(DEFAULT_TTL - Duration::from_millis(1));
    assert!(harness.run::<Dedupe>(event("e-1", "b")).emitted.is_empty());
    harness.advance(Duration::from_millis(1));
    assert_eq!(harness.state_get("e-1"), None);
    assert_eq!(harness.run::<Dedupe>(event("e-1", "c")).produced().len(), 1);

    let harness = harness.config("ttl", "30s");
    harness.run::<Dedupe>(event("e-9", "a"));
    harness.advance(Duration::from_secs(30));
    assert_eq!(harness.run::<Dedupe>(event("e-9", "b")).produced().len(), 1);
}

#[test]
fn an_event_that_fails_is_not_remembered() {
    // The output topic is not allowed: the emit fails, the event is
    // rejected and its state write discarded with it.
    let harness = Harness::new().output_topics(["elsewhere"]);
    let outcome = harness.run::<Dedupe>(event("e-1", "a"));
    assert_eq!(
        outcome.reason(),
        Some("topic `events-deduped` is not in the module's output-topics")
    );
    assert_eq!(harness.state_get("e-1"), None);
}

#[test]
fn ids_are_remembered_per_partition() {
    let harness = harness();
    harness.run::<Dedupe>(event("e-1", "a").partition(1));
    assert!(harness.state_get_in(1, "e-1").is_some());
    let elsewhere = harness.run::<Dedupe>(event("e-1", "a").partition(0));
    assert_eq!(elsewhere.produced().len(), 1, "keyed producers avoid this");
}

#[test]
fn events_without_a_key_are_rejected() {
    let outcome = harness().run::<Dedupe>(Event::builder().value("no id"));
    assert_eq!(
        outcome.reason(),
        Some("event has no key: dedupe uses the record key as the event id")
    );
}

#[test]
fn a_bad_ttl_rejects_with_the_config_key() {
    let outcome = harness()
        .config("ttl", "soon")
        .run::<Dedupe>(event("e-1", "a"));
    assert_eq!(
        outcome.reason(),
        Some(
            "config key `ttl` has invalid value `soon`: \
             expected a number followed by ms, s, m, h or d"
        )
    );
    assert!(outcome.produced().is_empty());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("1 d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(
        parse_duration("10"),
        Err("the unit is missing (ms, s, m, h or d)".into())
    );
    assert_eq!(
        parse_duration("5y"),
        Err("unknown unit `y` (ms, s, m, h or d)".into())
    );
    assert_eq!(
        parse_duration("0s"),
        Err("the duration must be positive".into())
    );
    assert_eq!(
        parse_duration("99999999999999999d"),
        Err("the duration is too long".into())
    );
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("").is_err());
}
