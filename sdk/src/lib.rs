//! Write [weir](https://example.invalid/weir) Kafka consumers in Rust, built
//! as WebAssembly components for `wasm32-wasip2`.
//!
//! A consumer is a type implementing [`Consumer`] plus one export macro:
//! [`export_consumer!`] (world `consumer`: the host calls
//! [`Consumer::on_event`] once per event) or [`export_batch_consumer!`]
//! (world `batch-consumer`: the host calls [`Consumer::on_batch`] with
//! several events of one partition). A handler returns `Ok(())`, or an
//! [`Error`] that tells the host to [retry](Error::retry) the event later or
//! [reject](Error::reject) it for good; `?` on any error rejects. It may
//! [`emit`](Context::emit) records to the topics in its manifest's
//! `output-topics`, [log] through the host, read the manifest's
//! [`config`] table and keep durable keyed [`state`].
//!
//! The guest crate depends on `weir-sdk` only and is built as a `cdylib`:
//! `cargo build --target wasm32-wasip2 --release` produces the component
//! directly, to be placed next to a `<name>.toml` manifest.
//!
//! # Example
//!
//! Enrich JSON orders with a total and a configured region:
//!
//! ```
//! use weir_sdk::json::{Map, Value};
//! use weir_sdk::prelude::*;
//!
//! struct Enrich;
//!
//! impl Consumer for Enrich {
//!     fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
//!         let mut order: Map<String, Value> = event.value_json()?;
//!         if let (Some(price), Some(qty)) = (order["price"].as_f64(), order["qty"].as_f64()) {
//!             order.insert("total".into(), (price * qty).into());
//!         }
//!         order.insert("region".into(), config::require("region")?.into());
//!         weir_sdk::debug!("enriched order at offset {}", event.offset());
//!         ctx.emit(event.forward_to("orders-enriched").json(&order)?)?;
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export_consumer!(Enrich);
//!
//! // A native unit test of the same consumer:
//! let outcome = Harness::new()
//!     .config("region", "eu-west")
//!     .output_topics(["orders-enriched"])
//!     .run::<Enrich>(Event::builder().key("o-1").value(r#"{"price": 2.5, "qty": 4}"#));
//! assert!(outcome.is_ok());
//! let out: Value = outcome.emitted[0].value_json()?;
//! assert_eq!(out["total"], 10.0);
//! assert_eq!(out["region"], "eu-west");
//!
//! // Not JSON: rejected, with the reason the host will report.
//! let outcome = Harness::new().run::<Enrich>(Event::builder().value("nope"));
//! assert!(outcome.reason().unwrap().starts_with("value is not the expected JSON"));
//! # Ok::<(), Error>(())
//! ```
//!
//! # State
//!
//! [`state`] is a byte key-value store the host keeps for the module, one
//! per input partition, backed by a compacted changelog topic so it
//! survives restarts and rebalances. Writes follow the event's verdict like
//! emits: kept when the handler returns `Ok`, discarded on a retry or
//! reject. Keys must be co-partitioned with the input (the record key, or
//! something derived from it), because an event only sees the store of its
//! own partition. A refused write ([`StateError`]: a key, value, store or
//! per-call limit) rejects the event with `?`.
//!
//! Count clicks per user, and test it with the [`testing::Harness`], whose
//! store outlives its calls:
//!
//! ```
//! use weir_sdk::prelude::*;
//!
//! struct CountClicks;
//!
//! impl Consumer for CountClicks {
//!     fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
//!         let user = event.key().or_reject("click without a user key")?;
//!         let clicks = state::get_json::<u64>(user)?.unwrap_or(0) + 1;
//!         state::set_json(user, &clicks)?;
//!         ctx.emit(Record::to("click-counts").key(user).json(&clicks)?)?;
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export_consumer!(CountClicks);
//!
//! let harness = Harness::new().state("ada", "41");
//! let outcome = harness.run::<CountClicks>(Event::builder().key("ada"));
//! assert_eq!(outcome.emitted[0].value_str()?, Some("42"));
//! harness.run::<CountClicks>(Event::builder().key("bob"));
//! assert_eq!(harness.state_get("ada").as_deref(), Some(&b"42"[..]));
//! assert_eq!(harness.state_get("bob").as_deref(), Some(&b"1"[..]));
//!
//! // A rejected event leaves the store as it was.
//! let outcome = harness.run::<CountClicks>(Event::builder());
//! assert_eq!(outcome.reason(), Some("click without a user key"));
//! # Ok::<(), Error>(())
//! ```
//!
//! # Native tests
//!
//! Off `wasm32` there is no host, so emit, log, config and state calls go
//! to a [`testing::Harness`] when one is running on the thread (and to an
//! empty stand-in otherwise). Tests of a guest crate therefore run with
//! plain `cargo test --target <host triple>`.
//!
//! # Layout
//!
//! [`Consumer`] (`consumer`), the export macros (`export`), [`Event`] (`event`),
//! [`Record`] and [`EmitError`] (`record`), [`Context`] (`context`),
//! [`Error`] and [`Disposition`] (`error`), [`log`], [`config`],
//! [`state`] and [`StateError`], [`testing`]; the WIT bindings, generated
//! from `../wit` at compile time, stay private.
//!
//! # Features
//!
//! `json` (default): [`Event::value_json`], [`RecordBuilder::json`],
//! [`state::get_json`] and [`state::set_json`], and the re-exported
//! [`json`] (`serde_json`).
#![deny(missing_docs)]

extern crate self as weir_sdk;

mod bindings;
pub mod config;
mod consumer;
mod context;
mod error;
mod event;
mod export;
mod host;
pub mod log;
mod record;
pub mod state;
pub mod testing;

pub use consumer::Consumer;
pub use context::Context;
pub use error::{Disposition, Error, ErrorKind, ResultExt};
pub use event::{Event, EventBuilder};
pub use record::{EmitError, Record, RecordBuilder};
pub use state::StateError;

/// `serde_json`, re-exported so guest crates need no extra dependency for
/// [`json::Value`] and friends.
#[cfg(feature = "json")]
pub use serde_json as json;

/// Everything a consumer usually needs: `use weir_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::config;
    pub use crate::state;
    pub use crate::testing::Harness;
    pub use crate::{Consumer, Context, Error, Event, Record, ResultExt};
}

/// Items used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::{batch, consumer};
    pub use crate::export::{BatchHandlerExport, HandlerExport};
    pub use wit_bindgen;
}
