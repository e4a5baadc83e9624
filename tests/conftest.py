"""Shared fixtures: the emulator on an ephemeral port and a real boto3 client pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config

from sagemaker_emulator import EmulatorConfig, EmulatorServer

FAST = EmulatorConfig(ttft_ms=5, token_ms=1)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(FAST) as server:
        yield server


@pytest.fixture
def make_runtime_client() -> Callable[..., object]:
    def make(endpoint_url: str | None = None, **config: object) -> object:
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
