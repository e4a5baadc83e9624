"""The `sagemaker` SDK v2 (its own virtual environment, .venv-sagemaker) against the emulator."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests import ROOT

pytestmark = pytest.mark.clients

PYTHON = ROOT / ".venv-sagemaker" / "bin" / "python"
SCRIPT = ROOT / "tests" / "e2e" / "sagemaker_sdk_client.py"


def test_predict_and_predict_stream_read_the_emulator_as_they_read_sagemaker(emulator) -> None:
    assert PYTHON.exists(), "the sagemaker SDK is missing: `make test` installs it into .venv-sagemaker/"
    env = {**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run([str(PYTHON), str(SCRIPT), emulator.url, "local-endpoint"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    (whole,) = seen["whole"]
    assert whole["generated_text"].startswith("Hello")
    assert seen["chat"]["object"] == "chat.completion"
    assert seen["chat"]["choices"][0]["finish_reason"] == "length"
    events = [json.loads(line.removeprefix("data:")) for line in seen["lines"]]
    assert len(events) == 5  # one per token; the last also carries the whole text, prompt first
    assert events[-1]["generated_text"] == "Hello" + "".join(event["token"]["text"] for event in events)
    assert [record.endpoint for record in emulator.requests] == ["local-endpoint"] * 3
