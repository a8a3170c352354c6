//! Where emit, log and config calls go: to a test [`Harness`] when one is
//! running on this thread, otherwise to the host's WIT imports.
//!
//! On targets other than wasm32 there is no host (wit-bindgen's import stubs
//! panic), so outside a harness these behave like an empty host: no config,
//! logs dropped, records accepted and dropped.
//!
//! [`Harness`]: crate::testing::Harness

use crate::log::Level;
use crate::record::{EmitError, Record};
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

#[cfg(target_arch = "wasm32")]
mod imports {
    use crate::bindings::consumer::weir::consumer::{config, emitter, log};
    use crate::log::Level;
    use crate::record::{EmitError, Record};

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
}

#[cfg(not(target_arch = "wasm32"))]
mod imports {
    use crate::log::Level;
    use crate::record::{EmitError, Record};

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
}
