"""The function's settings: read once from the environment, validated, immutable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class SettingsError(ValueError):
    """An environment variable is missing or has a value outside what is allowed."""


@dataclass(frozen=True)
class Settings:
    #: SageMaker endpoint the function streams from (``SAGEMAKER_ENDPOINT_NAME``, required).
    endpoint_name: str
    #: JumpStart model id, for logs and the ``done`` event.
    model_id: str = "huggingface-llm-falcon-7b-instruct-bf16"
    #: The model container's MAX_TOTAL_TOKENS (input + generated).
    model_max_total_tokens: int = 2048
    #: Cap on ``max_new_tokens`` / ``max_tokens`` a caller may ask for.
    max_new_tokens: int = 1024
    #: ``max_new_tokens`` used when the caller gives none.
    default_max_new_tokens: int = 256
    #: Cap on the prompt: characters of ``inputs``, or of all message contents together.
    max_input_chars: int = 8000
    #: Cap on the request body.
    max_body_bytes: int = 65536
    #: A stream still running after this many seconds ends with an ``error`` event (keep it
    #: below the function timeout so the client gets an answer rather than a cut connection).
    time_budget_seconds: float = 270.0
    upstream_connect_timeout_seconds: float = 5.0
    #: Longest silence tolerated from the endpoint, first token included.
    upstream_read_timeout_seconds: float = 60.0
    #: Attempts for the invoke call itself (throttling, 5xx); never retried once bytes have streamed.
    upstream_max_attempts: int = 2
    #: Streams served at once by one process (a Lambda instance serves one; `make dev` many).
    max_concurrent_streams: int = 256
    #: Log prompt text (off by default: prompts may hold personal data).
    log_prompts: bool = False
    #: CloudWatch namespace and ``Service`` dimension of the function's metrics (EMF).
    metrics_namespace: str = "LlmStream"
    service_name: str = "llm-stream"
    #: Whether the container answers Messages API payloads (TGI >= 2.4); otherwise they are refused.
    messages_api: bool = True

    def __post_init__(self) -> None:
        _require(bool(self.endpoint_name.strip()), "SAGEMAKER_ENDPOINT_NAME", self.endpoint_name, "a non-empty name")
        for name in ("model_max_total_tokens", "max_new_tokens", "default_max_new_tokens", "max_input_chars",
                     "max_body_bytes", "upstream_max_attempts", "max_concurrent_streams"):
            value = getattr(self, name)
            _require(value >= 1, _env_name(name), value, "an integer >= 1")
        for name in ("time_budget_seconds", "upstream_connect_timeout_seconds", "upstream_read_timeout_seconds"):
            value = getattr(self, name)
            _require(value > 0, _env_name(name), value, "a number > 0")
        _require(self.max_new_tokens < self.model_max_total_tokens, "MAX_NEW_TOKENS", self.max_new_tokens,
                 f"less than MODEL_MAX_TOTAL_TOKENS ({self.model_max_total_tokens})")
        _require(self.default_max_new_tokens <= self.max_new_tokens, "DEFAULT_MAX_NEW_TOKENS",
                 self.default_max_new_tokens, f"at most MAX_NEW_TOKENS ({self.max_new_tokens})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build from environment variables named like the fields in upper case."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            env = _env_name(field.name)
            raw = environ.get(env)
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(env, raw, _PARSERS[field.type])
        if "endpoint_name" not in values:
            raise SettingsError("SAGEMAKER_ENDPOINT_NAME is not set: name the SageMaker endpoint to stream from")
        return cls(**values)


def _env_name(field_name: str) -> str:
    return "SAGEMAKER_ENDPOINT_NAME" if field_name == "endpoint_name" else field_name.upper()


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _parse_bool}


def _convert(env: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{env}={raw!r} is not valid: {exc}") from None


def _require(ok: bool, env: str, value: object, allowed: str) -> None:
    if not ok:
        raise SettingsError(f"{env}={value!r} is not valid: expected {allowed}")
