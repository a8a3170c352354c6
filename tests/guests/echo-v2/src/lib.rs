//! weir test fixture: the echo consumer, version 2.

/// Written into the `weir-version` header of every output.
const VERSION: &str = "v2";

include!("../../echo.rs");
