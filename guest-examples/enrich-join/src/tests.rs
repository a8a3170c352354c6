use weir_sdk::json::{Value, json};
use weir_sdk::prelude::*;

use super::{CUSTOMERS, EnrichJoin, ORDERS, OUTPUT};

fn customer(id: &str, value: Value) -> weir_sdk::EventBuilder {
    Event::builder().topic(CUSTOMERS).key(id).json(&value)
}

fn order(customer_id: &str, value: Value) -> weir_sdk::EventBuilder {
    Event::builder()
        .topic(ORDERS)
        .key(customer_id)
        .header("trace-id", "t-1")
        .json(&value)
}

/// Runs one order and returns the joined value it produced.
fn join(harness: &Harness, event: weir_sdk::EventBuilder) -> Value {
    let outcome = harness.run::<EnrichJoin>(event);
    let [record] = outcome.produced() else {
        panic!("one record expected: {outcome:?}")
    };
    assert_eq!(record.topic(), OUTPUT);
    record.value_json().unwrap()
}

#[test]
fn orders_get_the_latest_customer_or_null() {
    let harness = Harness::new().output_topics([OUTPUT]);
    assert_eq!(
        join(&harness, order("c-1", json!({"item": "tea"}))),
        json!({"item": "tea", "customer": null})
    );

    let outcome = harness.run::<EnrichJoin>(customer("c-1", json!({"name": "Ada"})));
    assert!(outcome.is_ok() && outcome.emitted.is_empty(), "{outcome:?}");
    harness.run::<EnrichJoin>(customer("c-2", json!({"name": "Bob"})));
    assert_eq!(
        join(&harness, order("c-1", json!({"item": "tea"}))),
        json!({"item": "tea", "customer": {"name": "Ada"}})
    );

    harness.run::<EnrichJoin>(customer("c-1", json!({"name": "Ada L."})));
    let outcome = harness.run::<EnrichJoin>(order("c-1", json!({"item": "cake"})));
    let record = &outcome.produced()[0];
    assert_eq!(record.key(), Some(&b"c-1"[..]));
    assert_eq!(record.header("trace-id"), Some(&b"t-1"[..]));
    assert_eq!(
        record.value_json::<Value>().unwrap(),
        json!({"item": "cake", "customer": {"name": "Ada L."}})
    );
}

#[test]
fn a_customer_tombstone_deletes_the_customer() {
    let harness = Harness::new().state_json("c/c-1", &json!({"name": "Ada"}));
    let outcome = harness.run::<EnrichJoin>(Event::builder().topic(CUSTOMERS).key("c-1"));
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(harness.state_get("c/c-1"), None);
    assert_eq!(
        join(&harness, order("c-1", json!({})))["customer"],
        Value::Null
    );
}

#[test]
fn only_co_partitioned_records_meet() {
    let harness = Harness::new();
    harness.run::<EnrichJoin>(customer("c-1", json!({"name": "Ada"})).partition(2));
    assert_eq!(
        join(&harness, order("c-1", json!({})).partition(2))["customer"],
        json!({"name": "Ada"})
    );
    assert_eq!(
        join(&harness, order("c-1", json!({})).partition(0))["customer"],
        Value::Null,
        "a customer in partition 2 is invisible to partition 0"
    );
}

#[test]
fn rejects_missing_keys_bad_json_and_other_topics() {
    let harness = Harness::new();
    let reason = |event: weir_sdk::EventBuilder| {
        harness.run::<EnrichJoin>(event).reason().map(str::to_owned)
    };
    assert_eq!(
        reason(Event::builder().topic(ORDERS).json(&json!({}))).as_deref(),
        Some("event has no key: the key must be the customer id")
    );
    assert_eq!(
        reason(order("c-1", json!([1]))).as_deref(),
        Some("order is not a JSON object")
    );
    assert!(
        reason(Event::builder().topic(CUSTOMERS).key("c-1").value("{"))
            .unwrap()
            .starts_with("value is not the expected JSON")
    );
    assert_eq!(
        reason(Event::builder().topic("payments").key("c-1")).as_deref(),
        Some("unexpected input topic `payments`")
    );
    assert!(harness.state_entries().is_empty());
}
