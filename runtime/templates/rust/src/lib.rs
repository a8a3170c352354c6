//! `{{name}}`: a weir consumer.
//!
//! Reads JSON objects from the manifest's input topics, adds the field
//! `"tag"` (config key `tag`) and emits the result to `{{name}}-out` with the
//! same key and headers. A value that is not a JSON object is rejected.

use weir_sdk::json::{Map, Value};
use weir_sdk::prelude::*;

/// Where records go; must be listed in `{{name}}.toml`'s `output-topics`.
pub const OUTPUT: &str = "{{name}}-out";

/// The consumer (any name works; the export macro below names it).
#[derive(Debug)]
pub struct Module;

impl Consumer for Module {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        // `?` on a parse error rejects the event with the parser's message.
        let mut object: Map<String, Value> = event.value_json()?;
        object.insert("tag".into(), config::get_or("tag", "none").into());
        weir_sdk::debug!("tagged the event at offset {}", event.offset());
        ctx.emit(event.forward_to(OUTPUT).json(&object)?)?;
        Ok(())
    }
}

// World `consumer`: one call per event. For one call per batch, implement
// `Consumer::on_batch` and use `weir_sdk::export_batch_consumer!` instead.
weir_sdk::export_consumer!(Module);

#[cfg(test)]
mod tests {
    use weir_sdk::prelude::*;

    use super::{Module, OUTPUT};

    #[test]
    fn tags_json_objects_and_rejects_the_rest() {
        let harness = Harness::new().config("tag", "t1").output_topics([OUTPUT]);
        let outcome = harness.run::<Module>(Event::builder().key("k").value(r#"{"a":1}"#));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(outcome.emitted[0].value_json::<weir_sdk::json::Value>().unwrap()["tag"], "t1");
        let outcome = harness.run::<Module>(Event::builder().value("not json"));
        assert!(outcome.reason().is_some());
    }
}
