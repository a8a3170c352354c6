//! A `weir.toml` ([`weir::fuzzing::config`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::config(data));
