"""Several models on one endpoint, locally: the emulator hosting inference components of two container families
at once, each with its own copies, read with the real boto3 client and the function's token iterator."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from llm_stream.tokens import TokenIterator
from sagemaker_emulator import EmulatorConfig, EmulatorServer, HostedComponent
from sagemaker_emulator.capacity import COMPONENT_REQUIRED_MESSAGE, NO_CAPACITY_MESSAGE

FALCON = HostedComponent("falcon", "tgi", "2.4.0", 2048)
MISTRAL = HostedComponent("mistral", "lmi", "0.28.0", 4096)
TWO_FAMILIES = EmulatorConfig(ttft_ms=0, token_ms=0, components=(FALCON, MISTRAL))


def invoke(client: Any, component: str | None = None) -> Any:
    named = {"InferenceComponentName": component} if component else {}
    return client.invoke_endpoint_with_response_stream(
        EndpointName="shared", ContentType="application/json", **named,
        Body=json.dumps({"inputs": "Hi", "parameters": {"max_new_tokens": 4}, "stream": True}))


def test_each_component_answers_as_its_own_container_family(make_runtime_client) -> None:
    with EmulatorServer(TWO_FAMILIES) as emulator:
        client = make_runtime_client(emulator.url)
        for component, stream_format in (("falcon", "tgi"), ("mistral", "lmi")):
            tokens = TokenIterator(invoke(client, component)["Body"])
            assert len(list(tokens)) == 4
            assert tokens.format == stream_format  # SSE for TGI, JSON lines for LMI
        assert [r.headers["X-Amzn-SageMaker-Inference-Component"] for r in emulator.requests] == ["falcon",
                                                                                                 "mistral"]


def test_each_component_has_its_own_copies(make_runtime_client) -> None:
    with EmulatorServer(TWO_FAMILIES) as emulator:
        client = make_runtime_client(emulator.url)
        scaled = httpx.post(f"{emulator.url}/_emulator/inference-component", json={"name": "falcon", "copies": 0})
        assert scaled.json() == {"inference_component": "falcon", "copies": 0, "ready_in_seconds": None}
        with pytest.raises(ClientError) as no_capacity:
            invoke(client, "falcon")
        assert no_capacity.value.response["Error"]["Message"] == NO_CAPACITY_MESSAGE
        assert list(TokenIterator(invoke(client, "mistral")["Body"]))  # the other one answers at once
        states = httpx.get(f"{emulator.url}/_emulator/inference-components").json()["components"]
        assert [(state["inference_component"], state["copies"]) for state in states] == [("falcon", 0),
                                                                                       ("mistral", 1)]
        assert states[0]["ready_in_seconds"] is not None  # the refusal started falcon's warm-up


def test_an_invocation_must_name_a_hosted_component(make_runtime_client) -> None:
    with EmulatorServer(TWO_FAMILIES) as emulator:
        client = make_runtime_client(emulator.url)
        with pytest.raises(ClientError) as unnamed:
            invoke(client)
        assert unnamed.value.response["Error"]["Message"] == COMPONENT_REQUIRED_MESSAGE
        with pytest.raises(ClientError) as unknown:
            invoke(client, "rinna")
        assert unknown.value.response["Error"]["Message"] == (
            f"Inference Component rinna of account {TWO_FAMILIES.account} not found.")
        unnamed_admin = httpx.get(f"{emulator.url}/_emulator/inference-component")
        assert unnamed_admin.status_code == 404
        assert "falcon, mistral" in unnamed_admin.json()["message"]
        assert httpx.get(f"{emulator.url}/_emulator/inference-component?name=mistral").json()["copies"] == 1


def test_components_are_given_on_the_command_line_and_checked() -> None:
    assert HostedComponent.parse("mistral=lmi:0.28.0:4096:0") == HostedComponent("mistral", "lmi", "0.28.0", 4096,
                                                                                 initial_copies=0)
    assert HostedComponent.parse("falcon=tgi") == HostedComponent("falcon", "tgi")
    for bad in ("falcon", "=tgi", "falcon=vllm", "falcon=tgi::lots"):
        with pytest.raises(ValueError, match=r"falcon|NAME=FAMILY|invalid literal"):
            HostedComponent.parse(bad)
    with pytest.raises(ValueError, match="not both"):
        EmulatorConfig(inference_component="x", components=(FALCON,))
    with pytest.raises(ValueError, match="each name once"):
        EmulatorConfig(components=(FALCON, FALCON))
    result = subprocess.run([sys.executable, "-m", "sagemaker_emulator", "--component", "a=tgi",
                             "--inference-component", "b"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "not both" in result.stderr
