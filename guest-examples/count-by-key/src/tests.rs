use weir_sdk::prelude::*;

use super::{CountByKey, OUTPUT};

fn click(user: &str) -> weir_sdk::EventBuilder {
    Event::builder().topic("clicks").key(user).value("{}")
}

/// Runs one click and returns the count it published.
fn count(harness: &Harness, user: &str) -> String {
    let outcome = harness.run::<CountByKey>(click(user));
    let [record] = outcome.produced() else {
        panic!("one record expected: {outcome:?}")
    };
    assert_eq!(record.topic(), OUTPUT);
    assert_eq!(record.key(), Some(user.as_bytes()));
    record.value_str().unwrap().unwrap().to_owned()
}

#[test]
fn counts_per_key_and_publishes_every_new_count() {
    let harness = Harness::new().output_topics([OUTPUT]);
    assert_eq!(count(&harness, "ada"), "1");
    assert_eq!(count(&harness, "ada"), "2");
    assert_eq!(count(&harness, "bob"), "1");
    assert_eq!(count(&harness, "ada"), "3");
    assert_eq!(harness.state_get("ada").as_deref(), Some(&b"3"[..]));
    assert_eq!(harness.state_get("bob").as_deref(), Some(&b"1"[..]));
}

#[test]
fn continues_from_the_stored_count() {
    let harness = Harness::new().state("ada", "41");
    assert_eq!(count(&harness, "ada"), "42");
}

#[test]
fn a_failed_event_does_not_count() {
    let harness = Harness::new().output_topics(["not-click-counts"]);
    let outcome = harness.run::<CountByKey>(click("ada"));
    assert!(!outcome.is_ok());
    assert_eq!(harness.state_get("ada"), None);
}

#[test]
fn rejects_events_without_a_key_and_corrupt_or_full_counts() {
    let harness = Harness::new()
        .state("bad", "x")
        .state("full", u64::MAX.to_string());
    let outcome = harness.run::<CountByKey>(Event::builder().value("{}"));
    assert_eq!(
        outcome.reason(),
        Some("event has no key: count-by-key counts per record key")
    );
    let outcome = harness.run::<CountByKey>(click("bad"));
    assert_eq!(
        outcome.reason(),
        Some("the stored count is not a decimal number")
    );
    let outcome = harness.run::<CountByKey>(click("full"));
    assert_eq!(outcome.reason(), Some("the count does not fit in 64 bits"));
}

#[test]
fn keys_over_the_state_limit_are_rejected() {
    let outcome = Harness::new().run::<CountByKey>(click(&"k".repeat(5000)));
    assert_eq!(
        outcome.reason(),
        Some("state key is longer than `limits.max-state-key-bytes` (4096 bytes)")
    );
}
