"""What the HTTP server refuses itself gets the function's answer: a JSON error, a request id, one log line.

Raw sockets, because every case is something no well-behaved client sends.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from httpx_sse import EventSource

from sagemaker_emulator import EmulatorConfig, EmulatorServer
from tests.helpers.key_tables import write_key_file
from tests.helpers.logs import LogRecords
from tests.helpers.raw_http import exchange, parse

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("name", "parts"), [
    ("not HTTP", [b"GARBAGE\r\n\r\n"]),
    ("two Content-Lengths", [b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"]),
    # Past 16 KiB while it arrives (a client still sending when the server closes may see a reset instead).
    ("a head past the cap, in pieces", [b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ", b"a" * 10_000, b"a" * 10_000]),
])
def test_malformed_http_gets_a_json_400_with_a_request_id_and_a_log_line(function, emulator,
                                                                         request_logs: LogRecords, name, parts) -> None:
    status, headers, body = parse(exchange(function.url, *parts))
    assert status == 400, name
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_http"
    assert error["request_id"] == headers["x-request-id"]
    (line,) = request_logs.wait_for(1)
    assert (line["request_id"], line["status"], line["error_type"]) == (error["request_id"], 400, "invalid_http")
    assert emulator.requests == []


def test_a_bad_chunk_size_is_logged_as_the_400_the_caller_got(function, emulator, request_logs: LogRecords) -> None:
    status, headers, body = parse(exchange(function.url, CHUNKED_HEAD + b"5\r\n{\"in\"\r\nzz\r\n"))
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_http"
    (line,) = request_logs.wait_for(1)  # one line: the app's, for this request, with what the caller got
    assert (line["request_id"], line["status"], line["error_type"]) == (headers["x-request-id"], 400, "invalid_http")
    assert emulator.requests == []


def test_a_head_past_the_cap_in_one_write_is_refused_431(function, emulator, request_logs: LogRecords) -> None:
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 15\r\n"
    answer = exchange(function.url, head + b"x-pad: " + b"a" * 100_000 + b"\r\n\r\n" + b'{"inputs":"hi"}')
    status, headers, body = parse(answer)
    assert status == 431
    assert json.loads(body)["error"]["type"] == "request_header_fields_too_large"
    (line,) = request_logs.wait_for(1)
    assert (line["request_id"], line["status"]) == (headers["x-request-id"], 431)
    assert emulator.requests == []
    # A head just under the cap is served.
    assert httpx.get(f"{function.url}/healthz", headers={"x-pad": "a" * 15_000}).status_code == 200


def test_a_refused_request_s_body_still_on_its_way_is_read_so_the_caller_gets_the_431_not_a_reset(
        function, emulator) -> None:
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n"
    # The head in one write, the body in two more after it: without reading them the server's close would
    # reset the connection while they arrive, and the caller could lose the answer meant for it.
    answer = exchange(function.url, head + b"x-pad: " + b"a" * 100_000 + b"\r\n\r\n", b"x" * 25_000, b"y" * 25_000)
    assert parse(answer)[0] == 431


def test_a_refused_request_waiting_to_send_its_body_is_not_invited_to(function) -> None:
    head = (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n"
            b"expect: 100-continue\r\nx-pad: " + b"a" * 100_000 + b"\r\n\r\n")
    started = time.monotonic()
    answer = exchange(function.url, head)
    assert parse(answer)[0] == 431  # the refusal first, not "100 Continue": nothing to read, nothing to wait for
    assert time.monotonic() - started < 0.9  # the drain's second is not spent waiting for a body never sent


def test_past_the_concurrency_limit_the_503_is_the_functions(start_function, request_logs: LogRecords) -> None:
    from llm_stream.serve import CONCURRENCY_HEADROOM

    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=200)) as emulator:
        function = start_function(emulator, max_concurrent_streams=1, queue_wait_seconds=5)
        limit = 1 + CONCURRENCY_HEADROOM
        host, port = function.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(limit)]
        try:
            response = httpx.get(f"{function.url}/healthz", timeout=10)
        finally:
            for sock in idle:
                sock.close()
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "server_busy"
    assert error["request_id"] == response.headers["x-request-id"]
    assert response.headers["retry-after"] == "1"
    line = next(line for line in request_logs.wait_for(1) if line["request_id"] == error["request_id"])
    assert (line["status"], line["error_type"]) == (503, "server_busy")


def test_a_websocket_upgrade_is_an_ordinary_request(function, request_logs: LogRecords) -> None:
    upgrade = (b"GET /healthz HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
               b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
    host, port = function.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(upgrade)
        status, headers, _ = parse(sock.recv(65536))
    assert status == 200
    (line,) = request_logs.wait_for(1)
    assert line["request_id"] == headers["x-request-id"]


def test_a_websocket_upgrade_does_not_pass_the_key_gate(start_function, emulator, tmp_path,
                                                        request_logs: LogRecords) -> None:
    keys = write_key_file(tmp_path / "keys.json", team="k" * 40)
    function = start_function(emulator, auth_mode="api_key", api_keys_file=str(keys))
    upgrade = (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
               b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
    status, _, body = parse(exchange(function.url, upgrade, until_close=False))
    assert status == 401
    assert json.loads(body)["error"]["code"] == "missing_api_key"
    assert request_logs.wait_for(1)[0]["error_type"] == "missing_api_key"


def test_an_ordinary_stream_is_untouched_by_the_server_protocol(function) -> None:
    """The protocol that answers refusals leaves a well-formed exchange as uvicorn serves it (kept alive)."""
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            with client.stream("POST", function.url, json={"inputs": "hi", "parameters": {"max_new_tokens": 3}},
                               headers={"accept": "text/event-stream"}) as response:
                assert [event.event for event in EventSource(response).iter_sse()][-1] == "done"


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_bad_chunk_after_an_answered_request_adds_no_line_and_no_error(function, request_logs: LogRecords,
                                                                         method: bytes) -> None:
    """The app answered without reading the body; the broken chunk that follows belongs to that request."""
    host, port = function.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(method + b" /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or (method == b"GET" and not answer.endswith(b"}")):
            answer += sock.recv(65536)  # the whole answer first: only then the broken chunk
        sock.sendall(b"zz\r\n")
        while sock.recv(65536):  # the server closes the connection
            pass
    status, headers, _ = parse(answer)
    assert status == 200
    after = httpx.get(f"{function.url}/healthz")  # sent once the server closed that connection
    assert after.status_code == 200  # and the server is none the worse
    # Its line comes after any the broken connection made: one line for the answered request, none for the chunk.
    request_logs.wait_for(2)
    assert [line["request_id"] for line in request_logs] == [headers["x-request-id"], after.headers["x-request-id"]]


def test_a_bad_chunk_in_a_head_request_body_the_app_reads_is_answered_without_a_body(function,
                                                                                     request_logs) -> None:
    head = b"HEAD / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
    status, headers, body = parse(exchange(function.url, head))
    assert status == 400
    assert body == b""  # HEAD: the headers of the JSON error, and no body
    (line,) = request_logs.wait_for(1)
    assert line["request_id"] == headers["x-request-id"]
