"""The official `openai` npm package, run by Node, against the real function."""

from __future__ import annotations

import json
import subprocess

import pytest

from sagemaker_emulator import Fault
from tests import ROOT

pytestmark = pytest.mark.clients

SCRIPT = ROOT / "tests" / "e2e" / "openai_node_client.mjs"
MODEL = "huggingface-llm-falcon-7b-instruct-bf16"


def test_the_node_sdk_lists_answers_streams_and_gets_typed_errors(function, emulator) -> None:
    assert (ROOT / "node_modules" / "openai").is_dir(), "make test installs the npm packages (npm install)"
    emulator.inject(Fault(kind="model_stream_error", after_tokens=2))  # for the script's first stream
    result = subprocess.run(["node", str(SCRIPT), f"{function.url}/v1", MODEL], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["models"] == [MODEL]
    assert seen["whole"]["content"]
    assert seen["whole"]["finish"] == "length"
    assert len(seen["streamed"]) == 5  # one chunk per token
    assert seen["refused"] == {"name": "BadRequestError", "status": 400, "param": "n"}
    # A failure after the first byte: the generic APIError (not a typed subclass), with our message.
    assert seen["midStream"]["name"] == "APIError"
    assert "the model failed while generating" in seen["midStream"]["message"]
    assert len(emulator.requests) == 3  # the refused request never reached the endpoint
