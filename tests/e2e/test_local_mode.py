"""The README's `make demo`, and the local servers `make dev` runs, as separate real processes."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from local_mode.servers import local_servers
from stream_client.__main__ import main as client_main
from stream_client.client import stream_answer
from tests import ROOT


def test_make_demo_streams_the_seed_question() -> None:
    """The README's main command, end to end: both real processes, the seed request, the figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = result.stdout.strip().splitlines()[-1]  # make may print its install steps first
    assert answer.startswith("建立网站可以是一个复杂的过程"), result.stdout[-500:]
    assert "TTFT" in result.stderr
    assert "tokens/s" in result.stderr
    assert "finish: eos_token" in result.stderr


def test_local_dev_stack_serves_until_stopped() -> None:
    with local_servers() as servers:
        result = stream_answer(servers.function_url, {"inputs": "Hi", "parameters": {"max_new_tokens": 4}})
        assert result.tokens == 4
        assert result.done is not None
        assert result.done["finish_reason"] == "length"
    with pytest.raises(httpx.ConnectError):  # both processes are gone
        stream_answer(servers.function_url, {"inputs": "Hi"}, timeout=2)


def test_make_dev_with_an_api_key_serves_only_callers_with_that_key() -> None:
    """`make dev API_KEY=...`: the function process reads its key from a key table in a DynamoDB API on loopback,
    as it reads the deployment's table."""
    key = "local-dev-key-7f3a"
    with local_servers(api_key=key) as servers:
        url = servers.function_url
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "auth": "api_key"}
        for method, path in (("POST", "/"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("POST", "/v1/completions")):
            assert httpx.request(method, url + path, json={}).status_code == 401, path
            assert httpx.request(method, url + path, json={}, headers={"x-api-key": "wrong"}).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
        result = stream_answer(url, {"inputs": "Hi", "parameters": {"max_new_tokens": 4}}, auth="api_key",
                               api_key=key)
        assert result.tokens == 4


def test_make_dev_with_limits_refuses_past_them_and_the_client_says_which_limit_and_when(capsys) -> None:
    """`make dev API_KEY=... LIMITS="rpm=1"`, then the client twice: the second is refused, and says why."""
    key = "local-dev-key-limits"
    with local_servers(api_key=key, limits="max_streams=2 rpm=1") as servers:
        argv = ["--url", servers.function_url, "--api-key", key, "--max-new-tokens", "4", "Hi"]
        first = client_main(argv)
        if first == 1 and "rpm limit" in capsys.readouterr().err:  # a minute turned between start and here
            first = client_main(argv)
        assert first == 0
        capsys.readouterr()
        assert client_main(argv) == 1
        said = capsys.readouterr().err
        assert "HTTP 429: rate_limit_exceeded: this key made 1 requests this minute, its rpm limit (1); it resets in" \
            in said


def test_make_demo_with_an_api_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(["make", "--no-print-directory", "demo", "API_KEY=demo-key-1234"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "finish: eos_token" in result.stderr


def test_make_dev_as_an_lmi_model_serves_it_in_its_container_s_formats() -> None:
    """`make dev MODEL=huggingface-llm-mistral-7b-instruct`: the function with that model's settings, the
    emulator as its DJL/LMI container."""
    with local_servers(model_id="huggingface-llm-mistral-7b-instruct") as servers:
        url = servers.function_url
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert [model["id"] for model in models] == ["huggingface-llm-mistral-7b-instruct"]
        result = stream_answer(url, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6})
        assert result.tokens == 6
        assert result.done is not None
        assert result.done["finish_reason"] == "length"
        (received,) = httpx.get(f"{servers.emulator_url}/_emulator/requests").json()["requests"]
        assert json.loads(received["body"])["inputs"] == "[INST] Hi [/INST]"
        # A TGI parameter name is refused by name: this model's container reads LMI's.
        refused = httpx.post(url, json={"inputs": "Hi", "parameters": {"stop": ["x"]}})
        assert refused.status_code == 422
        assert "stop_sequences" in refused.json()["error"]["message"]


def test_make_demo_with_an_unknown_model_says_which_exist() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(["make", "--no-print-directory", "demo", "MODEL=gpt-5"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "model 'gpt-5' is not in the catalog; allowed: huggingface-llm-bilingual-rinna-4b" in result.stderr


def test_make_dev_with_two_models_serves_both_through_the_one_url_to_the_openai_client() -> None:
    """`make dev MODELS=huggingface-llm-falcon-7b-instruct-bf16,huggingface-llm-mistral-7b-instruct`: one
    endpoint hosting both as inference components (TGI and DJL/LMI side by side), the request's model picking."""
    import openai

    falcon, mistral = "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-mistral-7b-instruct"
    with local_servers(model_id=f"{falcon},{mistral}") as servers:
        client = openai.OpenAI(base_url=f"{servers.function_url}/v1", api_key="unused", max_retries=0)
        assert [model.id for model in client.models.list()] == [falcon, mistral]
        for model in (falcon, mistral):
            answer = client.chat.completions.create(model=model, max_tokens=4,
                                                    messages=[{"role": "user", "content": "Hi"}])
            assert (answer.model, answer.choices[0].finish_reason) == (model, "length")
        received = httpx.get(f"{servers.emulator_url}/_emulator/requests").json()["requests"]
        assert [request["inference_component"] for request in received] == [falcon, mistral]
