//! weir test fixture: reads a file, so the component imports
//! `wasi:filesystem`, which weir does not provide. NOT an example.

use weir_sdk::prelude::*;

/// The fixture consumer.
#[derive(Debug)]
pub struct UsesFiles;

impl Consumer for UsesFiles {
    fn on_event(_ctx: &mut Context, _event: &Event) -> Result<(), Error> {
        let secret = std::fs::read_to_string("/etc/passwd")?;
        weir_sdk::info!("read {} bytes", secret.len());
        Ok(())
    }
}

weir_sdk::export_consumer!(UsesFiles);
