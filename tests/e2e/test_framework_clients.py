"""instructor and guidance (their own virtual environment, .venv-frameworks) against the real function in
front of the emulator: structured output by tools and by JSON schema, and generation with log probabilities."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import ROOT
from tests.helpers.logs import LogRecords

pytestmark = pytest.mark.clients

PYTHON = ROOT / ".venv-frameworks" / "bin" / "python"
SCRIPT = ROOT / "tests" / "e2e" / "framework_clients.py"
MODEL = "huggingface-llm-falcon-7b-instruct-bf16"


def test_instructor_and_guidance_get_what_they_ask_for(function, emulator, request_logs: LogRecords) -> None:
    assert PYTHON.exists(), "instructor and guidance are missing: `make test` installs them into .venv-frameworks/"
    result = subprocess.run([str(PYTHON), str(SCRIPT), f"{function.url}/v1", MODEL], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    for mode in ("TOOLS", "JSON_SCHEMA"):
        assert set(seen[f"instructor_{mode}"]) == {"name", "population", "rivers"}
    assert seen["guidance_text"]
    assert set(seen["guidance_json"]) == {"name", "population", "rivers"}
    sent = [request.json() for request in emulator.requests]
    tools, schema, greeting, city = (body["parameters"] for body in sent)
    assert set(tools["grammar"]["value"]["$functions"]) == {"City"}  # instructor's TOOLS: a named function
    assert schema["grammar"]["value"]["properties"].keys() == {"name", "population", "rivers"}
    assert greeting["top_n_tokens"] == 5  # guidance asks for logprobs with 5 alternatives, always
    assert city["grammar"]["type"] == "json"
    assert all(line["status"] == 200 for line in request_logs.wait_for(4))
