"""Shared fixtures: the emulator on an ephemeral port and a real boto3 client pointed at it."""

from __future__ import annotations

import contextlib
import json
import logging
import os

# jsii (aws-cdk-lib) prints a banner on Node 20 unless told it is known.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, settings

from local_mode.servers import REAL_CREDENTIAL_VARIABLES, emulator_aws_environment, free_port
from sagemaker_emulator import EmulatorConfig, EmulatorServer
from tests import ROOT

FAST = EmulatorConfig(ttft_ms=5, token_ms=1)
#: The inference component of a scaled-to-zero emulator (``scaled_to_zero``).
TEST_COMPONENT = "test-component"


def scaled_to_zero(warm_up_seconds: float = 0.5, **config: Any) -> EmulatorServer:
    """An emulator whose endpoint hosts its model as an inference component with no copy yet: the first
    invocation is refused and starts the warm-up (use it as a context manager)."""
    return EmulatorServer(EmulatorConfig(ttft_ms=5, token_ms=1, inference_component=TEST_COMPONENT, initial_copies=0,
                                         warm_up_seconds=warm_up_seconds, **config))

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


class AppServer:
    """The function's app under its real server (uvicorn, configured as in Lambda), on an ephemeral port."""

    def __init__(self, app: Any, settings: Any) -> None:
        import uvicorn

        from llm_stream.serve import server_config

        self.server = uvicorn.Server(server_config(app, settings, port=0))
        self._thread = threading.Thread(target=self.server.run, name="function-under-test", daemon=True)

    def __enter__(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server (every service it implements) on a free port, as its own process: its URL."""
    port = free_port()
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "moto_server"), "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "moto_server did not start"
            assert process.poll() is None, "moto_server exited"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def point_boto3_at(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    """This process's boto3 clients reach the emulator, exactly as the local function's do."""
    for key, value in emulator_aws_environment(emulator_url).items():
        monkeypatch.setenv(key, value)
    for key in REAL_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(key, raising=False)


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
    for server in started:
        server.__exit__()


@pytest.fixture
def function(emulator: EmulatorServer, start_function) -> AppServer:
    return start_function(emulator)


class LogRecords(list[dict[str, Any]]):
    """Request log lines as they are emitted (the last one comes after the response has ended)."""

    def wait_for(self, count: int, timeout: float = 5.0) -> LogRecords:
        deadline = time.monotonic() + timeout
        while len(self) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self


@contextlib.contextmanager
def collect_request_logs() -> Iterator[LogRecords]:
    """The function's request log lines, parsed, while the block runs."""
    records = LogRecords()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(record.getMessage()))

    logger = logging.getLogger("llm_stream.requests")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def request_logs() -> Iterator[LogRecords]:
    with collect_request_logs() as records:
        yield records
