#![warn(missing_docs)]

//! The one shared way weir's integration tests get a broker, topics, guest
//! components and a running weir, produce and read back events, and check
//! committed offsets.
//!
//! - Broker ([`broker`](mod@broker)): `WEIR_TEST_BROKERS` names an external
//!   cluster (CI starts a real Apache Kafka with `scripts/kafka.sh`); without
//!   it each test binary starts librdkafka's in-memory mock cluster.
//!   [`Topics`] names (and creates) a module's topics and group.
//! - Clients ([`kafka`]): [`produce`] / [`Producer`], [`consume`],
//!   [`committed`] offsets.
//! - Guests and modules folders ([`modules`]): components built by
//!   `scripts/build-guests.sh` into `target/modules` (or
//!   `WEIR_TEST_MODULES`), the fixtures of `tests/guests`, [`ModulesDir`]
//!   and [`Manifest`].
//! - weir in-process ([`in_process`]): [`Weir`] through
//!   [`weir::runtime::run_with_status`], and its status board.
//! - weir as a child process ([`process`]): the built `weir` binary, for
//!   command-line behaviour, crashes and restarts; [`devtools`] runs it to
//!   completion.
//! - HTTP ([`http`]): `/metrics`, `/readyz`, `/status` of a running weir.
//! - [`registry`]: a local OCI registry (Debian's `docker-registry`) for
//!   modules pulled from a registry.
//! - [`cluster`]: brokers the broker-fault and security tests start
//!   themselves.
//! - [`tools`]: Kafka's own Java tools (console producer and consumer,
//!   ACLs, log dirs, DumpLogSegments) through `scripts/kafka.sh run`.
//! - Stateful modules ([`state`](mod@state)): restores in the log, stores in
//!   `/status`, local checkpoints, changelog topics.

pub mod broker;
pub mod cluster;
pub mod devtools;
pub mod http;
pub mod in_process;
pub mod kafka;
pub mod modules;
pub mod process;
pub mod registry;
pub mod resources;
pub mod rng;
pub mod state;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use broker::{Broker, Topics, broker};
pub use http::{free_addr, free_port, http_get, sample};
pub use in_process::{Weir, module_status, run_config, test_config, wait_running};
pub use kafka::{
    Producer, Received, Send, committed, committed_in, committed_total, consume, consume_as,
    end_offsets, partition_count, produce, read_from, wait_committed, wait_committed_total,
};
pub use modules::{Manifest, ModulesDir, digest, guest, install_atomically, test_guest, variant};
pub use process::weir_binary;

/// Partitions of every topic the tests create (unless a test says
/// otherwise).
pub const PARTITIONS: i32 = 3;

/// The log filter of the tests and of the weir processes they start, unless
/// `RUST_LOG` says otherwise for the tests.
pub const LOG_FILTER: &str = "info,wasmtime=warn,cranelift=warn";

/// A two-worker tokio runtime, for tests that drive blocking process
/// control (`WeirProcess`) and async Kafka clients from one thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Initialises test logging once per binary (`RUST_LOG` overrides
/// [`LOG_FILTER`]).
pub fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| LOG_FILTER.into());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .init();
    });
}

/// A topic (or group) name unique to this run: `<prefix>-<pid>-<n>-<ms>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{}-{ms}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after
/// `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
