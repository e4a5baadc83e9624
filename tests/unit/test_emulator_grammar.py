"""The emulator's guided generation: TGI's grammar checks, and answers that follow the grammar."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from llm_stream.output_formats import JSON_OBJECT_REGEX
from sagemaker_emulator import grammar, tgi


class Item(BaseModel):
    sku: str
    quantity: int
    price: float | None = None


class Order(BaseModel):
    id: str
    items: list[Item]
    paid: bool


SCHEMAS: list[dict[str, Any]] = [
    Order.model_json_schema(),
    {"type": "object", "properties": {"colour": {"enum": ["red", "green"]}, "kind": {"const": "car"}},
     "required": ["colour"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 3,
                                               "maxItems": 5},
                                      "pair": {"type": "array", "prefixItems": [{"type": "integer"},
                                                                                {"type": "boolean"}]}}},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                                      "note": {"type": "string", "minLength": 12, "maxLength": 20},
                                      "maybe": {"type": ["null", "number"]}}},
    {"type": "object", "properties": {"both": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}},
                                                          "required": ["a"]},
                                                         {"properties": {"b": {"type": "string"}}}]},
                                      "free": {"type": "object"}}},
    {"type": "object", "properties": {"none": {"type": "array", "maxItems": 0},
                                      "any": {"anyOf": [True, {"type": "boolean"}]},
                                      "code": {"type": "string", "pattern": "[^abc0-9]{3}"}}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@given(prompt=st.text(max_size=40))
def test_an_answer_to_a_json_grammar_is_valid_against_the_schema(schema: dict[str, Any], prompt: str) -> None:
    text = grammar.answer_text({"type": "json", "value": schema}, prompt)
    assert text is not None
    jsonschema.validate(json.loads(text), schema)
    assert grammar.answer_text({"type": "json", "value": schema}, prompt) == text  # the same prompt, the same text


@given(prompt=st.text(max_size=40))
def test_an_answer_to_the_json_object_regex_matches_it_and_is_an_object(prompt: str) -> None:
    text = grammar.answer_text({"type": "regex", "value": JSON_OBJECT_REGEX}, prompt)
    assert text is not None
    assert re.fullmatch(JSON_OBJECT_REGEX, text)
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("pattern", [r"\d{3}-[a-f]+", r"(yes|no)!?", r"[^\d\s]{2,4}", r"(ab)+\1", r"a*b?c{0,2}",
                                     r"[^\w]x", r"[^abcxyz019]+"])
def test_an_answer_to_a_regex_grammar_matches_it(pattern: str) -> None:
    for prompt in ("one", "two", "three"):
        assert re.fullmatch(pattern, grammar.answer_text({"type": "regex", "value": pattern}, prompt) or "")


@pytest.mark.parametrize("given", [
    {"type": "regex", "value": "(?=a)b"}, {"type": "regex", "value": "((a{99}){99}){99}"},
    {"type": "json", "value": {"properties": {"x": {"$ref": "#/$defs/missing"}}}}])
def test_a_grammar_the_emulator_cannot_follow_is_not_enforced_as_tgi_does_with_one_it_cannot_compile(
        given: dict[str, Any]) -> None:
    assert grammar.answer_text(given, "Hi") is None
    request = tgi.parse_request(generate_body(grammar=given), 2048)
    assert "".join(token.text for token, _ in tgi.generate(request) if not token.special).startswith("Here is")


@pytest.mark.parametrize(("given_grammar", "message", "deserialize"), [
    ({"type": "json", "value": {"type": "object"}}, "Grammar must have a 'properties' field", False),
    ({"type": "json", "value": "{not json"}, "grammar is not valid", False),
    ({"type": "json", "value": 3}, "Grammar must be a valid JSON object", False),
    ({"type": "json", "value": {"properties": {}, "type": "strng"}}, "grammar is not valid", False),
    ({"type": "ebnf", "value": "x"}, "unknown variant", True),
])
def test_grammars_tgi_s_router_refuses(given_grammar: dict[str, Any], message: str, deserialize: bool) -> None:
    with pytest.raises(grammar.GrammarRefused) as refused:
        grammar.checked(given_grammar)
    assert message in str(refused.value)
    assert refused.value.deserialize is deserialize


def test_a_json_value_given_as_a_string_is_parsed_as_tgi_does() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert grammar.checked({"type": "json", "value": json.dumps(schema)}) == {"type": "json", "value": schema}


def generate_body(**parameters: Any) -> bytes:
    return json.dumps({"inputs": "Hi", "stream": True, "parameters": {"details": True, **parameters}}).encode()


def test_tgi_1_4_0_ignores_a_grammar_and_sends_no_prompt_count_where_2_4_0_does_both() -> None:
    refused = {"type": "json", "value": {"type": "object"}}
    old = tgi.parse_request(generate_body(grammar=refused), 2048, version="1.4.0")
    assert old.grammar is None  # an unknown field to its router: generation is unconstrained
    last_event = tgi.EventRenderer(old).token(3, grammar_free_token(), "eos_token")
    assert "input_length" not in json.loads(last_event[5:])["details"]
    with pytest.raises(tgi.ValidationFailure, match="Grammar must have a 'properties' field"):
        tgi.parse_request(generate_body(grammar=refused), 2048, version="2.4.0")
    new = tgi.parse_request(generate_body(), 2048, version="2.4.0")
    assert "input_length" in json.loads(tgi.EventRenderer(new).token(3, grammar_free_token(), "eos_token")[5:])[
        "details"]


def grammar_free_token() -> Any:
    from sagemaker_emulator.textgen import Token

    return Token(id=5, text=" a")
