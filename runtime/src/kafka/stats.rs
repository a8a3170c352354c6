//! librdkafka statistics reports turned into weir's metrics: broker
//! reachability (for readiness), and the consumer lag and committed offset
//! of each assigned partition.
//!
//! This is the one place that reads `rdkafka::Statistics`; the metrics module
//! itself takes plain values.

use rdkafka::Statistics;

use crate::metrics::ModuleMetrics;
use crate::pipeline::Module;
use crate::status::PartitionStatus;

/// Applies one statistics report of `module`'s consumer to its metrics
/// ([`record`]) and to its `/status` entry (the assigned partitions with
/// their lag).
pub(crate) fn report(module: &Module<super::group::KafkaPorts>, stats: &Statistics) {
    record(&module.metrics, stats);
    module.status.partitions(&module.name, assigned(stats));
}

/// The partitions the consumer wants (is assigned), with their lag and
/// committed offset when librdkafka knows them.
fn assigned(stats: &Statistics) -> Vec<PartitionStatus> {
    let known = |v: i64| (v >= 0).then_some(v);
    stats
        .topics
        .iter()
        .flat_map(|(topic, t)| {
            t.partitions
                .iter()
                .filter(|(partition, p)| **partition >= 0 && p.desired)
                .map(move |(&partition, p)| PartitionStatus {
                    topic: topic.clone(),
                    partition,
                    lag: known(p.consumer_lag),
                    committed: known(p.committed_offset),
                })
        })
        .collect()
}

/// Applies one statistics report of `metrics`' consumer: the brokers are
/// reachable when any broker is `UP`; each partition the consumer wants
/// (`desired`) gets its lag and committed offset, when librdkafka knows them.
pub(crate) fn record(metrics: &ModuleMetrics, stats: &Statistics) {
    metrics.brokers_up(stats.brokers.values().any(|b| b.state == "UP"));
    for (topic, t) in &stats.topics {
        for (&partition, p) in &t.partitions {
            // Partition -1 is librdkafka's internal "unassigned" partition.
            if partition < 0 || !p.desired {
                continue;
            }
            if p.consumer_lag >= 0 {
                metrics.lag(topic, partition, p.consumer_lag);
            }
            if p.committed_offset >= 0 {
                metrics.committed([(topic.as_str(), partition, p.committed_offset)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    /// A consumer's report in librdkafka's format: one broker up, topic
    /// `orders` with partition 0 assigned (lag 4, committed 10), partition 1
    /// assigned without a committed offset yet (-1001, lag -1), partition 2
    /// not assigned to us, and the internal partition -1 (marked desired here
    /// to show it is skipped on its number alone).
    const REPORT: &str = r#"{
      "name": "rdkafka#consumer-1", "client_id": "weir-enrich", "type": "consumer",
      "ts": 5016483227792, "time": 1733320000, "age": 120000000, "replyq": 0,
      "msg_cnt": 0, "msg_size": 0, "msg_max": 100000, "msg_size_max": 1073741824,
      "tx": 310, "tx_bytes": 41500, "rx": 309, "rx_bytes": 70213,
      "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 12, "rxmsg_bytes": 1210,
      "simple_cnt": 0, "metadata_cache_cnt": 1,
      "brokers": {
        "localhost:9092/1": {
          "name": "localhost:9092/1", "nodeid": 1, "nodename": "localhost:9092",
          "source": "learned", "state": "UP", "stateage": 119000000,
          "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 1, "waitresp_msg_cnt": 0,
          "tx": 300, "txbytes": 40000, "txerrs": 0, "txretries": 0, "txidle": 1200,
          "req_timeouts": 0, "rx": 299, "rxbytes": 68000, "rxerrs": 0,
          "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 1100, "zbuf_grow": 0,
          "buf_grow": 0, "wakeups": 900, "connects": 1, "disconnects": 0,
          "req": { "Fetch": 280, "OffsetCommit": 12, "Heartbeat": 5, "Metadata": 2 },
          "toppars": {
            "orders-0": { "topic": "orders", "partition": 0 },
            "orders-1": { "topic": "orders", "partition": 1 }
          }
        }
      },
      "topics": {
        "orders": {
          "topic": "orders", "metadata_age": 3000,
          "batchsize": { "min": 0, "max": 0, "avg": 0, "sum": 0, "stddev": 0, "p50": 0,
            "p75": 0, "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0,
            "hdrsize": 14448, "cnt": 0 },
          "batchcnt": { "min": 0, "max": 0, "avg": 0, "sum": 0, "stddev": 0, "p50": 0,
            "p75": 0, "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0,
            "hdrsize": 8304, "cnt": 0 },
          "partitions": {
            "0": { "partition": 0, "broker": 1, "leader": 1, "desired": true, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
              "fetchq_cnt": 2, "fetchq_size": 200, "fetch_state": "active",
              "query_offset": -1001, "next_offset": 14, "app_offset": 12, "stored_offset": 12,
              "committed_offset": 10, "eof_offset": 14, "lo_offset": 0, "hi_offset": 14,
              "ls_offset": 14, "consumer_lag": 4, "consumer_lag_stored": 2,
              "txmsgs": 0, "txbytes": 0, "rxmsgs": 12, "rxbytes": 1210, "msgs": 12,
              "rx_ver_drops": 0, "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0,
              "acked_msgid": 0 },
            "1": { "partition": 1, "broker": 1, "leader": 1, "desired": true, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
              "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "offset-query",
              "query_offset": -2, "next_offset": -1001, "app_offset": -1001,
              "stored_offset": -1001, "committed_offset": -1001, "eof_offset": -1001,
              "lo_offset": 0, "hi_offset": 5, "ls_offset": 5, "consumer_lag": -1,
              "consumer_lag_stored": -1, "txmsgs": 0, "txbytes": 0, "rxmsgs": 0,
              "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0,
              "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0 },
            "2": { "partition": 2, "broker": 1, "leader": 1, "desired": false, "unknown": false,
              "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
              "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "none",
              "query_offset": -1001, "next_offset": -1001, "app_offset": -1001,
              "stored_offset": -1001, "committed_offset": 3, "eof_offset": -1001,
              "lo_offset": 0, "hi_offset": 10, "ls_offset": 10, "consumer_lag": 7,
              "consumer_lag_stored": -1, "txmsgs": 0, "txbytes": 0, "rxmsgs": 0,
              "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0,
              "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0 },
            "-1": { "partition": -1, "broker": -1, "leader": -1, "desired": true,
              "unknown": false, "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0,
              "xmit_msgq_bytes": 0, "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "none",
              "query_offset": -1001, "next_offset": -1001, "app_offset": -1001,
              "stored_offset": -1001, "committed_offset": 1, "eof_offset": -1001,
              "lo_offset": -1001, "hi_offset": -1001, "ls_offset": -1001, "consumer_lag": 1,
              "consumer_lag_stored": -1, "txmsgs": 0, "txbytes": 0, "rxmsgs": 0,
              "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0,
              "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0 }
          }
        }
      },
      "cgrp": { "state": "up", "stateage": 118000, "join_state": "steady",
        "rebalance_age": 117000, "rebalance_cnt": 1, "rebalance_reason": "",
        "assignment_size": 2 }
    }"#;

    fn report() -> Statistics {
        serde_json::from_str(REPORT).expect("a librdkafka statistics report")
    }

    fn partition(metrics: &Metrics, family: &str, partition: &str) -> Option<f64> {
        let labels = [
            ("module", "enrich"),
            ("topic", "orders"),
            ("partition", partition),
        ];
        metrics.sample(family, &labels)
    }

    #[test]
    fn sets_lag_and_committed_offset_of_assigned_partitions_only() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("enrich");
        record(&m, &report());
        assert_eq!(partition(&metrics, "weir_consumer_lag", "0"), Some(4.0));
        assert_eq!(
            partition(&metrics, "weir_committed_offset", "0"),
            Some(10.0)
        );
        for p in ["1", "2", "-1"] {
            assert_eq!(partition(&metrics, "weir_consumer_lag", p), None, "{p}");
            assert_eq!(partition(&metrics, "weir_committed_offset", p), None, "{p}");
        }
        let text = metrics.encode();
        let lag = r#"weir_consumer_lag{module="enrich",partition="0",topic="orders"} 4"#;
        assert!(text.contains(lag), "{text}");
    }

    #[test]
    fn status_lists_assigned_partitions_with_lag() {
        let got = assigned(&report());
        let want = [
            PartitionStatus {
                topic: "orders".into(),
                partition: 0,
                lag: Some(4),
                committed: Some(10),
            },
            PartitionStatus {
                topic: "orders".into(),
                partition: 1,
                lag: None,
                committed: None,
            },
        ];
        let mut got = got;
        got.sort_by_key(|p| p.partition);
        assert_eq!(got, want);
    }

    #[test]
    fn brokers_are_up_while_any_broker_is_up() {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.module("enrich");
        metrics.set_running(true);
        m.assigned(2);
        let mut stats = report();
        record(&m, &stats);
        assert_eq!(metrics.readiness(), Ok(()));
        for broker in stats.brokers.values_mut() {
            broker.state = "CONNECT".to_owned();
        }
        record(&m, &stats);
        let problems = metrics.readiness().unwrap_err();
        assert_eq!(problems, ["module `enrich`: brokers not reachable"]);
    }
}
