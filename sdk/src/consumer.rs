//! The [`Consumer`] trait: what a consumer implements.

use crate::context::Context;
use crate::error::Error;
use crate::event::Event;

/// A Kafka consumer: what to do with each event.
///
/// Implement [`Consumer::on_event`] and export the type with
/// [`export_consumer!`](crate::export_consumer) (the host calls it once per
/// event) or [`export_batch_consumer!`](crate::export_batch_consumer) (the
/// host calls [`Consumer::on_batch`] with several events of one partition).
///
/// The functions take no `self`: the host keeps one component instance
/// alive across calls, so state that must outlive a call lives in a
/// `static` or `thread_local!` (the component is single-threaded). That
/// state is lost on a reload or restart, and events can be delivered more
/// than once, so it must be a cache, never the source of truth.
pub trait Consumer {
    /// Handles one event. `Ok(())` lets the host produce what was emitted
    /// and commit the offset; an [`Error`] says whether to retry or reject.
    fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error>;

    /// Handles events of one partition, in offset order, returning exactly
    /// one result per event, in the same order.
    ///
    /// The default calls [`Consumer::on_event`] for each event and stops at
    /// the first retry: a retry makes the host discard everything emitted
    /// during the call and redeliver the whole batch, so the events after it
    /// are answered with a retry instead of being handled for nothing.
    ///
    /// Records emitted during a batch cannot be attributed to one event: the
    /// host produces all of them unless the batch is retried. Do not emit
    /// for an event you then reject.
    fn on_batch(ctx: &mut Context, events: &[Event]) -> Vec<Result<(), Error>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let result = Self::on_event(ctx, event);
            let retry = matches!(&result, Err(e) if e.is_retry());
            results.push(result);
            if retry {
                let reason = format!(
                    "batch will be retried: offset {} asked for a retry",
                    event.offset()
                );
                results.resize(events.len(), Err(Error::retry(reason)));
                break;
            }
        }
        results
    }
}

/// Runs `C` on one event, exactly as the `handler` export does.
pub(crate) fn handle_event<C: Consumer>(event: &Event) -> Result<(), Error> {
    C::on_event(&mut Context::new(), event)
}

/// Runs `C` on a batch, exactly as the `batch-handler` export does.
pub(crate) fn handle_batch<C: Consumer>(events: &[Event]) -> Vec<Result<(), Error>> {
    C::on_batch(&mut Context::new(), events)
}
