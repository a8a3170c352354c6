"""Durable keyed state through the host (``weir:consumer/state``).

One store per module and input partition: a handler sees the store of its
event's partition, so keys must be co-partitioned with the input (use the
record key). Writes follow the event's verdict like emitted records: the
call (and later events of the partition) see them at once; they become
durable when the handler returns, and the host discards them when it raises
(``Retry``, ``Reject`` or anything else)::

    from weir_sdk import state

    count = int(state.get(event.key) or b"0") + 1
    state.set(event.key, str(count))

Keys and values are ``bytes`` (``str`` is written as UTF-8; ``bytearray``
and ``memoryview`` are accepted too). A write the host refuses raises
:class:`weir_sdk.StateError`, a :class:`weir_sdk.Reject` naming the
manifest limit; uncaught, it rejects the event."""

import math
from typing import Any, Iterator, List, Optional, Tuple, Union

from . import json as _json
from ._host import Err as _Err
from ._host import state as _host
from .errors import Reject, StateError

Bytes = Union[bytes, bytearray, memoryview, str]

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1

_KINDS = {
    _host.StateError_KeyTooLarge: "key-too-large",
    _host.StateError_ValueTooLarge: "value-too-large",
    _host.StateError_QuotaExceeded: "quota-exceeded",
    _host.StateError_TooMany: "too-many",
}


def _bytes(value: Bytes, what: str) -> bytes:
    # Strict on purpose: bytes(5) would silently be five zero bytes.
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"state {what} must be str or bytes, not {type(value).__name__}")


def _refused(err: _Err) -> StateError:
    value = err.value
    return StateError(_KINDS.get(type(value), type(value).__name__), value.value)


def _ttl_ms(ttl_seconds: float) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
        raise TypeError(f"ttl_seconds must be a number, not {type(ttl_seconds).__name__}")
    if not ttl_seconds >= 0:  # also NaN
        raise ValueError(f"ttl_seconds must be zero or more, got {ttl_seconds}")
    if math.isinf(ttl_seconds):
        return _U64_MAX
    ms = round(ttl_seconds * 1000)
    # A positive TTL below half a millisecond still lives one millisecond.
    return min(max(ms, 1 if ttl_seconds > 0 else 0), _U64_MAX)


def get(key: Bytes) -> Optional[bytes]:
    """The value stored under ``key``, or ``None`` (never set, deleted or
    expired)."""
    return _host.get(_bytes(key, "key"))


def set(key: Bytes, value: Bytes) -> None:  # noqa: A001 - the WIT's name
    """Stores ``value`` under ``key``, replacing any previous value and its
    time-to-live. Raises :class:`StateError` when the host refuses."""
    try:
        _host.set(_bytes(key, "key"), _bytes(value, "value"))
    except _Err as e:
        raise _refused(e) from None


def set_with_ttl(key: Bytes, value: Bytes, ttl_seconds: float) -> None:
    """Stores ``value`` under ``key`` for ``ttl_seconds`` (host wall clock,
    millisecond resolution); after that the key reads as absent. Raises
    :class:`StateError` when the host refuses."""
    ttl_ms = _ttl_ms(ttl_seconds)
    try:
        _host.set_with_ttl(_bytes(key, "key"), _bytes(value, "value"), ttl_ms)
    except _Err as e:
        raise _refused(e) from None


def delete(key: Bytes) -> None:
    """Removes ``key`` (nothing happens when it is absent). Raises
    :class:`StateError` when the host refuses (too many writes)."""
    try:
        _host.delete(_bytes(key, "key"))
    except _Err as e:
        raise _refused(e) from None


def scan(prefix: Bytes, after: Optional[Bytes] = None, limit: int = 100) -> List[Tuple[bytes, bytes]]:
    """One page: up to ``limit`` ``(key, value)`` pairs whose key starts with
    ``prefix``, in ascending byte order, after the key ``after`` when given.
    The host caps a page at 1,000 entries and 4 MiB, so a short page is not
    the end: only an empty one is (or use :func:`scan_prefix`)."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be zero or more, got {limit}")
    entries = _host.scan(
        _bytes(prefix, "prefix"),
        None if after is None else _bytes(after, "key"),
        min(limit, _U32_MAX),
    )
    return [(e.key, e.value) for e in entries]


def scan_prefix(prefix: Bytes, page_size: int = 100) -> Iterator[Tuple[bytes, bytes]]:
    """Every ``(key, value)`` whose key starts with ``prefix``, in ascending
    key order, fetched ``page_size`` at a time as the iteration goes (so a
    key written meanwhile shows up if it sorts after the current one)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive int, got {page_size!r}")
    after = None
    while True:
        page = scan(prefix, after, page_size)
        if not page:
            return
        yield from page
        after = page[-1][0]


def get_json(key: Bytes, default: Any = None) -> Any:
    """The value under ``key`` parsed as JSON (see :mod:`weir_sdk.json`), or
    ``default`` when there is none. A value that does not parse rejects the
    event."""
    value = get(key)
    if value is None:
        return default
    try:
        return _json.loads(value)
    except (ValueError, RecursionError) as e:
        raise Reject(f"state value under key {_bytes(key, 'key')!r} is not JSON: {e}") from None


def set_json(key: Bytes, obj: Any, ttl_seconds: Optional[float] = None) -> None:
    """Stores ``obj`` written as JSON (like :meth:`Record.json`) under
    ``key``, for ``ttl_seconds`` when given. A value that cannot be written
    rejects the event; a refused write raises :class:`StateError`."""
    try:
        text = _json.dumps(obj)
    except (ValueError, RecursionError) as e:
        raise Reject(f"cannot serialise the state value: {e}") from None
    if ttl_seconds is None:
        set(key, text)
    else:
        set_with_ttl(key, text, ttl_seconds)


__all__ = [
    "StateError",
    "delete",
    "get",
    "get_json",
    "scan",
    "scan_prefix",
    "set",
    "set_json",
    "set_with_ttl",
]
