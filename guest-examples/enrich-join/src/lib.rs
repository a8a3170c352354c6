//! `enrich-join`: joins `orders` with the latest record of their customer
//! from `customers` (a left join), writing to `orders-with-customer`.
//!
//! - A `customers` event (key: customer id, value: the customer as JSON) is
//!   kept in state under `c/<id>`; a tombstone deletes it. Nothing is
//!   emitted.
//! - An `orders` event (key: customer id, value: a JSON object) is emitted
//!   to `orders-with-customer` with the same key and headers, its value the
//!   order plus a `"customer"` field: the stored customer, or `null` when
//!   there is none.
//!
//! Events without a key, customers that are not JSON and orders that are not
//! JSON objects are rejected. The manifest's `[config]` may rename the two
//! inputs (`customers-topic`, `orders-topic`).
//!
//! # Co-partitioning
//!
//! weir keeps one state store per module and input *partition number*: the
//! events of partition N of `customers` and of partition N of `orders` read
//! and write the same store, and no other. An order therefore finds its
//! customer only if both records went to the same partition number, which
//! holds when the two topics are **co-partitioned**:
//!
//! - they have the same number of partitions;
//! - both are keyed by the join key (the customer id), with the same key
//!   bytes (the same serialisation of the id);
//! - their producers use the same partitioner (weir's own producer defaults
//!   to `murmur2_random`, the Java client's, so records weir emits land
//!   where Java producers put them).
//!
//! If orders are keyed by something else (say an order id), re-key them
//! first through an intermediate topic: a small module reads `orders`,
//! emits each order to `orders-by-customer` with the customer id as the key
//! (the value unchanged), and this module reads `orders-by-customer`
//! instead of `orders`. `orders-by-customer` must have as many partitions as
//! `customers`. Re-keying costs one more hop through Kafka but is the only
//! way to bring the records of one key to one partition.
//!
//! The join sees the customer as of when the order is handled: an order
//! handled before its customer's first record gets `null`, and changes to a
//! customer do not update orders already joined.

use weir_sdk::json::Value;
use weir_sdk::prelude::*;

/// The customers topic: customer JSON by customer id.
pub const CUSTOMERS: &str = "customers";

/// The orders topic: order JSON objects keyed by customer id.
pub const ORDERS: &str = "orders";

/// Where joined orders go; listed in the manifest's `output-topics`.
pub const OUTPUT: &str = "orders-with-customer";

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct EnrichJoin;

impl Consumer for EnrichJoin {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let id = event
            .key()
            .or_reject("event has no key: the key must be the customer id")?;
        let customers = config::get("customers-topic");
        let orders = config::get("orders-topic");
        let topic = event.topic();
        if topic == customers.as_deref().unwrap_or(CUSTOMERS) {
            if event.is_tombstone() {
                state::delete(customer_key(id))?;
            } else {
                let customer: Value = event.value_json()?;
                state::set_json(customer_key(id), &customer)?;
            }
        } else if topic == orders.as_deref().unwrap_or(ORDERS) {
            let Value::Object(mut order) = event.value_json()? else {
                return Err(Error::reject("order is not a JSON object"));
            };
            let customer: Option<Value> = state::get_json(customer_key(id))?;
            order.insert("customer".into(), customer.unwrap_or(Value::Null));
            ctx.emit(event.forward_to(OUTPUT).json(&order)?)?;
        } else {
            return Err(Error::reject(format!("unexpected input topic `{topic}`")));
        }
        Ok(())
    }
}

/// The state key of customer `id`: `c/<id>`.
pub fn customer_key(id: &[u8]) -> Vec<u8> {
    [b"c/", id].concat()
}

weir_sdk::export_consumer!(EnrichJoin);

#[cfg(test)]
mod tests;
