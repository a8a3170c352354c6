//! Which clients a `[kafka]` property is for. librdkafka takes producer
//! properties on a consumer (and the other way round) but warns at every
//! client it creates that they are ignored; weir gives each client only the
//! properties that apply to it, so `[kafka] compression.type = "zstd"`
//! configures the producer and nothing else.

/// The kind of client a librdkafka property applies to (the `C/P` column of
/// librdkafka's CONFIGURATION.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every client (`*`).
    Any,
    /// Producers only (`P`), the admin client excluded.
    Producer,
    /// Consumers only (`C`).
    Consumer,
}

/// Properties librdkafka marks `P` (global and topic-level), as of 2.12.
/// A unit test compares this list with the table of the linked librdkafka.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "dr_cb",
    "dr_msg_cb",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "msg_order_cmp",
    "partitioner",
    "partitioner_cb",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// Properties librdkafka marks `C` (global and topic-level), as of 2.12.
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "consume_cb",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "offset_commit_cb",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "rebalance_cb",
    "session.timeout.ms",
];

/// The clients `key` applies to. Unknown keys apply to every client, so
/// librdkafka still rejects a misspelt one by name.
pub fn scope(key: &str) -> Scope {
    if PRODUCER_ONLY.contains(&key) {
        Scope::Producer
    } else if CONSUMER_ONLY.contains(&key) {
        Scope::Consumer
    } else {
        Scope::Any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ffi::{CString, c_char, c_int, c_void};

    use super::*;

    unsafe extern "C" {
        fn fopen(path: *const c_char, mode: *const c_char) -> *mut c_void;
        fn fclose(file: *mut c_void) -> c_int;
    }

    /// librdkafka's own property table (`rd_kafka_conf_properties_show`),
    /// as (property, C/P column) pairs.
    fn librdkafka_table() -> Vec<(String, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("properties.md");
        let c_path = CString::new(path.to_str().expect("utf-8 path")).expect("path");
        // SAFETY: fopen gets NUL-terminated strings; the FILE it returns is
        // only passed to librdkafka, which writes the table to it, and then
        // closed once.
        unsafe {
            let file = fopen(c_path.as_ptr(), c"w".as_ptr());
            assert!(!file.is_null(), "fopen {}", path.display());
            rdkafka::bindings::rd_kafka_conf_properties_show(file.cast());
            fclose(file);
        }
        let table = std::fs::read_to_string(&path).expect("the table");
        table
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim);
                let (name, kind) = (cells.next()?, cells.next()?);
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
                valid.then(|| (name.to_owned(), kind.to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_lists_match_the_linked_librdkafka() {
        let table = librdkafka_table();
        assert!(table.len() > 100, "{} properties read", table.len());
        let of = |kind: &str| -> BTreeSet<&str> {
            table
                .iter()
                .filter(|(_, k)| k == kind)
                .map(|(n, _)| n.as_str())
                .collect()
        };
        assert_eq!(of("P"), PRODUCER_ONLY.iter().copied().collect());
        assert_eq!(of("C"), CONSUMER_ONLY.iter().copied().collect());
        assert_eq!(scope("compression.type"), Scope::Producer);
        assert_eq!(scope("session.timeout.ms"), Scope::Consumer);
        assert_eq!(scope("security.protocol"), Scope::Any);
        assert_eq!(scope("no.such.property"), Scope::Any);
    }
}
