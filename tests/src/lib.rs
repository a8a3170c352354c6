//! The one shared way weir's integration tests get a broker, topics, guest
//! components and a running weir.
//!
//! - Broker ([`broker`](mod@broker)): `WEIR_TEST_BROKERS` names an external
//!   cluster (CI starts a real Apache Kafka with `scripts/kafka.sh`); without
//!   it each test binary starts librdkafka's in-memory mock cluster.
//! - Clients ([`kafka`]): producing, reading back, committed offsets.
//! - Guests ([`modules`]): components built by `scripts/build-guests.sh`
//!   into `target/modules` (or `WEIR_TEST_MODULES`), and modules folders.
//! - weir: in-process ([`in_process`]) through [`weir::runtime::run`], or
//!   the built `weir` binary ([`process`], [`devtools`]) for command-line
//!   behaviour; [`http`] for its endpoint.

pub mod broker;
pub mod cluster;
pub mod devtools;
pub mod http;
pub mod in_process;
pub mod kafka;
pub mod modules;
pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use broker::{Broker, broker};
pub use http::{free_port, http_get, sample};
pub use in_process::{Weir, test_config};
pub use kafka::{Received, Send, committed, committed_in, consume, consume_as, produce};
pub use modules::{ModulesDir, guest, install_atomically, test_guest};
pub use process::weir_binary;

/// Partitions of every topic the tests create.
pub const PARTITIONS: i32 = 3;

/// Initialises test logging once per binary (`RUST_LOG` overrides).
pub fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
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
