"""The SageMaker runtime emulator, driven by the real boto3 client over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import deque
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from llm_stream.tokens import StreamError, TokenIterator
from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from sagemaker_emulator.faults import FaultKind
from tests import ROOT
from tests.helpers.raw_http import exchange, parse
from tests.helpers.streams import collect_until_error

SEED_PAYLOAD = {"inputs": "我该如何建立一个网站?", "parameters": {"max_new_tokens": 256}, "stream": True}


def invoke(client, payload: object, endpoint: str = "falcon-7b-instruct") -> dict:
    body = payload if isinstance(payload, bytes) else json.dumps(payload)
    return client.invoke_endpoint_with_response_stream(EndpointName=endpoint, Body=body, ContentType="application/json")


def stream_tokens(client, payload: object) -> tuple[list[str], TokenIterator]:
    iterator = TokenIterator(invoke(client, payload)["Body"])
    return list(iterator), iterator


def raw_body(response: dict) -> bytes:
    """Every ``PayloadPart``'s bytes, joined: what the container wrote."""
    return b"".join(event["PayloadPart"]["Bytes"] for event in response["Body"] if "PayloadPart" in event)


def with_params(**params: object) -> dict:
    return {"inputs": "How do I build a website?", "parameters": params, "stream": True}


# -- normal generation ---------------------------------------------------------


def test_seed_request_streams_a_chinese_answer(runtime_client, emulator: EmulatorServer) -> None:
    response = invoke(runtime_client, {**SEED_PAYLOAD, "parameters": {"max_new_tokens": 256, "details": True}})
    assert response["ContentType"] == "text/event-stream"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    iterator = TokenIterator(response["Body"])
    text = "".join(iterator)
    assert text.startswith("建立网站")
    assert iterator.finish_reason == "eos_token"
    assert iterator.generated_tokens == iterator.tokens_yielded + 1  # + the special EOS token
    (received,) = emulator.requests
    assert received.endpoint == "falcon-7b-instruct"
    assert received.json()["inputs"] == SEED_PAYLOAD["inputs"]
    assert received.headers["Authorization"].startswith("AWS4-HMAC-SHA256")
    assert received.final_outcome() == "completed"


def test_payload_parts_do_not_align_with_events(runtime_client) -> None:
    parts = [event["PayloadPart"]["Bytes"] for event in invoke(runtime_client, SEED_PAYLOAD)["Body"]]
    whole = b"".join(parts)
    assert whole.startswith(b"data:{")
    assert whole.endswith(b"\n\n")
    assert any(not part.endswith(b"\n") for part in parts), "some part ends inside an event"
    assert any(b"\n\ndata:" in part or part.startswith(b"\ndata:") for part in parts), "some part spans two events"
    split_characters = 0
    for part in parts:
        try:
            part.decode("utf-8")
        except UnicodeDecodeError:
            split_characters += 1
    assert split_characters > 0, "some part splits a multi-byte character"


def test_raw_events_are_tgi_sse(runtime_client) -> None:
    whole = raw_body(invoke(runtime_client, with_params(max_new_tokens=3)))
    events = [json.loads(line[5:]) for line in whole.decode().split("\n\n") if line]
    assert [e["index"] for e in events] == [1, 2, 3]
    assert all(e["generated_text"] is None for e in events[:-1])
    assert events[-1]["generated_text"].startswith("How do I build a website?")  # return_full_text
    assert set(events[0]["token"]) == {"id", "text", "logprob", "special"}


def test_max_new_tokens_is_honoured(runtime_client) -> None:
    tokens, iterator = stream_tokens(runtime_client, with_params(max_new_tokens=5, details=True))
    assert len(tokens) == 5
    assert iterator.finish_reason == "length"
    assert iterator.generated_tokens == 5


def test_stop_sequence_ends_generation(runtime_client) -> None:
    tokens, iterator = stream_tokens(
        runtime_client, {**SEED_PAYLOAD, "parameters": {"stop": ["托管"], "details": True}}
    )
    text = "".join(tokens)
    # Like TGI, generation stops on the token that completes the sequence, and that token is sent.
    assert "托管" in text
    assert "托管" not in text[: -len(tokens[-1])]
    assert iterator.finish_reason == "stop_sequence"


def test_same_request_same_answer_and_seed_changes_it(runtime_client) -> None:
    first, _ = stream_tokens(runtime_client, with_params(seed=1))
    again, _ = stream_tokens(runtime_client, with_params(seed=1))
    other, _ = stream_tokens(runtime_client, with_params(seed=2))
    assert first == again
    assert first != other


def test_messages_payload_streams_chat_chunks(runtime_client) -> None:
    payload = {"messages": [{"role": "user", "content": "How do I build a website?"}], "max_tokens": 12, "stream": True}
    parts = [e["PayloadPart"]["Bytes"] for e in invoke(runtime_client, payload)["Body"]]
    assert b"".join(parts).endswith(b"data:[DONE]\n\n")
    tokens, iterator = stream_tokens(runtime_client, payload)
    assert len(tokens) == 12
    assert iterator.format == "messages"
    assert iterator.finish_reason == "length"


def test_request_without_stream_gets_the_whole_answer_at_once(runtime_client) -> None:
    payload = {"inputs": "Hello", "parameters": {"max_new_tokens": 4}}
    body = raw_body(invoke(runtime_client, payload))
    assert json.loads(body)[0]["generated_text"].startswith("Hello")


# -- TGI validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"top_k": 0}, "`top_k` must be strictly positive"),
        ({"repetition_penalty": 0}, "`repetition_penalty` must be strictly positive"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"max_new_tokens": 2047}, "must be <= 2048"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "up to 4 stop sequences"),
        ({"best_of": 2}, "`best_of` != 1"),
        ({"decoder_input_details": True}, "`decoder_input_details`"),
    ],
)
def test_validation_errors_arrive_in_band(runtime_client, params: dict, message: str) -> None:
    with pytest.raises(StreamError) as raised:
        stream_tokens(runtime_client, with_params(**params))
    assert raised.value.error_type == "validation"
    assert message in raised.value.message
    assert raised.value.message.startswith("Input validation error:")


def test_chat_validation_error_uses_the_messages_shape(runtime_client) -> None:
    payload = {"messages": [{"role": "user", "content": "Hi"}], "top_p": 1.5, "stream": True}
    parts = raw_body(invoke(runtime_client, payload))
    assert json.loads(parts[5:])["error"]["http_status_code"] == 422


def test_malformed_body_is_a_model_error(runtime_client) -> None:
    with pytest.raises(ClientError) as raised:
        invoke(runtime_client, b"{not json")
    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 422  # type: ignore[typeddict-item]  # botocore adds it for ModelError


# -- faults --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [("throttle", "ThrottlingException", 429), ("model_error", "ModelError", 424),
     ("unknown_endpoint", "ValidationError", 400)],
)
def test_faults_before_the_stream_raise_client_errors(runtime_client, emulator, kind, code, status) -> None:
    emulator.inject(Fault(kind=kind))
    with pytest.raises(ClientError) as raised:
        invoke(runtime_client, SEED_PAYLOAD)
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    # The fault applied once: the next request streams normally.
    assert stream_tokens(runtime_client, SEED_PAYLOAD)[0]


def test_unknown_endpoint_name(make_runtime_client) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0, endpoints=frozenset({"mine"}))) as server:
        client = make_runtime_client(server.url)
        assert "".join(TokenIterator(invoke(client, SEED_PAYLOAD, endpoint="mine")["Body"]))
        with pytest.raises(ClientError) as raised:
            invoke(client, SEED_PAYLOAD, endpoint="other")
        assert raised.value.response["Error"]["Message"] == "Endpoint other of account 123456789012 not found."


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("in_band_error", "generation"),
        ("model_stream_error", "ModelStreamError"),
        ("internal_stream_failure", "InternalStreamFailure"),
        ("drop_connection", "connection_lost"),
    ],
)
def test_mid_stream_faults_follow_the_tokens_already_sent(runtime_client, emulator, kind: FaultKind,
                                                         error_type: str) -> None:
    emulator.inject(Fault(kind=kind, after_tokens=4))
    seen, error = collect_until_error(TokenIterator(invoke(runtime_client, SEED_PAYLOAD)["Body"]))
    assert error.error_type == error_type
    assert len(seen) == 4
    assert emulator.requests[0].tokens_sent == 4


def test_stall_past_the_read_timeout(emulator, make_runtime_client) -> None:
    client = make_runtime_client(emulator.url, read_timeout=0.5)
    emulator.inject(Fault(kind="stall", after_tokens=2, stall_seconds=3))
    started = time.monotonic()
    with pytest.raises(StreamError) as raised:
        stream_tokens(client, SEED_PAYLOAD)
    assert raised.value.error_type == "read_timeout"
    assert time.monotonic() - started < 2.5


def test_stall_shorter_than_the_read_timeout_only_delays(emulator, make_runtime_client) -> None:
    emulator.inject(Fault(kind="stall", after_tokens=2, stall_seconds=0.3))
    _tokens, iterator = stream_tokens(make_runtime_client(emulator.url), SEED_PAYLOAD)
    assert iterator.tokens_yielded > 2


def test_fault_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'bogus'; allowed: throttle"):
        Fault(kind="bogus")  # type: ignore[arg-type]


def test_unsigned_request_is_refused(emulator) -> None:
    request = urllib.request.Request(
        f"{emulator.url}/endpoints/e/invocations-response-stream", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    assert raised.value.code == 403
    assert raised.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


# -- streaming behaviour -------------------------------------------------------


def test_tokens_arrive_while_the_emulator_is_still_generating(make_runtime_client) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=40)) as server:
        iterator = TokenIterator(invoke(make_runtime_client(server.url), with_params(max_new_tokens=20))["Body"])
        first = next(iterator)
        (received,) = server.requests
        assert first
        assert not received.finished.is_set(), "the first token reached the client only after generation ended"
        assert received.tokens_sent < 20
        assert len(list(iterator)) == 19


def test_client_closing_the_stream_is_recorded(make_runtime_client) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=20)) as server:
        iterator = TokenIterator(invoke(make_runtime_client(server.url), SEED_PAYLOAD)["Body"])
        next(iterator)
        iterator.close()
        (received,) = server.requests
        assert received.final_outcome() == "client_disconnected"
        assert received.tokens_sent < 50


def test_concurrent_streams_are_independent(emulator, runtime_client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: "".join(stream_tokens(runtime_client, with_params(seed=i % 4))[0]),
                                range(32)))
    assert len(emulator.requests) == 32
    for i, answer in enumerate(answers):
        assert answer == answers[i % 4]


# -- running it as a program ---------------------------------------------------


def test_command_line_server_with_admin_routes(make_runtime_client) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sagemaker_emulator", "--port", "0", "--ttft-ms", "0", "--token-ms", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("SageMaker runtime emulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        fault = json.dumps({"faults": [{"kind": "throttle"}]}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{url}/_emulator/faults", data=fault, method="POST",
                                                    headers={"content-type": "application/json"}))
        client = make_runtime_client(url)
        with pytest.raises(ClientError, match="ThrottlingException"):
            invoke(client, SEED_PAYLOAD)
        assert "".join(TokenIterator(invoke(client, SEED_PAYLOAD)["Body"])).startswith("建立网站")
        recorded = json.load(urllib.request.urlopen(f"{url}/_emulator/requests"))["requests"]
        assert [r["outcome"] for r in recorded] == ["error:ThrottlingException", "completed"]
    finally:
        process.terminate()
        assert process.wait(5) == 0


# -- InvokeEndpoint (not streamed): what the sagemaker SDK's predict() and LangChain's invoke() call --------


def invoke_whole(client, payload: object) -> tuple[Any, dict]:
    response = client.invoke_endpoint(EndpointName="local", Body=json.dumps(payload),
                                      ContentType="application/json", Accept="application/json")
    return json.loads(response["Body"].read()), response


def test_invoke_endpoint_answers_tgi_s_whole_answer(runtime_client) -> None:
    answer, response = invoke_whole(runtime_client, {"inputs": "Hello", "parameters": {"max_new_tokens": 5}})
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    (item,) = answer
    assert item["generated_text"].startswith("Hello")  # return_full_text defaults to true on /invocations
    assert "details" not in item
    streamed, _ = stream_tokens(runtime_client, {"inputs": "Hello", "parameters": {"max_new_tokens": 5},
                                                 "stream": True})
    assert item["generated_text"] == "Hello" + "".join(streamed)


def test_invoke_endpoint_honours_details(runtime_client) -> None:
    (item,), _ = invoke_whole(runtime_client, {"inputs": "Hello", "parameters": {"max_new_tokens": 3,
                                                                                 "details": True,
                                                                                 "return_full_text": False}})
    assert item["details"]["finish_reason"] == "length"
    assert item["details"]["generated_tokens"] == 3


def test_invoke_endpoint_answers_a_messages_body_as_tgi_2_4(runtime_client) -> None:
    answer, _ = invoke_whole(runtime_client, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 4


def test_invoke_endpoint_faults_and_validation_are_client_errors(runtime_client, emulator) -> None:
    emulator.inject(Fault(kind="throttle"))
    with pytest.raises(ClientError) as throttled:
        invoke_whole(runtime_client, {"inputs": "Hello"})
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError) as invalid:
        invoke_whole(runtime_client, {"inputs": "Hello", "parameters": {"temperature": 0}})
    assert invalid.value.response["Error"]["Code"] == "ModelError"
    assert invalid.value.response["OriginalStatusCode"] == 422  # type: ignore[typeddict-item]


def test_a_model_without_a_chat_template_refuses_messages_as_tgi_does(make_runtime_client) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=0, chat_template=False)) as server:
        client = make_runtime_client(server.url)
        for call in (lambda body: invoke_whole(client, body), lambda body: stream_tokens(client, body)):
            with pytest.raises(ClientError) as refused:
                call({"messages": [{"role": "user", "content": "Hi"}], "stream": True})
            assert refused.value.response["Error"]["Code"] == "ModelError"
            assert "template not found" in refused.value.response["OriginalMessage"]  # type: ignore[typeddict-item]
        assert stream_tokens(client, {"inputs": "Hi", "parameters": {"max_new_tokens": 2}, "stream": True})[0]


# -- LMI mode: a DJL Serving 0.28 container (sagemaker_emulator/lmi.py cites its source) ------------


@pytest.fixture
def lmi_client(make_runtime_client):
    config = EmulatorConfig(ttft_ms=0, token_ms=0, container="lmi", max_total_tokens=4096)
    with EmulatorServer(config) as server:
        yield make_runtime_client(server.url)


def raw_lines(response: dict) -> list[bytes]:
    return raw_body(response).splitlines()


def test_lmi_streams_json_lines_with_the_answer_on_the_last(lmi_client) -> None:
    response = invoke(lmi_client, {"inputs": "Hello", "parameters": {"max_new_tokens": 5, "details": True},
                                   "stream": True})
    assert response["ContentType"] == "application/jsonlines"
    lines = [json.loads(line) for line in raw_lines(response)]
    assert all(set(line["token"]) == {"id", "text", "log_prob"} for line in lines)
    assert [set(line) for line in lines[:-1]] == [{"token"}] * 4
    assert lines[-1]["generated_text"] == "".join(line["token"]["text"] for line in lines)
    assert lines[-1]["details"] == {"finish_reason": "length", "generated_tokens": 5, "inputs": "Hello"}


def test_lmi_reports_a_stop_sequence_as_eos_token(lmi_client) -> None:
    # The emulator keeps the stop in the text (lmi-dist's per-token texts); vLLM's own text path drops it.
    # The function's answer is the same either way (it trims a stop the answer ends with).
    tokens, iterator = stream_tokens(lmi_client, with_params(stop_sequences=[" short"], details=True))
    assert "".join(tokens) == "Here is a short"
    assert iterator.finish_reason == "eos_token"


def test_lmi_ignores_tgi_s_stop_parameter_as_lmi_dist_drops_unknown_ones(lmi_client) -> None:
    tokens, iterator = stream_tokens(lmi_client, with_params(stop=[" short"], max_new_tokens=8, details=True))
    assert "".join(tokens) != "Here is a short"
    assert iterator.finish_reason == "length"


@pytest.mark.parametrize("body", [b"{not json", b"[1]"])
def test_lmi_failure_before_generation_is_one_code_424_line_with_http_200(lmi_client, body: bytes) -> None:
    line = raw_body(invoke(lmi_client, body))
    assert b"\n" not in line  # one line, not ended by a newline
    error = json.loads(line)
    assert set(error) == {"code", "error"}
    assert error["code"] == 424
    # Not streamed: the same line as an ordinary 200 body (the Java side does not make the code a status).
    whole = lmi_client.invoke_endpoint(EndpointName="e", Body=body, ContentType="application/json")
    assert json.loads(whole["Body"].read())["code"] == 424


def test_lmi_sampling_values_vllm_refuses_end_the_request_with_an_error_line(lmi_client) -> None:
    (line,) = raw_lines(invoke(lmi_client, with_params(top_p=1.5, details=True)))
    error = json.loads(line)
    assert error["token"] == {"id": -1, "text": "", "log_prob": -1, "special_token": True}
    assert error["details"]["finish_reason"] == "error"


def test_lmi_answers_a_prompt_beyond_the_window_with_nothing_and_length(lmi_client) -> None:
    (line,) = raw_lines(invoke(lmi_client, {"inputs": "word " * 5000, "parameters": {"details": True},
                                            "stream": True}))
    final = json.loads(line)
    assert final["token"] == {"id": -1, "text": "", "log_prob": None}  # vLLM ignored it: a placeholder
    assert (final["generated_text"], final["details"]["finish_reason"]) == ("", "length")


def test_lmi_without_stream_answers_one_json_object(lmi_client) -> None:
    response = lmi_client.invoke_endpoint(EndpointName="e", ContentType="application/json",
                                          Body=json.dumps({"inputs": "Hello", "parameters": {"max_new_tokens": 3}}))
    assert response["ContentType"] == "application/json"
    assert set(json.loads(response["Body"].read())) == {"generated_text"}


# -- what a broken or hostile client sends the emulator ---------------------------------------------------


@pytest.mark.parametrize(("payload", "field"), [
    (with_params(max_new_tokens="5"), 'parameters.max_new_tokens: invalid type: string "5", expected u32'),
    (with_params(temperature="hot"), "parameters.temperature: invalid type: string"),
    (with_params(top_k=1.5), "parameters.top_k: invalid type: floating point `1.5`, expected i32"),
    (with_params(do_sample="yes"), "parameters.do_sample: invalid type: string"),
    (with_params(stop=[1]), "parameters.stop: invalid type: sequence, expected a sequence"),
    ({**SEED_PAYLOAD, "stream": "true"}, 'stream: invalid type: string "true", expected bool'),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "x"}, "temperature: invalid type"),
])
def test_a_parameter_of_the_wrong_type_is_refused_as_tgi_refuses_it(runtime_client, payload, field: str) -> None:
    with pytest.raises(ClientError) as raised:
        invoke(runtime_client, payload)
    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 422  # type: ignore[typeddict-item]
    original = error["OriginalMessage"]  # type: ignore[typeddict-item]
    assert original.startswith("Failed to deserialize the JSON body into the target type: ")  # axum's text
    assert field in original


@pytest.mark.parametrize(("length", "status"), [(b"-1", 400), (b"1000000000000", 413), (b"12abc", 400)])
def test_a_bad_content_length_is_refused_before_the_body_is_read(emulator, length: bytes, status: int) -> None:
    started = time.monotonic()
    answer = exchange(emulator.url, b"POST /endpoints/x/invocations-response-stream HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                      b"content-length: " + length + b"\r\n\r\n{}")
    assert parse(answer)[0] == status
    assert time.monotonic() - started < 2
    assert emulator.received == 0


def test_a_fault_with_a_field_of_the_wrong_type_is_refused_when_set(emulator) -> None:
    bad_stall = {"faults": [{"kind": "stall", "stall_seconds": "a"}]}
    response = httpx.post(f"{emulator.url}/_emulator/faults", json=bad_stall)
    assert response.status_code == 400
    assert "stall_seconds" in response.json()["message"]
    for bad in ({"after_tokens": "2"}, {"times": 1.5}, {"stall_seconds": float("inf")}, {"message": 3}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Fault(kind="stall", **bad)


@pytest.mark.parametrize(("headers", "status"), [
    ({"content-type": "text/plain"}, 415),
    ({"content-type": "application/json", "origin": "http://evil.example"}, 403),
    ({"content-type": "application/json", "host": "evil.example:8081"}, 403),
])
def test_the_admin_routes_answer_only_local_tools(emulator, headers: dict[str, str], status: int) -> None:
    faults = json.dumps({"faults": [{"kind": "throttle"}]})
    response = httpx.post(f"{emulator.url}/_emulator/faults", content=faults, headers=headers)
    assert response.status_code == status
    assert httpx.get(f"{emulator.url}/_emulator/requests", headers={"host": "evil.example"}).status_code == 403
    assert httpx.post(f"{emulator.url}/_emulator/faults", content=faults,
                      headers={"content-type": "application/json", "origin": emulator.url}).status_code == 200


def test_what_the_emulator_keeps_of_requests_is_bounded(emulator, runtime_client, monkeypatch) -> None:
    from sagemaker_emulator import server

    monkeypatch.setattr(server, "KEPT_BODY_BYTES", 1024 * 1024)
    big = {**SEED_PAYLOAD, "padding": "x" * 256 * 1024}
    for _ in range(12):
        invoke(runtime_client, with_params(max_new_tokens=1) | {"padding": big["padding"]})
    kept = emulator.requests
    assert emulator.received == len(kept) == 12
    assert sum(len(record.body) for record in kept) <= 1024 * 1024
    assert [record.body_dropped for record in kept][:8] == [True] * 8
    assert not kept[-1].body_dropped
    assert kept[-1].json()["padding"] == big["padding"]


def test_the_records_kept_are_bounded_by_count_bodies_included(emulator, monkeypatch) -> None:
    from sagemaker_emulator import server

    monkeypatch.setattr(server, "KEPT_REQUESTS", 5)
    monkeypatch.setattr(emulator, "_requests", deque(maxlen=5))
    for index in range(12):
        httpx.post(f"{emulator.url}/endpoints/x/invocations", content=b"{}" * (index + 1))  # unsigned: refused 403
    assert emulator.received == 12
    assert len(emulator.requests) == 5
    assert len(emulator._bodies) == 5  # the evicted records' bodies went with them
    assert emulator._body_bytes == sum(len(record.body) for record in emulator.requests)
