"""The function under its real server, and the emulator, on loopback; boto3 pointed at the emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from local_mode.servers import REAL_CREDENTIAL_VARIABLES, emulator_aws_environment
from sagemaker_emulator import EmulatorConfig, EmulatorServer

FAST = EmulatorConfig(ttft_ms=5, token_ms=1)
#: The inference component of a scaled-to-zero emulator (``scaled_to_zero``).
TEST_COMPONENT = "test-component"


def scaled_to_zero(warm_up_seconds: float = 0.5, **config: Any) -> EmulatorServer:
    """An emulator whose endpoint hosts its model as an inference component with no copy yet: the first
    invocation is refused and starts the warm-up (use it as a context manager)."""
    return EmulatorServer(EmulatorConfig(ttft_ms=5, token_ms=1, inference_component=TEST_COMPONENT, initial_copies=0,
                                         warm_up_seconds=warm_up_seconds, **config))


def several_models(model_ids: str, **emulator_options: str) -> tuple[EmulatorServer, dict[str, Any]]:
    """An emulator hosting these catalog models (``a,b``) as inference components, and the function settings
    for them, both as local mode makes them (``local_mode.servers.model_arguments``); start the emulator."""
    from llm_stream.settings import SERVED_FIELDS, Settings
    from local_mode.servers import model_arguments
    from sagemaker_emulator.__main__ import _config, parse_args

    environment, arguments = model_arguments(model_ids)
    settings = Settings.from_env(environment)
    options = [part for name, value in emulator_options.items() for part in (f"--{name.replace('_', '-')}", value)]
    emulator = EmulatorServer(_config(parse_args([*arguments, "--ttft-ms", "0", "--token-ms", "0", *options])))
    return emulator, {name: getattr(settings, name) for name in (*SERVED_FIELDS, "served_models")}


def component_copies(emulator: EmulatorServer) -> int:
    """The copies of a scaled-to-zero emulator's model now (idle time and warm-up applied)."""
    assert emulator.capacity is not None, "not an emulator of an endpoint with an inference component"
    return int(emulator.capacity.state()["copies"])


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

    def stop(self) -> threading.Thread:
        """Ask the server to stop, and return its thread to join: uvicorn takes 0.1 to 0.2 s to stop (a
        tick of its main loop, then a fixed pause for connections), which a test need not wait for."""
        self.server.should_exit = True
        return self._thread

    def __exit__(self, *exc_info: object) -> None:
        self.stop().join(10)


def point_boto3_at(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    """This process's boto3 clients reach the emulator, exactly as the local function's do."""
    for key, value in emulator_aws_environment(emulator_url).items():
        monkeypatch.setenv(key, value)
    for key in REAL_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(key, raising=False)
