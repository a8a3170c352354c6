//! `json-enrich`: a map from `orders` to `orders-enriched`.
//!
//! Each value must be a JSON object. The output keeps the key and headers,
//! adds header `weir-enriched-by: json-enrich`, and its value is the object
//! plus `"region"` (config key `region`) and, when `price` and `quantity`
//! are both numbers, `"total"`: their product (an integer when both are
//! integers and it fits, a float otherwise). A tombstone is forwarded as a
//! tombstone; any other value that is not a JSON object is rejected. Config
//! `output` overrides the output topic.

use weir_sdk::json::{Map, Number, Value};
use weir_sdk::prelude::*;

/// Where enriched orders go; listed in the manifest's `output-topics`.
pub const OUTPUT: &str = "orders-enriched";

/// Config key overriding the output topic.
pub const OUTPUT_KEY: &str = "output";

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct JsonEnrich;

impl Consumer for JsonEnrich {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let mut record = event
            .forward_to(config::get_or(OUTPUT_KEY, OUTPUT))
            .header("weir-enriched-by", "json-enrich");
        if !event.is_tombstone() {
            let Value::Object(mut order) = event.value_json()? else {
                return Err(Error::reject("value is not a JSON object"));
            };
            order.insert("region".into(), config::require("region")?.into());
            if let Some(total) = total(&order) {
                order.insert("total".into(), total);
            }
            record = record.json(&order)?;
        }
        ctx.emit(record)?;
        Ok(())
    }
}

/// `price * quantity` when both are numbers and the product is finite.
fn total(order: &Map<String, Value>) -> Option<Value> {
    let price = order.get("price")?.as_number()?;
    let quantity = order.get("quantity")?.as_number()?;
    let exact = price
        .as_i64()
        .zip(quantity.as_i64())
        .and_then(|(p, q)| p.checked_mul(q));
    match exact {
        Some(product) => Some(product.into()),
        None => Number::from_f64(price.as_f64()? * quantity.as_f64()?).map(Value::Number),
    }
}

weir_sdk::export_consumer!(JsonEnrich);

#[cfg(test)]
mod tests;
