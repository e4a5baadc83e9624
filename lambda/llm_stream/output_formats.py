"""Structured output: OpenAI's ``response_format`` (chat) and ``text.format`` (Responses API), mapped to TGI's
``grammar`` and checked when the answer ends.

* ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` (chat) or ``{"type":
  "json_schema", "name", "schema", "strict"}`` (Responses API) -> ``{"type": "json", "value": <schema>}``.
  TGI's router refuses a schema without top-level ``properties`` (``router/src/validation.rs``), so this API
  does too; what the grammar compiler (outlines) cannot express is refused by name (``schema_rules.py``: it
  would be ignored, and the answer could then break the schema).
* ``{"type": "json_object"}`` -> a ``regex`` grammar (:data:`JSON_OBJECT_REGEX`): a JSON object whose values
  are strings, numbers, booleans, ``null``, or objects and arrays of those. Not a schema: TGI refuses one
  without ``properties``, and outlines reads ``"properties": {}`` as "only ``{}``".

Only containers with ``grammar`` (TGI 1.4.1 and later) can constrain; for the others the request is refused
(400 ``unsupported_parameter``) before it reaches the endpoint. Which schemas are served: ``schema_rules.py``.
The finished answer is parsed and validated against the schema (``jsonschema``): one that does not fit ends
with ``invalid_json_output``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .answer_shapes import Settled
from .errors import ApiError
from .schema_rules import check_schema, first_problem
from .settings import Settings
from .tokens import StreamError

# The json_object grammar, in the regex dialect outlines' own JSON grammars use (plain groups, `[ ]?` between
# tokens, control characters excluded from strings).
_WS = "[ ]?"
_STRING = r'"([^"\\\x00-\x1F]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
_SCALAR = f"({_STRING}|{_NUMBER}|true|false|null)"


def _object_of(value: str) -> str:
    member = f"{_STRING}{_WS}:{_WS}{value}"
    return rf"\{{{_WS}({member}({_WS},{_WS}{member})*)?{_WS}\}}"


def _array_of(value: str) -> str:
    return rf"\[{_WS}({value}({_WS},{_WS}{value})*)?{_WS}\]"


#: A JSON object two levels deep: its values scalars, or objects and arrays of scalars.
JSON_OBJECT_REGEX = _object_of(f"({_SCALAR}|{_object_of(_SCALAR)}|{_array_of(_SCALAR)})")
JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class OutputFormat:
    """A validated structured-output request: the grammar sent upstream and the schema the answer must fit."""

    schema: dict[str, Any]
    name: str = "response"
    grammar: dict[str, Any] = field(default_factory=dict)
    holds_text = False

    def settle(self, text: str, finish_reason: str | None) -> Settled:
        """The answer checked: JSON, and valid against the schema; else ``invalid_json_output``. An answer cut
        at its token limit is what OpenAI answers then: the text so far, ``finish_reason: "length"`` (the
        SDKs' ``parse`` raise a length error of their own)."""
        if finish_reason == "length":
            return Settled(text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return Settled(failure=StreamError("invalid_json_output", f"the answer is not JSON ({exc.msg} at "
                                               f"character {exc.pos}); the container did not enforce the format"))
        except RecursionError:
            return Settled(failure=StreamError("invalid_json_output", "the answer nests deeper than JSON is read "
                                               "here; the container did not enforce the format"))
        problem = first_problem(self.schema, value)
        if problem is not None:
            return Settled(failure=StreamError("invalid_json_output", "the answer does not fit the schema "
                                               f"{self.name!r}: {problem}"))
        return Settled()


def output_format(value: dict[str, Any] | None, param: str, settings: Settings, *,
                  nested: bool) -> OutputFormat | None:
    """``response_format`` (``nested``: the schema under ``json_schema``) or ``text.format`` as an
    :class:`OutputFormat`; ``None`` for plain text. Raises :class:`ApiError` (400) naming what is wrong."""
    if value is None:
        return None
    kind = value.get("type")
    if kind == "text":
        _only(value, {"type"}, param)
        return None
    if kind not in ("json_schema", "json_object"):
        raise ApiError(400, "validation_error", f"`{param}.type` must be one of \"text\", \"json_object\", "
                       f"\"json_schema\"", param=f"{param}.type")
    require_grammar(settings, param)
    if kind == "json_object":
        _only(value, {"type"}, param)
        return OutputFormat(JSON_OBJECT_SCHEMA, "json_object",
                            {"type": "regex", "value": JSON_OBJECT_REGEX})
    described, where = (value.get("json_schema"), f"{param}.json_schema") if nested else (value, param)
    if nested:
        _only(value, {"type", "json_schema"}, param)
    if not isinstance(described, dict):
        raise ApiError(400, "validation_error", f"`{where}` must be an object with `schema`", param=where)
    _only(described, {"name", "schema", "strict", "description", *(() if nested else ("type",))}, where)
    name, schema = described.get("name", "response"), described.get("schema")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise ApiError(400, "validation_error", f"`{where}.name` must be a string of 1 to 64 characters",
                       param=f"{where}.name")
    check_schema(schema, f"{where}.schema")
    return OutputFormat(schema, name, {"type": "json", "value": schema})  # type: ignore[arg-type]


def require_grammar(settings: Settings, param: str) -> None:
    if not settings.can("grammar"):
        rule = next(rule for rule in settings.family.capability_rules if rule.capability == "grammar")
        since = f"{settings.family.name} {rule.since} and later have it" if rule.since else \
            f"no {settings.family.name} version has it"
        raise ApiError(400, "unsupported_parameter", f"`{param}` needs guided generation, which the container "
                       f"serving {settings.model_id} does not have ({since}); send plain text requests, or "
                       "deploy a model whose container has it", param=param)


def _only(value: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ApiError(400, "validation_error", f"`{where}.{unknown[0][:64]}` is not a known field; allowed: "
                       f"{', '.join(sorted(allowed))}", param=f"{where}.{unknown[0][:64]}")
