"""Log through the host: lines carry the module name and the event's topic,
partition and offset in weir's structured log. ``print`` also works (guest
stdout is logged at INFO, stderr at WARN) but without the event fields."""


from ._host import log as _host


def _log(level_name: str, message: str) -> None:
    _host.log(getattr(_host.Level, level_name), str(message))


def trace(message: str) -> None:
    """Very detailed tracing."""
    _log("TRACE", message)


def debug(message: str) -> None:
    """Debugging detail, such as one line per event."""
    _log("DEBUG", message)


def info(message: str) -> None:
    """Noteworthy but expected."""
    _log("INFO", message)


def warn(message: str) -> None:
    """Something unexpected that the consumer recovered from."""
    _log("WARN", message)


def error(message: str) -> None:
    """A failure that needs attention."""
    _log("ERROR", message)
