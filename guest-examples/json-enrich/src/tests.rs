use weir_sdk::Disposition;
use weir_sdk::json::{Value, json};
use weir_sdk::prelude::*;

use super::{JsonEnrich, OUTPUT};

fn harness() -> Harness {
    Harness::new()
        .config("region", "eu-west")
        .output_topics([OUTPUT])
}

fn order(value: Value) -> weir_sdk::EventBuilder {
    Event::builder()
        .topic("orders")
        .key("order-1")
        .header("trace-id", "abc")
        .json(&value)
}

#[test]
fn adds_region_total_and_header_keeping_key_and_headers() {
    let outcome = harness().run::<JsonEnrich>(order(json!({"price": 2.5, "quantity": 4, "id": 1})));
    assert!(outcome.is_ok(), "{outcome:?}");
    let [record] = outcome.produced() else {
        panic!("one record expected: {outcome:?}")
    };
    assert_eq!(record.topic(), OUTPUT);
    assert_eq!(record.key(), Some(&b"order-1"[..]));
    assert_eq!(record.header("trace-id"), Some(&b"abc"[..]));
    assert_eq!(record.header("weir-enriched-by"), Some(&b"json-enrich"[..]));
    let value: Value = record.value_json().unwrap();
    assert_eq!(
        value,
        json!({"price": 2.5, "quantity": 4, "id": 1, "region": "eu-west", "total": 10.0})
    );
}

#[test]
fn integer_total_stays_an_integer_and_non_numbers_get_none() {
    let outcome = harness().run::<JsonEnrich>(order(json!({"price": 3, "quantity": 7})));
    assert_eq!(
        outcome.emitted[0].value_json::<Value>().unwrap()["total"],
        json!(21)
    );

    let outcome = harness().run::<JsonEnrich>(order(json!({"price": "3", "quantity": 7})));
    let value: Value = outcome.emitted[0].value_json().unwrap();
    assert_eq!(
        value,
        json!({"price": "3", "quantity": 7, "region": "eu-west"})
    );
}

#[test]
fn tombstone_is_forwarded_as_a_tombstone() {
    let outcome = harness().run::<JsonEnrich>(Event::builder().key("order-1").tombstone());
    assert!(outcome.is_ok());
    assert!(outcome.emitted[0].is_tombstone());
    assert_eq!(outcome.emitted[0].key(), Some(&b"order-1"[..]));
}

#[test]
fn rejects_values_that_are_not_json_objects() {
    let outcome = harness().run::<JsonEnrich>(order(json!([1, 2])));
    assert_eq!(
        outcome.disposition(),
        Disposition::Reject("value is not a JSON object".into())
    );
    let outcome = harness().run::<JsonEnrich>(Event::builder().value("not json"));
    assert!(
        outcome
            .reason()
            .unwrap()
            .starts_with("value is not the expected JSON")
    );
    assert!(outcome.produced().is_empty());
}

#[test]
fn missing_region_is_rejected_with_the_key_name() {
    let outcome = Harness::new().run::<JsonEnrich>(order(json!({})));
    assert_eq!(outcome.reason(), Some("config key `region` is not set"));
}
