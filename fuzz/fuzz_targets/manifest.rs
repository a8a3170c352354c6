//! A module manifest ([`weir::fuzzing::manifest`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::manifest(data));
