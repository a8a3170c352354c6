//! `weir offsets <module> --reset-to ...`: where a module's group offsets
//! go, worked out against the brokers, and committed.
//!
//! The supervisor applies a reset with the module's consumer stopped (it
//! drained, committed and left the group), from a consumer of the same
//! group that does not join it: the coordinator accepts such a commit only
//! while the group has no members, which is also what Kafka's own
//! `kafka-consumer-groups --reset-offsets` requires. When other processes
//! still consume in the group, the commit is refused and nothing moves.
//!
//! librdkafka's mock cluster (`weir dev`) refuses commits from non-members
//! once a group exists, empty or not: there only `--dry-run` is answered.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::OpsError;
use crate::kafka::KafkaSettings;

/// Budget of each lookup (metadata, watermarks, times, committed offsets).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to move offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// Every input partition's first offset.
    Earliest,
    /// Every input partition's end.
    Latest,
    /// Every input partition's first event at or after this time (its end
    /// when there is none).
    Time(SystemTime),
    /// One partition to an exact offset.
    Exact {
        /// Input topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The next offset to read.
        offset: i64,
    },
}

impl FromStr for ResetTo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        if let Ok(at) = humantime::parse_rfc3339(s) {
            return Ok(Self::Time(at));
        }
        // topic:partition:offset; a topic name holds no `:`.
        let mut parts = s.rsplitn(3, ':');
        let (offset, partition, topic) = (parts.next(), parts.next(), parts.next());
        if let (Some(offset), Some(partition), Some(topic)) = (offset, partition, topic)
            && !topic.is_empty()
            && let (Ok(partition), Ok(offset)) = (partition.parse::<i32>(), offset.parse::<i64>())
            && partition >= 0
            && offset >= 0
        {
            return Ok(Self::Exact {
                topic: topic.to_owned(),
                partition,
                offset,
            });
        }
        Err(format!(
            "`{s}` is not earliest, latest, an RFC 3339 time in UTC (2026-12-04T10:00:00Z) \
             or topic:partition:offset"
        ))
    }
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Move {
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset before, if any.
    pub from: Option<i64>,
    /// The new committed offset (the next event read).
    pub to: i64,
}

/// Checks that `specs` is one of `earliest`, `latest`, a time, or any
/// number of exact offsets, and that exact offsets name `topics`.
pub fn check(specs: &[ResetTo], topics: &[String]) -> Result<(), OpsError> {
    let exact = specs
        .iter()
        .filter(|s| matches!(s, ResetTo::Exact { .. }))
        .count();
    if specs.is_empty() {
        return Err(OpsError::BadRequest("no --reset-to given".into()));
    }
    if exact != specs.len() && specs.len() != 1 {
        return Err(OpsError::BadRequest(
            "give one of earliest, latest or a time, or any number of topic:partition:offset"
                .into(),
        ));
    }
    for spec in specs {
        if let ResetTo::Exact { topic, .. } = spec
            && !topics.contains(topic)
        {
            return Err(OpsError::BadRequest(format!(
                "`{topic}` is not an input topic of the module (it reads {})",
                topics.join(", ")
            )));
        }
    }
    Ok(())
}

/// A consumer of `group` that never joins it: for lookups and for the
/// commit of a reset.
pub fn consumer(kafka: &KafkaSettings, group: &str) -> Result<BaseConsumer, OpsError> {
    kafka
        .consumer_config(group, "earliest")
        .create()
        .map_err(|e| {
            OpsError::Kafka(format!(
                "cannot create a consumer: {}",
                kafka.describe_error(&e)
            ))
        })
}

/// Works out each partition's move for `specs` (checked by [`check`]).
/// Blocking.
pub fn plan(
    consumer: &BaseConsumer,
    topics: &[String],
    specs: &[ResetTo],
) -> Result<Vec<Move>, OpsError> {
    let kafka = |what: &str, e: KafkaError| OpsError::Kafka(format!("cannot {what}: {e}"));
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
            .map_err(|e| kafka("read the topics' metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(all.clone(), LOOKUP_TIMEOUT)
        .map_err(|e| kafka("read the committed offsets", e))?;
    let from = |topic: &str, partition: i32| {
        committed
            .find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
    };
    let watermarks = |topic: &str, partition: i32| {
        consumer
            .fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)
            .map_err(|e| kafka(&format!("read the watermarks of {topic}[{partition}]"), e))
    };
    let mut moves = Vec::new();
    let mut times = TopicPartitionList::new();
    for e in all.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        let to = match specs {
            [ResetTo::Earliest] => watermarks(topic, partition)?.0,
            [ResetTo::Latest] => watermarks(topic, partition)?.1,
            [ResetTo::Time(at)] => {
                let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                let ms = i64::try_from(ms).unwrap_or(i64::MAX);
                let _ = times.add_partition_offset(topic, partition, Offset::Offset(ms));
                continue;
            }
            _ => {
                let Some(offset) = specs.iter().find_map(|s| match s {
                    ResetTo::Exact {
                        topic: t,
                        partition: p,
                        offset,
                    } if t == topic && *p == partition => Some(*offset),
                    _ => None,
                }) else {
                    continue;
                };
                let (low, high) = watermarks(topic, partition)?;
                if offset < low || offset > high {
                    return Err(OpsError::BadRequest(format!(
                        "{topic}[{partition}] holds offsets {low}..{high}; {offset} is outside"
                    )));
                }
                offset
            }
        };
        moves.push(Move {
            topic: topic.to_owned(),
            partition,
            from: from(topic, partition),
            to,
        });
    }
    if times.count() > 0 {
        let found = consumer
            .offsets_for_times(times, LOOKUP_TIMEOUT)
            .map_err(|e| kafka("look the time up", e))?;
        for e in found.elements() {
            let (topic, partition) = (e.topic(), e.partition());
            let to = match e.offset() {
                Offset::Offset(o) if o >= 0 => o,
                _ => watermarks(topic, partition)?.1,
            };
            moves.push(Move {
                topic: topic.to_owned(),
                partition,
                from: from(topic, partition),
                to,
            });
        }
    }
    for spec in specs {
        if let ResetTo::Exact {
            topic, partition, ..
        } = spec
            && !moves
                .iter()
                .any(|m| &m.topic == topic && m.partition == *partition)
        {
            return Err(OpsError::BadRequest(format!(
                "{topic} has no partition {partition}"
            )));
        }
    }
    moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(moves)
}

/// Commits `moves` for the consumer's group. Refused while the group has
/// members (see the module docs). Blocking.
pub fn commit(consumer: &BaseConsumer, group: &str, moves: &[Move]) -> Result<(), OpsError> {
    let mut tpl = TopicPartitionList::new();
    for m in moves {
        tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.to))
            .map_err(|e| OpsError::BadRequest(e.to_string()))?;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => Ok(()),
        Err(KafkaError::ConsumerCommit(
            code @ (RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedInstanceId),
        )) => Err(OpsError::Conflict(format!(
            "group `{group}` still has live members ({code}): other processes consume it, \
             or a killed static member's session has not expired yet; offsets can only be \
             moved while the group is empty (stop the module elsewhere and retry)"
        ))),
        Err(err) => Err(OpsError::Kafka(format!(
            "cannot commit the new offsets of group `{group}`: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("earliest".parse(), Ok(ResetTo::Earliest));
        assert_eq!("latest".parse(), Ok(ResetTo::Latest));
        assert_eq!(
            "2026-12-04T10:00:00Z".parse(),
            Ok(ResetTo::Time(
                UNIX_EPOCH + Duration::from_secs(1_796_378_400)
            ))
        );
        assert_eq!(
            "orders.v1:2:40".parse(),
            Ok(ResetTo::Exact {
                topic: "orders.v1".into(),
                partition: 2,
                offset: 40
            })
        );
        for bad in [
            "",
            "first",
            ":1:2",
            "t:x:2",
            "t:1:-3",
            "t:-1:0",
            "2026-13-01",
        ] {
            assert!(bad.parse::<ResetTo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_are_checked_against_the_inputs() {
        let topics = ["in".to_owned()];
        let exact = |t: &str| ResetTo::Exact {
            topic: t.into(),
            partition: 0,
            offset: 1,
        };
        assert!(check(&[ResetTo::Earliest], &topics).is_ok());
        assert!(check(&[exact("in"), exact("in")], &topics).is_ok());
        assert!(check(&[], &topics).is_err());
        assert!(check(&[ResetTo::Earliest, ResetTo::Latest], &topics).is_err());
        assert!(check(&[ResetTo::Earliest, exact("in")], &topics).is_err());
        let err = check(&[exact("other")], &topics).unwrap_err().to_string();
        assert!(err.contains("not an input topic"), "{err}");
    }

    #[test]
    fn plans_against_the_mock_cluster() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let cluster: MockCluster<'static, DefaultProducerContext> =
            MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("in", 2, 1).expect("topic");
        let kafka = KafkaSettings {
            brokers: cluster.bootstrap_servers(),
            passthrough: Default::default(),
        };
        let producer: ThreadedProducer<_> = kafka.producer_config().create().expect("producer");
        for i in 0..5 {
            producer
                .send(
                    BaseRecord::<(), str>::to("in")
                        .partition(i % 2)
                        .payload("x"),
                )
                .expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        let consumer = consumer(&kafka, "g").expect("consumer");
        let topics = ["in".to_owned()];
        let latest = plan(&consumer, &topics, &[ResetTo::Latest]).expect("plan");
        let ends: Vec<(i32, i64)> = latest.iter().map(|m| (m.partition, m.to)).collect();
        assert_eq!(ends, [(0, 3), (1, 2)]);
        let exact = plan(&consumer, &topics, &["in:1:1".parse().unwrap()]).expect("plan");
        assert_eq!(
            exact,
            [Move {
                topic: "in".into(),
                partition: 1,
                from: None,
                to: 1
            }]
        );
        let err = plan(&consumer, &topics, &["in:1:9".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        commit(&consumer, "g", &latest).expect("commit to an empty group");
        let again = plan(&consumer, &topics, &[ResetTo::Earliest]).expect("plan");
        assert_eq!(again[0].from, Some(3));
        assert_eq!(again[0].to, 0);
    }
}
