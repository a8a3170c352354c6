//! weir benchmark fixture: identity, one handler call per event.

include!("../../identity.rs");

weir_sdk::export_consumer!(Identity);
