"""Read-only access to the ``[config]`` table of the module's manifest.

Helpers that can fail raise :class:`weir_sdk.Reject`: configuration is fixed
for a module version, so retrying the event would not help."""

from typing import List, Optional, Tuple

from ._host import config as _host
from .errors import Reject


# Values read during the current handler call: a batch calls the same
# handler for many events, and each host call crosses out of the component.
# Emptied when a call starts (the SDK's exports do it), so a new version of
# the manifest is always read afresh.
_cache: dict = {}


def _begin_call() -> None:
    _cache.clear()


def get(key: str) -> Optional[str]:
    """The value for ``key``, or ``None`` if the manifest does not set it."""
    try:
        return _cache[key]
    except KeyError:
        value = _cache[key] = _host.get(key)
        return value


def all() -> List[Tuple[str, str]]:  # noqa: A001 - mirrors the Rust SDK's name
    """Every key and value, sorted by key."""
    return list(_host.get_all())


def get_or(key: str, default: str) -> str:
    """The value for ``key``, or ``default`` when it is not set."""
    value = get(key)
    return default if value is None else value


def require(key: str) -> str:
    """The value for ``key``; a missing key rejects the event, naming it."""
    value = get(key)
    if value is None:
        raise Reject(f"config key `{key}` is not set")
    return value
