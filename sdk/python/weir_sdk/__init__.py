"""Write weir Kafka consumers in Python, built as WebAssembly components
with componentize-py against weir's WIT (`wit/consumer.wit`, world
`consumer`, or `batch-consumer` with :func:`export_batch`).

A consumer is a class with an ``on_event(self, ctx, event)`` method,
exported under the name ``Handler`` of the app module::

    import weir_sdk
    from weir_sdk import Reject, config

    class Upper(weir_sdk.Consumer):
        def on_event(self, ctx, event):
            text = event.value_str()
            if text is None:
                raise Reject("tombstones are not expected")
            ctx.emit(event.forward_to(config.get_or("output", "upper")).value(text.upper()))

    Handler = weir_sdk.export(Upper)

Returning normally means ``ok``: the host produces what was emitted and may
commit the offset. Raising :class:`Retry` asks the host to call again with
the same event after a backoff; raising :class:`Reject` (or any other
exception, like ``?`` in the Rust SDK) rejects the event for good with the
exception's message. The vocabulary mirrors the Rust SDK (``weir-sdk``):
``Event``, ``Record``, ``Context.emit``, ``config.get/require/get_or``,
``log.info`` and friends, ``EmitError``.

Batch mode: ``BatchHandler = weir_sdk.export_batch(Upper)`` instead, built
with ``componentize-py -w batch-consumer``, makes one component call per
batch of events (up to ``limits.max-batch``) rather than one per event; the
SDK calls ``on_event`` for each event of the batch (or override
``Consumer.on_batch``) and answers one disposition per event. A retry then
retries the whole batch, and records emitted for an event that is rejected
are still produced (see :meth:`Consumer.on_batch`).

Durable keyed state, per input partition, is :mod:`weir_sdk.state`
(``state.get/set/set_with_ttl/delete/scan/scan_prefix/get_json/set_json``);
its writes are discarded with the emitted records when the handler raises,
and a write the host refuses raises :class:`StateError` (a ``Reject``).
"""

from . import config, log, state
from .consumer import Consumer, Context, export, export_batch
from .errors import EmitError, Error, Reject, Retry, StateError
from .event import Event, Record
from . import json

__all__ = [
    "Consumer",
    "Context",
    "EmitError",
    "Error",
    "Event",
    "Record",
    "Reject",
    "Retry",
    "StateError",
    "config",
    "export",
    "export_batch",
    "json",
    "log",
    "state",
]
