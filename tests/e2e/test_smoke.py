"""`make smoke` against the processes `make dev` runs (the real function in front of the emulator).

What only a deployment shows, and these tests cannot: Lambda's own 403 for an unsigned request to an IAM
URL, SigV4 accepted by the function URL, and the figures of the real endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_mode.servers import LocalServers, local_servers
from stream_client import smoke
from tests import ROOT

KEY = "smoke-test-key-5b1e"


@pytest.fixture(scope="module")
def keyed() -> Iterator[LocalServers]:
    with local_servers(api_key=KEY) as servers:
        yield servers


def outputs_file(folder: Path, url: str, auth: str) -> Path:
    """What `cdk deploy --outputs-file` writes for the streaming stack."""
    path = folder / "outputs.json"
    path.write_text(json.dumps({"llm-stream-streaming": {"FunctionUrl": url, "AuthMode": auth,
                                                         "FunctionName": "llm-stream-streaming-Function"}}))
    return path


def make_smoke(outputs: Path, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.pop("LLM_STREAM_API_KEY", None)
    if api_key:
        env["LLM_STREAM_API_KEY"] = api_key
    return subprocess.run(["make", "--no-print-directory", "smoke", f"OUTPUTS={outputs}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def check_lines(stdout: str) -> dict[str, str]:
    lines = [line.split(maxsplit=2) for line in stdout.splitlines() if line.startswith("  ")]
    return {name: f"{status} {found}" for status, name, found in lines}


def test_make_smoke_passes_against_a_keyed_deployment_with_its_figures(keyed: LocalServers, tmp_path: Path) -> None:
    result = make_smoke(outputs_file(tmp_path, keyed.function_url, "api_key"), api_key=KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = check_lines(result.stdout)
    assert list(checks) == ["health", "refusal", "stream", "bad-request"]
    assert checks["health"] == "ok 200, status ok, auth api_key"
    assert checks["refusal"] == "ok a request without credentials is refused: HTTP 401 missing_api_key"
    assert checks["stream"].startswith("ok TTFT ")
    assert "32 tokens" in checks["stream"]
    assert "tokens/s" in checks["stream"]
    assert checks["stream"].endswith("finish: length")
    assert checks["bad-request"].startswith("ok HTTP 422 validation_error (request ")
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith(f"smoke: PASS {keyed.function_url} (auth api_key), all 4 checks: TTFT ")


def test_an_upstream_fault_fails_the_stream_check_and_the_verdict(keyed: LocalServers, tmp_path: Path) -> None:
    httpx.post(f"{keyed.emulator_url}/_emulator/faults", json={"faults": [
        {"kind": "in_band_error", "after_tokens": 3, "message": "CUDA out of memory"}]}).raise_for_status()
    result = make_smoke(outputs_file(tmp_path, keyed.function_url, "api_key"), api_key=KEY)
    assert result.returncode != 0
    checks = check_lines(result.stdout)
    assert checks["stream"].startswith("FAIL the stream ended with an error event after 3 tokens: ")
    assert "CUDA" not in checks["stream"]  # upstream text stays in the function's log line
    assert [name for name, line in checks.items() if line.startswith("ok")] == ["health", "refusal", "bad-request"]
    assert f"smoke: FAIL {keyed.function_url}: 1 of 4 checks failed (stream)" in result.stderr


def test_outputs_that_disagree_with_the_function_fail_health_and_refusal(tmp_path: Path) -> None:
    """A public function where the outputs promise API keys: the refusal check catches an open door."""
    with local_servers() as public:
        target = smoke.Target(public.function_url, "api_key", KEY)
        outcomes, streamed = smoke.run_smoke(target)
    failed = {outcome.check: outcome.found for outcome in outcomes if not outcome.passed}
    assert failed == {
        "health": "the function runs with auth 'none', the outputs say 'api_key'",
        "refusal": "a request without credentials answered HTTP 200 (expected 401 under auth api_key)"}
    assert streamed is not None
    assert streamed.tokens == smoke.SMOKE_MAX_NEW_TOKENS


def test_a_public_deployment_passes_and_says_it_is_public(tmp_path: Path) -> None:
    with local_servers() as public:
        outcomes, _ = smoke.run_smoke(smoke.Target(public.function_url, "none", None))
    assert all(outcome.passed for outcome in outcomes), outcomes
    assert outcomes[1].found.startswith("auth none: the URL is public")


def test_an_unreachable_url_fails_every_check_quickly(tmp_path: Path) -> None:
    with local_servers() as gone:
        url = gone.function_url
    started = time.monotonic()
    outcomes, streamed = smoke.run_smoke(smoke.Target(url, "api_key", KEY))
    assert time.monotonic() - started < 10
    assert [outcome.passed for outcome in outcomes] == [False] * 4
    assert all(outcome.found.startswith("ConnectError") for outcome in outcomes)
    assert streamed is None


def test_bad_usage_exits_2_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(["--outputs", str(tmp_path / "missing.json")]) == 2
    assert "does not exist: deploy first (make deploy)" in capsys.readouterr().err
    keyed_outputs = outputs_file(tmp_path, "https://abc.lambda-url.us-east-1.on.aws/", "api_key")
    assert smoke.main(["--outputs", str(keyed_outputs), "--api-key", ""]) == 2
    assert "this deployment uses API keys: set LLM_STREAM_API_KEY" in capsys.readouterr().err


def test_smoke_asks_each_model_once_where_several_are_served(capsys: pytest.CaptureFixture[str]) -> None:
    from stream_client.smoke import main as smoke

    falcon, mistral = "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-mistral-7b-instruct"
    with local_servers(model_id=f"{falcon},{mistral}") as servers:
        assert smoke(["--url", servers.function_url, "--auth", "none"]) == 0
        received = httpx.get(f"{servers.emulator_url}/_emulator/requests").json()["requests"]
    checks = check_lines(capsys.readouterr().out)
    assert list(checks) == ["health", "refusal", f"stream:{falcon}", f"stream:{mistral}", "bad-request"]
    assert all(found.startswith("ok") for found in checks.values())
    assert [request["inference_component"] for request in received] == [falcon, mistral]
