"""TGI's guided generation (``parameters.grammar``, from TGI 1.4.1): its checks, and answers that follow it.

TGI's router checks the grammar (``router/src/validation.rs``): ``{"type": "json" | "regex", "value": ...}``
(anything else fails deserialization with a 422), a ``json`` value that is a schema object or a string holding
one, valid JSON Schema, with top-level ``properties``. Its server then compiles the grammar with outlines and
constrains every token to it; a schema outlines cannot compile is logged ("grammar won't be enforced") and
generation goes on unconstrained (the ``grammar_not_enforced`` fault stands for that).

The emulator's answer is an instance of the schema built from it, deterministically (the same request, the
same answer), for this subset: ``type`` (one or a list), ``properties`` (every one written, in order),
``required``, ``items``/``prefixItems`` with ``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``/
``oneOf`` (one branch), ``allOf`` (merged), local ``$ref`` (``#/...``), string ``format`` (``date-time``,
``date``, ``time``, ``email``, ``uuid``), ``pattern``, ``minLength``/``maxLength``. A ``regex`` grammar gets a
string the regular expression matches fully (no look-arounds or back-references, as outlines allows).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import string
from re import _constants as sre
from re import _parser as sre_parser
from typing import Any

log = logging.getLogger("sagemaker_emulator")

GRAMMAR_TYPES = ("json", "regex")
_WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "fjord", "grove", "harbor", "indigo", "juniper")
_FORMATS = {"date-time": "2026-12-07T12:00:00Z", "date": "2026-12-07", "time": "12:00:00",
            "email": "team@example.com", "uuid": "123e4567-e89b-42d3-a456-426614174000"}
#: Repetitions beyond a quantifier's minimum that a regex answer takes at most (``*`` and ``+`` are unbounded).
_EXTRA_REPEATS = 2
_MAX_DEPTH = 24
_FIRST_BRANCH = 0.8
_MAX_CHARACTERS = 20_000


class GrammarRefused(ValueError):
    """The grammar TGI's router refuses: ``deserialize`` (a 422 body) or input validation (``message``)."""

    def __init__(self, message: str, deserialize: bool = False) -> None:
        super().__init__(message)
        self.deserialize = deserialize


def checked(grammar: object) -> dict[str, Any]:
    """The grammar as TGI's router accepts it (a ``json`` value parsed from its string form), or
    :class:`GrammarRefused`."""
    if not isinstance(grammar, dict) or grammar.get("type") not in GRAMMAR_TYPES or "value" not in grammar:
        raise GrammarRefused("parameters.grammar: unknown variant, expected `json` or `regex`", deserialize=True)
    value = grammar["value"]
    if grammar["type"] == "regex":
        if not isinstance(value, str):
            raise GrammarRefused("parameters.grammar.value: invalid type, expected a string", deserialize=True)
        return {"type": "regex", "value": value}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise GrammarRefused(f"grammar is not valid: {exc}") from None
    if not isinstance(value, dict):
        raise GrammarRefused("grammar is not valid: Grammar must be a valid JSON object")
    from jsonschema.exceptions import SchemaError

    try:
        _check_schema(json.dumps(value, sort_keys=True))
    except SchemaError as exc:
        raise GrammarRefused(f"grammar is not valid: {exc.message}") from None
    if "properties" not in value:
        raise GrammarRefused("grammar is not valid: Grammar must have a 'properties' field")
    return {"type": "json", "value": value}


@functools.lru_cache(maxsize=64)
def _check_schema(schema_text: str) -> None:
    """JSON Schema's own check, once per schema (TGI compiles a grammar once and keeps it too)."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(schema_text))


def answer_text(grammar: dict[str, Any], prompt: str) -> str | None:
    """What a model constrained by ``grammar`` writes for ``prompt`` (the same prompt, the same text); ``None``
    where the emulator cannot follow the grammar (then, as TGI when outlines cannot compile one, it generates
    unconstrained)."""
    rng = random.Random(prompt)  # noqa: S311 (not a secret)
    try:
        if grammar["type"] == "regex":
            return "".join(_sample(sre_parser.parse(grammar["value"]), rng, {}))
        return json.dumps(_instance(grammar["value"], grammar["value"], rng, 0), ensure_ascii=False)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, re.error):
        log.warning("grammar won't be enforced: the emulator cannot answer it")
        return None


def _instance(schema: Any, root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, rng, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for keyword in ("anyOf", "oneOf"):
        if schema.get(keyword):
            options = [option for option in schema[keyword] if isinstance(option, dict)]
            options = [option for option in options if option.get("type") != "null"] or options
            return _instance(options[rng.randrange(len(options))], root, rng, depth + 1) if options else None
    if schema.get("allOf"):
        merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if "$ref" in part else part
            properties = {**merged.get("properties", {}), **part.get("properties", {})}
            required = [*merged.get("required", []), *part.get("required", [])]
            merged.update(part, **({"properties": properties} if properties else {}),
                          **({"required": required} if required else {}))
        return _instance(merged, root, rng, depth + 1)
    kind = schema.get("type") or ("object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((name for name in kind if name != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        if not properties and schema.get("additionalProperties", True) is not False:
            return {"note": _word(rng)}
        return {name: _instance(sub, root, rng, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        prefix = [_instance(sub, root, rng, depth + 1) for sub in schema.get("prefixItems", [])]
        count = min(schema.get("maxItems", 2), max(schema.get("minItems", 0), 2)) - len(prefix)
        return prefix + [_instance(schema.get("items", {"type": "string"}), root, rng, depth + 1)
                         for _ in range(max(count, 0))]
    if kind == "integer":
        return rng.randrange(1, 100)
    if kind == "number":
        return rng.randrange(1, 1000) / 10
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    if "pattern" in schema:
        return "".join(_sample(sre_parser.parse(schema["pattern"]), rng, {}))
    text = _word(rng)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    while len(text) < low:
        text += " " + _word(rng)
    return text[:high] if high is not None else text


def _word(rng: random.Random) -> str:
    return _WORDS[rng.randrange(len(_WORDS))]


def _resolve(reference: str, root: dict[str, Any]) -> Any:
    """A local reference (``#/$defs/Name``, ``#/$functions/name``): a JSON pointer into the root schema."""
    target: Any = root
    for part in reference.removeprefix("#").strip("/").split("/") if reference != "#" else ():
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def _sample(pattern: Any, rng: random.Random, groups: dict[int, str]) -> list[str]:
    """A string ``pattern`` (``re``'s parsed form) matches: each alternative and repetition picked by ``rng``."""
    out: list[str] = []
    for op, argument in pattern:
        if op is sre.LITERAL:
            out.append(chr(argument))
        elif op is sre.NOT_LITERAL:
            out.append("a" if chr(argument) != "a" else "b")
        elif op is sre.ANY:
            out.append("x")
        elif op is sre.IN:
            out.append(_character(argument, rng))
        elif op is sre.BRANCH:  # mostly the first alternative, as a model mostly writes plain characters
            branches = argument[1]
            chosen = 0 if rng.random() < _FIRST_BRANCH else rng.randrange(len(branches))
            out.extend(_sample(branches[chosen], rng, groups))
        elif op is sre.SUBPATTERN:
            group, _, _, inner = argument
            text = "".join(_sample(inner, rng, groups))
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
            low, high, inner = argument
            high = low + _EXTRA_REPEATS if high is sre.MAXREPEAT else high
            for _ in range(rng.randint(low, max(low, min(high, low + _EXTRA_REPEATS)))):
                out.extend(_sample(inner, rng, groups))
                if sum(map(len, out)) > _MAX_CHARACTERS:
                    raise ValueError("the regex asks for more text than the emulator writes")
        elif op is sre.GROUPREF:
            out.append(groups.get(argument, ""))
        elif op is sre.AT:
            continue
        else:
            raise ValueError(f"the emulator cannot answer a regex with {op}")
    return out


#: The characters a ``[...]`` class's answer is picked from: readable ones first.
_CANDIDATES = string.ascii_letters + string.digits + " _-.,:;!?@#$%&*+=/|~^'\"()[]{}<>\\"


def _character(items: list[tuple[Any, Any]], rng: random.Random) -> str:
    """One character a ``[...]`` class allows."""
    allowed = [character for character in _CANDIDATES if _in_class(character, items)]
    if not allowed:
        raise ValueError("the emulator has no character for this class")
    return allowed[rng.randrange(len(allowed))]


def _in_class(character: str, items: list[tuple[Any, Any]]) -> bool:
    negated = bool(items) and items[0][0] is sre.NEGATE
    matched = False
    for op, value in items[1:] if negated else items:
        if op is sre.LITERAL:
            matched = character == chr(value)
        elif op is sre.RANGE:
            matched = value[0] <= ord(character) <= value[1]
        elif op is sre.CATEGORY:
            matched = re.fullmatch(_CATEGORIES.get(value, r"\w"), character) is not None
        if matched:
            break
    return matched != negated


_CATEGORIES = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_SPACE: r"\s",
               sre.CATEGORY_NOT_SPACE: r"\S", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}
