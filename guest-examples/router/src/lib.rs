//! `router`: a batch consumer fanning `orders` out by content.
//!
//! The JSON field `country` picks the topic: `orders-eu` for the countries
//! in config `eu` (comma separated, e.g. `DE,FR,NL`), `orders-us` for `US`,
//! `orders-other` for anything else (case-insensitive; a missing country is
//! "other"). An order whose `total` (or, without one, `price`) is a number
//! greater than config `audit-above` also goes to `orders-audit`. Key,
//! value and headers are kept. Values that are not JSON are rejected.
//!
//! Config `topic-prefix` (default `orders`) replaces the `orders` part of
//! the four output topic names.
//!
//! It uses world `batch-consumer` and overrides `on_batch` to read its
//! configuration once per batch rather than once per event.

use weir_sdk::json::Value;
use weir_sdk::prelude::*;

/// Default prefix of the output topics, all listed in the manifest's
/// `output-topics`: `<prefix>-eu`, `<prefix>-us`, `<prefix>-other` and
/// `<prefix>-audit`.
pub const DEFAULT_PREFIX: &str = "orders";

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct Router;

/// The routing configuration, read once per call.
struct Rules {
    eu: Vec<String>,
    audit_above: Option<f64>,
    prefix: String,
}

impl Rules {
    fn load() -> Result<Self, Error> {
        Ok(Self {
            eu: config::list("eu"),
            audit_above: config::parse("audit-above")?,
            prefix: config::get_or("topic-prefix", DEFAULT_PREFIX),
        })
    }

    /// Decides every destination before emitting anything, so an event that
    /// is rejected has emitted nothing (emits of a batch cannot be undone).
    fn route(&self, ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let order: Value = event.value_json()?;
        let region = match order.get("country").and_then(Value::as_str) {
            Some(c) if self.eu.iter().any(|eu| eu.eq_ignore_ascii_case(c)) => "eu",
            Some(c) if c.eq_ignore_ascii_case("US") => "us",
            _ => "other",
        };
        let amount = order.get("total").or_else(|| order.get("price"));
        let audit = matches!(
            (amount.and_then(Value::as_f64), self.audit_above),
            (Some(amount), Some(limit)) if amount > limit
        );
        ctx.emit(event.forward_to(format!("{}-{region}", self.prefix)))?;
        if audit {
            ctx.emit(event.forward_to(format!("{}-audit", self.prefix)))?;
        }
        Ok(())
    }
}

impl Consumer for Router {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        Rules::load()?.route(ctx, event)
    }

    fn on_batch(ctx: &mut Context, events: &[Event]) -> Vec<Result<(), Error>> {
        match Rules::load() {
            Ok(rules) => events.iter().map(|e| rules.route(ctx, e)).collect(),
            Err(error) => vec![Err(error); events.len()],
        }
    }
}

weir_sdk::export_batch_consumer!(Router);

#[cfg(test)]
mod tests;
