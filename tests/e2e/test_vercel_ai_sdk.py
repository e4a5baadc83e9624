"""The Vercel AI SDK's default OpenAI provider (`openai(model)`, which calls the Responses API), run by Node,
against the real function."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import ROOT
from tests.helpers.logs import LogRecords

pytestmark = pytest.mark.clients

SCRIPT = ROOT / "tests" / "e2e" / "vercel_ai_client.mjs"
MODEL = "huggingface-llm-falcon-7b-instruct-bf16"


def test_generate_text_stream_text_objects_and_tools_go_through_the_responses_api(function, emulator,
                                                                     request_logs: LogRecords) -> None:
    assert (ROOT / "node_modules" / "@ai-sdk" / "openai").is_dir(), "make test installs the npm packages"
    result = subprocess.run(["node", str(SCRIPT), f"{function.url}/v1", MODEL], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["whole"]["text"]
    assert seen["whole"]["finish"] == "stop"
    assert seen["whole"]["input"] > 0
    assert len(seen["deltas"]) == 5  # one delta per token
    assert seen["streamedFinish"] == "length"
    assert [line["path"] for line in request_logs.wait_for(4)] == ["/v1/responses"] * 4
    assert emulator.requests[1].json()["inputs"] == "Be brief.\nUser: Hi there\nAssistant:"
    assert set(seen["object"]) == {"name", "population", "rivers"}  # generateObject: text.format json_schema
    assert isinstance(seen["object"]["population"], int)
    assert emulator.requests[2].json()["parameters"]["grammar"]["type"] == "json"
    assert [call["name"] for call in seen["toolCalls"]] == ["weather"]
    assert seen["toolCalls"][0]["input"]["city"]
    assert seen["toolFinish"] == "tool-calls"
