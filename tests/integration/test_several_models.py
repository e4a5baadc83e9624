"""Several models behind one URL, locally: the real function, configured as local mode configures it for two
catalog models of two container families (``local_mode.servers.model_arguments``), in front of the emulator
hosting both as inference components; driven by the `openai` SDK and plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_stream.api_keys import KeyRecord, KeyRing, key_digest, new_key
from llm_stream.settings import Settings, SettingsError
from local_mode.servers import model_arguments
from sagemaker_emulator import EmulatorServer
from stream_client.__main__ import main as client_main
from tests.helpers.logs import LogRecords
from tests.helpers.servers import AppServer, several_models

FALCON = "huggingface-llm-falcon-7b-instruct-bf16"  # TGI 2.4.0
MISTRAL = "huggingface-llm-mistral-7b-instruct"  # DJL/LMI 0.28
HI: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def two_models(start_function) -> Iterator[tuple[EmulatorServer, AppServer, dict[str, Any]]]:
    emulator, served = several_models(f"{FALCON},{MISTRAL}")
    with emulator:
        yield emulator, start_function(emulator, **served), served


def sdk(function: AppServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{function.url}/v1", api_key=key, max_retries=0)


def test_the_models_are_listed_and_each_is_called_through_its_own_component_and_container(two_models) -> None:
    emulator, function, _ = two_models
    client = sdk(function)
    assert [model.id for model in client.models.list()] == [FALCON, MISTRAL]
    assert client.models.retrieve(MISTRAL).id == MISTRAL
    for model, prompt, tgi in ((FALCON, "User: Hi\nAssistant:", True), (MISTRAL, "[INST] Hi [/INST]", False)):
        answer = client.chat.completions.create(model=model, messages=HI, max_tokens=4)
        assert answer.model == model
        assert answer.choices[0].message.content
        sent = emulator.requests[-1]
        assert sent.headers["X-Amzn-SageMaker-Inference-Component"] == model
        assert sent.json()["inputs"] == prompt  # each model's own chat format
        assert ("return_full_text" in sent.json()["parameters"]) is tgi  # each family's own parameters
    streamed = client.chat.completions.create(model=MISTRAL, messages=HI, max_tokens=3, stream=True)
    assert {chunk.model for chunk in streamed} == {MISTRAL}


def test_each_request_is_logged_and_metered_per_model(two_models, request_logs: LogRecords) -> None:
    _, function, _ = two_models
    sdk(function).chat.completions.create(model=MISTRAL, messages=HI, max_tokens=2)
    (line,) = request_logs.wait_for(1)
    assert line["model"] == MISTRAL
    assert line["Model"] == MISTRAL
    (per_request, *_) = line["_aws"]["CloudWatchMetrics"]
    assert per_request["Dimensions"] == [["Service"], ["Service", "Model"]]  # the Service-wide alarms keep theirs


def test_an_unknown_model_is_a_404_naming_the_served_ones_before_the_endpoint(two_models) -> None:
    emulator, function, _ = two_models
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(function).chat.completions.create(model="gpt-4o", messages=HI)
    assert raised.value.param == "model"
    assert FALCON in raised.value.message
    assert MISTRAL in raised.value.message
    assert emulator.requests == []


def test_the_native_route_takes_an_optional_model_and_defaults_to_the_first(two_models) -> None:
    emulator, function, _ = two_models
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}
    assert httpx.post(function.url, json=body, timeout=30).status_code == 200
    assert httpx.post(function.url, json={**body, "model": MISTRAL}, timeout=30).status_code == 200
    assert [r.headers["X-Amzn-SageMaker-Inference-Component"] for r in emulator.requests] == [FALCON, MISTRAL]
    refused = httpx.post(function.url, json={**body, "model": "nope"}, timeout=30)
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "model_not_found"


def test_each_model_wakes_on_its_own(two_models) -> None:
    emulator, function, _ = two_models
    httpx.post(f"{emulator.url}/_emulator/inference-component", json={"name": FALCON, "copies": 0})
    client = sdk(function)
    with pytest.raises(openai.APIStatusError) as waking:
        client.chat.completions.create(model=FALCON, messages=HI, max_tokens=2)
    assert waking.value.status_code == 503
    assert waking.value.code == "model_waking_up"
    assert client.chat.completions.create(model=MISTRAL, messages=HI, max_tokens=2).choices  # at once


def test_a_key_restricted_to_one_model_sees_and_calls_that_one_only(two_models, start_function,
                                                                     tmp_path: Path) -> None:
    emulator, _, served = two_models
    keys, key = tmp_path / "keys.json", new_key()
    record = KeyRecord(name="team-b", sha256=key_digest(key), created_at=datetime.now(UTC), allowed_models=(MISTRAL,))
    keys.write_text(KeyRing((record,)).to_document(), encoding="utf-8")
    function = start_function(emulator, **served, auth_mode="api_key", api_keys_file=str(keys))
    client = sdk(function, key)
    assert [model.id for model in client.models.list()] == [MISTRAL]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model=FALCON, messages=HI)
    assert refused.value.code == "model_not_allowed"
    assert refused.value.param == "model"
    assert client.chat.completions.create(model=MISTRAL, messages=HI, max_tokens=2).choices
    assert [r.headers["X-Amzn-SageMaker-Inference-Component"] for r in emulator.requests] == [MISTRAL]


def test_the_models_setting_is_checked_and_named_when_wrong() -> None:
    environment, _ = model_arguments(f"{FALCON},{MISTRAL}")
    settings = Settings.from_env(environment)
    assert settings.model_ids == (FALCON, MISTRAL)
    mistral = settings.for_model(MISTRAL)
    assert mistral is not None
    assert (mistral.container_family, mistral.inference_component_name, mistral.served_models) == (
        "lmi", MISTRAL, ())
    assert settings.for_model("nope") is None
    broken = {**environment, "MODELS": environment["MODELS"].replace('"model_max_total_tokens":4096',
                                                                    '"model_max_total_tokens":"lots"')}
    with pytest.raises(SettingsError, match=r"model 1\.model_max_total_tokens must be int"):
        Settings.from_env(broken)
    with pytest.raises(SettingsError, match="each model once"):
        Settings.from_env({**environment, "MODELS": environment["MODELS"].replace(MISTRAL, FALCON)})


def test_the_client_picks_a_model_by_name(two_models, capsys) -> None:
    emulator, function, _ = two_models
    for extra in ([], ["--chat"]):
        assert client_main(["Hi", "--url", function.url, "--auth", "none", "--max-new-tokens", "3", "--model",
                            MISTRAL, *extra]) == 0
    assert capsys.readouterr().out.strip()
    assert [r.headers["X-Amzn-SageMaker-Inference-Component"] for r in emulator.requests] == [MISTRAL, MISTRAL]


def test_refusals_are_logged_under_the_model_asked_for_or_none_served(two_models, start_function, tmp_path: Path,
                                                                       request_logs: LogRecords) -> None:
    emulator, _, served = two_models
    keys, key = tmp_path / "keys.json", new_key()
    record = KeyRecord(name="team-b", sha256=key_digest(key), created_at=datetime.now(UTC), allowed_models=(MISTRAL,))
    keys.write_text(KeyRing((record,)).to_document(), encoding="utf-8")
    client = sdk(start_function(emulator, **served, auth_mode="api_key", api_keys_file=str(keys)), key)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=FALCON, messages=HI)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert FALCON not in unknown.value.message  # the models this key may call, only
    assert [(line["model"], line["status"]) for line in request_logs.wait_for(2)] == [
        (FALCON, 403), ("(unknown)", 404)]  # never the caller's string, as a metric dimension


def test_one_model_answers_as_it_always_did(function, emulator) -> None:
    """A deployment of one model routes nothing: POST / ignores a chat's `model`, as before."""
    body = {"messages": HI, "max_tokens": 2, "model": "gpt-4o"}
    assert httpx.post(function.url, json=body, timeout=30).status_code == 200


def test_settings_for_several_models_stay_within_lambda_s_environment() -> None:
    from infra.catalog import load_catalog

    with pytest.raises(SettingsError, match="within 3800 bytes of environment"):
        model_arguments(",".join(sorted(load_catalog().models)))  # all ten: too many for one function's variables
    environment, _ = model_arguments(f"{FALCON},{MISTRAL}")
    first_only = environment["MODELS"][:environment["MODELS"].index("},{") + 1] + "]"
    with pytest.raises(SettingsError, match="two models or more"):
        Settings.from_env({**environment, "MODELS": first_only})
