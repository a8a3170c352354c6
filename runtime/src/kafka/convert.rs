//! Converting between Kafka messages and the WIT records guests see, and
//! producing one record.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::acks::{Producer, Ticket};
use crate::bindings::weir::consumer::types::{Event, Header, Outgoing};
use crate::pipeline::{DeliveryError, Fault};

/// Copies a Kafka message of `topic` into a WIT event (the caller knows
/// the topic: asking librdkafka costs a lookup, a `strlen` and a UTF-8
/// check per message). A header with a null value becomes an empty value.
pub fn to_event(message: &BorrowedMessage<'_>, topic: &str) -> Event {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Event {
        topic: topic.to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// A producer error as the pipeline sees it: permanent when retrying cannot
/// fix the record (too large, its partition does not exist, not
/// authorised), fatal when the transactional producer is fenced or broken,
/// transient otherwise.
pub fn delivery_error(err: &KafkaError) -> DeliveryError {
    let fault = if is_fatal(err) {
        Fault::Fatal
    } else if is_permanent(err) {
        Fault::Permanent
    } else {
        Fault::Transient
    };
    DeliveryError {
        fault,
        reason: err.to_string(),
    }
}

/// Fenced or fatal errors end a transactional producer.
fn is_fatal(err: &KafkaError) -> bool {
    match err {
        KafkaError::Transaction(e) if e.is_fatal() => true,
        _ => matches!(
            err.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        ),
    }
}

fn is_permanent(err: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        err.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::UnknownPartition
                | C::TopicAuthorizationFailed
        )
    )
}

/// Enqueues one record (waiting while librdkafka's queue is full); its
/// delivery report answers `ticket`, and so does a refusal at enqueue.
/// Records enqueued one after another keep their order per partition.
/// `timestamp_ms` is the timestamp to give it (the input event's), or
/// `None` for the producer's clock.
pub async fn send(
    producer: &Producer,
    record: &Outgoing,
    timestamp_ms: Option<i64>,
    ticket: Ticket,
) {
    let mut base = BaseRecord::<[u8], [u8], Ticket>::with_opaque_to(&record.topic, ticket);
    if let Some(key) = &record.key {
        base = base.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        base = base.payload(value.as_slice());
    }
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    if let Some(ts) = timestamp_ms {
        base = base.timestamp(ts);
    }
    if !record.headers.is_empty() {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |hs, h| {
                hs.insert(KafkaHeader {
                    key: &h.key,
                    value: Some(h.value.as_slice()),
                })
            },
        );
        base = base.headers(headers);
    }
    loop {
        match producer.send(base) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((err, back)) => return back.delivery_opaque.answer(Err(delivery_error(&err))),
        }
    }
}
