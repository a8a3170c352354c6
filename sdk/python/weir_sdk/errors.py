"""Handler verdicts (``Retry``, ``Reject``), ``EmitError`` and ``StateError``."""


class Error(Exception):
    """A handler verdict other than ``ok``; raise :class:`Retry` or
    :class:`Reject` rather than this base class."""

    def __init__(self, reason: str):
        super().__init__(reason)
        #: Why, as the host will report it.
        self.reason = str(reason)


class Retry(Error):
    """A transient failure: the host discards what was emitted for the event
    and calls the handler again with the same event after a backoff."""


class Reject(Error):
    """A permanent failure: the host discards what was emitted for the event,
    reports it with the reason and moves on."""


class EmitError(Reject):
    """The host refused an emitted record. Uncaught, it rejects the event with
    its message; catch it to decide otherwise.

    ``kind`` is one of ``topic-not-allowed`` (``detail``: the topic),
    ``too-large`` (the limit in bytes), ``too-many`` (the records emitted so far, as
    many as ``limits.max-emits`` or ``limits.max-emit-bytes`` allow) or ``invalid-partition`` (the partition)."""

    def __init__(self, kind: str, detail):
        self.kind = kind
        self.detail = detail
        messages = {
            "topic-not-allowed": f"topic `{detail}` is not in the module's output-topics",
            "too-large": f"record is larger than the limit of {detail} bytes",
            "too-many": f"emit limit reached after {detail} records for one call "
            "(limits.max-emits or limits.max-emit-bytes)",
            "invalid-partition": f"partition {detail} is negative",
        }
        super().__init__(messages.get(kind, f"{kind}: {detail}"))


class StateError(Reject):
    """The host refused a state write (:mod:`weir_sdk.state`). Uncaught, it
    rejects the event with its message, and the host discards the event's
    state writes with its emitted records; catch it to decide otherwise.

    ``kind`` is one of ``key-too-large`` (``detail``: the limit in bytes),
    ``value-too-large`` (the limit in bytes), ``quota-exceeded`` (the
    partition's store limit in MiB) or ``too-many`` (the maximum number of
    keys written per call). The message names the manifest setting."""

    def __init__(self, kind: str, detail):
        self.kind = kind
        self.detail = detail
        messages = {
            "key-too-large": f"state key is longer than limits.max-state-key-bytes ({detail} bytes)",
            "value-too-large": f"state value is longer than limits.max-state-value-bytes ({detail} bytes)",
            "quota-exceeded": f"state write would take the partition's store over limits.state-mib ({detail} MiB)",
            "too-many": f"more than {detail} state keys written for one call (limits.max-emits)",
        }
        super().__init__(messages.get(kind, f"state {kind}: {detail}"))
