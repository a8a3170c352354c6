//! The host imports, driven by the `fuzz-host` guest from the input bytes ([`weir::fuzzing::host_imports`]; build the guest first with scripts/build-guests.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::host_imports(data));
