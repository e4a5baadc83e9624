"""The command-line client, its SSE parser and signing, and the local stack it streams from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sagemaker_emulator import Fault
from stream_client.__main__ import main
from stream_client.client import ClientError, request_headers, url_from_outputs
from stream_client.signing import MissingCredentials, function_url_region
from stream_client.sse import ServerSentEvent, parse_events

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_URL = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"


def test_sse_parser_handles_comments_multiline_data_and_missing_final_blank_line() -> None:
    lines = [": keep-alive", "", "event: token", 'data: {"text": "a"}', "", "data:one", "data: two", "", "event: done",
             "data: {}"]
    assert list(parse_events(lines)) == [
        ServerSentEvent("token", '{"text": "a"}'), ServerSentEvent("message", "one\ntwo"), ServerSentEvent("done", "{}"),
    ]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in its own process (the function under test logs to this one's stdout)."""
    return subprocess.run([sys.executable, "-m", "stream_client", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_streams_from_the_function(function) -> None:
    result = run_cli("--url", function.url, "--max-new-tokens", "12", "How do I build a website?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Here is a short answer") and result.stdout.endswith("\n")
    err = result.stderr
    assert "TTFT" in err and "12 tokens in" in err and "tokens/s" in err and "finish: length" in err


def test_cli_chat_mode(function, emulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", function.url, "--chat", "--max-new-tokens", "5", "Hi"]) == 0
    assert emulator.requests[0].json()["messages"] == [{"role": "user", "content": "Hi"}]


def test_cli_exits_non_zero_on_an_error_event(function, emulator) -> None:
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))
    result = run_cli("--url", function.url, "Hello")
    assert result.returncode == 1
    assert result.stdout.strip() == "Here is"
    assert "error: ModelStreamError: Model stream broken" in result.stderr


def test_cli_exits_non_zero_on_an_http_error(function) -> None:
    result = run_cli("--url", function.url, "--temperature", "0", "Hello")
    assert result.returncode == 1 and result.stdout == ""
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


def test_make_demo_streams_the_seed_question() -> None:
    """The README's main command, end to end: both real processes, the seed request, the figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = result.stdout.strip().splitlines()[-1]  # make may print its install steps first
    assert answer.startswith("建立网站可以是一个复杂的过程"), result.stdout[-500:]
    assert "TTFT" in result.stderr and "tokens/s" in result.stderr and "finish: eos_token" in result.stderr


def test_local_dev_stack_serves_until_stopped() -> None:
    from local_mode.servers import local_servers
    from stream_client.client import stream_answer

    with local_servers() as servers:
        result = stream_answer(servers.function_url, {"inputs": "Hi", "parameters": {"max_new_tokens": 4}})
        assert result.tokens == 4 and result.done["finish_reason"] == "length"
    with pytest.raises(httpx.ConnectError):  # both processes are gone
        stream_answer(servers.function_url, {"inputs": "Hi"}, timeout=2)


def test_ctrl_c_stops_the_cli_and_the_generation(start_function) -> None:
    from sagemaker_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(ttft_ms=0, token_ms=50)) as emulator:
        function = start_function(emulator)
        process = subprocess.Popen([sys.executable, "-m", "stream_client", "--url", function.url, "Hello"], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout.read(4) == b"Here"  # streaming has started
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 130
        assert b"interrupted" in process.stderr.read()
        (received,) = emulator.requests
        assert received.finished.wait(5) and received.outcome == "client_disconnected"


def test_cli_help_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "stream_client", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--outputs" in result.stdout
