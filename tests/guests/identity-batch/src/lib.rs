//! weir benchmark fixture: identity, one handle-batch call per batch.

include!("../../identity.rs");

weir_sdk::export_batch_consumer!(Identity);
