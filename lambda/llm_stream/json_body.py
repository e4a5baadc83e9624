"""A request body as JSON, refused early when no container could take it.

Checks that hold for every field, so they live here once rather than on each field of each
payload: UTF-8 without a byte-order mark; standard JSON only (``NaN`` and ``Infinity`` are not
JSON, and a number that overflows to infinity is refused too); integers of at most
:data:`MAX_INTEGER_DIGITS` digits; nesting no deeper than :data:`MAX_DEPTH`; and no lone surrogate
in any string (a JSON escape such as ``\\udfff`` decodes to one, and it cannot be encoded as UTF-8
to send upstream).

Everything here is linear in the body's size, since it runs on the event loop for every request:
the body is parsed once by the json module's C scanner (which answers a nesting too deep for its
stack with ``RecursionError``, not a crash) and walked once, without recursion. Messages are the
function's own words, never Python's.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ApiError

#: The payloads nest three levels deep; this leaves room and stops pathological bodies.
MAX_DEPTH = 32
#: No field takes a number beyond 2**64 (20 digits); this refuses longer ones before Python converts
#: them (a conversion that is quadratic in the digits, and that Python itself caps at 4300).
MAX_INTEGER_DIGITS = 100
#: How much of a name or location from the body a message quotes.
QUOTED_CHARS = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(ValueError):
    """A value the JSON grammar allows but this function does not; its message is for the caller."""


def load_json(raw: bytes) -> Any:
    """The parsed body; raises :class:`ApiError` 400 ``invalid_json`` or 422 ``validation_error``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not UTF-8 text (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise ApiError(400, "invalid_json", "the body starts with a byte-order mark; send UTF-8 without one")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {_decode_problem(exc)} (line "
                       f"{exc.lineno}, column {exc.colno})") from None
    except _Refused as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON here: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    _check_values(data)
    return data


def quoted(text: str) -> str:
    """A caller's name or location, short enough to quote in a message."""
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "..."


#: The json module's phrases (``json/decoder.py``, ``_json.c``), in the function's words.
_DECODE_PROBLEMS = {
    "Expecting value": "a value was expected",
    "Expecting property name enclosed in double quotes": "a key in double quotes was expected",
    "Expecting ':' delimiter": "a ':' was expected",
    "Expecting ',' delimiter": "a ',' was expected",
    "Unterminated string starting at": "a string that starts here is never closed",
    "Invalid control character at": "a control character must be escaped in a string",
    "Invalid \\escape": "an invalid escape",
    "Invalid \\uXXXX escape": "an invalid \\u escape",
    "Extra data": "more text follows the JSON value",
}


def _decode_problem(exc: json.JSONDecodeError) -> str:
    return _DECODE_PROBLEMS.get(exc.msg, "the text does not parse")


def _too_deep() -> ApiError:
    return ApiError(400, "invalid_json", f"the body nests deeper than {MAX_DEPTH} levels")


def _refuse_constant(name: str) -> None:
    raise _Refused(f"{name} is not a JSON number")


def _integer(digits: str) -> int:
    if len(digits) > MAX_INTEGER_DIGITS + digits.startswith("-"):
        raise _Refused(f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _check_values(data: Any) -> None:
    """One walk of the parsed body, without recursion: depth, strings and numbers. A value's place is kept as
    its keys (a tuple of at most :data:`MAX_DEPTH` references) and written out only for a message, so the walk
    stays linear in the body however long its keys are."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while pending:
        value, place = pending.pop()
        if isinstance(value, str):
            _check_text(value, place)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ApiError(422, "validation_error", f"`{_path(place)}`: the number is too large")
        elif isinstance(value, dict | list):
            if len(place) >= MAX_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, (*place, key))
                pending.append((item, (*place, key)))


def _path(place: tuple[str | int, ...]) -> str:
    """A value's place as the caller would name it (``parameters.stop.0``), short enough to quote."""
    shown = quoted(".".join(quoted(str(key)) for key in place) or "body")
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")  # a key may hold a lone surrogate


def _check_text(text: str, place: tuple[str | int, ...]) -> None:
    found = _SURROGATE.search(text)
    if found:
        raise ApiError(422, "validation_error", f"`{_path(place)}`: contains a lone surrogate "
                       f"(U+{ord(found[0]):04X}), which is not valid Unicode text")
