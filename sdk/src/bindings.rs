//! The generated WIT bindings, one module per world.
//!
//! Both worlds import the same interfaces; the second module reuses the
//! first one's types (`with`), so there is a single Rust type per WIT type.
//! `pub_export_macro` makes wit-bindgen split each world's type information:
//! the import half is linked from this crate, the export half is emitted by
//! the export macro in the guest crate, so a component only declares the
//! exports it really has.

#![allow(
    unsafe_code,
    missing_docs,
    missing_debug_implementations,
    unused_qualifications,
    clippy::all
)]

/// Bindings for world `consumer` (exports `handler`), plus every shared type
/// and import.
pub mod consumer {
    wit_bindgen::generate!({
        world: "consumer",
        path: "../wit",
        runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_handler",
        default_bindings_module: "$crate::__private::consumer",
        additional_derives: [PartialEq, Eq],
    });
}

/// Bindings for world `batch-consumer` (exports `batch-handler`).
pub mod batch {
    wit_bindgen::generate!({
        world: "batch-consumer",
        path: "../wit",
        runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_batch_handler",
        default_bindings_module: "$crate::__private::batch",
        with: {
            "weir:consumer/types@0.2.0": crate::bindings::consumer::weir::consumer::types,
            "weir:consumer/log@0.2.0": crate::bindings::consumer::weir::consumer::log,
            "weir:consumer/config@0.2.0": crate::bindings::consumer::weir::consumer::config,
            "weir:consumer/emitter@0.2.0": crate::bindings::consumer::weir::consumer::emitter,
            "weir:consumer/state@0.2.0": crate::bindings::consumer::weir::consumer::state,
        },
    });
}
