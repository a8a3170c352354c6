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
//! - [`cycles`]: modules that consume what they write, alone or in a ring.
//! - [`engine`]: wasmtime engine, compiling and validating components.
//! - [`host`]: the imports a guest gets (log, config, emit; WASI with no
//!   capabilities).
//! - [`invoke`]: calling a module instance for a batch of events.
//! - [`kafka`]: everything that speaks Kafka: client configuration, the
//!   module consumers' group membership and poll threads, and the Kafka
//!   sides of the pipeline's seams (partition queues, producers,
//!   transactions).
//! - [`metrics`]: Prometheus metrics and readiness.
//! - [`http`]: the `/metrics`, `/livez` and `/readyz` endpoint.
//! - [`pipeline`]: what happens to a partition's events, with no Kafka
//!   types: the settlement policy, the partition worker and its
//!   acknowledging half, exactly-once transactions, offset bookkeeping.
//! - [`modules`]: the modules folder.
//! - [`runtime`]: the whole process: the supervisor that keeps modules in
//!   step with the folder (hot reload), and graceful shutdown.
//! - [`watch`]: the debounced folder watch.
//! - [`state`]: durable keyed state for guests: local stores backed by
//!   compacted changelog topics.
//! - [`status`]: per-module state for operators.
//! - [`secrets`]: keeping `[kafka]` secrets out of logs, errors and status.
//! - [`embedded`]: the in-memory broker behind `weir dev`.
//! - [`client`]: the small clients behind `weir produce` and `weir consume`.
//! - [`devtools`]: `weir new`, `weir build`, `weir check` and `weir replay`.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod cycles;
pub mod devtools;
pub mod embedded;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod http;
pub mod invoke;
pub mod kafka;
pub mod manifest;
pub mod metrics;
pub mod modules;
pub mod oci;
pub mod ops;
pub mod pipeline;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod slots;
pub mod state;
pub mod status;
mod sync;
pub mod watch;

/// Host bindings generated from `wit/consumer.wit` (`weir:consumer@0.2.0`),
/// and from `wit/v0.1` for components built against 0.1.0.
#[allow(missing_docs, reason = "generated code")]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "consumer",
        // A failing local store traps the call (which is then retried).
        imports: { "weir:consumer/state": trappable },
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
                "weir:consumer/state": super::weir::consumer::state,
            },
        });
    }

    /// `weir:consumer@0.1.0`: the same worlds without `state`. Its types
    /// are the 0.2.0 ones (the interface did not change), so events and
    /// records cross without conversion.
    pub mod v01 {
        /// World `consumer` of 0.1.0.
        pub mod single {
            wasmtime::component::bindgen!({
                path: "../wit/v0.1",
                world: "consumer",
                with: {
                    "weir:consumer/types": crate::bindings::weir::consumer::types,
                },
            });
        }

        /// World `batch-consumer` of 0.1.0.
        pub mod batch {
            wasmtime::component::bindgen!({
                path: "../wit/v0.1",
                world: "batch-consumer",
                with: {
                    "weir:consumer/types": crate::bindings::weir::consumer::types,
                    "weir:consumer/log": super::single::weir::consumer::log,
                    "weir:consumer/config": super::single::weir::consumer::config,
                    "weir:consumer/emitter": super::single::weir::consumer::emitter,
                },
            });
        }
    }
}
