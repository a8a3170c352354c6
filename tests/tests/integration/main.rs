//! Integration tests: weir against a real broker (`WEIR_TEST_BROKERS`, as in
//! CI) or the embedded one, with real components from `guest-examples/`.
//!
//! One test binary; one module per scenario.

mod cli;
mod codecs;
mod cycles;
mod devtools;
mod errors;
mod exactly_once;
mod failures;
mod languages;
mod membership;
mod metrics;
mod oci;
mod offsets;
mod operator;
mod pipeline;
mod reload;
mod stalls;
mod state;
