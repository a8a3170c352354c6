//! The imports of `weir:consumer@0.1.0`, for components built before
//! `state` existed: the same functions as 0.2.0 (whose types they share).

use crate::bindings::v01::single::weir::consumer::{config, emitter, log};
use crate::bindings::weir::consumer as current;
use crate::bindings::weir::consumer::types::{EmitError, Outgoing};

use super::HostState;

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => current::log::Level::Trace,
            log::Level::Debug => current::log::Level::Debug,
            log::Level::Info => current::log::Level::Info,
            log::Level::Warn => current::log::Level::Warn,
            log::Level::Error => current::log::Level::Error,
        };
        current::log::Host::log(self, level, message);
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        current::config::Host::get(self, key)
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        current::config::Host::get_all(self)
    }
}

impl emitter::Host for HostState {
    fn emit(&mut self, record: Outgoing) -> Result<(), EmitError> {
        current::emitter::Host::emit(self, record)
    }
}
