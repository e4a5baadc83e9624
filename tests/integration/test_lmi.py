"""The function under real uvicorn in front of the emulator in LMI mode (DJL Serving 0.28's JSON lines and
errors), with the settings a deployment of Mistral 7B Instruct gives it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.catalog import load_catalog
from infra.function_settings import model_settings
from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests.helpers.servers import AppServer
from tests.helpers.sse import last, post_sse, tokens_of

MODEL = load_catalog().get("huggingface-llm-mistral-7b-instruct")
SEED: dict[str, Any] = {"inputs": "我该如何建立一个网站?", "parameters": {"max_new_tokens": 256}}
CHAT = {"messages": [{"role": "user", "content": "How do I build a website?"}], "max_tokens": 64}


@pytest.fixture
def lmi_emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(ttft_ms=5, token_ms=1, container="lmi", max_total_tokens=MODEL.max_total_tokens)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def lmi_function(lmi_emulator: EmulatorServer, start_function) -> AppServer:
    return start_function(lmi_emulator, **model_settings(MODEL))


def test_the_endpoint_is_asked_for_lmi_s_json_lines_with_lmi_s_parameters(lmi_function, lmi_emulator) -> None:
    response = httpx.post(lmi_function.url, json=CHAT, timeout=30)
    assert response.status_code == 200
    (received,) = lmi_emulator.requests
    assert received.headers["X-Amzn-SageMaker-Accept"] == "application/jsonlines"  # botocore: the Accept member
    assert received.json() == {"inputs": "[INST] How do I build a website? [/INST]", "stream": True,
                               "parameters": {"max_new_tokens": 64, "details": True, "do_sample": True}}
    assert received.final_outcome() == "completed"


def test_sse_streams_lmi_tokens_then_done(lmi_function) -> None:
    response, events = post_sse(lmi_function.url, SEED)
    assert response.status_code == 200
    tokens = tokens_of(events)
    assert "".join(tokens).startswith("建立网站可以是一个复杂的过程")
    kind, done = last(events)
    assert kind == "done"
    assert done["finish_reason"] == "eos_token"
    assert done["generated_tokens"] == len(tokens) + 1  # the EOS token counts, its empty text is not sent


def test_plain_text_streams_the_lmi_answer(lmi_function) -> None:
    response = httpx.post(lmi_function.url, json=SEED, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("建立网站可以是一个复杂的过程")
    assert "\x1e[error" not in response.text


def test_openai_chat_stops_on_a_caller_stop_and_leaves_it_out(lmi_function) -> None:
    body = {"model": MODEL.model_id, "messages": CHAT["messages"], "stop": [" short"]}
    response = httpx.post(f"{lmi_function.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    # LMI reports a stop sequence as eos_token; whether its texts hold the stop (here they do) or not, the
    # caller gets the text before it.
    assert choice["message"]["content"] == "Here is a"
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("after_tokens", [0, 3])
def test_an_lmi_failure_during_generation_ends_the_stream_with_an_error(lmi_function, lmi_emulator,
                                                                        after_tokens: int) -> None:
    lmi_emulator.inject(Fault(kind="in_band_error", after_tokens=after_tokens))
    response, events = post_sse(lmi_function.url, SEED)
    if after_tokens == 0:  # before the first token: an HTTP error, nothing streamed
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "upstream_stream_error"
        assert response.json()["error"]["message"] == "the model failed while generating"
        return
    assert len(tokens_of(events)) == after_tokens
    kind, error = last(events)
    assert (kind, error["type"], error["message"]) == ("error", "generation", "the model failed while generating")


def test_a_truncated_lmi_stream_ends_with_an_error_at_once(lmi_function, lmi_emulator) -> None:
    lmi_emulator.inject(Fault(kind="drop_connection", after_tokens=4))
    started = time.monotonic()
    _response, events = post_sse(lmi_function.url, SEED)
    assert time.monotonic() - started < 5
    assert len(tokens_of(events)) == 4
    assert last(events)[0] == "error"
    assert last(events)[1]["type"] == "connection_lost"


def test_a_prompt_beyond_the_window_is_a_422_not_an_empty_answer(start_function, lmi_emulator) -> None:
    # The function's character cap normally refuses such a prompt first; with it raised, LMI's own
    # behaviour (vLLM ends the request at once, finish "length", no text) is what the caller must not get.
    function = start_function(lmi_emulator, **{**model_settings(MODEL), "max_input_chars": 100_000})
    response = httpx.post(function.url, json={"inputs": "word " * 5000}, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"
    assert "context window" in response.json()["error"]["message"]


def test_a_conversation_lmi_s_template_cannot_write_is_refused_before_the_endpoint(lmi_function,
                                                                                  lmi_emulator) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    response = httpx.post(lmi_function.url, json=body, timeout=30)
    assert response.status_code == 422
    assert "end with a user message" in response.json()["error"]["message"]
    assert lmi_emulator.requests == []


def test_the_function_and_emulator_agree_on_the_whole_lmi_answer(lmi_function, lmi_emulator,
                                                                 make_runtime_client) -> None:
    """What the caller was streamed is exactly the container's own generated_text."""
    streamed = httpx.post(lmi_function.url, json=SEED, timeout=30).text.rstrip("\n")
    direct = make_runtime_client(lmi_emulator.url).invoke_endpoint(
        EndpointName="e", Body=json.dumps({**SEED, "parameters": {**SEED["parameters"], "details": True}}),
        ContentType="application/json")
    assert direct["ContentType"] == "application/json"
    assert json.loads(direct["Body"].read())["generated_text"] == streamed


def test_the_api_document_describes_lmi_s_own_parameters(lmi_function) -> None:
    """``/openapi.json`` describes the deployed container's payload (before the families, an LMI deployment's
    document showed TGI's parameters, which LMI refuses in part)."""
    schemas = httpx.get(f"{lmi_function.url}/openapi.json", timeout=30).json()["components"]["schemas"]
    assert "GeneratePayload" not in schemas
    parameters = schemas["LmiGenerateParameters"]["properties"]
    assert "stop_sequences" in parameters
    assert "presence_penalty" in parameters
    assert "stop" not in parameters
    assert "truncate" not in parameters
