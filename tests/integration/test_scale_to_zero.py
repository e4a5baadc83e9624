"""Scale to zero, locally: the emulator as an endpoint whose model is an inference component with no copies,
the real boto3 client, and the real function in front of it (uvicorn over a socket)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from llm_stream.settings import Settings
from llm_stream.wake_up import MAX_RETRY_AFTER_SECONDS, MIN_RETRY_AFTER_SECONDS, WakeUpClock, WakeUpEstimate
from sagemaker_emulator import EmulatorConfig, EmulatorServer
from sagemaker_emulator.capacity import COMPONENT_REQUIRED_MESSAGE, NO_CAPACITY_MESSAGE
from tests.helpers.logs import LogRecords
from tests.helpers.servers import TEST_COMPONENT, component_copies, scaled_to_zero
from tests.helpers.waiting import wait_until

COMPONENT = TEST_COMPONENT
PAYLOAD = {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}


def invoke(client: Any, **component: str) -> Any:
    return client.invoke_endpoint_with_response_stream(
        EndpointName="test-endpoint", Body=b'{"inputs": "Hi", "parameters": {"max_new_tokens": 2}}',
        ContentType="application/json", **component)


def test_boto3_gets_sagemaker_s_answers_from_an_endpoint_scaled_to_zero(make_runtime_client) -> None:
    with scaled_to_zero() as emulator:
        client = make_runtime_client(emulator.url)
        with pytest.raises(ClientError) as unnamed:
            invoke(client)
        assert (unnamed.value.response["Error"]["Code"], unnamed.value.response["Error"]["Message"]) == (
            "ValidationError", COMPONENT_REQUIRED_MESSAGE)
        assert unnamed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        with pytest.raises(ClientError) as no_capacity:
            invoke(client, InferenceComponentName=COMPONENT)
        assert no_capacity.value.response["Error"] == {"Code": "ValidationError", "Message": NO_CAPACITY_MESSAGE}
        assert emulator.capacity is not None
        assert emulator.capacity.state()["copies"] == 0
        wait_until(lambda: component_copies(emulator) == 1, "the warm-up the first refusal started")
        events = list(invoke(client, InferenceComponentName=COMPONENT)["Body"])
        assert events
        assert emulator.capacity.state()["copies"] == 1
        assert emulator.requests[-1].headers["X-Amzn-SageMaker-Inference-Component"] == COMPONENT


def test_the_emulator_s_copies_can_be_set_and_go_to_zero_when_idle(make_runtime_client) -> None:
    with scaled_to_zero(idle_seconds=0.3) as emulator:
        assert httpx.post(f"{emulator.url}/_emulator/inference-component", json={"copies": 1}).json() == {
            "inference_component": COMPONENT, "copies": 1, "ready_in_seconds": None}
        client = make_runtime_client(emulator.url)
        assert list(invoke(client, InferenceComponentName=COMPONENT)["Body"])
        wait_until(lambda: component_copies(emulator) == 0, "the idle copy to go")
        with pytest.raises(ClientError, match="no capacity"):
            invoke(client, InferenceComponentName=COMPONENT)
        assert httpx.post(f"{emulator.url}/_emulator/inference-component", json={"copies": -1}).status_code == 400
    with EmulatorServer(EmulatorConfig()) as model_endpoint:
        assert httpx.get(f"{model_endpoint.url}/_emulator/inference-component").status_code == 404


def test_the_function_answers_503_model_waking_up_at_once_then_streams_once_awake(
        start_function, request_logs: LogRecords) -> None:
    with scaled_to_zero(warm_up_seconds=1.0) as emulator:
        function = start_function(emulator, inference_component_name=COMPONENT, wake_up_seconds=480)
        started = time.monotonic()
        refused = httpx.post(function.url, json=PAYLOAD, headers={"accept": "text/event-stream"}, timeout=30)
        assert time.monotonic() - started < 2, "the function waited for the model instead of answering"
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()["error"]
        assert error["type"] == "model_waking_up"
        assert error["message"] == ("the model is starting (it scales to zero while idle), ready in about 480 s; "
                                    "retry in 60 s")
        assert refused.headers["retry-after"] == "60"  # at most a minute: clients poll
        assert "Inference Component" not in refused.text  # SageMaker's words go to the log line only
        again = httpx.post(function.url, json=PAYLOAD, timeout=30)
        assert again.status_code == 503
        assert again.json()["error"]["message"].startswith(  # counted down from the first refusal
            "the model is starting (it scales to zero while idle), ready in about 48")
        wait_until(lambda: component_copies(emulator) == 1, "the model's copy to come up")
        answered = httpx.post(function.url, json=PAYLOAD, timeout=30)
        assert answered.status_code == 200
        assert answered.text
        named = {record.headers.get("X-Amzn-SageMaker-Inference-Component") for record in emulator.requests}
        assert named == {COMPONENT}
        logs = request_logs.wait_for(3)
        assert [(log["status"], log["error_type"]) for log in logs[:3]] == [
            (503, "model_waking_up"), (503, "model_waking_up"), (200, None)]
        assert logs[0]["error_detail"].startswith(f"ValidationError: {NO_CAPACITY_MESSAGE[:40]}")
        # Counted under its error type, not as a server error: the alarm on ServerErrors must not page for it.
        assert (logs[0]["ServerErrors"], logs[0]["ErrorType"], logs[0]["Errors"]) == (0, "model_waking_up", 1)


def test_the_openai_routes_answer_the_same_503(start_function) -> None:
    with scaled_to_zero(warm_up_seconds=30) as emulator:
        function = start_function(emulator, inference_component_name=COMPONENT, wake_up_seconds=30)
        response = httpx.post(f"{function.url}/v1/chat/completions", timeout=30, json={
            "model": "huggingface-llm-falcon-7b-instruct-bf16", "messages": [{"role": "user", "content": "Hi"}],
            "stream": True})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "30"
        assert response.json()["error"]["code"] == "model_waking_up"


def test_the_wake_up_clock_counts_down_from_the_first_refusal_and_asks_for_a_retry_within_a_minute() -> None:
    now = [100.0]
    clock = WakeUpClock(300, clock=lambda: now[0])
    assert clock.estimate() == WakeUpEstimate(300, MAX_RETRY_AFTER_SECONDS)
    now[0] += 250.4
    assert clock.estimate() == WakeUpEstimate(50, 50)
    now[0] += 45
    assert clock.estimate() == WakeUpEstimate(5, MIN_RETRY_AFTER_SECONDS)
    now[0] += 100
    assert clock.estimate() == WakeUpEstimate(0, MIN_RETRY_AFTER_SECONDS)  # late: ask again soon, not never
    now[0] += 300  # twice the expected time since the first refusal: a new wake-up
    assert clock.estimate().seconds_left == 300
    clock.awake()
    now[0] += 10
    assert clock.estimate().seconds_left == 300


def test_scale_to_zero_settings_are_written_only_when_used() -> None:
    default = Settings(endpoint_name="e")
    assert "INFERENCE_COMPONENT_NAME" not in default.to_environment()
    assert "WAKE_UP_SECONDS" not in default.to_environment()
    used = Settings(endpoint_name="e", inference_component_name=COMPONENT, wake_up_seconds=600)
    environment = used.to_environment()
    assert (environment["INFERENCE_COMPONENT_NAME"], environment["WAKE_UP_SECONDS"]) == (COMPONENT, "600")
    assert Settings.from_env(environment) == used
