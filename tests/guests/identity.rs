// Shared body of the identity and identity-batch benchmark fixtures
// (included with `include!`; each crate picks the export macro).
//
// Forwards every event unchanged (key, value, headers) to config `output`.
// The output topic name is read once per instance and cached, so the only
// per-event work is what the host contract itself costs: the benchmark
// measures weir, not the guest.

use std::sync::OnceLock;

use weir_sdk::prelude::*;

/// The fixture consumer.
#[derive(Debug)]
pub struct Identity;

fn output() -> Result<&'static str, Error> {
    static OUTPUT: OnceLock<String> = OnceLock::new();
    if let Some(o) = OUTPUT.get() {
        return Ok(o);
    }
    let o = config::require("output")?;
    Ok(OUTPUT.get_or_init(|| o))
}

impl Consumer for Identity {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        ctx.emit(event.forward_to(output()?))?;
        Ok(())
    }
}
