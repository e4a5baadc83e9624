"""Hostile and broken requests: each fails fast and safely, is logged once, and never holds the function."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import pytest
from httpx_sse import EventSource

from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from tests.helpers.logs import LogRecords
from tests.helpers.waiting import wait_until

SSE = {"accept": "text/event-stream"}
#: Generous: the expected figure is milliseconds; this catches waiting out a timeout or the time budget.
FAST_SECONDS = 3.0


def timed_post(url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(url, timeout=30, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def assert_safe_json_error(response: httpx.Response, status: int, error_type: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == error_type
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# -- 1. a string that cannot be encoded never holds the function ----------------------------------


@pytest.mark.parametrize(("body", "field"), [
    (b'{"messages": [{"role": "user", "content": "hi \\udfff"}]}', "messages.0.content"),
    (b'{"inputs": "hi \\ud800 there"}', "inputs"),
    (b'{"inputs": "hi", "parameters": {"stop": ["\\udc00"]}}', "parameters.stop.0"),
])
def test_lone_surrogates_are_refused_at_once(function, emulator, request_logs: LogRecords, body: bytes,
                                             field: str) -> None:
    response, took = timed_post(function.url, content=body, headers={"content-type": "application/json"})
    error = assert_safe_json_error(response, 422, "validation_error")
    assert field in error["message"]
    assert "surrogate" in error["message"]
    assert took < FAST_SECONDS
    assert emulator.requests == []
    assert len(request_logs.wait_for(1)) == 1


# -- 2. whatever crashes is a JSON 500 with a request id, logged once --------------------------------


def test_deeply_nested_json_is_a_400_with_one_log_line(function, emulator, request_logs: LogRecords) -> None:
    body = b'{"inputs": "x", "parameters": {"stop": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    response, took = timed_post(function.url, content=body, headers={"content-type": "application/json"})
    error = assert_safe_json_error(response, 400, "invalid_json")
    assert "deeper" in error["message"]
    assert took < FAST_SECONDS
    assert emulator.requests == []
    (line,) = request_logs.wait_for(1)
    assert line["status"] == 400
    assert line["error_type"] == "invalid_json"


def test_an_unexpected_failure_is_a_json_500_logged_once_with_its_traceback(
    start_function, emulator, request_logs: LogRecords, monkeypatch
) -> None:
    from llm_stream import payloads

    def broken(*args: object) -> None:
        raise RuntimeError("a bug with secret detail arn:aws:iam::123456789012:role/x")

    monkeypatch.setattr(payloads, "parse_body", broken)
    function = start_function(emulator)
    response = httpx.post(function.url, json={"inputs": "hi"}, timeout=30)
    error = assert_safe_json_error(response, 500, "internal_error")
    assert "arn:" not in response.text
    assert "123456789012" not in response.text
    (line,) = request_logs.wait_for(1)
    assert line["status"] == 500
    assert line["error_type"] == "internal_error"
    assert line["request_id"] == error["request_id"]
    assert "RuntimeError: a bug with secret detail" in line["traceback"]
    assert emulator.requests == []


# -- 3. numbers the container would refuse never reach it ----------------------------------------------


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b'{"inputs": "x", "parameters": {"temperature": Infinity}}', 400, "not valid JSON"),
    (b'{"inputs": "x", "parameters": {"repetition_penalty": NaN}}', 400, "not valid JSON"),
    (b'{"inputs": "x", "parameters": {"temperature": 1e400}}', 422, "parameters.temperature"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -Infinity}', 400, "not valid JSON"),
    (b'{"inputs": "x", "parameters": {"top_k": 1099511627776}}', 422, "parameters.top_k"),
    (b'{"inputs": "x", "parameters": {"truncate": 1000000000000000000000000000000}}', 422, "parameters.truncate"),
    (b'{"inputs": "x", "parameters": {"seed": 18446744073709551616}}', 422, "parameters.seed"),
])
def test_out_of_range_numbers_are_refused_before_the_endpoint(function, emulator, body: bytes, status: int,
                                                              fragment: str) -> None:
    response, took = timed_post(function.url, content=body, headers={"content-type": "application/json"})
    error = assert_safe_json_error(response, status, "invalid_json" if status == 400 else "validation_error")
    assert fragment in error["message"]
    assert took < FAST_SECONDS
    assert emulator.requests == []


# -- 4. callers see a safe message; the detail goes to the log line -------------------------------------


def test_model_errors_do_not_show_arns_account_ids_or_container_text(
    function, emulator, request_logs: LogRecords
) -> None:
    emulator.inject(Fault(kind="model_error", message="Traceback: secret /opt/ml/model/weights.bin"))
    response = httpx.post(function.url, json={"inputs": "hi"}, timeout=30)
    error = assert_safe_json_error(response, 502, "model_error")
    for leak in ("arn:", "123456789012", "/opt/ml", "Traceback", "log-group"):
        assert leak not in response.text
    (line,) = request_logs.wait_for(1)
    assert "123456789012" in line["error_detail"]
    assert "/opt/ml/model/weights.bin" in line["error_detail"]
    assert error["message"]


def test_an_unreachable_runtime_does_not_show_its_url(start_function, request_logs: LogRecords) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    function = start_function(_Unreachable(f"http://127.0.0.1:{port}"), upstream_connect_timeout_seconds=0.5)
    response = httpx.post(function.url, json={"inputs": "hi"}, timeout=30)
    assert_safe_json_error(response, 502, "upstream_unreachable")
    assert "127.0.0.1" not in response.text
    assert str(port) not in response.text
    (line,) = request_logs.wait_for(1)
    assert str(port) in line["error_detail"]


class _Unreachable:
    """Stands where an emulator would, with a URL nothing listens on."""

    def __init__(self, url: str) -> None:
        self.url = url


def test_mid_stream_errors_carry_a_safe_message(function, emulator, request_logs: LogRecords) -> None:
    emulator.inject(Fault(kind="in_band_error", after_tokens=2, message="CUDA OOM at 0x7f secret"))
    with httpx.stream("POST", function.url, json={"inputs": "hi"}, headers=SSE, timeout=30) as response:
        events = list(EventSource(response).iter_sse())
    error = json.loads(events[-1].data)
    assert events[-1].event == "error"
    assert "secret" not in events[-1].data
    assert error["request_id"] == response.headers["x-request-id"]
    (line,) = request_logs.wait_for(1)
    assert "CUDA OOM at 0x7f secret" in line["error_detail"]


def test_openapi_does_not_name_the_endpoint(function) -> None:
    assert "test-endpoint" not in httpx.get(f"{function.url}/openapi.json").text


# -- 5. overload: a short wait, then 503 with Retry-After; gone callers never reach the endpoint ------


def test_over_the_stream_limit_callers_get_a_fast_503(start_function, request_logs: LogRecords) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=100)) as emulator:
        function = start_function(emulator, max_concurrent_streams=1, queue_wait_seconds=0.2)
        with httpx.stream("POST", function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 30}},
                          headers=SSE, timeout=30) as holding:
            events = EventSource(holding).iter_sse()  # kept: dropping it would close the stream
            next(events)  # the one slot is busy now
            response, took = timed_post(function.url, json={"inputs": "hi"})
        error = assert_safe_json_error(response, 503, "too_many_streams")
        assert int(response.headers["retry-after"]) >= 1
        assert took < FAST_SECONDS
        assert error["message"]
        assert len(emulator.requests) == 1


def test_a_caller_who_left_while_queued_never_reaches_the_endpoint(start_function, request_logs: LogRecords) -> None:
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=100)) as emulator:
        function = start_function(emulator, max_concurrent_streams=1, queue_wait_seconds=5)
        with httpx.stream("POST", function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 100}},
                          headers=SSE, timeout=30) as holding:
            events = EventSource(holding).iter_sse()
            next(events)
            leaver = threading.Thread(target=_post_and_hang_up, args=(function.url,))
            leaver.start()
            leaver.join()
            # The queued request notices its client is gone while it waits, and ends (its log line) while the
            # slot is still held: nothing is left queued to be sent upstream when the slot frees up.
            # The leaver's line ("bye"): a server of an earlier test may still log a line of its own while it stops.
            left = wait_until(lambda: [line for line in request_logs if line.get("input_chars") == len("bye")],
                              "the queued caller's log line")[0]
            assert (left["status"], left["error_type"]) == (499, "client_gone")
            assert len(emulator.requests) == 1
        request_logs.wait_for(2)  # the holder hung up too: the slot is free, and nobody was waiting for it
        assert len(emulator.requests) == 1


def _post_and_hang_up(url: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"inputs": "bye"}, timeout=0.3)


# -- 6. HTTP edges --------------------------------------------------------------------------------------


def test_a_body_shorter_than_its_content_length_times_out(start_function, emulator) -> None:
    function = start_function(emulator, body_read_timeout_seconds=0.5)
    host, port = function.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < FAST_SECONDS
    assert emulator.requests == []


def test_no_redirect_built_from_the_host_header(function) -> None:
    response = httpx.get(f"{function.url}/healthz/", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert "evil.example" not in response.headers.get("location", "")


def test_head_is_answered_and_405_lists_every_method_of_the_path(function) -> None:
    assert httpx.head(f"{function.url}/").status_code == 200
    assert httpx.head(f"{function.url}/healthz").status_code == 200
    response = httpx.put(f"{function.url}/", content=b"{}")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


def test_every_api_response_is_nosniff_and_not_stored(function) -> None:
    for response in (httpx.post(function.url, content=b"{", timeout=30),
                     httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30),
                     httpx.get(f"{function.url}/healthz"), httpx.get(f"{function.url}/nope")):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["cache-control"] == "no-store", response.url


def test_no_third_party_documentation_pages(function) -> None:
    assert httpx.get(f"{function.url}/docs").status_code == 404
    assert httpx.get(f"{function.url}/redoc").status_code == 404
    assert httpx.get(f"{function.url}/openapi.json").status_code == 200


def test_plain_text_content_cannot_forge_the_error_line() -> None:
    from llm_stream.responses import ERROR_MARK, PlainEncoder

    encoder = PlainEncoder()
    forged = encoder.token(f"\n{ERROR_MARK}[error: fake] no\n").decode()
    assert ERROR_MARK not in forged
    real = encoder.error("model_error", "it failed", "req-1").decode()
    assert real.startswith(f"\n{ERROR_MARK}[error: model_error]")


def test_foreign_origins_are_refused_and_browsers_must_send_json(start_function, emulator) -> None:
    function = start_function(emulator, cors_origins=("https://app.example.com",))
    body = {"inputs": "hi", "parameters": {"max_new_tokens": 2}}
    foreign = httpx.post(function.url, json=body, headers={"origin": "https://evil.example"}, timeout=30)
    assert_safe_json_error(foreign, 403, "forbidden_origin")
    form = httpx.post(function.url, content=json.dumps(body), timeout=30,
                      headers={"origin": "https://app.example.com", "content-type": "text/plain"})
    assert_safe_json_error(form, 415, "unsupported_media_type")
    allowed = httpx.post(function.url, json=body, headers={"origin": "https://app.example.com"}, timeout=30)
    assert allowed.status_code == 200
    host = function.url.removeprefix("http://")
    same_origin = httpx.post(function.url, json=body, headers={"origin": f"http://{host}"}, timeout=30)
    assert same_origin.status_code == 200
    curl = httpx.post(function.url, content=json.dumps(body), timeout=30,
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert curl.status_code == 200
    assert len(emulator.requests) == 3



def test_one_allow_header_on_a_405(function) -> None:
    response = httpx.put(f"{function.url}/v1/models")
    assert response.status_code == 405
    assert response.headers.get_list("allow") == ["GET, HEAD"]


def test_a_caller_leaving_mid_body_is_not_a_server_error(start_function, emulator, request_logs: LogRecords) -> None:
    function = start_function(emulator)
    host, port = function.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        time.sleep(0.2)  # the server is reading the body when the caller leaves (not closing with the request)
    (line,) = request_logs.wait_for(1)
    assert line["status"] == 499
    assert line["error_type"] == "client_gone"
    assert "traceback" not in line
    assert emulator.requests == []


@pytest.mark.parametrize("context", ["[" * 5000, '{"request_id": "\\u4e00"}', '{"request_id": "a b\\r\\nx: y"}'])
def test_a_forged_lambda_context_header_changes_nothing(function, request_logs: LogRecords, context: str) -> None:
    response = httpx.get(f"{function.url}/healthz", headers={"x-amzn-lambda-context": context})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 36  # a fresh id, not the forged one
    (line,) = request_logs.wait_for(1)
    assert line["request_id"] == request_id


def test_a_browser_must_say_json_even_with_no_content_type(function, emulator) -> None:
    host = function.url.removeprefix("http://")
    response = httpx.post(function.url, content=b'{"inputs": "hi"}', timeout=30,
                          headers={"origin": f"http://{host}", "content-type": ""})
    assert_safe_json_error(response, 415, "unsupported_media_type")
    assert emulator.requests == []


# -- 7. what a caller controls cannot steer the function --------------------------------------------------


def test_a_forged_lambda_context_outside_lambda_is_not_read(function, emulator, request_logs: LogRecords) -> None:
    """Locally the header comes from the caller: it names no request id and sets no deadline."""
    for context in ({"request_id": "forged-id-123"}, {"deadline": 1}, {"deadline": 10**400}):
        response = httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30,
                              headers={"x-amzn-lambda-context": json.dumps(context)})
        assert response.status_code == 200, (context, response.text)
        assert response.headers["x-request-id"] != "forged-id-123"
    assert [line["status"] for line in request_logs.wait_for(3)] == [200, 200, 200]


@pytest.mark.parametrize("deadline", [10**400, -1, "soon", True, 1e308])
def test_an_implausible_lambda_deadline_is_ignored_in_lambda_too(start_function, emulator, deadline: object) -> None:
    function = start_function(emulator, lambda_runtime_api="127.0.0.1:9001")
    response = httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30,
                          headers={"x-amzn-lambda-context": json.dumps({"deadline": deadline})})
    assert response.status_code == 200, response.text


def test_a_dns_rebinding_page_is_not_the_functions_own(function, emulator) -> None:
    port = function.url.rsplit(":", 1)[1]
    rebound = httpx.post(function.url, json={"inputs": "hi"}, timeout=30,
                         headers={"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"})
    assert_safe_json_error(rebound, 403, "forbidden_origin")
    for own in (f"localhost:{port}", f"127.0.0.1:{port}", "abc123.lambda-url.us-east-1.on.aws"):
        scheme = "https" if "lambda-url" in own else "http"
        response = httpx.post(function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 2}}, timeout=30,
                              headers={"host": own, "origin": f"{scheme}://{own}"})
        assert response.status_code == 200, own
    assert len(emulator.requests) == 3


def test_thousands_of_unknown_keys_get_a_short_answer(function, emulator) -> None:
    body = {"inputs": "x", **{f"key{i}": 1 for i in range(4000)}}
    response = httpx.post(function.url, json=body, timeout=30)
    error = assert_safe_json_error(response, 422, "validation_error")
    assert len(response.content) < 2048
    assert error["message"].endswith("and 3995 more")
    assert emulator.requests == []


@pytest.mark.parametrize(("body", "fragment", "python_words"), [
    (b'{"inputs": "x", "parameters": {"seed": ' + b"9" * 5000 + b"}}", "more than 100 digits", "set_int_max_str"),
    (b'\xef\xbb\xbf{"inputs": "x"}', "byte-order mark", "utf-8-sig"),
    (b'{"inputs": "x"', "line 1, column 15", "char 14"),
])
def test_json_errors_are_told_in_the_functions_own_words(function, body: bytes, fragment: str,
                                                         python_words: str) -> None:
    response = httpx.post(function.url, content=body, headers={"content-type": "application/json"}, timeout=30)
    error = assert_safe_json_error(response, 400, "invalid_json")
    assert fragment in error["message"]
    assert python_words not in error["message"]


def test_log_lines_escape_what_readers_take_for_line_breaks(function, request_logs: LogRecords) -> None:
    httpx.get(f"{function.url}/healthz/%E2%80%A8x%C2%85%C2%9B", timeout=30)
    (record,) = request_logs.wait_for(1)
    assert record["path"] == "/healthz/\u2028x\x85\x9b"  # the value is kept ...
    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    handler = Capture()
    logging.getLogger("llm_stream.requests").addHandler(handler)
    try:
        httpx.get(f"{function.url}/nope%E2%80%A9%C2%85", timeout=30)
        request_logs.wait_for(2)
    finally:
        logging.getLogger("llm_stream.requests").removeHandler(handler)
    (line,) = captured
    assert "\u2029" not in line  # ... but the line holds escapes only
    assert "\x85" not in line
    assert "\\u2029" in line
    assert "\\u0085" in line


def test_container_text_cannot_forge_the_error_line_or_name_the_error_type(function, emulator,
                                                                             request_logs: LogRecords) -> None:
    emulator.inject(Fault(kind="in_band_error", after_tokens=1, message="x\x1e[error: fake] forged\nline",
                          error_type="evil\x1etype"))
    response = httpx.post(function.url, json={"inputs": "hi"}, timeout=30)
    assert response.text.count("\x1e") == 1
    assert "\n\x1e[error: generation] " in response.text
    emulator.inject(Fault(kind="in_band_error", after_tokens=1, error_type="evil\x1etype"))
    with httpx.stream("POST", function.url, json={"inputs": "hi"}, headers=SSE, timeout=30) as streamed:
        events = list(EventSource(streamed).iter_sse())
    assert json.loads(events[-1].data)["type"] == "generation"
    lines = request_logs.wait_for(2)
    assert [line["ErrorType"] for line in lines] == ["generation", "generation"]
    assert "evil" in lines[1]["error_detail"]  # the container's word is kept for the operators
