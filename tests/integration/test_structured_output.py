"""Structured output and tools on the OpenAI-compatible routes, driven by the official `openai` SDK against the
real function in front of the emulator (which constrains its answers as TGI 2.4's grammar does)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from infra.catalog import load_catalog
from infra.function_settings import model_settings
from llm_stream.output_formats import JSON_OBJECT_REGEX
from llm_stream.settings import Settings
from llm_stream.tool_calls import tool_choice
from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
ASK: Any = [{"role": "user", "content": "Describe a city as JSON."}]
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


class Landmark(BaseModel):
    name: str
    year_built: int | None


class City(BaseModel):
    name: str
    population: int
    landmarks: list[Landmark]


@pytest.fixture
def client(function) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)


def sent_grammar(emulator: EmulatorServer) -> dict[str, Any]:
    (received,) = emulator.requests
    return received.json()["parameters"]["grammar"]


def test_parse_with_a_pydantic_model_gets_an_instance_and_sends_its_schema_as_the_grammar(client, emulator) -> None:
    completion = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=City, max_tokens=200)
    city = completion.choices[0].message.parsed
    assert isinstance(city, City)
    assert completion.choices[0].finish_reason == "stop"
    grammar = sent_grammar(emulator)
    assert grammar["type"] == "json"
    assert grammar["value"]["properties"].keys() == {"name", "population", "landmarks"}
    assert "$defs" in grammar["value"]  # the nested model, by reference, as pydantic writes it


def test_a_streamed_json_answer_arrives_token_by_token_and_is_the_schema_s_json(client, emulator) -> None:
    schema = City.model_json_schema()
    stream = client.chat.completions.create(model=MODEL, messages=ASK, stream=True, max_tokens=200, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    texts = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(texts) > 5
    jsonschema.validate(json.loads("".join(texts)), schema)


def test_json_object_is_a_regex_grammar_for_any_object_and_the_answer_is_one(client, emulator) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"})
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
    assert sent_grammar(emulator) == {"type": "regex", "value": JSON_OBJECT_REGEX}


def test_an_answer_the_container_did_not_constrain_is_an_error_never_a_success(client, emulator) -> None:
    emulator.inject(Fault("grammar_not_enforced", times=2))
    format_ = {"type": "json_schema", "json_schema": {"name": "city", "schema": City.model_json_schema()}}
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format=format_)
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"  # the SDK does not retry it
    assert raised.value.code == "invalid_json_output"
    assert "not JSON" in raised.value.message
    stream = client.chat.completions.create(model=MODEL, messages=ASK, response_format=format_, stream=True)
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert "did not enforce the format" in streamed.value.message


def test_an_answer_cut_by_max_tokens_ends_with_length_as_openai_answers_it(client) -> None:
    with pytest.raises(openai.LengthFinishReasonError):  # the SDK's own check of a cut answer
        client.chat.completions.parse(model=MODEL, messages=ASK, response_format=City, max_tokens=4)
    cut = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": City.model_json_schema()}})
    assert cut.choices[0].finish_reason == "length"
    assert (cut.choices[0].message.content or "").startswith("{")  # the JSON so far, as OpenAI gives it
    called = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, tools=[WEATHER],
                                            tool_choice="required")
    assert called.choices[0].finish_reason == "length"
    assert not called.choices[0].message.tool_calls  # no call: half a call is none


@pytest.mark.parametrize(("schema", "param"), [
    ({"type": "object"}, "response_format.json_schema.schema.properties"),
    ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}},
     "response_format.json_schema.schema.properties.age.minimum"),
    ({"type": "object", "properties": {"x": {"not": {"type": "null"}}}},
     "response_format.json_schema.schema.properties.x.not"),
    ({"type": "object", "properties": {"x": {"$ref": "https://example.com/x.json"}}},
     "response_format.json_schema.schema.properties.x.$ref"),
    ({"type": "object", "properties": {"x": {"type": "strng"}}}, "response_format.json_schema.schema"),
    ({"type": "object", "$defs": {"a": {"$ref": "#/$defs/a"}}, "properties": {"x": {"$ref": "#/$defs/a"}}},
     "response_format.json_schema.schema.properties.x.$ref.$ref"),
    ({"type": "object", "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
      "properties": {"head": {"$ref": "#/$defs/node"}}},
     "response_format.json_schema.schema.properties.head.$ref.properties.next.$ref"),
    ({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
     "response_format.json_schema.schema.properties.x.$ref"),
    ({"type": "object", "properties": {"x": {"$dynamicRef": "#meta"}}},
     "response_format.json_schema.schema.properties.x.$dynamicRef"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(?=a)a+"}}},
     "response_format.json_schema.schema.properties.x.pattern"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(?i)yes|no"}}},
     "response_format.json_schema.schema.properties.x.pattern"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(" * 1000 + "a" + ")" * 1000}}},
     "response_format.json_schema.schema.properties.x.pattern"),
    ({"type": "object", "properties": {"x": {"$ref": "#properties"}}},
     "response_format.json_schema.schema.properties.x.$ref"),
])
def test_schemas_the_grammar_cannot_enforce_are_refused_by_name(client, emulator, schema, param) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert raised.value.param == param
    assert emulator.requests == []


def test_a_schema_too_large_to_compile_for_a_shared_container_is_refused(client, emulator) -> None:
    # Small as a body (a few kB), large once its references are followed: 100 uses of a 60-property definition.
    item = {"type": "object", "properties": {f"f{n}": {"type": "string"} for n in range(60)}}
    expanding = {"type": "object", "$defs": {"item": item},
                 "properties": {f"p{n}": {"$ref": "#/$defs/item"} for n in range(100)}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": expanding}})
    assert "more than 5000 keywords (references followed)" in raised.value.message
    item = {"type": "object", "properties": {f"f{n}": {"type": "string"} for n in range(20)}}
    wide = {"type": "object", "$defs": {"item": item}, "properties": {f"p{n}": {"$ref": "#/$defs/item"}
                                                                      for n in range(100)}}
    tools = [{"type": "function", "function": {"name": f"f{n}", "parameters": wide}} for n in range(2)]
    with pytest.raises(openai.BadRequestError) as together:  # the functions make one grammar
        client.chat.completions.create(model=MODEL, messages=ASK, tools=tools)
    assert (together.value.param or "").startswith("tools[1].function.parameters")
    assert emulator.requests == []
    assert tool_choice(tools[:1], None, Settings(endpoint_name="e"), nested=True)  # one alone is within it


def test_tools_and_a_response_format_together_are_refused(client, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], response_format={
            "type": "json_object"})
    assert raised.value.param == "response_format"
    assert emulator.requests == []


def test_a_container_without_grammar_refuses_naming_the_model_and_why(start_function) -> None:
    falcon_40b = load_catalog().get("huggingface-llm-falcon-40b-instruct-bf16")  # TGI 1.4.0
    config = EmulatorConfig(ttft_ms=0, token_ms=0, container_version=falcon_40b.container_version)
    with EmulatorServer(config) as emulator:
        function = start_function(emulator, **model_settings(falcon_40b))  # the catalog's capabilities
        client = openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)
        for kwargs, param in (({"response_format": {"type": "json_object"}}, "response_format"),
                              ({"tools": [WEATHER]}, "tools")):
            with pytest.raises(openai.BadRequestError) as raised:
                client.chat.completions.create(model=falcon_40b.model_id, messages=ASK, **kwargs)
            assert raised.value.param == param
            assert falcon_40b.model_id in raised.value.message
            assert "tgi 1.4.1 and later have it" in raised.value.message
        assert emulator.requests == []
        # tool_choice "none" needs no grammar: the tools are not offered, the answer is text
        answer = client.chat.completions.create(model=falcon_40b.model_id, messages=ASK,
                                                tools=[WEATHER], tool_choice="none", max_tokens=5)
        assert answer.choices[0].message.content
        assert "grammar" not in emulator.requests[0].json()["parameters"]


def test_a_required_tool_call_comes_back_as_tool_calls_with_arguments_fitting_the_parameters(client,
                                                                                              emulator) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Paris weather?"}],
                                            tools=[WEATHER, TIME], tool_choice="required")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    parameters = (WEATHER if call.function.name == "get_weather" else TIME)["function"]["parameters"]
    jsonschema.validate(json.loads(call.function.arguments), parameters)
    grammar = sent_grammar(emulator)["value"]
    assert set(grammar["$functions"]) == {"get_weather", "get_time"}  # required: any function, never no_tool
    prompt = emulator.requests[0].json()["inputs"]
    assert "get_weather" in prompt
    assert "The weather in a city" in prompt


def test_a_named_function_is_the_only_one_the_grammar_allows_and_auto_adds_no_tool(client, emulator) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    answer = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice=named)
    assert [call.function.name for call in answer.choices[0].message.tool_calls or []] == ["get_time"]
    assert set(sent_grammar(emulator)["value"]["$functions"]) == {"get_time"}
    emulator.reset()
    client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME])
    assert set(sent_grammar(emulator)["value"]["$functions"]) == {"get_weather", "get_time", "no_tool"}


def test_a_streamed_tool_call_arrives_as_openai_s_deltas(client) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                                            stream=True)
    chunks = list(stream)
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    (call,) = calls
    assert call.index == 0
    assert call.function
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "")["city"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_a_tool_result_goes_back_to_the_model_in_its_chat_format(client, emulator) -> None:
    first = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Paris weather?"}],
                                           tools=[WEATHER], tool_choice="required")
    call = (first.choices[0].message.tool_calls or [])[0]
    emulator.reset()
    second = client.chat.completions.create(model=MODEL, tools=[WEATHER], tool_choice="none", messages=[
        {"role": "user", "content": "Paris weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}])
    assert second.choices[0].message.content
    prompt = emulator.requests[0].json()["inputs"]
    assert '"_name": "get_weather"' in prompt  # the call as the model wrote it
    assert "User: The function get_weather returned: 18 C and sunny\nAssistant:" in prompt
    assert "grammar" not in emulator.requests[0].json()["parameters"]


@pytest.mark.parametrize(("tools", "choice", "param"), [
    ([{"type": "function", "function": {"name": "bad name"}}], None, "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "no_tool"}}], None, "tools[0].function.name"),
    ([WEATHER, WEATHER], None, "tools"),
    ([WEATHER], {"type": "function", "function": {"name": "other"}}, "tool_choice"),
    ([], "required", "tool_choice"),
    ([WEATHER], {"type": "function", "function": "get_weather"}, "tool_choice"),
    ([{"type": "function", "function": {"name": "f\u00e9"}}], None, "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], None,
     "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "f", "parameters": []}}], None, "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "_name": {"type": "string"}}}}}], None, "tools[0].function.parameters.properties._name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"$ref": "#/properties/y"}, "y": {"type": "string"}}}}}], None,
     "tools[0].function.parameters.properties.x.$ref"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "n": {"type": "integer", "multipleOf": 2}}}}}], None, "tools[0].function.parameters.properties.n.multipleOf"),
])
def test_tool_definitions_are_checked_before_the_endpoint(client, emulator, tools, choice, param) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=tools,
                                       **({"tool_choice": choice} if choice else {}))
    assert raised.value.param == param
    assert emulator.requests == []


def test_the_responses_api_parses_structured_output_and_calls_tools(client, emulator) -> None:
    parsed = client.responses.parse(model=MODEL, input="Describe a city.", text_format=City, max_output_tokens=200)
    assert isinstance(parsed.output_parsed, City)
    assert sent_grammar(emulator)["value"]["properties"].keys() == {"name", "population", "landmarks"}
    tool = {"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": WEATHER["function"]["parameters"]}
    called = client.responses.create(model=MODEL, input="Paris weather?", tools=[tool], tool_choice="required")
    (item,) = called.output
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert json.loads(item.arguments)["city"]
    emulator.reset()
    answered = client.responses.create(model=MODEL, tools=[tool], tool_choice="none", input=[
        {"role": "user", "content": "Paris weather?"}, item.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": item.call_id, "output": "18 C"}])
    assert answered.output_text
    assert "The function get_weather returned: 18 C" in emulator.requests[0].json()["inputs"]


def test_the_responses_stream_helper_reads_a_function_call(client) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    with client.responses.stream(model=MODEL, input="Paris weather?", tools=[tool], tool_choice="required") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    (item,) = final.output
    assert item.type == "function_call"
    assert json.loads(item.arguments)["city"]


def chat_model(function: Any, **options: Any) -> Any:
    """LangChain's ChatOpenAI as an application configures it (a dict: its aliases are beyond the type checker)."""
    from langchain_openai import ChatOpenAI

    settings: dict[str, Any] = {"base_url": f"{function.url}/v1", "api_key": "unused", "model": MODEL,
                                "max_retries": 0, **options}
    return ChatOpenAI(**settings)


@pytest.mark.clients
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_with_structured_output_each_method(function, emulator, method: str) -> None:
    llm = chat_model(function, max_tokens=300)
    schema: Any = City if method != "json_mode" else City.model_json_schema()  # a dict: no pydantic check
    city = llm.with_structured_output(schema, method=method).invoke("Describe a city as JSON.")
    if method == "json_mode":  # any JSON object: the schema is the prompt's business, not the grammar's
        assert isinstance(city, dict)
    else:
        assert isinstance(city, City)
    grammar = sent_grammar(emulator)
    assert grammar["type"] == ("regex" if method == "json_mode" else "json")
    if method == "function_calling":  # a named tool: the grammar allows that function only
        assert set(grammar["value"]["$functions"]) == {"City"}


@pytest.mark.clients
def test_langchain_bind_tools_calls_a_tool_and_reads_its_result(function, emulator) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18 C in {city}"

    llm = chat_model(function)
    ask = HumanMessage("What is the weather in Paris?")
    called = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([ask])
    (call,) = called.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"]["city"]
    streamed = list(llm.bind_tools([get_weather], tool_choice="any").stream([ask]))
    assert sum(streamed[1:], streamed[0]).tool_calls[0]["name"] == "get_weather"
    emulator.reset()
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke(
        [ask, called, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])])
    assert answer.content
    assert "The function get_weather returned: 18 C in" in emulator.requests[0].json()["inputs"]


@pytest.mark.clients
def test_langchain_s_completions_class_sends_a_list_of_one_prompt(function, emulator) -> None:
    from langchain_openai import OpenAI

    options: dict[str, Any] = {"base_url": f"{function.url}/v1", "api_key": "unused", "model": MODEL,
                               "max_tokens": 5, "max_retries": 0}
    assert OpenAI(**options).invoke("Once upon a time")
    assert emulator.requests[0].json()["inputs"] == "Once upon a time"


def test_earlier_call_arguments_that_are_no_json_object_are_refused_by_name(client, emulator) -> None:
    nested = "[" * 5000 + "]" * 5000
    for arguments in (nested, "not json", "[1]", '{"_name": "another_function"}'):
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model=MODEL, tools=[WEATHER], messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18 C"}])
        assert raised.value.param == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input=[{"role": "user", "content": "Hi"}, {
            "type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": nested}])
    assert refused.value.param == "input[1].arguments"
    assert emulator.requests == []


def test_logprobs_with_tools_are_refused(client, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], logprobs=True)
    assert raised.value.param == "logprobs"
    assert emulator.requests == []


def test_a_tool_answer_the_container_did_not_constrain_ends_with_an_error_event(client, emulator) -> None:
    emulator.inject(Fault("grammar_not_enforced", times=3))
    stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                                            stream=True)
    with pytest.raises(openai.APIError) as chat:
        list(stream)
    assert "not a tool call" in chat.value.message
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    called = list(client.responses.create(model=MODEL, input="Paris weather?", tools=[tool], tool_choice="required",
                                          stream=True))
    assert [event.type for event in called[-2:]] == ["error", "response.failed"]
    assert "not a tool call" in called[-2].message
    assert called[-1].response.output == []  # no call, no message
    formatted = list(client.responses.create(model=MODEL, input="A city", stream=True, text={"format": {
        "type": "json_schema", "name": "city", "schema": City.model_json_schema()}}))
    assert [event.type for event in formatted[-2:]] == ["error", "response.failed"]
    assert formatted[-1].response.error.code == "invalid_json_output"


def no_tool_prompt(client: openai.OpenAI) -> str:
    """A question the emulator answers in words under ``auto`` (it picks among the grammar's choices by the
    prompt, the same way every time)."""
    for number in range(40):
        question = f"Question {number}: what is new?"
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}],
                                                tools=[WEATHER])
        if answer.choices[0].message.content:
            return question
    raise AssertionError("no question got a reply in words")


def test_a_no_tool_reply_is_content_streamed_or_not_on_both_routes(client, emulator) -> None:
    question = no_tool_prompt(client)
    ask = [{"role": "user", "content": question}]
    whole = client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER])
    assert whole.choices[0].finish_reason == "stop"
    assert whole.choices[0].message.tool_calls is None
    reply = whole.choices[0].message.content or ""
    assert reply
    assert not reply.startswith("{")
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    tool = {"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": WEATHER["function"]["parameters"]}
    emulator.reset()
    answered = client.responses.create(model=MODEL, input=question, tools=[tool])
    assert [item.type for item in answered.output] == ["message"]
    assert answered.output_text
