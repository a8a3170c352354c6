//! Durable keyed state for guests (the `state` interface of
//! `weir:consumer@0.2.0`).
//!
//! Each stateful module has one store per input partition number, shared by
//! the workers of that partition number of every input topic (Kafka
//! Streams' task model). A store is a local [`redb`] file under the
//! runtime's `state-dir`, backed by a compacted changelog topic with one
//! partition per input partition: every write a settled call made is
//! produced there like an emitted record (acknowledged before the input
//! offset is committed, or inside the partition's transaction), and a store
//! is brought up to date from its checkpoint and the changelog before the
//! partition's first call.
//!
//! - [`store`]: the local copy: entries, expiry index, checkpoint.
//! - [`partition`]: one partition's store as the pipeline shares it:
//!   uncommitted writes of exactly-once transactions, checkpoints.
//! - [`call`]: what one call into the guest sees and writes.
//! - [`changelog`]: writes as changelog records and back, and the restore
//!   seam.
//! - [`stores`]: a module's stores: opening, restoring, closing.
//! - [`query`]: read-only lookups for `GET /state/<module>/<key>`.

pub mod call;
pub mod changelog;
pub mod partition;
pub mod query;
pub mod store;
pub mod stores;

pub use call::CallState;
pub use changelog::{Changelog, RestoreError};
pub use partition::PartitionStore;
pub use query::Queries;
pub use store::LocalStore;
pub use stores::Stores;

use std::sync::Arc;

use crate::manifest::Limits;

/// What a call needs to reach its partition's store: the store, the
/// changelog topic its writes go to, and the input topic whose events the
/// call handles (the writer).
#[derive(Debug, Clone)]
pub struct StateHandle {
    /// The partition's store.
    pub store: Arc<PartitionStore>,
    /// The changelog topic.
    pub topic: Arc<str>,
    /// The input topic of the calling worker.
    pub writer: Arc<str>,
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One write to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store `value`, until `expires_ms` (milliseconds since the Unix
    /// epoch) when given.
    Put {
        /// The value.
        value: Vec<u8>,
        /// When it expires, if it does.
        expires_ms: Option<u64>,
    },
    /// Remove the key.
    Delete,
}

impl Write {
    /// Bytes this write keeps in the store for `key` (0 for a delete).
    pub fn size(&self, key: &[u8]) -> u64 {
        match self {
            Self::Put { value, .. } => (key.len() + value.len()) as u64,
            Self::Delete => 0,
        }
    }

    /// The value it leaves readable at `now_ms`: `None` for a delete or an
    /// expired put.
    pub fn live(&self, now_ms: u64) -> Option<&[u8]> {
        match self {
            Self::Put { value, expires_ms } if expires_ms.is_none_or(|at| at > now_ms) => {
                Some(value)
            }
            _ => None,
        }
    }
}

/// The state limits of one module version, from its manifest's `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// `limits.max-state-key-bytes`.
    pub max_key_bytes: u32,
    /// `limits.max-state-value-bytes`.
    pub max_value_bytes: u32,
    /// `limits.state-mib`: keys plus values of the live entries of one
    /// partition's store.
    pub state_mib: u32,
    /// `limits.max-emits`: distinct keys one event (or batch) may write.
    pub max_writes: u32,
}

impl StateLimits {
    /// The state limits in `limits`.
    pub fn of(limits: &Limits) -> Self {
        Self {
            max_key_bytes: limits.max_state_key_bytes,
            max_value_bytes: limits.max_state_value_bytes,
            state_mib: limits.state_mib,
            max_writes: limits.max_emits,
        }
    }

    /// `state-mib` in bytes.
    pub fn max_bytes(&self) -> u64 {
        u64::from(self.state_mib) << 20
    }
}

/// A storage failure of the local store. The call that met it traps (and
/// is retried); a store that cannot be opened keeps its partition waiting.
#[derive(Debug, thiserror::Error)]
#[error("state store `{path}`: {reason}")]
pub struct StoreError {
    /// The store's file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// Runs a store operation on a blocking thread (the local copy reads and
/// writes files, and syncs them now and then), from async code.
pub async fn off_thread<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|join| {
            Err(StoreError {
                path: String::new(),
                reason: format!("state store task failed: {join}"),
            })
        })
}

/// Milliseconds since the Unix epoch, by the host's wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
