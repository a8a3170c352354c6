//! The export macros, and the glue from the WIT exports to [`Consumer`].
//!
//! Each macro implements the wit-bindgen `Guest` trait of one world for a
//! generic adapter over the user's type, then invokes the export macro that
//! wit-bindgen generated for that world. The generated macro also embeds the
//! world's export half of the component type, so a component declares only
//! the interface it really exports.

use std::marker::PhantomData;

use crate::bindings::batch::exports::weir::consumer::batch_handler;
use crate::bindings::consumer::exports::weir::consumer::handler;
use crate::bindings::consumer::weir::consumer::types as wit;
use crate::consumer::{Consumer, handle_batch, handle_event};
use crate::error::Disposition;
use crate::event::Event;

/// The `handler` export for consumer `C`. Used by `export_consumer!`.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerExport<C>(PhantomData<C>);

impl<C: Consumer> handler::Guest for HandlerExport<C> {
    fn handle(event: wit::Event) -> wit::Disposition {
        Disposition::from(handle_event::<C>(&Event(event))).into_wit()
    }
}

/// The `batch-handler` export for consumer `C`. Used by
/// `export_batch_consumer!`.
#[doc(hidden)]
#[derive(Debug)]
pub struct BatchHandlerExport<C>(PhantomData<C>);

impl<C: Consumer> batch_handler::Guest for BatchHandlerExport<C> {
    fn handle_batch(events: Vec<wit::Event>) -> Vec<wit::Disposition> {
        // `Event` is a transparent wrapper, so this collects in place.
        let events: Vec<Event> = events.into_iter().map(Event).collect();
        handle_batch::<C>(&events)
            .into_iter()
            .map(|result| Disposition::from(result).into_wit())
            .collect()
    }
}

/// Exports a [`Consumer`] as a component of world `consumer`: the host calls
/// [`Consumer::on_event`] once per event.
///
/// Use it once, in the crate that is built into the component (a `cdylib`
/// for `wasm32-wasip2`). It exports the `handler` interface only.
///
/// ```no_run
/// use weir_sdk::{Consumer, Context, Error, Event};
///
/// struct Passthrough;
///
/// impl Consumer for Passthrough {
///     fn on_event(ctx: &mut Context, event: &Event) -> Result<(), Error> {
///         ctx.emit(event.forward_to("copy"))?;
///         Ok(())
///     }
/// }
///
/// weir_sdk::export_consumer!(Passthrough);
/// ```
#[macro_export]
macro_rules! export_consumer {
    ($consumer:ty) => {
        const _: () = {
            type WeirHandlerExport = $crate::__private::HandlerExport<$consumer>;
            $crate::__private::consumer::export_handler!(
                WeirHandlerExport with_types_in $crate::__private::consumer
            );
        };
    };
}

/// Exports a [`Consumer`] as a component of world `batch-consumer`: the host
/// calls [`Consumer::on_batch`] with several events of one partition.
///
/// Use it instead of [`export_consumer!`](crate::export_consumer), once. It
/// exports the `batch-handler` interface only. A batch is the host's unit of
/// retry; see [`Consumer::on_batch`].
///
/// ```no_run
/// use weir_sdk::{Consumer, Context, Error, Event};
///
/// struct Count;
///
/// impl Consumer for Count {
///     fn on_event(_ctx: &mut Context, _event: &Event) -> Result<(), Error> {
///         Ok(())
///     }
///
///     fn on_batch(_ctx: &mut Context, events: &[Event]) -> Vec<Result<(), Error>> {
///         weir_sdk::debug!("{} events", events.len());
///         events.iter().map(|_| Ok(())).collect()
///     }
/// }
///
/// weir_sdk::export_batch_consumer!(Count);
/// ```
#[macro_export]
macro_rules! export_batch_consumer {
    ($consumer:ty) => {
        const _: () = {
            type WeirBatchHandlerExport = $crate::__private::BatchHandlerExport<$consumer>;
            $crate::__private::batch::export_batch_handler!(
                WeirBatchHandlerExport with_types_in $crate::__private::batch
            );
        };
    };
}
