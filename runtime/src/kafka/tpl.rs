//! Topic-partition lists as weir's own types, and for logs.

use rdkafka::{Offset, TopicPartitionList};

use crate::pipeline::TopicPartition;

/// The partitions of a list.
pub(super) fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// The partitions of a list that carry an offset, with it.
pub(super) fn offset_list(tpl: &TopicPartitionList) -> Vec<(TopicPartition, i64)> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((TopicPartition::new(e.topic(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// `topic[partition]@offset,...` for logs.
pub(super) fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}[{}]@{o}", e.topic(), e.partition()),
            _ => format!("{}[{}]", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}
