"""Structured output: OpenAI's ``response_format`` (chat) and ``text.format`` (Responses API), mapped to TGI's
``grammar`` and checked when the answer ends.

* ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` (chat) or ``{"type":
  "json_schema", "name", "schema", "strict"}`` (Responses API) -> ``{"type": "json", "value": <schema>}``.
  TGI's router refuses a schema without top-level ``properties`` (``router/src/validation.rs``), so this API
  does too; keywords the grammar compiler (outlines) cannot express are refused by name (:data:`NOT_EXPRESSED`:
  it would ignore them, and the answer could then break the schema).
* ``{"type": "json_object"}`` -> a ``regex`` grammar (:data:`JSON_OBJECT_REGEX`): a JSON object whose values
  are strings, numbers, booleans, ``null``, or objects and arrays of those. Not a schema: TGI refuses one
  without ``properties``, and outlines reads ``"properties": {}`` as "only ``{}``".

Only containers with ``grammar`` (TGI 1.4.1 and later) can constrain; for the others the request is refused
(400 ``unsupported_parameter``) before it reaches the endpoint. The finished answer is parsed and validated
against the schema (``jsonschema``): one that does not fit ends with ``invalid_json_output``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .answer_shapes import Settled
from .errors import ApiError
from .settings import Settings
from .tokens import StreamError

#: JSON-schema keywords TGI's grammar compiler (outlines' ``json_schema.to_regex``) does not turn into
#: constraints: a schema using one is refused, naming it.
NOT_EXPRESSED = frozenset({
    "not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas", "dependencies",
    "propertyNames", "contains", "minContains", "maxContains", "uniqueItems", "unevaluatedProperties",
    "unevaluatedItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
})
#: Keywords whose value is one subschema, a list of them, or a map of names to them.
_SUBSCHEMA = ("items", "additionalProperties", "contains", "not", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
#: Deeper schemas are refused (a guard for the walk and the validator, far beyond what clients send).
MAX_SCHEMA_DEPTH = 32

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

    kind: str
    schema: dict[str, Any]
    name: str = "response"
    grammar: dict[str, Any] = field(default_factory=dict)
    holds_text = False

    def settle(self, text: str, finish_reason: str | None) -> Settled:
        """The answer checked: JSON, and valid against the schema; else ``invalid_json_output``."""
        if finish_reason == "length":
            return Settled(failure=StreamError("invalid_json_output", "the answer reached its token limit before "
                                               "its JSON was complete: raise `max_tokens` (or "
                                               "`max_output_tokens`)"))
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return Settled(failure=StreamError("invalid_json_output", f"the answer is not JSON ({exc.msg} at "
                                               f"character {exc.pos}); the container did not enforce the format"))
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
    if kind == "text" and set(value) == {"type"}:
        return None
    if kind not in ("json_schema", "json_object"):
        raise ApiError(400, "validation_error", f"`{param}.type` must be one of \"text\", \"json_object\", "
                       f"\"json_schema\"", param=f"{param}.type")
    require_grammar(settings, param)
    if kind == "json_object":
        _only(value, {"type"}, param)
        return OutputFormat("json_object", JSON_OBJECT_SCHEMA, "json_object",
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
    return OutputFormat("json_schema", schema, name, {"type": "json", "value": schema})  # type: ignore[arg-type]


def check_schema(schema: object, param: str, *, top_level: bool = True) -> None:
    """A JSON schema the container's grammar can enforce: valid JSON Schema, without the keywords outlines
    ignores, and (``top_level``: the whole grammar) an object with ``properties`` (TGI's own rule)."""
    if not isinstance(schema, dict):
        raise ApiError(400, "validation_error", f"`{param}` must be a JSON schema object", param=param)
    if top_level and not isinstance(schema.get("properties"), dict):
        raise ApiError(400, "unsupported_parameter", f"`{param}` needs `properties` at its top level: the "
                       "container's grammar (TGI) takes object schemas only", param=f"{param}.properties")
    for where, keyword in _keywords(schema, param, 0):
        if keyword in NOT_EXPRESSED:
            raise ApiError(400, "unsupported_parameter", f"`{where}` uses `{keyword}`, which the container's "
                           "grammar (TGI's outlines) cannot enforce; leave it out of the schema",
                           param=f"{where}.{keyword}")
    from jsonschema.exceptions import SchemaError

    try:
        _checked_against_the_metaschema(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        path = ".".join(str(part) for part in exc.path)
        raise ApiError(400, "validation_error", f"`{param}` is not a valid JSON schema: {exc.message[:200]}"
                       + (f" (at {path})" if path else ""), param=param) from None
    for where, reference in _references(schema, param, 0):
        if not reference.startswith("#"):
            raise ApiError(400, "unsupported_parameter", f"`{where}.$ref` points outside the schema "
                           f"({reference[:64]!r}): only local references (`#/$defs/...`) are served",
                           param=f"{where}.$ref")


def _keywords(schema: dict[str, Any], where: str, depth: int) -> Iterator[tuple[str, str]]:
    """(location, keyword) of every keyword in the schema and its subschemas."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ApiError(400, "unsupported_parameter", f"`{where}` nests schemas deeper than {MAX_SCHEMA_DEPTH}",
                       param=where)
    for keyword, value in schema.items():
        yield where, keyword
        for child, child_where in _children(keyword, value, where):
            yield from _keywords(child, child_where, depth + 1)


def _children(keyword: str, value: object, where: str) -> Iterator[tuple[dict[str, Any], str]]:
    if keyword in _SUBSCHEMA and isinstance(value, dict):
        yield value, f"{where}.{keyword}"
    elif keyword in _SUBSCHEMA_LISTS or (keyword == "items" and isinstance(value, list)):
        for index, child in enumerate(value if isinstance(value, list) else ()):
            if isinstance(child, dict):
                yield child, f"{where}.{keyword}[{index}]"
    elif keyword in _SUBSCHEMA_MAPS and isinstance(value, dict):
        for name, child in value.items():
            if isinstance(child, dict):
                yield child, f"{where}.{keyword}.{name}"


def _references(schema: dict[str, Any], where: str, depth: int) -> Iterator[tuple[str, str]]:
    if isinstance(schema.get("$ref"), str):
        yield where, schema["$ref"]
    for keyword, value in schema.items():
        for child, child_where in _children(keyword, value, where):
            yield from _references(child, child_where, depth + 1)


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


@functools.lru_cache(maxsize=64)
def _checked_against_the_metaschema(schema_text: str) -> None:
    """Raises ``SchemaError`` for a schema that is not valid JSON Schema; a valid one is checked once."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(schema_text))


def warm_up() -> None:
    """Import the validator and compile its metaschema (about 100 ms), so the first structured request does
    not pay for it on the event loop (``preload.py``)."""
    _checked_against_the_metaschema(json.dumps({"type": "object", "properties": {}}))


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str) -> Any:
    """A compiled validator per schema (clients send the same few schemas again and again)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text))


def first_problem(schema: dict[str, Any], value: object) -> str | None:
    """Why ``value`` does not fit ``schema`` (the most relevant of its errors), or ``None``."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if error is None:
        return None
    path = "".join(f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in error.absolute_path)
    return f"{error.message[:200]}" + (f" (at {path})" if path else "")
