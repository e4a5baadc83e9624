"""The OpenAI-compatible API, driven by the official `openai` Python SDK against the real function."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from sagemaker_emulator.textgen import count_tokens
from tests.helpers.logs import LogRecords

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def client(function) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_deployed_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]


def test_chat_not_streamed_renders_the_conversation_for_the_model(client, emulator) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me more."}]
    answer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 6
    (received,) = emulator.requests
    sent = received.json()
    assert sent["inputs"] == "Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Tell me more.\nAssistant:"
    assert sent["parameters"]["stop"] == ["\nUser:"]
    assert sent["parameters"]["max_new_tokens"] == 6
    assert answer.usage.prompt_tokens == count_tokens(sent["inputs"])  # the container's own count


def test_chat_streamed_token_by_token_with_usage(client, emulator) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=5, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 5
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_the_neutral_values_clients_send_are_accepted_and_mapped(client, emulator) -> None:
    """What LangChain, chat UIs and the SDK defaults send: greedy for temperature 0, no top_p for 1."""
    client.chat.completions.create(model=MODEL, messages=HI, max_completion_tokens=3, temperature=0, top_p=1,
                                   n=1, presence_penalty=0, frequency_penalty=0, logprobs=False, seed=7,
                                   stop="END", user="team-a")
    parameters = emulator.requests[0].json()["parameters"]
    assert parameters["do_sample"] is False
    assert "temperature" not in parameters
    assert "top_p" not in parameters
    assert parameters["stop"] == ["END", "\nUser:"]
    assert parameters["seed"] == 7
    assert parameters["max_new_tokens"] == 3


def test_completions_streamed_and_not(client, emulator) -> None:
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4)
    assert whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length"
    streamed = "".join(chunk.choices[0].text for chunk in
                       client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, stream=True))
    assert streamed == whole.choices[0].text
    assert emulator.requests[0].json()["inputs"] == "Once upon a time"


def test_async_client_streams_too(function) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0) as client:
            stream = await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, stream=True)
            return [chunk.choices[0].delta.content async for chunk in stream
                    if chunk.choices and chunk.choices[0].delta.content]

    assert len(asyncio.run(run())) == 4


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"n": 2}, "n"), ({"presence_penalty": 0.5}, "presence_penalty"), ({"top_logprobs": 9}, "top_logprobs"),
    ({"temperature": 3}, "temperature"), ({"stop": ["a", "b", "c", "d"]}, "stop"),
    ({"max_tokens": 5000}, "max_tokens"),
])
def test_values_it_cannot_honour_are_refused_by_name(client, emulator, kwargs, param) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, **kwargs)
    assert raised.value.param == param  # every refusal of a field names it
    assert emulator.requests == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"presence_penalty": 0.5}, "this API accepts `presence_penalty` only as 0 (the model's container"),
    ({"logit_bias": {"50256": -100}}, "`logit_bias` is an object; this API accepts `logit_bias` only as {}"),
    ({"tool_choice": {"type": "function", "name": "f"}},
     '`tool_choice` as an object must be {"type": "function", "function": {"name": ...}}'),
])
def test_refusals_say_what_was_sent_and_what_is_accepted_in_json_not_python(client, emulator, kwargs,
                                                                             message) -> None:
    tools: list[Any] = [{"type": "function", "function": {"name": "f"}}] if "tool_choice" in kwargs else []
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, **kwargs, **({"tools": tools} if tools else {}))
    assert message in raised.value.message
    assert raised.value.param == next(iter(kwargs))
    assert "False" not in raised.value.message  # JSON, not a Python repr
    assert emulator.requests == []


def test_a_model_is_retrieved_by_its_id(client) -> None:
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-4o")
    assert raised.value.code == "model_not_found"
    assert MODEL in raised.value.message


@pytest.mark.parametrize(("method", "path", "status"), [("POST", "/v1/embeddings", 404), ("GET", "/v1/files", 404),
                                                        ("DELETE", "/v1/completions", 405)])
def test_other_paths_under_v1_answer_in_openai_s_shape_naming_what_is_served(function, method, path,
                                                                                status) -> None:
    response = httpx.request(method, function.url + path, json={}, timeout=10)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 404:
        assert error["code"] == "not_found"
        assert "it serves GET /v1/models; GET /v1/models/{model_id}; POST /v1/chat/completions; POST " \
            "/v1/completions; POST /v1/responses" in error["message"]
    else:
        assert response.headers["allow"] == "POST"


def test_a_prompt_list_of_one_is_answered_and_longer_lists_are_refused(client, emulator) -> None:
    answer = client.completions.create(model=MODEL, prompt=["Once upon a time"], max_tokens=4)
    assert answer.choices[0].index == 0
    assert answer.choices[0].text
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=4)
    assert raised.value.param == "prompt"
    assert "at most 1 per request" in raised.value.message


@pytest.mark.parametrize(("field", "value"), [("max_tokens", "5"), ("stream", "true"), ("temperature", "0.5"),
                                              ("seed", 1.5), ("stream_options", {"include_usage": "yes"})])
def test_numbers_and_booleans_sent_as_strings_are_refused_as_openai_refuses_them(function, emulator, field,
                                                                                  value) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], field: value}
    response = httpx.post(f"{function.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith(field)
    assert emulator.requests == []


def test_stream_null_means_not_streamed(function) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": None, "max_tokens": 3}
    response = httpx.post(f"{function.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_unknown_model_is_a_not_found_naming_the_deployed_one(client, emulator) -> None:
    with pytest.raises(openai.NotFoundError, match=MODEL):
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert emulator.requests == []


@pytest.mark.parametrize(("fault", "error"), [
    ("throttle", openai.RateLimitError), ("model_error", openai.InternalServerError),
])
def test_upstream_failures_before_the_first_byte_raise_the_typed_errors(client, emulator, fault, error) -> None:
    emulator.inject(Fault(kind=fault))
    with pytest.raises(error):
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=4)


def test_a_mid_stream_failure_raises_an_api_error_with_our_message(client, emulator, request_logs: LogRecords):
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))
    stream = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=20, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="the model failed while generating") as raised:
        seen.extend(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert type(raised.value) is openai.APIError  # the SDKs raise the generic class for an error event
    assert "".join(seen)
    (line,) = request_logs.wait_for(1)
    assert line["error_type"] == "ModelStreamError"
    assert line["path"] == "/v1/chat/completions"
    assert line["Requests"] == 1  # counted in the stream metrics like POST /
    assert line["ServerErrors"] == 1


def test_a_failure_after_tokens_of_a_whole_answer_is_still_a_status(client, emulator, request_logs: LogRecords):
    """Not streamed, no byte is sent before the end: a failure on the way is an HTTP status, not half an answer."""
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))
    with pytest.raises(openai.APIStatusError, match="the model failed while generating") as raised:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=20)
    assert raised.value.status_code == 502
    (line,) = request_logs.wait_for(1)
    assert (line["status"], line["error_type"], line["tokens"]) == (502, "upstream_stream_error", 2)
    assert line["error_detail"].startswith("ModelStreamError")


def test_a_base_model_refuses_chat_and_serves_completions(start_function, emulator) -> None:
    function = start_function(emulator, model_id="huggingface-llm-falcon-7b-bf16", chat_format="none")
    client = openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="base model"):
        client.chat.completions.create(model="huggingface-llm-falcon-7b-bf16", messages=HI)
    assert client.completions.create(model="huggingface-llm-falcon-7b-bf16", prompt="Hi", max_tokens=2).choices


CAPTURED = json.loads((Path(__file__).parent / "client_bodies" / "captured.json").read_text())


@pytest.mark.parametrize("body", CAPTURED["chat"], ids=lambda body: f"stream={body.get('stream', False)}")
def test_request_bodies_real_clients_send_are_served(function, body) -> None:
    response = httpx.post(f"{function.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    if body.get("stream"):
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.clients
def test_langchain_chat_openai_streams_and_invokes(function) -> None:
    from langchain_openai import ChatOpenAI

    # As an application configures it (a dict: its pydantic aliases are beyond the type checker).
    options: dict[str, Any] = {"base_url": f"{function.url}/v1", "api_key": "unused", "model": MODEL,
                               "max_tokens": 5, "max_retries": 0}
    llm = ChatOpenAI(**options)
    chunks = [str(chunk.content) for chunk in llm.stream("Hi")]
    assert len([text for text in chunks if text]) == 5  # one chunk per token
    assert llm.invoke([("system", "Be brief."), ("human", "Hi")]).content == "".join(chunks)


def test_the_stop_sequence_that_ended_the_answer_is_not_part_of_it(client, emulator) -> None:
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=20, stop=" short")
    assert whole.choices[0].text == "Here is a"
    assert whole.choices[0].finish_reason == "stop"
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=20, stop=" short", stream=True))
    assert streamed == "Here is a"


def test_a_caller_leaving_a_whole_answer_stops_the_generation(start_function, request_logs: LogRecords) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=50)) as emulator:
        function = start_function(emulator)
        # Warm first (the preload, the SageMaker client), so the caller's time is spent on the answer alone.
        warm = httpx.post(f"{function.url}/v1/chat/completions", timeout=30,
                          json={"model": MODEL, "messages": HI, "max_tokens": 1})
        assert warm.status_code == 200
        request_logs.wait_for(1).clear()
        client = openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0, timeout=1.0)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=MODEL, messages=HI, max_tokens=200)  # 10 s of tokens
        _, received = emulator.requests
        assert received.final_outcome() == "client_disconnected"
        assert received.tokens_sent < 100
        (line,) = request_logs.wait_for(1)
        assert line["client_disconnected"] is True
        assert line["status"] == 499
