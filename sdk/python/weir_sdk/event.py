"""``Event`` (what the handler receives) and ``Record`` (what it emits)."""

from typing import Iterable, List, Optional, Tuple, Union

from . import json as _json
from ._host import types as _types
from .errors import Reject

Bytes = Union[bytes, bytearray, str]


def _bytes(value: Bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _utf8(value: Optional[bytes], what: str) -> Optional[str]:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Reject(f"{what} is not UTF-8: {e}") from None


def _last(headers: Iterable[Tuple[str, bytes]], name: str) -> Optional[bytes]:
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


class Event:
    """One Kafka event. ``topic``, ``partition`` and ``offset`` identify it
    uniquely (a natural idempotency key under at-least-once delivery).

    Attributes: ``topic`` (str), ``partition`` (int), ``offset`` (int),
    ``timestamp_ms`` (int or None), ``key`` (bytes or None), ``value``
    (bytes, or None for a tombstone), ``headers`` (list of ``(name, bytes)``
    in the producer's order; names may repeat)."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ms", "key", "value", "headers")

    def __init__(
        self,
        topic: str = "test",
        partition: int = 0,
        offset: int = 0,
        timestamp_ms: Optional[int] = None,
        key: Optional[Bytes] = None,
        value: Optional[Bytes] = None,
        headers: Iterable[Tuple[str, Bytes]] = (),
    ):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = None if key is None else _bytes(key)
        self.value = None if value is None else _bytes(value)
        self.headers: List[Tuple[str, bytes]] = [(k, _bytes(v)) for k, v in headers]

    def key_str(self) -> Optional[str]:
        """The key as text; a key that is not UTF-8 rejects the event."""
        return _utf8(self.key, "key")

    def value_str(self) -> Optional[str]:
        """The value as text; a value that is not UTF-8 rejects the event."""
        return _utf8(self.value, "value")

    def value_json(self):
        """The value parsed as JSON (see :mod:`weir_sdk.json`). A tombstone or
        a value that does not parse rejects the event, saying why."""
        if self.value is None:
            raise Reject("value is a tombstone, expected JSON")
        try:
            return _json.loads(self.value)
        except (ValueError, RecursionError) as e:
            raise Reject(f"value is not the expected JSON: {e}") from None

    def is_tombstone(self) -> bool:
        """``True`` when the event has no value."""
        return self.value is None

    def header(self, name: str) -> Optional[bytes]:
        """The value of the **last** header called ``name``, or ``None``."""
        return _last(self.headers, name)

    def header_str(self, name: str) -> Optional[str]:
        """:meth:`header` as text; not UTF-8 rejects the event."""
        return _utf8(self.header(name), "header value")

    def forward_to(self, topic: str) -> "Record":
        """A record for ``topic`` with this event's key, value and headers."""
        # The event's fields are already bytes: no conversion (Record.__init__).
        record = Record.__new__(Record)
        record.topic = topic
        record._key = self.key
        record._value = self.value
        record.headers = list(self.headers)
        record._partition = None
        return record

    def __repr__(self) -> str:
        return (
            f"Event(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r}, headers={self.headers!r})"
        )


class Record:
    """A record to emit. Builder methods return the record, so they chain:
    ``Record("out").key("k").json({"a": 1}).header("h", "v")``."""

    __slots__ = ("topic", "_key", "_value", "headers", "_partition")

    def __init__(
        self,
        topic: str,
        key: Optional[Bytes] = None,
        value: Optional[Bytes] = None,
        headers: Iterable[Tuple[str, Bytes]] = (),
        partition: Optional[int] = None,
    ):
        self.topic = topic
        self._key = None if key is None else _bytes(key)
        self._value = None if value is None else _bytes(value)
        self.headers: List[Tuple[str, bytes]] = [(k, _bytes(v)) for k, v in headers]
        self._partition = partition

    def key(self, key: Bytes) -> "Record":
        """Sets the key."""
        self._key = _bytes(key)
        return self

    def no_key(self) -> "Record":
        """Removes the key."""
        self._key = None
        return self

    def value(self, value: Bytes) -> "Record":
        """Sets the value (str is written as UTF-8)."""
        self._value = _bytes(value)
        return self

    def json(self, value) -> "Record":
        """Sets the value to ``value`` written as JSON (see
        :func:`weir_sdk.json.dumps`); a value that cannot be written rejects."""
        try:
            return self.value(_json.dumps(value))
        except (ValueError, RecursionError) as e:
            raise Reject(f"cannot serialise the record value: {e}") from None

    def tombstone(self) -> "Record":
        """Removes the value: the record is a tombstone."""
        self._value = None
        return self

    def header(self, name: str, value: Bytes) -> "Record":
        """Appends a header (Kafka allows the same name more than once)."""
        self.headers.append((name, _bytes(value)))
        return self

    def remove_header(self, name: str) -> "Record":
        """Removes every header called ``name``."""
        self.headers = [(k, v) for k, v in self.headers if k != name]
        return self

    def no_headers(self) -> "Record":
        """Removes every header."""
        self.headers = []
        return self

    def partition(self, partition: int) -> "Record":
        """Sends the record to ``partition`` instead of the partitioner's choice."""
        self._partition = partition
        return self

    def _to_wit(self):
        # Positional arguments, in the WIT's field order (topic, key, value,
        # headers, partition; a header is key, value): cheaper calls.
        header = _types.Header
        return _types.Outgoing(
            self.topic,
            self._key,
            self._value,
            [header(k, v) for k, v in self.headers],
            self._partition,
        )
