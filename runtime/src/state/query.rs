//! Read-only queries of the stores this process holds (`GET
//! /state/<module>/<key>`): Kafka Streams' interactive queries, served on
//! weir's loopback-by-default listener.
//!
//! A key's partition is the one Kafka's default partitioner (murmur2, which
//! weir's producer also uses) gives it among the module's input partitions,
//! unless the caller names one. Only partitions this process owns answer;
//! for the others the answer says which partition owns the key, so the
//! caller can ask the process that has it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::Stores;
use super::store::Stored;
use crate::sync::lock;

/// The stateful modules of the process, by name.
#[derive(Debug, Default)]
pub struct Queries {
    modules: Mutex<HashMap<String, Weak<Stores>>>,
}

/// What a query found.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// No stateful module of that name runs here.
    NoModule,
    /// The module has not checked its topics yet (partition count unknown).
    NotReady,
    /// The partition's store is held here, and holds the key.
    Found {
        /// The partition.
        partition: i32,
        /// The live entry.
        stored: Stored,
    },
    /// The partition's store is held here, and the key is absent (or
    /// expired).
    Missing {
        /// The partition.
        partition: i32,
    },
    /// Another process holds the partition's store.
    NotOwned {
        /// The partition that owns the key.
        partition: i32,
        /// The module's input partition count.
        partitions: i32,
    },
}

impl Queries {
    /// Makes `stores` queryable under `module` (replacing an earlier one).
    pub fn register(&self, module: &str, stores: &Arc<Stores>) {
        let mut modules = lock(&self.modules);
        modules.retain(|_, s| s.strong_count() > 0);
        modules.insert(module.to_owned(), Arc::downgrade(stores));
    }

    /// Looks `key` up in `module`'s store of `partition` (by default the
    /// key's partition) as of `now_ms`.
    pub fn get(
        &self,
        module: &str,
        key: &[u8],
        partition: Option<i32>,
        now_ms: u64,
    ) -> Result<Answer, super::StoreError> {
        let Some(stores) = lock(&self.modules).get(module).and_then(Weak::upgrade) else {
            return Ok(Answer::NoModule);
        };
        let Some(partitions) = stores.partitions() else {
            return Ok(Answer::NotReady);
        };
        let partition = partition.unwrap_or_else(|| partition_of(key, partitions));
        let Some(store) = stores.held(partition) else {
            return Ok(Answer::NotOwned {
                partition,
                partitions,
            });
        };
        Ok(match store.local().get(key)? {
            Some(stored) if stored.expires_ms.is_none_or(|at| at > now_ms) => {
                Answer::Found { partition, stored }
            }
            _ => Answer::Missing { partition },
        })
    }
}

/// The partition Kafka's default partitioner gives `key` among
/// `partitions`: murmur2 of the key, made positive, modulo the count.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka's
        // UtilsTest), as unsigned.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }
}
