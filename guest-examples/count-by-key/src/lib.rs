//! `count-by-key`: counts the events of `clicks` per record key and
//! publishes each new count to `click-counts`.
//!
//! For an event with key `k` the count kept in state under `k` (decimal
//! ASCII, absent meaning 0) goes up by one, and the new count is emitted to
//! `click-counts` with key `k` and the count as its value, in decimal ASCII.
//! `click-counts` is meant to be a compacted topic, so it holds the latest
//! count of every key. Events without a key are rejected.
//!
//! The state write and the emitted count are kept or discarded together, so
//! an event that is retried or rejected does not count. Under at-least-once
//! delivery an event handled again after a crash (before its offset was
//! committed) is counted again; use `delivery.guarantee = "exactly-once"`
//! for exact counts. Keys are counted in the store of their partition,
//! which is right because a keyed producer sends every event of a key to the
//! same partition.

use weir_sdk::prelude::*;

/// Where counts go; listed in the manifest's `output-topics`.
pub const OUTPUT: &str = "click-counts";

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct CountByKey;

impl Consumer for CountByKey {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let key = event
            .key()
            .or_reject("event has no key: count-by-key counts per record key")?;
        let count = stored_count(key)?
            .checked_add(1)
            .or_reject("the count does not fit in 64 bits")?
            .to_string();
        state::set(key, &count)?;
        ctx.emit(Record::to(OUTPUT).key(key).value(count))?;
        Ok(())
    }
}

/// The count stored under `key`, 0 when there is none.
fn stored_count(key: &[u8]) -> Result<u64, Error> {
    let Some(stored) = state::get(key) else {
        return Ok(0);
    };
    std::str::from_utf8(&stored)
        .ok()
        .and_then(|text| text.parse().ok())
        .or_reject("the stored count is not a decimal number")
}

weir_sdk::export_consumer!(CountByKey);

#[cfg(test)]
mod tests;
