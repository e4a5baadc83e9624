"""A request body as JSON, refused early when no container could take it.

Checks that hold for every field, so they live here once rather than on each field of each
payload: UTF-8; nesting no deeper than a bound (measured before parsing, so a hostile body cannot
exhaust the parser's recursion); standard JSON only (``NaN`` and ``Infinity`` are not JSON, and a
number that overflows to infinity is refused too); and no lone surrogate in any string (a JSON
escape such as ``\\udfff`` decodes to one, and it cannot be encoded as UTF-8 to send upstream).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ApiError

#: The payloads nest three levels deep; this leaves room and stops pathological bodies.
MAX_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(raw: bytes) -> Any:
    """The parsed body; raises :class:`ApiError` 400 ``invalid_json`` or 422 ``validation_error``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    if _depth(text) > MAX_DEPTH:
        raise ApiError(400, "invalid_json", f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    _check_values(data, "")
    return data


def _depth(text: str) -> int:
    deepest = depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_values(value: Any, path: str) -> None:
    if isinstance(value, str):
        _check_text(value, path or "body")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ApiError(422, "validation_error", f"`{path or 'body'}`: the number is too large")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{path}.{key}" if path else key)
            _check_values(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{path}.{index}" if path else str(index))


def _check_text(text: str, path: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")  # the path may hold one too
        raise ApiError(422, "validation_error", f"`{shown}`: contains a lone surrogate "
                       f"(U+{ord(found[0]):04X}), which is not valid Unicode text")
