//! The per-call handle a handler emits records through.

use crate::host;
use crate::record::{EmitError, Record};

/// What a handler can do besides returning a verdict: emit records.
///
/// The SDK creates one per handler call (one per event, or one per batch).
/// Holding `&mut Context` is what makes emitting possible, which keeps
/// emits inside handler calls, where the host can attribute them.
#[derive(Debug)]
pub struct Context {
    emitted: usize,
}

impl Context {
    pub(crate) fn new() -> Self {
        Self { emitted: 0 }
    }

    /// Asks the host to produce `record`.
    ///
    /// `Ok` means the host accepted the record, not that the broker has it:
    /// the host produces it only if the call ends well, and commits the input
    /// offset after the broker acknowledges it. Records emitted for an event
    /// that is then retried or rejected are discarded (in a batch, only when
    /// the whole batch is retried). With `?` a refusal rejects the event.
    pub fn emit(&mut self, record: impl Into<Record>) -> Result<(), EmitError> {
        host::emit(record.into())?;
        self.emitted += 1;
        Ok(())
    }

    /// How many records the host has accepted during this call.
    pub fn emitted(&self) -> usize {
        self.emitted
    }
}
