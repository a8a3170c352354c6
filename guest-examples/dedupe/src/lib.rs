//! `dedupe`: forwards each event of `events` to `events-deduped` once per
//! id, dropping the duplicates that arrive within a time window.
//!
//! The id is the record key; an event without a key is rejected. The first
//! event with an id is forwarded unchanged (key, value and headers) and the
//! id is remembered in state for config `ttl` (`10m` by default; a number
//! and a unit, `ms`, `s`, `m`, `h` or `d`, e.g. `30s` or `2h`). Events with
//! that id are dropped until the window, counted from the first event,
//! ends. The state write and the forwarded record are kept or discarded
//! together, so an event whose handling fails is not remembered either.
//!
//! State lives in the store of the event's partition, so a duplicate is
//! only recognised in the partition its first copy went to: producers must
//! key events by their id (the default partitioner then sends every copy to
//! the same partition).

use std::time::Duration;

use weir_sdk::prelude::*;

/// Where first occurrences go; listed in the manifest's `output-topics`.
pub const OUTPUT: &str = "events-deduped";

/// How long an id is remembered without config `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// The consumer; see the crate documentation.
#[derive(Debug)]
pub struct Dedupe;

impl Consumer for Dedupe {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let id = event
            .key()
            .or_reject("event has no key: dedupe uses the record key as the event id")?;
        if state::get(id).is_some() {
            weir_sdk::trace!("duplicate dropped");
            return Ok(());
        }
        state::set_with_ttl(id, b"", ttl()?)?;
        ctx.emit(event.forward_to(OUTPUT))?;
        Ok(())
    }
}

/// Config `ttl`, or [`DEFAULT_TTL`].
fn ttl() -> Result<Duration, Error> {
    match config::get("ttl") {
        None => Ok(DEFAULT_TTL),
        Some(text) => parse_duration(&text).map_err(|e| {
            Error::reject(format!("config key `ttl` has invalid value `{text}`: {e}"))
        }),
    }
}

/// Parses a positive duration written as a whole number and a unit: `ms`,
/// `s`, `m`, `h` or `d` (`"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"7d"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| "expected a number followed by ms, s, m, h or d".to_owned())?;
    let millis_per_unit = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err("the unit is missing (ms, s, m, h or d)".to_owned()),
        other => return Err(format!("unknown unit `{other}` (ms, s, m, h or d)")),
    };
    match number.checked_mul(millis_per_unit) {
        Some(0) => Err("the duration must be positive".to_owned()),
        Some(millis) => Ok(Duration::from_millis(millis)),
        None => Err("the duration is too long".to_owned()),
    }
}

weir_sdk::export_consumer!(Dedupe);

#[cfg(test)]
mod tests;
