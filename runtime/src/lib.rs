//! weir runs WebAssembly consumer components against Kafka topics.
//!
//! A host process subscribes to the topics each module's manifest names,
//! hands every event to the module's component (built against the WIT
//! package in `wit/`), produces what the component emits through an
//! idempotent producer, and commits an input offset only once the broker has
//! acknowledged every record emitted for it.
//!
//! # Layout
//!
//! - [`config`]: the `weir.toml` process configuration.
//! - [`manifest`]: the per-module `<name>.toml` sidecar.
//! - [`engine`]: wasmtime engine, compiling and validating components.
//! - [`host`]: the imports a guest gets (log, config, emit; WASI with no
//!   capabilities).
//! - [`invoke`]: calling a module instance for a batch of events.
//! - [`kafka`]: client configuration, message conversion, producing.
//! - [`metrics`]: Prometheus metrics and readiness.
//! - [`http`]: the `/metrics`, `/livez` and `/readyz` endpoint.
//! - [`dispatch`]: per-module consumers, per-partition workers, commits.
//! - [`modules`]: the modules folder.
//! - [`runtime`]: the whole process: the supervisor that keeps modules in
//!   step with the folder (hot reload), and graceful shutdown.
//! - [`watch`]: the debounced folder watch.
//! - [`status`]: per-module state for operators.
//! - [`secrets`]: keeping `[kafka]` secrets out of logs, errors and status.
//! - [`embedded`]: the in-memory broker behind `weir dev`.
//! - [`client`]: the small clients behind `weir produce` and `weir consume`.
//! - [`devtools`]: `weir new`, `weir build`, `weir check` and `weir replay`.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod devtools;
pub mod dispatch;
pub mod embedded;
pub mod engine;
pub mod host;
pub mod http;
pub mod invoke;
pub mod kafka;
mod kafka_stats;
pub mod manifest;
pub mod metrics;
pub mod modules;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod status;
mod sync;
pub mod watch;

/// Host bindings generated from `wit/consumer.wit`.
#[allow(missing_docs, reason = "generated code")]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "consumer",
    });

    /// Bindings of the `batch-consumer` world, sharing the types above.
    pub mod batch {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "batch-consumer",
            with: {
                "weir:consumer/types": super::weir::consumer::types,
                "weir:consumer/log": super::weir::consumer::log,
                "weir:consumer/config": super::weir::consumer::config,
                "weir:consumer/emitter": super::weir::consumer::emitter,
            },
        });
    }
}
