//! weir test fixture: a valid component that exports `wasi:cli/run`, not a
//! weir handler, so weir must refuse it.

fn main() {}
