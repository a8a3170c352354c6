"""``Consumer``, ``Context`` and ``export``: the glue between a consumer
class and the component's ``weir:consumer/handler`` export."""

import traceback

from . import log
from ._host import Err, emitter, exports, types
from .errors import EmitError, Error, Reject, Retry
from .event import Event, Record


class Consumer:
    """Base class of a consumer: override :meth:`on_event`.

    One instance serves every event of a component instance, so attributes
    set in ``__init__`` or in a handler survive between calls (not a reload
    or a restart, and events can be redelivered: keep caches only)."""

    def on_event(self, ctx: "Context", event: Event) -> None:
        """Handle one event: return for ``ok``, raise :class:`Retry` or
        :class:`Reject` (or anything else, which rejects) otherwise."""
        raise NotImplementedError("override Consumer.on_event")


class Context:
    """What a handler can do besides returning: emit records. One per call."""

    __slots__ = ("emitted",)

    def __init__(self):
        #: How many records the host has accepted during this call.
        self.emitted = 0

    def emit(self, record: Record) -> None:
        """Asks the host to produce ``record`` if the event ends ``ok``.
        Raises :class:`EmitError` (a :class:`Reject`) when the host refuses."""
        try:
            emitter.emit(record._to_wit())
        except Err as e:
            err = e.value
            kinds = {
                types.EmitError_TopicNotAllowed: "topic-not-allowed",
                types.EmitError_TooLarge: "too-large",
                types.EmitError_TooMany: "too-many",
                types.EmitError_InvalidPartition: "invalid-partition",
            }
            raise EmitError(kinds.get(type(err), type(err).__name__), err.value) from None
        self.emitted += 1


def _event(wit_event) -> Event:
    event = Event.__new__(Event)
    event.topic = wit_event.topic
    event.partition = wit_event.partition
    event.offset = wit_event.offset
    event.timestamp_ms = wit_event.timestamp_ms
    event.key = wit_event.key
    event.value = wit_event.value
    event.headers = [(h.key, h.value) for h in wit_event.headers]
    return event


def export(consumer_class):
    """The ``Handler`` class componentize-py exports for ``consumer_class``:
    write ``Handler = weir_sdk.export(MyConsumer)`` in the app module.

    An exception other than :class:`Retry`/:class:`Reject` rejects the event
    with ``"<ExceptionType>: <message>"`` and logs the traceback at WARN;
    it never traps the component."""
    consumer = None

    class Handler(exports.Handler):
        def handle(self, event):
            nonlocal consumer
            try:
                if consumer is None:
                    consumer = consumer_class()
                consumer.on_event(Context(), _event(event))
            except Retry as e:
                return types.Disposition_Retry(e.reason)
            except Error as e:
                return types.Disposition_Reject(e.reason)
            except Exception as e:  # noqa: BLE001 - any error rejects, as `?` does in Rust
                log.warn("".join(traceback.format_exception(e)).rstrip())
                return types.Disposition_Reject(f"{type(e).__name__}: {e}")
            return types.Disposition_Ok()

    Handler.__name__ = Handler.__qualname__ = "Handler"
    return Handler


__all__ = ["Consumer", "Context", "Reject", "Retry", "export"]
