"""The command-line client, its SSE parser and signing, against the real function."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sagemaker_emulator import Fault
from stream_client.__main__ import main
from stream_client.client import ClientError, request_headers, stream_answer, url_from_outputs
from stream_client.signing import MissingCredentials, function_url_region
from tests import ROOT

LAMBDA_URL = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"


class _CannedSse(http.server.BaseHTTPRequestHandler):
    """Answers every POST with one fixed event stream, sent in small pieces (a real socket, real chunking)."""

    body = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.end_headers()
        for start in range(0, len(self.body), 7):
            self.wfile.write(self.body[start:start + 7])
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned_sse_server():
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(body: bytes) -> str:
        _CannedSse.body = body
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CannedSse)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


DONE_EVENT = b'event: done\r\ndata: {"finish_reason": "length"}\r\n\r\n'


def canned_events(tokens: list[str], done: bytes = DONE_EVENT) -> bytes:
    return b": keep-alive\r\n\r\n" + b"".join(
        f"event: token\ndata: {json.dumps({'text': t}, ensure_ascii=False)}\n\n".encode() for t in tokens) + done


def test_client_reads_events_as_sse_defines_them(canned_sse_server) -> None:
    """Comments, CRLF and LF, tokens holding U+2028 and U+0085 (line breaks to str.splitlines, not to SSE)."""
    tokens = ["a", "b\u2028c", "d\x85e"]
    seen: list[str] = []
    result = stream_answer(canned_sse_server(canned_events(tokens)), {"inputs": "x"}, auth="none",
                           on_token=seen.append)
    assert result.text_parts == tokens
    assert seen == tokens
    assert result.done == {"finish_reason": "length"}
    assert result.error is None


def test_an_event_cut_before_its_blank_line_is_not_taken(canned_sse_server) -> None:
    """SSE drops an event the stream ends inside of: a cut `done` leaves the answer incomplete."""
    body = canned_events(["a"], done=b'event: done\ndata: {"finish_reason": "length"}')
    result = stream_answer(canned_sse_server(body), {"inputs": "x"}, auth="none")
    assert result.text_parts == ["a"]
    assert result.done is None
    assert result.error is not None
    assert result.error["type"] == "incomplete"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in its own process (the function under test logs to this one's stdout)."""
    return subprocess.run([sys.executable, "-m", "stream_client", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_streams_from_the_function(function) -> None:
    result = run_cli("--url", function.url, "--max-new-tokens", "12", "How do I build a website?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Here is a short answer")
    assert result.stdout.endswith("\n")
    err = result.stderr
    assert "TTFT" in err
    assert "12 tokens in" in err
    assert "tokens/s" in err
    assert "finish: length" in err


def test_cli_chat_mode(function, emulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", function.url, "--chat", "--max-new-tokens", "5", "Hi"]) == 0
    assert emulator.requests[0].json()["inputs"] == "User: Hi\nAssistant:"  # rendered for the model


def test_cli_exits_non_zero_on_an_error_event(function, emulator) -> None:
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))
    result = run_cli("--url", function.url, "Hello")
    assert result.returncode == 1
    assert result.stdout.strip() == "Here is"
    assert "error: ModelStreamError: the model failed while generating (request " in result.stderr


def test_cli_exits_non_zero_on_an_http_error(function) -> None:
    result = run_cli("--url", function.url, "--temperature", "0", "Hello")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "HTTP 422: validation_error: `parameters.temperature`" in result.stderr


def test_cli_reads_the_url_from_the_outputs_file(function, tmp_path: Path, capsys) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"LlmStream-Endpoint": {"EndpointName": "x"},
                                   "LlmStream-Function": {"FunctionUrl": function.url, "AuthMode": "none"}}))
    assert main(["--outputs", str(outputs), "--max-new-tokens", "3", "Hi"]) == 0
    assert url_from_outputs(outputs) == (function.url, "none")


def test_missing_outputs_file_says_what_to_do(tmp_path: Path, capsys) -> None:
    assert main(["--outputs", str(tmp_path / "outputs.json"), "Hi"]) == 1
    assert "deploy first (make deploy) or pass --url" in capsys.readouterr().err
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ClientError, match="no stack"):
        url_from_outputs(tmp_path / "other.json")


def test_function_urls_are_signed_for_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    assert function_url_region(LAMBDA_URL) == "eu-west-1"
    headers = request_headers(LAMBDA_URL, b"{}", "auto")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/lambda/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == "token"


def test_local_and_public_urls_are_not_signed() -> None:
    assert "Authorization" not in request_headers("http://127.0.0.1:8080", b"{}", "auto")
    assert "Authorization" not in request_headers(LAMBDA_URL, b"{}", "none")


def test_iam_without_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(MissingCredentials, match="no AWS credentials"):
        request_headers(LAMBDA_URL, b"{}", "iam")


def test_ctrl_c_stops_the_cli_and_the_generation(start_function) -> None:
    from sagemaker_emulator import EmulatorConfig, EmulatorServer

    # 85 tokens at 200 ms: the answer cannot end on its own while a busy machine delays the signal.
    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=200)) as emulator:
        function = start_function(emulator)
        # As a terminal starts it: Ctrl-C raises KeyboardInterrupt. (A process started in the background,
        # `make test &` say, inherits SIGINT ignored, and Python then leaves it ignored.)
        as_in_a_terminal = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                            "sys.argv[0] = 'stream_client'; runpy.run_module('stream_client', run_name='__main__')")
        process = subprocess.Popen([sys.executable, "-c", as_in_a_terminal, "--url", function.url, "Hello"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.read(4) == b"Here"  # streaming has started
        process.send_signal(signal.SIGINT)
        status = process.wait(10)
        stderr = process.stderr.read()
        assert status == 130, stderr
        assert b"interrupted" in stderr
        (received,) = emulator.requests
        assert received.final_outcome() == "client_disconnected"


def test_cli_help_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "stream_client", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--outputs" in result.stdout
