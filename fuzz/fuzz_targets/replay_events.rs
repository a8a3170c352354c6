//! The JSON lines of `weir replay` ([`weir::fuzzing::replay_events`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::replay_events(data));
