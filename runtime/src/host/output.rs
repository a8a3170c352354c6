//! Guest stdout and stderr: complete lines go to the log.

use std::sync::Arc;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::{MAX_LOG_LINE, Observer, truncate};

/// Which guest stream a line came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

/// Guest stdout or stderr: complete lines go to the log, tagged with the
/// module name (stdout at INFO, stderr at WARN).
#[derive(Debug, Clone)]
pub(super) struct GuestOutput {
    module: Arc<str>,
    stream: Stream,
    observer: Arc<Observer>,
}

impl GuestOutput {
    pub(super) fn new(module: &Arc<str>, stream: Stream, observer: &Arc<Observer>) -> Self {
        Self {
            module: module.clone(),
            stream,
            observer: observer.clone(),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            out: self.clone(),
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 guests use this path; weir links WASI 0.2.
        Box::new(tokio::io::sink())
    }
}

/// Buffers bytes until a newline, then logs the line.
struct LineWriter {
    out: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn log_line(&self, bytes: &[u8]) {
        if !self.out.observer.admit() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = truncate(text.trim_end_matches('\r'));
        let module = &*self.out.module;
        let version = self.out.observer.version();
        match self.out.stream {
            Stream::Stdout => {
                tracing::info!(target: "weir::guest", module, version, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "weir::guest", module, version, stream = "stderr", "{text}")
            }
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.log_line(&line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut rest = &bytes[..];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            let line = std::mem::take(&mut self.line);
            self.log_line(&line);
            rest = &rest[pos + 1..];
        }
        // A guest that never writes a newline cannot grow the buffer forever.
        if self.line.len() + rest.len() > MAX_LOG_LINE {
            let line = std::mem::take(&mut self.line);
            self.log_line(&[line.as_slice(), rest].concat());
        } else {
            self.line.extend_from_slice(rest);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}
