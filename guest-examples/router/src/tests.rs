use weir_sdk::json::{Value, json};
use weir_sdk::prelude::*;

use super::Router;

const EU: &str = "orders-eu";
const US: &str = "orders-us";
const OTHER: &str = "orders-other";
const AUDIT: &str = "orders-audit";

fn harness() -> Harness {
    Harness::new()
        .config("eu", "DE, FR,NL")
        .config("audit-above", "1000")
        .output_topics([EU, US, OTHER, AUDIT])
}

fn order(offset: i64, value: Value) -> weir_sdk::EventBuilder {
    Event::builder()
        .offset(offset)
        .key(format!("o-{offset}"))
        .header("h", "1")
        .json(&value)
}

fn topics(records: &[Record]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|r| (r.topic(), r.key_str().unwrap().unwrap()))
        .collect()
}

#[test]
fn routes_a_batch_by_country_and_audits_large_orders() {
    let outcome = harness().run_batch::<Router>([
        order(0, json!({"country": "DE", "total": 10})),
        order(1, json!({"country": "us", "price": 1500.5})),
        order(2, json!({"country": "JP", "total": 2000, "price": 1})),
        order(3, json!({"total": 1000})),
        order(4, json!({"country": "FR", "total": "5000"})),
    ]);
    assert!(outcome.results.iter().all(Result::is_ok), "{outcome:?}");
    assert_eq!(
        topics(outcome.produced()),
        [
            (EU, "o-0"),
            (US, "o-1"),
            (AUDIT, "o-1"),
            (OTHER, "o-2"),
            (AUDIT, "o-2"),
            (OTHER, "o-3"),
            (EU, "o-4"),
        ]
    );
    let first = &outcome.emitted[0];
    assert_eq!(first.header("h"), Some(&b"1"[..]));
    assert_eq!(first.value_json::<Value>().unwrap()["country"], "DE");
}

#[test]
fn a_bad_event_is_rejected_without_emitting_and_the_rest_go_through() {
    let outcome = harness().run_batch::<Router>([
        order(0, json!({"country": "NL"})),
        Event::builder().offset(1).value("not json"),
        order(2, json!({"country": "US"})),
    ]);
    assert!(outcome.results[0].is_ok() && outcome.results[2].is_ok());
    assert!(outcome.results[1].as_ref().unwrap_err().is_reject());
    assert_eq!(topics(&outcome.emitted), [(EU, "o-0"), (US, "o-2")]);
}

#[test]
fn bad_config_rejects_every_event_and_on_event_routes_too() {
    let bad = Harness::new().config("audit-above", "lots");
    let outcome = bad.run_batch::<Router>([order(0, json!({})), order(1, json!({}))]);
    assert_eq!(outcome.results.len(), 2);
    assert!(outcome.emitted.is_empty());

    let outcome = harness().run::<Router>(order(7, json!({"country": "de"})));
    assert_eq!(topics(outcome.produced()), [(EU, "o-7")]);
}
