//! `filter`: forwards the JSON events of `orders` whose top-level field
//! `field` (config) is the string `equals` (config) to `orders-paid`, with
//! key, value and headers unchanged; other JSON events are dropped. A value
//! that is not JSON, tombstones included, is rejected. Config `output`
//! overrides the output topic.

use weir_sdk::json::Value;
use weir_sdk::prelude::*;

/// Where matching events go; listed in the manifest's `output-topics`.
pub const OUTPUT: &str = "orders-paid";

/// Config key overriding the output topic.
pub const OUTPUT_KEY: &str = "output";

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct Filter;

impl Consumer for Filter {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let field = config::require("field")?;
        let equals = config::require("equals")?;
        let value: Value = event.value_json()?;
        if value.get(&field).and_then(Value::as_str) == Some(equals.as_str()) {
            ctx.emit(event.forward_to(config::get_or(OUTPUT_KEY, OUTPUT)))?;
        } else {
            weir_sdk::trace!("dropped: `{field}` is not \"{equals}\"");
        }
        Ok(())
    }
}

weir_sdk::export_consumer!(Filter);

#[cfg(test)]
mod tests {
    use weir_sdk::EventBuilder;
    use weir_sdk::json::json;
    use weir_sdk::prelude::*;

    use super::{Filter, OUTPUT};

    fn run(event: EventBuilder) -> weir_sdk::testing::Outcome {
        Harness::new()
            .config("field", "status")
            .config("equals", "paid")
            .output_topics([OUTPUT])
            .run::<Filter>(event)
    }

    #[test]
    fn forwards_matching_events_unchanged() {
        let event = Event::builder()
            .key("o-1")
            .header("h", "v")
            .value(r#"{"status":"paid","n":1}"#);
        let outcome = run(event.clone());
        assert!(outcome.is_ok());
        let [record] = outcome.produced() else {
            panic!("{outcome:?}")
        };
        assert_eq!(*record, event.build().forward_to(OUTPUT).build());
    }

    #[test]
    fn drops_other_json_events() {
        for value in [
            json!({"status": "open"}),
            json!({"status": 1}),
            json!({}),
            json!([1]),
        ] {
            let outcome = run(Event::builder().json(&value));
            assert!(outcome.is_ok(), "{value}: {outcome:?}");
            assert!(outcome.emitted.is_empty(), "{value}");
        }
    }

    #[test]
    fn rejects_what_is_not_json() {
        assert!(
            run(Event::builder().value("paid"))
                .reason()
                .unwrap()
                .contains("JSON")
        );
        assert!(run(Event::builder().tombstone()).disposition() != weir_sdk::Disposition::Ok);
    }
}
