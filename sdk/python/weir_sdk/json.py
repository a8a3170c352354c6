"""JSON the way the Rust SDK (serde_json) reads and writes it, so a Python
consumer's output is byte-for-byte the Rust one's for the same input.

``dumps``: object keys sorted (serde_json's default map is ordered by key),
no whitespace, non-ASCII written as UTF-8, floats in the shortest form that
reads back to the same value, in serde_json's notation (1.0.154, which
formats with zmij): ``10.0``, ``1e+16``, ``1e-7``, ``0.00001``. ``loads``: UTF-8 only; ``NaN`` and
``Infinity`` refused; integers beyond the 64-bit range read as floats, as
serde_json does. Known difference: serde_json refuses nesting deeper than
128 levels, Python's reader allows more."""

import json as _json
import math
from decimal import Decimal
from json.encoder import encode_basestring as _string  # C speed-up, as dumps(s, ensure_ascii=False)
from typing import Any

_I64_MIN = -(1 << 63)
_U64_MAX = (1 << 64) - 1


class JsonError(ValueError):
    """A value that is not JSON, or that cannot be written as JSON."""


def _int(text: str):
    value = int(text)
    return value if _I64_MIN <= value <= _U64_MAX else float(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JsonError("number out of range")
    return value


def _constant(name: str):
    raise JsonError(f"`{name}` is not valid JSON")


# One decoder for every call (``json.loads`` with hooks builds a new one).
_decoder = _json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def loads(data) -> Any:
    """Parses ``data`` (bytes in UTF-8, or str) as JSON."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    elif not isinstance(data, str):
        raise TypeError(f"expected bytes or str, not {type(data).__name__}")
    return _decoder.decode(data)


def format_float(value: float) -> str:
    """``value`` as serde_json writes an ``f64`` (positional from 1e-5 up to
    below 1e16, scientific otherwise); ``JsonError`` when it is
    not finite (JSON has no NaN or infinity)."""
    if not math.isfinite(value):
        raise JsonError(f"{value} cannot be written as JSON")
    text = repr(value)
    if "e" not in text:
        # Python writes the shortest round-trip digits too, positionally
        # from 1e-4 up to below 1e16: the same text as serde_json there.
        return text
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        exponent = 0
    text = "".join(map(str, digits))
    length = len(text)
    point = length + exponent  # position of the decimal point
    prefix = "-" if sign else ""
    if 0 <= exponent and point <= 16:
        out = text + "0" * exponent + ".0"
    elif 0 < point <= 16:
        out = text[:point] + "." + text[point:]
    elif -5 < point <= 0:
        out = "0." + "0" * -point + text
    else:
        mantissa = text if length == 1 else f"{text[0]}.{text[1:]}"
        out = f"{mantissa}e{point - 1:+d}" if point > 1 else f"{mantissa}e{point - 1}"
    return prefix + out


def _write(value: Any, out: list) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise JsonError(f"object key {key!r} is not a string")
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise JsonError(f"{type(value).__name__} cannot be written as JSON")


# json's C encoder writes the same text as serde_json for strings, integers
# and most floats: dumps uses it for an object or array of such scalars
# (the common case, a flat record), and the writer above for anything else.
_c_encoder = _json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode
_SCALARS = frozenset((str, int, float, bool, type(None)))


def _flat(value: Any) -> bool:
    """An object with string keys, or an array, whose items are scalars of
    exactly the built-in types (no subclasses, no nesting)."""
    kind = type(value)
    if kind is dict:
        scalars = _SCALARS
        for key, item in value.items():
            if type(key) is not str or type(item) not in scalars:
                return False
        return True
    if kind is list:
        scalars = _SCALARS
        for item in value:
            if type(item) not in scalars:
                return False
        return True
    return False


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, written like serde_json."""
    if _flat(value):
        try:
            text = _c_encoder(value)
        except ValueError:  # NaN or infinity: the writer says which
            text = None
        # Python writes 1e-05 and 1.5e-07 where serde_json writes 0.00001
        # and 1.5e-7 (negative exponents under 10); every other float repr
        # is serde_json's text. "e-0" may also be inside a string: then the
        # writer merely redoes the work.
        if text is not None and "e-0" not in text:
            return text
    out: list = []
    _write(value, out)
    return "".join(out)
