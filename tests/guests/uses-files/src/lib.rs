//! weir test fixture: reads a file (value `file`) or connects to a TCP port
//! on the loopback address (value `net`), so the component imports
//! `wasi:filesystem` and `wasi:sockets`, which weir links with no
//! capabilities: the attempt fails inside the guest and the event is
//! rejected with the error. NOT an example.

use weir_sdk::prelude::*;

/// The fixture consumer.
#[derive(Debug)]
pub struct UsesFiles;

impl Consumer for UsesFiles {
    fn on_event(_ctx: &mut Context, event: &Event) -> Result<(), Error> {
        if event.value() == Some(b"net") {
            let stream = std::net::TcpStream::connect("127.0.0.1:9")?;
            weir_sdk::info!("connected to {:?}", stream.peer_addr());
            return Ok(());
        }
        let secret = std::fs::read_to_string("/etc/passwd")?;
        weir_sdk::info!("read {} bytes", secret.len());
        Ok(())
    }
}

weir_sdk::export_consumer!(UsesFiles);
