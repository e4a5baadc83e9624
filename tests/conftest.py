"""Shared fixtures: the emulator on an ephemeral port and a real boto3 client pointed at it."""

from __future__ import annotations

import os

# jsii (aws-cdk-lib) prints a banner on Node 20 unless told it is known.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, settings

from local_mode.dynamodb import create_table, serialised_moto
from local_mode.servers import free_port
from sagemaker_emulator import EmulatorServer
from tests.helpers.logs import LogRecords, collect_request_logs
from tests.helpers.servers import FAST, AppServer, point_boto3_at

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE: `make test` runs "default", `make test-fast`
# "dev" and `make fuzz` "full". Tests that need more cases than others ask for a multiple of the
# profile's count (``settings().max_examples``), so every profile scales them alike.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=150, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("dev", settings.get_profile("default"), max_examples=25)
settings.register_profile("full", settings.get_profile("default"), max_examples=1200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(FAST) as server:
        yield server


@pytest.fixture
def make_runtime_client() -> Callable[..., object]:
    def make(endpoint_url: str | None = None, **config: Any) -> Any:
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config),
        )

    return make


@pytest.fixture
def runtime_client(emulator: EmulatorServer, make_runtime_client, monkeypatch: pytest.MonkeyPatch):
    """A client that reaches the emulator the way the function does: through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", emulator.url)
    return make_runtime_client()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server (every service it implements, one request at a time: ``local_mode/dynamodb.py``) on a free
    port, as its own process: its URL."""
    with serialised_moto(free_port()) as url:
        yield url


@pytest.fixture
def key_table(moto_server: str, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> str:
    """A fresh key table as the stack creates it; boto3 here (the CLI and the function alike) reaches moto through
    AWS_ENDPOINT_URL_DYNAMODB (and STS, for the audit trail's caller; Secrets Manager, for migrations; SNS and
    SQS, for budget alerts)."""
    point_boto3_at(monkeypatch, emulator.url)
    for service in ("DYNAMODB", "STS", "SECRETS_MANAGER", "SNS", "SQS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_server)
    name = f"keys-{time.monotonic_ns()}"
    create_table(boto3.client("dynamodb"), name)
    return name


@pytest.fixture
def start_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppServer]]:
    """Start the function in front of an emulator; settings fields may be overridden."""
    from llm_stream.app import create_app
    from llm_stream.settings import Settings

    started: list[AppServer] = []

    def start(emulator: EmulatorServer, **overrides: Any) -> AppServer:
        point_boto3_at(monkeypatch, emulator.url)
        settings = Settings(**{"endpoint_name": "test-endpoint", "upstream_max_attempts": 1, **overrides})
        server = AppServer(create_app(settings), settings).__enter__()
        started.append(server)
        return server

    yield start
    STOPPING.extend(server.stop() for server in started)  # joined at the session's end


#: The function servers the fixtures asked to stop, each stopping while the next tests run.
STOPPING: list[threading.Thread] = []


@pytest.fixture(scope="session", autouse=True)
def every_function_server_stops() -> Iterator[None]:
    """A server that never stops fails the session, as it would have failed its test."""
    yield
    for thread in STOPPING:
        thread.join(10)
    assert [thread for thread in STOPPING if thread.is_alive()] == [], "a function server did not stop"


@pytest.fixture
def function(emulator: EmulatorServer, start_function) -> AppServer:
    return start_function(emulator)


@pytest.fixture
def request_logs() -> Iterator[LogRecords]:
    with collect_request_logs() as records:
        yield records
