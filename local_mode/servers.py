"""Start the emulator and the function (its server, exactly as run.sh starts it in Lambda) on loopback."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ENDPOINT_NAME = "local-endpoint"
READY_TIMEOUT_SECONDS = 30.0
#: The consumer name of the one key a local run with ``--api-key`` accepts.
LOCAL_KEY_NAME = "local"
#: A local run with ``--scale-to-zero``: the endpoint's inference component, and how long its first copy
#: takes to wake (seconds here, minutes deployed).
LOCAL_INFERENCE_COMPONENT = "local-component"
LOCAL_WAKE_UP_SECONDS = 15


class LocalModeError(RuntimeError):
    """A local server did not start or exited early."""


@dataclass(frozen=True)
class LocalServers:
    function_url: str
    emulator_url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Variables that would make boto3 use a real account's credentials instead of the dummy ones.
REAL_CREDENTIAL_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_PROFILE")


def emulator_aws_environment(emulator_url: str) -> dict[str, str]:
    """boto3 pointed at the emulator with dummy credentials (unset :data:`REAL_CREDENTIAL_VARIABLES` too)."""
    return {
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def function_environment(emulator_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What Lambda would give the function, with boto3 pointed at the emulator."""
    env = {
        **{key: value for key, value in os.environ.items() if key not in REAL_CREDENTIAL_VARIABLES},
        **emulator_aws_environment(emulator_url),
        "SAGEMAKER_ENDPOINT_NAME": LOCAL_ENDPOINT_NAME,
        "PYTHONPATH": str(ROOT / "lambda"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalModeError(f"{name} exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback http URL built here)
                if response.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise LocalModeError(f"{name} was not ready at {url} after {READY_TIMEOUT_SECONDS:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def model_arguments(model_ids: str, copies: int = 1) -> tuple[dict[str, str], list[str]]:
    """The function's environment and the emulator's arguments for running as catalog models (``a`` or
    ``a,b``): the settings a deployment of them gives the function (``infra.function_settings.model_settings``),
    and their containers. Several models are inference components of one endpoint, each named by its model id,
    the first the default, each with ``copies`` at start (0: scaled to zero)."""
    from infra.catalog import CatalogError, load_catalog
    from infra.function_settings import FunctionSettings, ServedModel, model_settings

    ids = [model_id.strip() for model_id in model_ids.split(",") if model_id.strip()]
    if len(set(ids)) != len(ids):
        raise LocalModeError(f"{model_ids!r}: name each model once")
    try:
        models = [load_catalog().get(model_id) for model_id in ids]
    except CatalogError as exc:
        raise LocalModeError(str(exc)) from None
    if len(models) == 1:
        (model,) = models
        settings = FunctionSettings(endpoint_name=LOCAL_ENDPOINT_NAME, **model_settings(model))
        return settings.to_environment(), ["--container", model.container_family, "--container-version",
                                           model.container_version, "--max-total-tokens", str(model.max_total_tokens)]
    served = tuple(ServedModel(**model_settings(model), inference_component_name=model.model_id) for model in models)
    settings = FunctionSettings(endpoint_name=LOCAL_ENDPOINT_NAME, **model_settings(models[0]),
                                inference_component_name=models[0].model_id, served_models=served)
    components = [f"{model.model_id}={model.container_family}:{model.container_version}:{model.max_total_tokens}"
                  f":{copies}" for model in models]
    return settings.to_environment(), [argument for component in components for argument in ("--component",
                                                                                              component)]


@contextmanager
def local_servers(
    port: int | None = None,
    emulator_port: int | None = None,
    emulator_args: list[str] | None = None,
    function_env: Mapping[str, str] | None = None,
    quiet: bool = True,
    api_key: str | None = None,
    model_id: str | None = None,
    wake_up_seconds: float | None = None,
    limits: str = "",
) -> Iterator[LocalServers]:
    """Run both processes until the block ends; ports default to free ones. With ``api_key``, the function
    runs with api_key auth and accepts that one key, with ``limits`` (``max_streams=2 rpm=30``), from a key
    table in a DynamoDB API on loopback (``dynamodb.py``), as deployed. With ``model_id``, both run as that
    catalog model (its settings, its container's formats). With ``wake_up_seconds``, the model is an
    inference component scaled to zero, which wakes that long after the first request (``scale_to_zero=true``
    deployed)."""
    if limits and not api_key:
        raise LocalModeError("limits are per API key: give an API key too (make dev API_KEY=... LIMITS=...)")
    several = bool(model_id and "," in model_id)
    model_env, model_emulator_args = (model_arguments(model_id, 0 if several and wake_up_seconds is not None else 1)
                                      if model_id else ({}, []))
    zero_env, zero_args = ({}, []) if wake_up_seconds is None else scale_to_zero_arguments(wake_up_seconds, several)
    with contextlib.ExitStack() as stack:
        key_env = stack.enter_context(_key_table(api_key, limits)) if api_key else {}
        env = {**model_env, **zero_env, **(function_env or {}), **key_env}
        arguments = [*model_emulator_args, *zero_args, *(emulator_args or [])]
        with _processes(port, emulator_port, arguments, env, quiet) as servers:
            yield servers


def scale_to_zero_arguments(wake_up_seconds: float, several: bool = False) -> tuple[dict[str, str], list[str]]:
    """The function's environment and the emulator's arguments for a model scaled to zero (``several``: the
    models' components, each at zero already, and each waking on its own)."""
    from infra.function_settings import function_settings

    wake_up = {function_settings.env_name("wake_up_seconds"): str(math.ceil(wake_up_seconds))}
    if several:
        return wake_up, ["--warm-up-seconds", str(wake_up_seconds)]
    environment = {function_settings.env_name("inference_component_name"): LOCAL_INFERENCE_COMPONENT, **wake_up}
    return (environment,
            ["--inference-component", LOCAL_INFERENCE_COMPONENT, "--initial-copies", "0",
             "--warm-up-seconds", str(wake_up_seconds)])


@contextmanager
def _key_table(api_key: str, limits: str) -> Iterator[dict[str, str]]:
    """A DynamoDB API on loopback with the key table, holding one key: the function's environment for it."""
    import boto3

    from llm_stream.key_limits import KeyLimits, LimitsError, parse_limits
    from stream_client.key_admin import KeyAdmin
    from stream_client.key_document import KeyRecord, KeyRing, api_keys

    from .dynamodb import LOCAL_TABLE_NAME, create_table, serialised_moto

    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise LocalModeError("the API key must be printable ASCII without spaces (as issued keys are)")
    try:
        key_limits = KeyLimits(**parse_limits(limits))
    except LimitsError as exc:
        raise LocalModeError(f"LIMITS: {exc}") from None
    with serialised_moto(free_port()) as url:
        dummy = emulator_aws_environment(url)  # the function's credentials and region, dummies
        client = boto3.client("dynamodb", endpoint_url=url, region_name=dummy["AWS_REGION"],
                              aws_access_key_id=dummy["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=dummy["AWS_SECRET_ACCESS_KEY"])
        create_table(client, LOCAL_TABLE_NAME)
        record = KeyRecord(name=LOCAL_KEY_NAME, sha256=api_keys.key_digest(api_key), created_at=datetime.now(UTC),
                           limits=key_limits)
        KeyAdmin(client, LOCAL_TABLE_NAME, "local_mode").import_keys(KeyRing((record,)), "local run (make dev)")
        yield {"AUTH_MODE": "api_key", "API_KEYS_TABLE": LOCAL_TABLE_NAME, "AWS_ENDPOINT_URL_DYNAMODB": url}


@contextmanager
def _processes(
    port: int | None,
    emulator_port: int | None,
    emulator_args: list[str] | None,
    function_env: Mapping[str, str] | None,
    quiet: bool,
) -> Iterator[LocalServers]:
    port = port or free_port()
    emulator_port = emulator_port or free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    function_url = f"http://127.0.0.1:{port}"
    output = subprocess.DEVNULL if quiet else None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        emulator = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, "-m", "sagemaker_emulator", "--port", str(emulator_port),
             "--endpoint", LOCAL_ENDPOINT_NAME, *(emulator_args or [])],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=output, stderr=output,
        )
        processes.append(emulator)
        function = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, "-m", "llm_stream.serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT / "lambda", env=function_environment(emulator_url, function_env), stdout=output, stderr=output,
        )
        processes.append(function)
        _wait_ready(f"{emulator_url}/_emulator/health", emulator, "the emulator")
        _wait_ready(f"{function_url}/healthz", function, "the function")
        yield LocalServers(function_url=function_url, emulator_url=emulator_url)
    finally:
        for process in reversed(processes):
            _stop(process)
