"""Fuzzing the function's HTTP API, and many concurrent streams through it.

Case counts come from the hypothesis profile (tests/conftest.py): `make test` runs a subset,
`make fuzz` the full counts.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import schemathesis
from httpx_sse import EventSource
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from sagemaker_emulator import EmulatorConfig, EmulatorServer, tgi

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, width=32) | st.text(
    max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=10)
parameter_names = st.sampled_from(["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop",
                                   "seed", "do_sample", "details", "best_of", "typical_p", "watermark", "foo"])
parameters = st.dictionaries(parameter_names, json_values | st.integers(0, 3000) | st.floats(0, 2), max_size=4)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "bot"]),
                                           "content": st.text(max_size=30)}), max_size=3)
bodies = st.one_of(
    st.fixed_dictionaries({"inputs": st.text(max_size=50) | json_values}, optional={
        "parameters": parameters | json_values, "stream": st.booleans() | scalars}),
    st.fixed_dictionaries({"messages": messages | json_values}, optional={
        "max_tokens": st.integers(-5, 3000) | scalars, "temperature": st.floats(-1, 3) | scalars,
        "top_p": st.floats(-1, 2), "stop": st.lists(st.text(max_size=5), max_size=6)}),
    json_values,
).map(lambda value: json.dumps(value).encode())
raw_bodies = st.binary(max_size=200)


@pytest.fixture(scope="module")
def stack(request):
    """One emulator and one function for the whole module (hypothesis calls the test many times)."""
    from llm_stream.app import create_app
    from llm_stream.settings import Settings
    from tests.conftest import AppServer

    monkeypatch = pytest.MonkeyPatch()
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0)) as emulator:
        from tests.conftest import point_boto3_at

        point_boto3_at(monkeypatch, emulator.url)
        function_settings = Settings(endpoint_name="fuzz", upstream_max_attempts=1, max_new_tokens=64,
                            default_max_new_tokens=16, upstream_read_timeout_seconds=5)
        with AppServer(create_app(function_settings)) as function, httpx.Client(timeout=15) as client:
            yield emulator, function, client
    monkeypatch.undo()


def check_response(stack, body: bytes, content_type: str) -> None:
    emulator, function, client = stack
    before = len(emulator.requests)
    response = client.post(function.url, content=body,
                           headers={"content-type": content_type, "accept": "text/event-stream"})
    reached = len(emulator.requests) - before
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code == 200:
        assert reached == 1
        events = list(EventSource(response).iter_sse())
        assert events
        assert events[-1].event in ("done", "error")
        assert all(e.event == "token" for e in events[:-1])
        return
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["type"]
    assert error["message"]
    if reached:  # only TGI's own validation, after ours passed, may reach the endpoint and come back a 4xx
        assert reached == 1, body
        assert response.status_code == 422, (body, error)
        assert "Input validation error" in error["message"], (body, error)


@settings(suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_fuzzed_json_bodies_get_a_stream_or_a_4xx_json_error(stack, body: bytes) -> None:
    check_response(stack, body, "application/json")


@settings(max_examples=max(settings().max_examples // 3, 1), suppress_health_check=list(HealthCheck))
@given(body=raw_bodies, content_type=st.sampled_from(["application/json", "text/plain", "application/xml", ""]))
def test_fuzzed_raw_bodies_never_reach_the_endpoint_unless_valid(stack, body: bytes, content_type: str) -> None:
    check_response(stack, body, content_type)


@pytest.fixture(scope="module")
def post_operation(stack):
    """POST / from the function's own OpenAPI document, fetched from the running server."""
    _, function, _ = stack
    return schemathesis.openapi.from_url(f"{function.url}/openapi.json")["/"]["POST"]


@settings(suppress_health_check=list(HealthCheck))
@given(data=st.data(), mode=st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
def test_openapi_fuzzing(stack, post_operation, data, mode) -> None:
    """schemathesis cases, valid and invalid by the schema, through the real server."""
    case = data.draw(post_operation.as_strategy(generation_mode=mode))
    emulator, function, _ = stack
    before = len(emulator.requests)
    response = case.call(base_url=function.url, headers={"accept": "text/event-stream"}, timeout=15)
    reached = len(emulator.requests) - before
    assert response.status_code < 500, (case.body, response.status_code, response.text)
    if response.status_code == 200:
        assert reached == 1
        return
    error = response.json()["error"]
    assert error["type"]
    assert error["message"]
    if reached:
        assert response.status_code == 422, (case.body, error)
        assert "Input validation error" in error["message"], (case.body, error)


def test_fifty_concurrent_streams_lose_and_reorder_nothing(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=20, token_ms=5)) as emulator:
        function = start_function(emulator)

        def stream(seed: int) -> tuple[int, list[str], str]:
            payload = {"inputs": "Tell me about streaming.", "parameters": {"max_new_tokens": 40, "seed": seed}}
            with httpx.stream("POST", function.url, json=payload, headers={"accept": "text/event-stream"},
                              timeout=60) as response:
                events = list(EventSource(response).iter_sse())
            return seed, [json.loads(e.data)["text"] for e in events if e.event == "token"], events[-1].event

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(stream, range(50)))
        for seed, texts, last_event in results:
            request = tgi.GenerationRequest(mode="generate", prompt="Tell me about streaming.", stream=True,
                                            max_new_tokens=40, input_tokens=5, seed=seed)
            expected = [text for _, text in tgi.visible_tokens(request)]
            assert texts == expected, seed
            assert last_event == "done"
        assert len(emulator.requests) == 50
        assert [r.final_outcome() for r in emulator.requests] == ["completed"] * 50
