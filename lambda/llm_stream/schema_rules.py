"""The JSON schemas callers send for structured output and tools: which the container's grammar can enforce,
and whether a finished answer fits one.

TGI compiles a schema into a regular expression (outlines' ``json_schema.to_regex``), so a schema is refused,
naming where, when that cannot be done faithfully: a keyword outlines does not turn into a constraint
(:data:`NOT_EXPRESSED`), a ``pattern`` with look-arounds or back-references (not regular), a recursive schema
(a ``$ref`` that leads back to itself: no regular expression has it), a reference outside the schema, to
nothing or by anchor, or one of more than :data:`MAX_SCHEMA_KEYWORDS` keywords with its references followed
(what every caller's grammar costs the shared container to compile, and what checking it costs here: the walk
spends one unit per keyword, so its work is bounded whatever the body holds). What passes is also checked
against JSON Schema's own metaschema (draft 2020-12, as TGI's router does).

A finished answer is checked against the schema but for ``pattern``: the grammar enforced it, and Python's
regular expressions backtrack, so a caller's pattern could hold the interpreter for as long as it likes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from re import _constants as sre_constants
from re import _parser as sre_parser
from typing import Any
from urllib.parse import unquote

from .errors import ApiError

#: JSON-schema keywords outlines does not turn into constraints, or JSON Schema's dynamic references.
NOT_EXPRESSED = frozenset({
    "not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas", "dependencies",
    "propertyNames", "contains", "minContains", "maxContains", "uniqueItems", "unevaluatedProperties",
    "unevaluatedItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "$anchor", "$id",
})
#: Keywords one request's schemas may hold, references followed (tools count together).
MAX_SCHEMA_KEYWORDS = 5000
_SUBSCHEMA = ("items", "additionalProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
#: What a grammar (a regular language, compiled by outlines' interegular) cannot take: look-arounds,
#: back-references, word boundaries, atomic groups and possessive repeats.
_NOT_REGULAR = {sre_constants.ASSERT, sre_constants.ASSERT_NOT, sre_constants.GROUPREF,
                sre_constants.GROUPREF_EXISTS, sre_constants.ATOMIC_GROUP, sre_constants.POSSESSIVE_REPEAT}
_NOT_REGULAR_AT = {sre_constants.AT_BOUNDARY, sre_constants.AT_NON_BOUNDARY}


class SchemaBudget:
    """The keywords a request's schemas may still hold."""

    def __init__(self, keywords: int = MAX_SCHEMA_KEYWORDS) -> None:
        self.left = keywords

    def spend(self, where: str, keywords: int) -> None:
        self.left -= keywords
        if self.left < 0:
            raise ApiError(400, "unsupported_parameter", f"`{where}`: the request's schemas hold more than "
                           f"{MAX_SCHEMA_KEYWORDS} keywords (references followed), more than this API compiles into "
                           "a grammar", param=where)


def check_schema(schema: object, param: str, *, top_level: bool = True, budget: SchemaBudget | None = None,
                 references: str = "#") -> None:
    """A JSON schema the container's grammar can enforce (module docstring); ``top_level``: the whole grammar,
    an object with ``properties`` (TGI's own rule). ``references``: where its ``$ref`` may point."""
    if not isinstance(schema, dict):
        raise ApiError(400, "validation_error", f"`{param}` must be a JSON schema object", param=param)
    if top_level and not isinstance(schema.get("properties"), dict):
        raise ApiError(400, "unsupported_parameter", f"`{param}` needs `properties` at its top level: the "
                       "container's grammar (TGI) takes object schemas only", param=f"{param}.properties")
    _walk(schema, param, budget or SchemaBudget(), references)
    from jsonschema.exceptions import SchemaError

    try:
        _checked_against_the_metaschema(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        path = ".".join(str(part) for part in exc.path)
        raise ApiError(400, "validation_error", f"`{param}` is not a valid JSON schema: {exc.message[:200]}"
                       + (f" (at {path[:200]})" if path else ""), param=param) from None


def _walk(root: dict[str, Any], param: str, budget: SchemaBudget, references: str) -> None:
    """Every subschema, references followed (without recursion: a long chain must not exhaust the stack)."""
    pending: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [(root, param, ())]
    while pending:
        schema, where, followed = pending.pop()
        budget.spend(where, len(schema) + 1)
        for keyword, value in schema.items():
            if keyword in NOT_EXPRESSED:
                raise ApiError(400, "unsupported_parameter", f"`{where}` uses `{keyword}`, which the container's "
                               "grammar (TGI's outlines) cannot enforce; leave it out of the schema",
                               param=f"{where}.{keyword}")
            if keyword == "pattern":
                _check_pattern(value, f"{where}.pattern")
            elif keyword == "$ref":
                target = _referenced(root, value, f"{where}.$ref", followed, references)
                pending.append((target, f"{where}.$ref", (*followed, value)))
            pending.extend((child, child_where, followed) for child, child_where in _children(keyword, value, where))


def _children(keyword: str, value: object, where: str) -> list[tuple[dict[str, Any], str]]:
    if keyword in _SUBSCHEMA and isinstance(value, dict):
        return [(value, f"{where}.{keyword}")]
    if keyword in _SUBSCHEMA_LISTS or (keyword == "items" and isinstance(value, list)):
        return [(child, f"{where}.{keyword}[{index}]")
                for index, child in enumerate(value if isinstance(value, list) else ()) if isinstance(child, dict)]
    if keyword in _SUBSCHEMA_MAPS and isinstance(value, dict):
        return [(child, f"{where}.{keyword}.{name[:64]}") for name, child in value.items() if isinstance(child, dict)]
    return []


def _referenced(root: dict[str, Any], reference: object, where: str, followed: tuple[str, ...],
                allowed: str) -> dict[str, Any]:
    """The subschema a local ``$ref`` points at (a JSON pointer into the root schema)."""
    pointer = isinstance(reference, str) and (reference == "#" or reference.startswith("#/"))
    if not pointer or not str(reference).startswith(allowed):
        shown = json.dumps(reference)[:64]
        raise ApiError(400, "unsupported_parameter", f"`{where}` is {shown}: only JSON pointers within the schema "
                       f"(starting {allowed!r}) are served", param=where)
    reference = str(reference)
    if reference in followed:
        raise ApiError(400, "unsupported_parameter", f"`{where}` ({reference[:64]!r}) leads back to itself: a "
                       "recursive schema has no regular expression, so the container's grammar cannot take it",
                       param=where)
    target: Any = root
    for part in reference.removeprefix("#").removeprefix("/").split("/") if reference != "#" else ():
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise ApiError(400, "validation_error", f"`{where}` ({reference[:64]!r}) points at no subschema",
                       param=where)
    return target


def _check_pattern(pattern: object, where: str) -> None:
    """A ``pattern`` the grammar can express: a regular expression without look-arounds or back-references."""
    if not isinstance(pattern, str):
        return  # the metaschema check names it
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        problem = exc if isinstance(exc, re.error) else "it nests too deeply"
        raise ApiError(400, "validation_error", f"`{where}` is not a regular expression this API reads: {problem}",
                       param=where) from None
    if parsed.state.flags & ~(re.UNICODE | re.U) or _not_regular(parsed):
        raise ApiError(400, "unsupported_parameter", f"`{where}` uses a look-around, a back-reference, a word "
                       "boundary, an atomic group, a possessive repeat or an inline flag, which a grammar (a regular "
                       "language) cannot enforce", param=where)


def _not_regular(parsed: Any) -> bool:
    for op, argument in parsed:
        if op in _NOT_REGULAR or (op is sre_constants.AT and argument in _NOT_REGULAR_AT):
            return True
        if op is sre_constants.SUBPATTERN and (argument[1] or argument[2]):  # (?i:...) and the like
            return True
        nested = argument if isinstance(argument, tuple | list) else (argument,)
        for item in nested:
            if isinstance(item, sre_parser.SubPattern) and _not_regular(item):
                return True
            if isinstance(item, list) and any(isinstance(part, sre_parser.SubPattern) and _not_regular(part)
                                              for part in item):
                return True
    return False


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
    """A compiled validator per schema (clients send the same few schemas again and again), which leaves
    ``pattern`` to the grammar (module docstring)."""
    from jsonschema import Draft202012Validator, validators

    unpatterned = validators.extend(Draft202012Validator, {"pattern": _not_checked})  # type: ignore[no-untyped-call]
    return unpatterned(json.loads(schema_text))


def _not_checked(*_: object) -> Iterator[Any]:
    return iter(())


def first_problem(schema: dict[str, Any], value: object) -> str | None:
    """Why ``value`` does not fit ``schema`` (the most relevant of its errors), or ``None``. In the schema's
    words only (the keyword, its value in the schema, where): never the answer's own text, which the log keeps
    out unless prompts are logged."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if error is None:
        return None
    where = ".".join(str(part)[:64] for part in list(error.absolute_schema_path)[:-1]) or "the top level"
    return f"`{error.validator}` {json.dumps(error.validator_value)[:120]} fails (schema at {where})"
