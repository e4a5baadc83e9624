"""Scale to zero end to end, as `make demo SCALE_TO_ZERO=...` runs it: the emulator's component wakes after a
warm-up started by the first request; the real function answers 503 model_waking_up meanwhile; the client
(the real command-line process) says so and retries until the answer streams, or gives up at its limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from local_mode.servers import local_servers
from stream_client.client import ModelWakingUp, stream_answer
from tests import ROOT

PAYLOAD = {"inputs": "Hi", "parameters": {"max_new_tokens": 4}}


def client(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-m", "stream_client", "--url", url, "--auth", "none", *arguments, "Hi"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_client_waits_for_the_model_to_wake_then_streams_the_answer() -> None:
    with local_servers(wake_up_seconds=2) as servers:
        result = client(servers.function_url, "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("the model is starting (scaled to zero while idle), retrying in 5 s\n")
    assert result.stdout.strip()
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("TTFT ")
    assert "4 tokens" in summary
    assert summary.endswith("s waiting for the model to start")


def test_the_client_gives_up_at_its_limit_with_the_function_s_message() -> None:
    with local_servers(wake_up_seconds=60) as servers:
        started = time.monotonic()
        result = client(servers.function_url, "--wait-for-model", "2")
        took = time.monotonic() - started
        state = httpx.get(f"{servers.emulator_url}/_emulator/inference-component").json()
    assert result.returncode == 1
    assert took < 30
    assert "the model is starting (scaled to zero while idle), retrying in 2 s" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: HTTP 503: model_waking_up: the model is starting (it scales to zero while idle), ready in about ")
    assert state["copies"] == 0
    assert state["ready_in_seconds"] > 0  # the first refusal started the scale-out, as the alarm would


def test_the_waits_double_within_the_server_s_retry_after_and_the_limit() -> None:
    waits: list[float] = []
    with local_servers(wake_up_seconds=600) as servers, pytest.raises(ModelWakingUp) as gave_up:
        stream_answer(servers.function_url, PAYLOAD, auth="none", wait_for_model=300,
                      on_wait=waits.append, sleep=lambda seconds: None)
    assert gave_up.value.retry_after is not None
    assert gave_up.value.retry_after == 60  # a minute at most, however long the wake-up
    assert waits == [5, 10, 20, 40, 60, 60, 60, 45]  # doubling, at most 60, and no wait past the limit


def test_several_models_at_zero_each_wake_on_their_own_request() -> None:
    """`make dev MODELS=a,b SCALE_TO_ZERO=1`: every model's component starts at zero; a request for one wakes
    that one only, and the client rides out its start."""
    models = "huggingface-llm-falcon-7b-instruct-bf16,huggingface-llm-mistral-7b-instruct"
    with local_servers(model_id=models, wake_up_seconds=2) as servers:
        before = httpx.get(f"{servers.emulator_url}/_emulator/inference-components").json()
        result = client(servers.function_url, "--model", "huggingface-llm-mistral-7b-instruct",
                        "--max-new-tokens", "4")
        after = httpx.get(f"{servers.emulator_url}/_emulator/inference-components").json()
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("the model is starting (scaled to zero while idle), retrying in 5 s\n")
    copies = {state["inference_component"]: state["copies"] for state in before["components"]}
    assert copies == {"huggingface-llm-falcon-7b-instruct-bf16": 0, "huggingface-llm-mistral-7b-instruct": 0}
    copies = {state["inference_component"]: state["copies"] for state in after["components"]}
    assert copies == {"huggingface-llm-falcon-7b-instruct-bf16": 0, "huggingface-llm-mistral-7b-instruct": 1}
