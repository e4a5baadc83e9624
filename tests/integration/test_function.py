"""The function under real uvicorn, in front of the emulator, over real sockets: what it answers, what it logs
(its failures and refusals: ``test_function_failures.py``)."""

from __future__ import annotations

import json
import time

import httpx
from httpx_sse import EventSource

from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests.helpers.logs import LogRecords
from tests.helpers.sse import SEED, SSE, last, post_sse, tokens_of

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
