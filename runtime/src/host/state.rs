//! The `state` import: reads and writes of the call's [`CallState`].
//!
//! A failure of the local store traps the call (it is then retried like
//! any trap); refusals by the limits go back to the guest as
//! `state-error`.

use crate::bindings::weir::consumer::state::{self, Entry, StateError};
use crate::state::{CallState, StoreError};

use super::HostState;

impl HostState {
    fn call_state(&mut self) -> wasmtime::Result<&mut CallState> {
        let module = &self.policy.module;
        self.state.as_mut().ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "module `{module}` called the state interface, but state is not enabled for \
                 it: add a `[state]` table to its manifest"
            ))
        })
    }
}

fn trap(err: StoreError) -> wasmtime::Error {
    wasmtime::Error::new(err)
}

impl HostState {
    /// Runs the write `op` with its `bytes` counted against
    /// `limits.max-emit-bytes` (a write becomes a changelog record), given
    /// back when the write is refused.
    fn charged_write(
        &mut self,
        bytes: usize,
        op: impl FnOnce(&mut CallState) -> Result<Result<(), StateError>, StoreError>,
    ) -> wasmtime::Result<Result<(), StateError>> {
        let bytes = bytes as u64;
        if self.charge(bytes).is_err() {
            let max_emits = self.policy.limits.max_emits;
            return Ok(Err(StateError::TooMany(max_emits)));
        }
        let written = op(self.call_state()?).map_err(trap)?;
        if written.is_err() {
            self.emitted_bytes -= bytes;
        }
        Ok(written)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.call_state()?.get(&key).map_err(trap)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<(), StateError>> {
        self.charged_write(key.len() + value.len(), |state| state.set(key, value, None))
    }

    fn set_with_ttl(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), StateError>> {
        self.charged_write(key.len() + value.len(), |state| {
            state.set(key, value, Some(ttl_ms))
        })
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<(), StateError>> {
        self.charged_write(key.len(), |state| state.delete(key))
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<Entry>> {
        let found = self
            .call_state()?
            .scan(&prefix, after.as_deref(), limit)
            .map_err(trap)?;
        Ok(found
            .into_iter()
            .map(|(key, value)| Entry { key, value })
            .collect())
    }
}
