"""The function's failures and refusals under real uvicorn, in front of the emulator: before the first byte a
status, after it a terminal error event; bad input never reaches the endpoint."""

from __future__ import annotations

import time

import httpx
import pytest
from httpx_sse import EventSource

from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests.helpers.sse import SEED, SSE, last, post_sse, tokens_of

# -- failures before the first byte ----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        (Fault(kind="throttle"), 429, "throttled"),
        (Fault(kind="model_error"), 502, "model_error"),
        (Fault(kind="unknown_endpoint"), 503, "endpoint_not_found"),
        (Fault(kind="in_band_error"), 502, "upstream_stream_error"),
        (Fault(kind="in_band_error", error_type="overloaded"), 503, "model_overloaded"),
        (Fault(kind="model_stream_error"), 502, "upstream_stream_error"),
        (Fault(kind="internal_stream_failure"), 502, "upstream_stream_error"),
        (Fault(kind="drop_connection"), 502, "upstream_stream_error"),
    ],
)
def test_failures_before_the_first_token_map_to_http_statuses(
    function, emulator: EmulatorServer, fault: Fault, status: int, error_type: str
) -> None:
    emulator.inject(fault)
    response = httpx.post(function.url, json=SEED, headers=SSE, timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == error_type
    assert response.json()["error"]["message"]
    # The function is ready for the next request.
    assert httpx.post(function.url, json=SEED, timeout=30).status_code == 200


def test_tgi_token_budget_rejection_is_a_422(start_function, emulator: EmulatorServer) -> None:
    # A deployer may allow more characters than the model's window holds: then TGI's own check refuses.
    function = start_function(emulator, max_input_chars=10_000)
    long_prompt = "word " * 1500  # fits that character cap, not the model's 2048-token window with 1000 new tokens
    response = httpx.post(function.url, json={"inputs": long_prompt, "parameters": {"max_new_tokens": 1000}},
                          timeout=30)
    assert response.status_code == 422
    assert "must be <= 2048" in response.json()["error"]["message"]


def test_silent_endpoint_before_the_first_token_is_a_504(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0)) as emulator:
        function = start_function(emulator, upstream_read_timeout_seconds=0.5)
        emulator.inject(Fault(kind="stall", after_tokens=0, stall_seconds=5))
        started = time.monotonic()
        response = httpx.post(function.url, json=SEED, timeout=30)
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "upstream_timeout"
        assert time.monotonic() - started < 3


# -- failures after the first byte -----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault(kind="in_band_error", after_tokens=3), "generation"),
        (Fault(kind="model_stream_error", after_tokens=3), "ModelStreamError"),
        (Fault(kind="internal_stream_failure", after_tokens=3), "InternalStreamFailure"),
        (Fault(kind="drop_connection", after_tokens=3), "connection_lost"),
    ],
)
def test_mid_stream_failures_end_with_an_error_event(function, emulator, fault: Fault, error_type: str) -> None:
    emulator.inject(fault)
    started = time.monotonic()
    response, events = post_sse(function.url, SEED)
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert len(tokens_of(events)) == 3
    kind, error = last(events)
    assert kind == "error"
    assert error["type"] == error_type
    assert error["message"]
    # The function is ready for the next request.
    assert last(post_sse(function.url, SEED)[1])[0] == "done"


def test_mid_stream_failure_in_plain_text_ends_with_an_error_line(function, emulator) -> None:
    emulator.inject(Fault(kind="model_stream_error", after_tokens=3))
    response = httpx.post(function.url, json=SEED, timeout=30)
    assert response.status_code == 200
    text, error_line = response.text.rstrip("\n").rsplit("\n", 1)
    assert text == "建立网站可以"
    request_id = response.headers["x-request-id"]
    assert error_line == f"\x1e[error: ModelStreamError] the model failed while generating (request {request_id})"


def test_endpoint_going_silent_mid_stream(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0)) as emulator:
        function = start_function(emulator, upstream_read_timeout_seconds=0.5)
        emulator.inject(Fault(kind="stall", after_tokens=2, stall_seconds=5))
        started = time.monotonic()
        _, events = post_sse(function.url, SEED)
        assert last(events)[0] == "error"
        assert last(events)[1]["type"] == "read_timeout"
        assert len(tokens_of(events)) == 2
        assert time.monotonic() - started < 3


def test_time_budget_ends_a_long_answer_with_an_error_event(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=50)) as emulator:
        function = start_function(emulator, time_budget_seconds=0.6)
        started = time.monotonic()
        _, events = post_sse(function.url, {"inputs": "Hello", "parameters": {"max_new_tokens": 200}})
        elapsed = time.monotonic() - started
        kind, error = last(events)
        assert kind == "error"
        assert error["type"] == "time_budget_exceeded"
        assert 0.5 < elapsed < 2.0
        assert 3 < len(tokens_of(events)) < 20
        (received,) = emulator.requests
        assert received.final_outcome() == "client_disconnected"


def test_client_disconnect_closes_the_upstream_stream(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=30)) as emulator:
        function = start_function(emulator)
        with httpx.stream("POST", function.url, json=SEED, headers=SSE, timeout=30) as response:
            assert next(EventSource(response).iter_sse()).event == "token"
        (received,) = emulator.requests
        assert received.final_outcome() == "client_disconnected", "the endpoint kept generating for nobody"
        assert received.tokens_sent < 50
        assert httpx.post(function.url, json={"inputs": "Hi", "parameters": {"max_new_tokens": 2}}).status_code == 200


# -- bad input never reaches the endpoint ----------------------------------------

LONG = "x" * 8001
BAD_REQUESTS = [
    ("not-json", b"{inputs:", "application/json", 400, "invalid_json"),
    ("empty-body", b"", "application/json", 400, "invalid_json"),
    ("not-utf8", b"\xff\xfe{}", "application/json", 400, "invalid_json"),
    ("json-array", b"[1, 2]", "application/json", 422, "validation_error"),
    ("xml-content-type", b"<inputs/>", "application/xml", 415, "unsupported_media_type"),
    ("multipart", b"--x", "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
    ("neither", {"parameters": {}}, None, 422, "validation_error"),
    ("both", {"inputs": "a", "messages": [{"role": "user", "content": "a"}]}, None, 422, "validation_error"),
    ("empty-inputs", {"inputs": ""}, None, 422, "validation_error"),
    ("blank-inputs", {"inputs": "   \n"}, None, 422, "validation_error"),
    ("inputs-not-string", {"inputs": 42}, None, 422, "validation_error"),
    ("unknown-parameter", {"inputs": "a", "parameters": {"max_length": 5}}, None, 422, "validation_error"),
    ("unknown-top-level", {"inputs": "a", "options": {}}, None, 422, "validation_error"),
    ("temperature-zero", {"inputs": "a", "parameters": {"temperature": 0}}, None, 422, "validation_error"),
    ("temperature-string", {"inputs": "a", "parameters": {"temperature": "hot"}}, None, 422, "validation_error"),
    ("top-p-one", {"inputs": "a", "parameters": {"top_p": 1.0}}, None, 422, "validation_error"),
    ("top-k-zero", {"inputs": "a", "parameters": {"top_k": 0}}, None, 422, "validation_error"),
    ("repetition-penalty-zero", {"inputs": "a", "parameters": {"repetition_penalty": 0}}, None, 422,
     "validation_error"),
    ("max-new-tokens-zero", {"inputs": "a", "parameters": {"max_new_tokens": 0}}, None, 422, "validation_error"),
    ("max-new-tokens-over-cap", {"inputs": "a", "parameters": {"max_new_tokens": 1025}}, None, 422,
     "validation_error"),
    ("max-new-tokens-float", {"inputs": "a", "parameters": {"max_new_tokens": 2.5}}, None, 422, "validation_error"),
    ("five-stop-sequences", {"inputs": "a", "parameters": {"stop": ["1", "2", "3", "4", "5"]}}, None, 422,
     "validation_error"),
    ("best-of", {"inputs": "a", "parameters": {"best_of": 2}}, None, 422, "validation_error"),
    ("details-is-ours", {"inputs": "a", "parameters": {"details": False}}, None, 422, "validation_error"),
    ("stream-false", {"inputs": "a", "stream": False}, None, 422, "validation_error"),
    ("prompt-too-long", {"inputs": LONG}, None, 413, "input_too_large"),
    ("messages-too-long", {"messages": [{"role": "user", "content": LONG}]}, None, 413, "input_too_large"),
    ("messages-empty", {"messages": []}, None, 422, "validation_error"),
    ("messages-bad-role", {"messages": [{"role": "robot", "content": "hi"}]}, None, 422, "validation_error"),
    ("messages-no-content", {"messages": [{"role": "user"}]}, None, 422, "validation_error"),
    ("messages-max-tokens-over-cap", {"messages": [{"role": "user", "content": "a"}], "max_tokens": 5000}, None,
     422, "validation_error"),
    ("messages-temperature-negative", {"messages": [{"role": "user", "content": "a"}], "temperature": -1}, None,
     422, "validation_error"),
    ("body-too-large", b'{"inputs": "' + b"y" * 70000 + b'"}', "application/json", 413, "payload_too_large"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "error_type"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS])
def test_bad_input_is_refused_before_the_endpoint(
    function, emulator: EmulatorServer, body: object, content_type: str | None, status: int, error_type: str
) -> None:
    if isinstance(body, bytes):
        headers = {"content-type": content_type} if content_type is not None else {}
        response = httpx.post(function.url, content=body, headers=headers, timeout=30)
    else:
        response = httpx.post(function.url, json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == error_type
    assert error["message"]
    assert emulator.requests == [], "a bad request reached the endpoint"


def test_unknown_parameter_error_names_the_allowed_ones(function) -> None:
    response = httpx.post(function.url, json={"inputs": "a", "parameters": {"max_length": 5}})
    assert "`parameters.max_length` is not a known field" in response.json()["error"]["message"]
    assert "max_new_tokens, temperature, top_p" in response.json()["error"]["message"]


def test_chunked_body_over_the_cap_is_refused(function, emulator: EmulatorServer) -> None:
    def chunks():
        yield b'{"inputs": "'
        for _ in range(100):
            yield b"z" * 1000
        yield b'"}'

    response = httpx.post(function.url, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert emulator.requests == []


@pytest.mark.parametrize(("method", "path", "status", "error_type"),
                         [("PUT", "/", 405, "method_not_allowed"), ("GET", "/nope", 404, "not_found")])
def test_unknown_routes_answer_json(function, method: str, path: str, status: int, error_type: str) -> None:
    response = httpx.request(method, function.url + path)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
