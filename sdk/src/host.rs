//! Where emit, log, config and state calls go: to a test [`Harness`] when
//! one is running on this thread, otherwise to the host's WIT imports.
//!
//! On targets other than wasm32 there is no host (wit-bindgen's import stubs
//! panic), so outside a harness these behave like an empty host: no config,
//! logs dropped, records accepted and dropped, an empty state store that
//! accepts and drops writes.
//!
//! [`Harness`]: crate::testing::Harness

use crate::log::Level;
use crate::record::{EmitError, Record};
use crate::state::StateError;
use crate::testing;

pub(crate) fn emit(record: Record) -> Result<(), EmitError> {
    match testing::try_emit(record) {
        Ok(result) => result,
        Err(record) => imports::emit(&record),
    }
}

pub(crate) fn log(level: Level, message: &str) {
    if !testing::try_log(level, message) {
        imports::log(level, message);
    }
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    testing::try_config_get(key).unwrap_or_else(|| imports::config_get(key))
}

pub(crate) fn config_all() -> Vec<(String, String)> {
    testing::try_config_all().unwrap_or_else(imports::config_all)
}

pub(crate) fn state_get(key: &[u8]) -> Option<Vec<u8>> {
    testing::try_state_get(key).unwrap_or_else(|| imports::state_get(key))
}

/// `ttl_ms: None` is `set`, `Some` is `set-with-ttl`.
pub(crate) fn state_set(key: &[u8], value: &[u8], ttl_ms: Option<u64>) -> Result<(), StateError> {
    testing::try_state_set(key, value, ttl_ms)
        .unwrap_or_else(|| imports::state_set(key, value, ttl_ms))
}

pub(crate) fn state_delete(key: &[u8]) -> Result<(), StateError> {
    testing::try_state_delete(key).unwrap_or_else(|| imports::state_delete(key))
}

pub(crate) fn state_scan(
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: u32,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    testing::try_state_scan(prefix, after, limit)
        .unwrap_or_else(|| imports::state_scan(prefix, after, limit))
}

#[cfg(target_arch = "wasm32")]
mod imports {
    use crate::bindings::consumer::weir::consumer::{config, emitter, log, state};
    use crate::log::Level;
    use crate::record::{EmitError, Record};
    use crate::state::StateError;

    pub(super) fn emit(record: &Record) -> Result<(), EmitError> {
        emitter::emit(&record.0).map_err(EmitError::from)
    }

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log(level, message);
    }

    pub(super) fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }

    pub(super) fn config_all() -> Vec<(String, String)> {
        config::get_all()
    }

    pub(super) fn state_get(key: &[u8]) -> Option<Vec<u8>> {
        state::get(key)
    }

    pub(super) fn state_set(
        key: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), StateError> {
        match ttl_ms {
            None => state::set(key, value),
            Some(ttl_ms) => state::set_with_ttl(key, value, ttl_ms),
        }
        .map_err(StateError::from)
    }

    pub(super) fn state_delete(key: &[u8]) -> Result<(), StateError> {
        state::delete(key).map_err(StateError::from)
    }

    pub(super) fn state_scan(
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        state::scan(prefix, after, limit)
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imports {
    use crate::log::Level;
    use crate::record::{EmitError, Record};
    use crate::state::StateError;

    pub(super) fn emit(_record: &Record) -> Result<(), EmitError> {
        Ok(())
    }

    pub(super) fn log(_level: Level, _message: &str) {}

    pub(super) fn config_get(_key: &str) -> Option<String> {
        None
    }

    pub(super) fn config_all() -> Vec<(String, String)> {
        Vec::new()
    }

    pub(super) fn state_get(_key: &[u8]) -> Option<Vec<u8>> {
        None
    }

    pub(super) fn state_set(
        _key: &[u8],
        _value: &[u8],
        _ttl_ms: Option<u64>,
    ) -> Result<(), StateError> {
        Ok(())
    }

    pub(super) fn state_delete(_key: &[u8]) -> Result<(), StateError> {
        Ok(())
    }

    pub(super) fn state_scan(
        _prefix: &[u8],
        _after: Option<&[u8]>,
        _limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        Vec::new()
    }
}
