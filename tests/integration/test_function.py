"""The function under real uvicorn, in front of the emulator, over real sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource

from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests.helpers.logs import LogRecords
from tests.helpers.sse import SSE, last, post_sse, tokens_of

SEED: dict[str, Any] = {"inputs": "我该如何建立一个网站?", "parameters": {"max_new_tokens": 256}, "stream": True}


# -- the happy paths -------------------------------------------------------------


def test_health_route_never_calls_the_endpoint(function, emulator: EmulatorServer) -> None:
    response = httpx.get(f"{function.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "auth": "none"}
    assert emulator.requests == []


def test_plain_text_streams_the_answer(function, emulator: EmulatorServer) -> None:
    response = httpx.post(function.url, json=SEED, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-length" not in response.headers
    assert response.text.startswith("建立网站可以是一个复杂的过程")
    assert response.text.endswith("\n")
    assert "[error" not in response.text
    assert emulator.requests[0].final_outcome() == "completed"


def test_sse_streams_token_events_then_done(function) -> None:
    response, events = post_sse(function.url, SEED)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    tokens = tokens_of(events)
    assert "".join(tokens).startswith("建立网站")
    kind, done = last(events)
    assert kind == "done"
    assert done["finish_reason"] == "eos_token"
    assert done["generated_tokens"] == len(tokens) + 1  # TGI counts the EOS token
    assert 0 < done["ttft_ms"] <= done["duration_ms"]
    assert [e.event for e in events[:-1]] == ["token"] * len(tokens)


def test_what_the_endpoint_receives(function, emulator: EmulatorServer) -> None:
    httpx.post(function.url, json={"inputs": "Hello"}, timeout=30)
    (received,) = emulator.requests
    assert received.endpoint == "test-endpoint"
    assert received.headers["X-Amzn-SageMaker-Accept"] == "text/event-stream"  # botocore: the Accept member
    assert received.json() == {"inputs": "Hello", "parameters": {"max_new_tokens": 256, "details": True},
                               "stream": True}


def test_messages_payload(function, emulator: EmulatorServer) -> None:
    payload = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
               "max_tokens": 7, "temperature": 0.5}
    _response, events = post_sse(function.url, payload)
    assert len(tokens_of(events)) == 7
    assert last(events) == ("done", {**last(events)[1], "finish_reason": "length"})
    sent = emulator.requests[0].json()
    # Rendered in the model's own format, so it never depends on a chat template in the container.
    assert sent["inputs"] == "Be brief.\nUser: Hi\nAssistant:"
    assert sent["stream"] is True
    assert sent["parameters"]["max_new_tokens"] == 7
    assert sent["parameters"]["temperature"] == 0.5
    assert sent["parameters"]["stop"] == ["\nUser:"]


def test_chat_works_on_a_container_without_a_chat_template(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0, chat_template=False)) as emulator:
        function = start_function(emulator)
        response, events = post_sse(function.url, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
        assert response.status_code == 200
        assert len(tokens_of(events)) == 3


def test_messages_refused_on_a_base_model(start_function, emulator) -> None:
    function = start_function(emulator, model_id="huggingface-llm-falcon-7b-bf16", chat_format="none")
    response = httpx.post(function.url, json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "model_not_chat"
    assert emulator.requests == []
    assert httpx.post(function.url, json={"inputs": "Hi", "parameters": {"max_new_tokens": 2}}).status_code == 200


def test_curl_style_form_content_type_is_accepted(function) -> None:
    response = httpx.post(function.url, content=b'{"inputs": "Hello", "parameters": {"max_new_tokens": 3}}',
                          headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert response.status_code == 200
    assert response.text.strip()


def test_first_token_arrives_while_the_endpoint_is_still_generating(start_function) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=50)) as emulator:
        function = start_function(emulator)
        payload = {"inputs": "Hello", "parameters": {"max_new_tokens": 20}}
        with httpx.stream("POST", function.url, json=payload, headers=SSE, timeout=30) as response:
            events = EventSource(response).iter_sse()
            first = next(events)
            (received,) = emulator.requests
            assert first.event == "token"
            assert not received.finished.is_set(), "the first token was held until generation ended"
            assert received.tokens_sent < 20
            rest = list(events)
        assert len(tokens_of([first, *rest])) == 20


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


# -- logs and schema -------------------------------------------------------------


def test_one_structured_log_line_per_request_without_the_prompt(function, request_logs: LogRecords) -> None:
    httpx.post(function.url, json=SEED, timeout=30)
    httpx.post(function.url, json={"inputs": "a", "parameters": {"top_k": 0}}, timeout=30)
    request_logs.wait_for(2)
    ok, bad = request_logs
    assert ok["status"] == 200
    assert ok["kind"] == "generate"
    assert ok["finish_reason"] == "eos_token"
    assert ok["tokens"] > 50
    assert ok["input_chars"] == len(SEED["inputs"])
    assert ok["ttft_ms"] > 0
    assert ok["request_id"]
    assert ok["model"] == "huggingface-llm-falcon-7b-instruct-bf16"
    assert bad["status"] == 422
    assert bad["error_type"] == "validation_error"
    assert all("prompt" not in record and SEED["inputs"] not in json.dumps(record) for record in request_logs)


def test_log_lines_carry_embedded_metrics(function, emulator, request_logs: LogRecords) -> None:
    responses = [httpx.post(function.url, json=SEED, timeout=30),
                 httpx.post(function.url, json={"inputs": "a", "parameters": {"top_k": 0}}, timeout=30)]
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))
    responses.append(httpx.post(function.url, json=SEED, timeout=30))
    by_id = {line["request_id"]: line for line in request_logs.wait_for(3)}  # written in any order
    ok, bad, broken = (by_id[response.headers["x-request-id"]] for response in responses)
    (directive,) = ok["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LlmStream"
    assert directive["Dimensions"] == [["Service"]]
    assert {m["Name"] for m in directive["Metrics"]} == {"Requests", "Tokens", "Duration", "ServerErrors",
                                                         "TimeToFirstToken"}
    assert ok["Service"] == "llm-stream"
    assert ok["Requests"] == 1
    assert ok["Tokens"] == ok["tokens"]
    assert ok["TimeToFirstToken"] == ok["ttft_ms"]
    assert ok["ServerErrors"] == 0
    assert "Errors" not in ok
    assert bad["ErrorType"] == "validation_error"
    assert bad["Errors"] == 1
    assert bad["ServerErrors"] == 0
    assert bad["_aws"]["CloudWatchMetrics"][1]["Dimensions"] == [["Service", "ErrorType"]]
    assert "TimeToFirstToken" not in bad
    assert broken["ErrorType"] == "ModelStreamError"
    assert broken["ServerErrors"] == 1
    assert broken["Tokens"] == 2


def test_prompt_is_logged_only_when_enabled(start_function, emulator, request_logs: LogRecords) -> None:
    function = start_function(emulator, log_prompts=True)
    httpx.post(function.url, json={"inputs": "secret question", "parameters": {"max_new_tokens": 2}}, timeout=30)
    request_logs.wait_for(1)
    assert request_logs[0]["prompt"] == "secret question"


def test_lambda_request_id_is_carried_through(start_function, emulator, request_logs: LogRecords) -> None:
    function = start_function(emulator, lambda_runtime_api="127.0.0.1:9001")  # as in Lambda, behind the adapter
    context = json.dumps({"request_id": "abc-123", "deadline": int(time.time() * 1000) + 60_000})
    response = httpx.post(function.url, json={"inputs": "Hi", "parameters": {"max_new_tokens": 2}},
                          headers={"x-amzn-lambda-context": context}, timeout=30)
    assert response.headers["x-request-id"] == "abc-123"
    assert emulator.requests[0].headers["X-Amzn-SageMaker-Custom-Attributes"] == "request_id=abc-123"
    request_logs.wait_for(1)
    assert request_logs[0]["request_id"] == "abc-123"


def test_openapi_describes_both_payloads(function) -> None:
    schema = httpx.get(f"{function.url}/openapi.json").json()
    body = schema["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in body["oneOf"]} == {"GeneratePayload", "ChatPayload"}
    assert "GenerateParameters" in schema["components"]["schemas"]
