//! weir test fixture: the echo consumer, version 1.

/// Written into the `weir-version` header of every output.
const VERSION: &str = "v1";

include!("../../echo.rs");
