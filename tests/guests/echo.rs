// Shared body of the echo-v1 and echo-v2 test fixtures (included with
// `include!` after each defines `VERSION`).
//
// Forwards every event to config `output` with key, value and headers, and
// adds headers saying which version handled it, where the event came from,
// and when it was handled (ms since the Unix epoch, from the WASI clock).

use weir_sdk::prelude::*;

/// The fixture consumer.
#[derive(Debug)]
pub struct Echo;

impl Consumer for Echo {
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
        let output = config::require("output")?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        ctx.emit(
            event
                .forward_to(output)
                .header("weir-version", VERSION)
                .header("weir-in-partition", event.partition().to_string())
                .header("weir-in-offset", event.offset().to_string())
                .header("weir-handled-at-ms", now_ms.to_string()),
        )?;
        Ok(())
    }
}

weir_sdk::export_consumer!(Echo);
