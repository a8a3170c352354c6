//! Delivery reports without a channel per record: the records of one run
//! (a flight's outputs, its dead letters, its state writes) share one
//! [`Run`], and each carries a [`Ticket`] (its place in the run) through
//! librdkafka as the message's opaque. The producer's delivery callback
//! writes the answer into the run's slot; the last answer wakes the one
//! task waiting on [`RunAnswers`]. Nothing is allocated per record, and the
//! acknowledging half is woken once per run instead of once per record.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{ProducerContext, ThreadedProducer};
use rdkafka::util::IntoOpaque;

use super::convert::delivery_error;
use crate::pipeline::DeliveryError;

/// The producer weir shares between modules (and each exactly-once
/// partition's transactional one).
pub type Producer = Arc<ThreadedProducer<Acks>>;

/// The producer's context: answers each record's [`Ticket`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Ticket;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Ticket) {
        ticket.answer(match result {
            Ok(message) => Ok(message.offset()),
            Err((err, _)) => Err(delivery_error(err)),
        });
    }
}

/// One record's place in a run.
struct Slot {
    /// The run the slot belongs to (the address `Arc<Run>` points at).
    run: *const Run,
    answer: OnceLock<Result<i64, DeliveryError>>,
}

/// The answers on one run of records, filled in by delivery reports.
pub struct Run {
    slots: Box<[Slot]>,
    /// Answers still missing.
    remaining: AtomicUsize,
    waker: AtomicWaker,
}

// SAFETY: `Slot::run` is only read to rebuild the `Arc<Run>` a ticket
// holds; everything else in a run is `Sync` on its own.
unsafe impl Send for Run {}
// SAFETY: as above.
unsafe impl Sync for Run {}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("records", &self.slots.len())
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .finish()
    }
}

impl Run {
    /// A run of `records` records, none answered.
    pub fn new(records: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            slots: (0..records)
                .map(|_| Slot {
                    run: me.as_ptr(),
                    answer: OnceLock::new(),
                })
                .collect(),
            remaining: AtomicUsize::new(records),
            waker: AtomicWaker::new(),
        })
    }

    /// The ticket of the `index`th record.
    pub fn ticket(self: &Arc<Self>, index: usize) -> Ticket {
        assert!(
            index < self.slots.len(),
            "ticket {index} of a run of {}",
            self.slots.len()
        );
        Ticket {
            run: self.clone(),
            index,
        }
    }
}

/// A record's place in its run, carried through librdkafka as the
/// message's opaque (one pointer: the slot, which knows its run).
pub struct Ticket {
    run: Arc<Run>,
    index: usize,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("index", &self.index)
            .finish()
    }
}

impl Ticket {
    /// Records the broker's (or the client's) answer; the last one of the
    /// run wakes its waiter. A second answer for one record is ignored.
    pub fn answer(self, answer: Result<i64, DeliveryError>) {
        if self.run.slots[self.index].answer.set(answer).is_ok()
            && self.run.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.run.waker.wake();
        }
    }
}

impl IntoOpaque for Ticket {
    fn into_ptr(self) -> *mut std::ffi::c_void {
        let slot: *const Slot = &self.run.slots[self.index];
        // The strong count the ticket holds travels with the pointer and is
        // taken back by `from_ptr`.
        let _ = Arc::into_raw(self.run);
        slot.cast_mut().cast()
    }

    unsafe fn from_ptr(ptr: *mut std::ffi::c_void) -> Self {
        let slot: *const Slot = ptr.cast_const().cast();
        // SAFETY: `ptr` came from `into_ptr`, which kept the run alive (its
        // strong count) and pointed at one of its slots; `Slot::run` is the
        // address `Arc::into_raw` returned there.
        unsafe {
            let run = Arc::from_raw((*slot).run);
            let index = slot.offset_from(run.slots.as_ptr()) as usize;
            Self { run, index }
        }
    }
}

/// Resolves once every record of a run is answered: the answers in the
/// order the records were sent.
pub struct RunAnswers(pub Arc<Run>);

impl std::fmt::Debug for RunAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RunAnswers").field(&self.0).finish()
    }
}

impl Future for RunAnswers {
    type Output = Vec<Result<i64, DeliveryError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let run = &self.0;
        if run.remaining.load(Ordering::Acquire) != 0 {
            run.waker.register(cx.waker());
            if run.remaining.load(Ordering::Acquire) != 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(
            run.slots
                .iter()
                .map(|slot| match slot.answer.get() {
                    Some(answer) => answer.clone(),
                    None => Err(DeliveryError::transient("delivery report missing")),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Fault;

    fn through_librdkafka(ticket: Ticket) -> Ticket {
        let ptr = ticket.into_ptr();
        // SAFETY: `ptr` was made by `into_ptr` just above, once.
        unsafe { Ticket::from_ptr(ptr) }
    }

    #[tokio::test]
    async fn a_run_resolves_with_every_answer_in_order_after_the_last() {
        let run = Run::new(3);
        let tickets: Vec<Ticket> = (0..3).map(|i| through_librdkafka(run.ticket(i))).collect();
        let mut answers = RunAnswers(run.clone());
        let mut tickets = tickets.into_iter();
        let (first, second, third) = (tickets.next(), tickets.next(), tickets.next());
        third.expect("ticket").answer(Ok(7));
        first.expect("ticket").answer(Err(DeliveryError {
            fault: Fault::Permanent,
            reason: "too large".into(),
        }));
        assert!(futures::poll!(&mut answers).is_pending());
        let waiter = tokio::spawn(answers);
        tokio::task::yield_now().await;
        second.expect("ticket").answer(Ok(5));
        let got = waiter.await.expect("join");
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[0], Err(e) if e.fault == Fault::Permanent));
        assert_eq!(got[1].as_ref().ok(), Some(&5));
        assert_eq!(got[2].as_ref().ok(), Some(&7));
        // Every ticket's strong count came back.
        assert_eq!(Arc::strong_count(&run), 1);
    }

    #[tokio::test]
    async fn an_empty_run_is_answered_at_once() {
        assert!(RunAnswers(Run::new(0)).await.is_empty());
    }
}
