"""``Consumer``, ``Context``, ``export`` and ``export_batch``: the glue
between a consumer class and the component's export, ``weir:consumer/handler``
(world ``consumer``) or ``weir:consumer/batch-handler`` (world
``batch-consumer``)."""

import traceback
from typing import List, Optional

from . import config, log
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

    def on_batch(self, ctx: "Context", events: List[Event]) -> List[Optional[BaseException]]:
        """Handle events of one partition, in offset order (world
        ``batch-consumer``, see :func:`export_batch`), returning one result
        per event, in the same order: ``None`` for ``ok``, or the exception
        that decides the event (:class:`Retry`, :class:`Reject`, or any other
        exception, which rejects).

        The default calls :meth:`on_event` for each event with the same
        ``ctx`` and stops at the first retry: a retry makes the host discard
        everything emitted during the call and redeliver the whole batch, so
        the events after it are answered with a retry instead of being
        handled for nothing (as the Rust SDK's ``Consumer::on_batch``).

        Records emitted during a batch cannot be attributed to one event:
        the host produces all of them unless the batch is retried, also
        those emitted for an event that is then rejected. Emit last, once
        the event is known to be good (as ``python-json-enrich`` does).
        State writes (:mod:`weir_sdk.state`) follow the same rule: kept for
        a rejected event, discarded only when the batch is retried."""
        results: List[Optional[BaseException]] = []
        for event in events:
            try:
                self.on_event(ctx, event)
            except Retry as e:
                reason = f"batch will be retried: offset {event.offset} asked for a retry"
                results.append(e)
                results.extend(Retry(reason) for _ in range(len(events) - len(results)))
                break
            except Exception as e:  # noqa: BLE001 - any error rejects the event, as in on_event
                results.append(e)
            else:
                results.append(None)
        return results


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


# The export protocols of the two worlds: componentize-py generates only the
# one of the world it builds for, and a class needs neither to be exported
# (they are typing protocols), so an app may define both `Handler` and
# `BatchHandler` and be built for either world.
_HandlerBase = getattr(exports, "Handler", object)
_BatchHandlerBase = getattr(exports, "BatchHandler", object)

_OK = types.Disposition_Ok()


def _disposition(error: Optional[BaseException]):
    """The WIT disposition for one result: ``None`` is ``ok``; a
    :class:`Retry` retries, a :class:`Reject` rejects with its reason, and
    any other exception rejects with ``"<ExceptionType>: <message>"`` after
    logging its traceback at WARN."""
    if error is None:
        return _OK
    if isinstance(error, Retry):
        return types.Disposition_Retry(error.reason)
    if isinstance(error, Error):
        return types.Disposition_Reject(error.reason)
    log.warn("".join(traceback.format_exception(error)).rstrip())
    return types.Disposition_Reject(f"{type(error).__name__}: {error}")


def export(consumer_class):
    """The ``Handler`` class componentize-py exports for ``consumer_class``
    in world ``consumer`` (one call per event): write
    ``Handler = weir_sdk.export(MyConsumer)`` in the app module.

    An exception other than :class:`Retry`/:class:`Reject` rejects the event
    with ``"<ExceptionType>: <message>"`` and logs the traceback at WARN;
    it never traps the component."""
    consumer = None

    class Handler(_HandlerBase):
        def handle(self, event):
            nonlocal consumer
            config._begin_call()
            try:
                if consumer is None:
                    consumer = consumer_class()
                consumer.on_event(Context(), _event(event))
            except Exception as e:  # noqa: BLE001 - any error rejects, as `?` does in Rust
                return _disposition(e)
            return _OK

    Handler.__name__ = Handler.__qualname__ = "Handler"
    return Handler


def export_batch(consumer_class):
    """The ``BatchHandler`` class componentize-py exports for
    ``consumer_class`` in world ``batch-consumer`` (one call per batch of up
    to ``limits.max-batch`` events of one partition): write
    ``BatchHandler = weir_sdk.export_batch(MyConsumer)`` in the app module
    and build with ``componentize-py -w batch-consumer``.

    Each call runs :meth:`Consumer.on_batch` (by default :meth:`on_event`
    for each event, stopping at the first retry) with one :class:`Context`
    and answers one disposition per event: an exception raised for one
    event becomes that event's disposition without failing the others.
    An exception escaping ``on_batch`` itself decides every event of the
    batch the same way (never a trap). Records emitted for an event that
    is then rejected are still produced (the host cannot tell which event
    emitted them); a retry discards everything the batch emitted."""
    consumer = None

    class BatchHandler(_BatchHandlerBase):
        def handle_batch(self, events):
            nonlocal consumer
            config._begin_call()
            try:
                if consumer is None:
                    consumer = consumer_class()
                results = consumer.on_batch(Context(), [_event(e) for e in events])
            except Exception as e:  # noqa: BLE001 - decides the whole batch, never traps
                disposition = _disposition(e)
                return [disposition] * len(events)
            # A result of another length fails the whole batch in the host,
            # which says so; it is passed on as it is.
            return [_OK if r is None else _disposition(r) for r in results]

    BatchHandler.__name__ = BatchHandler.__qualname__ = "BatchHandler"
    return BatchHandler


__all__ = ["Consumer", "Context", "Reject", "Retry", "export", "export_batch"]
