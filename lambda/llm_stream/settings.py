"""The function's settings: read once from the environment, validated, immutable.

This module is the one contract between the stack and the function. Each field names the
environment variable it is read from; ``infra/streaming_stack.py`` builds a :class:`Settings`
for the deployment (so the function's own rules validate it at synth time) and writes it with
:meth:`Settings.to_environment`. The operational defaults below are the deployment's defaults
too (``infra/settings.py`` imports them); model-derived values are always set by the stack,
and their defaults here are the default model's, for local runs.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from .chat_formats import FORMATS
from .families import CAPABILITIES, REGISTERED, ContainerFamily, family
from .key_limits import KeyLimits, LimitsError, parse_limits

_T = TypeVar("_T")

#: The default model and what its container allows (``MAX_TOTAL_TOKENS``, ``MAX_INPUT_LENGTH``).
DEFAULT_MODEL_ID = "huggingface-llm-falcon-7b-instruct-bf16"
DEFAULT_MODEL_MAX_TOTAL_TOKENS = 2048
DEFAULT_MODEL_MAX_INPUT_TOKENS = 1024
#: Prompt characters allowed per input token: generous (English averages about 4 per token) so that
#: the container's own token limit, not this cap, is what normally refuses a long prompt.
INPUT_CHARS_PER_TOKEN = 4
#: ``max_new_tokens`` when a caller asks for nothing.
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: The Lambda timeout the stack sets by default, and the part of it kept back so a stream that
#: runs out of time still ends with an ``error`` event instead of a cut connection.
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 300
TIME_BUDGET_MARGIN_SECONDS = 15
DEFAULT_METRICS_NAMESPACE = "LlmStream"
DEFAULT_SERVICE_NAME = "llm-stream"
#: The default model's chat format (``chat_formats.py``), and what a base model has instead.
DEFAULT_CHAT_FORMAT = "falcon-instruct"
#: The default model's container (``families/``).
DEFAULT_CONTAINER_FAMILY = "tgi"
#: What the default model's container (TGI 2.4.0) can do (``families/``; the catalog records each model's).
DEFAULT_CONTAINER_CAPABILITIES = CAPABILITIES
NO_CHAT_FORMAT = "none"
#: Streams one process serves at once when it is a long-running server (``make dev``).
DEFAULT_MAX_CONCURRENT_STREAMS = 256
#: In Lambda: an instance is sent one request at a time, so one stream would do; the slack covers
#: reader threads of cancelled streams that are still winding down when the next request arrives.
LAMBDA_MAX_CONCURRENT_STREAMS = 4
#: How long a caller waits for a free stream slot before a 503 ``too_many_streams``.
DEFAULT_QUEUE_WAIT_SECONDS = 1.0
#: How long the body may take to arrive once the headers have (a slow or lying client gets a 408).
DEFAULT_BODY_READ_TIMEOUT_SECONDS = 10.0
#: The Web Adapter's readiness check (the stack sets ``AWS_LWA_READINESS_CHECK_PATH`` to it); always open.
READINESS_PATH = "/healthz"
#: Who may call: ``iam`` (the function URL checks SigV4), ``none`` (anyone), ``api_key`` (the function
#: checks a key). Locally nothing stands in front of the function, so its default is ``none``.
AUTH_MODES = ("iam", "none", "api_key")
#: api_key auth: how often the key document is read again (so a revocation takes effect within it), and
#: for how many such intervals a last good copy keeps serving while reads fail.
DEFAULT_API_KEYS_REFRESH_SECONDS = 60.0
DEFAULT_API_KEYS_MAX_STALE_INTERVALS = 5
#: api_key auth with a table: what a request gets when the table cannot be reached in time to admit it:
#: ``allow`` (served uncounted, logged, metered and alarmed) or ``refuse`` (503 ``limits_unavailable``).
LIMITS_UNAVAILABLE_CHOICES = ("allow", "refuse")
#: A lease outlives the function's timeout by this much, so it is never taken from an answer still running.
LEASE_MARGIN_SECONDS = 60
#: Scale to zero: how long waking the model from zero copies is expected to take (instance provisioning,
#: artifact download, container start), which sets the ``Retry-After`` of a 503 ``model_waking_up``. AWS
#: measured about 5 minutes for an 8B model with fast model loading (its scale-to-zero launch post); a TGI
#: container without it loads more slowly.
DEFAULT_WAKE_UP_SECONDS = 480


#: What the function's own settings may take of Lambda's 4 KB of environment variables (the rest is the Web
#: Adapter's and the wrapper's, about 200 bytes).
ENVIRONMENT_BUDGET_BYTES = 3800


class SettingsError(ValueError):
    """An environment variable is missing or has a value outside what is allowed."""


@dataclass(frozen=True)
class ServedModel:
    """One of several models on the endpoint (``MODELS``): the settings a model decides, and its inference
    component. The deployment's own fields of these names are the first model's."""

    model_id: str
    model_max_total_tokens: int
    max_new_tokens: int
    max_input_chars: int
    chat_format: str
    container_family: str
    container_capabilities: tuple[str, ...]
    inference_component_name: str

    @classmethod
    def from_json(cls, entry: object, where: str) -> ServedModel:
        if not isinstance(entry, dict) or set(entry) != set(SERVED_FIELDS):
            raise ValueError(f"{where} must be an object with exactly {', '.join(SERVED_FIELDS)}")
        for name, kind in _SERVED_TYPES.items():
            value: Any = entry[name]
            if not (isinstance(value, kind) and not isinstance(value, bool)) or (
                    isinstance(value, list) and not all(isinstance(item, str) for item in value)):
                raise ValueError(f"{where}.{name} must be {'a list of strings' if kind is list else kind.__name__}")
        return cls(**{**entry, "container_capabilities": tuple(entry["container_capabilities"])})

    def to_json(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((name, getattr(self, name)) for name in SERVED_FIELDS)}


SERVED_FIELDS = tuple(served.name for served in fields(ServedModel))
_SERVED_TYPES: dict[str, type] = {"model_id": str, "model_max_total_tokens": int, "max_new_tokens": int,
                                  "max_input_chars": int, "chat_format": str, "container_family": str,
                                  "container_capabilities": list, "inference_component_name": str}


def _env(name: str, default: _T, opt_in: bool = False) -> _T:
    """A field read from the environment variable ``name``; an ``opt_in`` feature's field is written only
    when it is not its default, so a deployment without the feature has the environment it had before."""
    return field(default=default, metadata={"env": name, "opt_in": opt_in})


@dataclass(frozen=True)
class Settings:
    #: SageMaker endpoint the function streams from (required).
    endpoint_name: str = field(metadata={"env": "SAGEMAKER_ENDPOINT_NAME"})
    #: JumpStart model id, for logs and the ``done`` event.
    model_id: str = _env("MODEL_ID", DEFAULT_MODEL_ID)
    #: The model container's MAX_TOTAL_TOKENS (input + generated).
    model_max_total_tokens: int = _env("MODEL_MAX_TOTAL_TOKENS", DEFAULT_MODEL_MAX_TOTAL_TOKENS)
    #: Cap on ``max_new_tokens`` / ``max_tokens`` a caller may ask for.
    max_new_tokens: int = _env("MAX_NEW_TOKENS", DEFAULT_MODEL_MAX_TOTAL_TOKENS - DEFAULT_MODEL_MAX_INPUT_TOKENS)
    #: ``max_new_tokens`` used when the caller gives none.
    default_max_new_tokens: int = _env("DEFAULT_MAX_NEW_TOKENS", DEFAULT_MAX_NEW_TOKENS)
    #: Cap on the prompt: characters of ``inputs``, or of all message contents together.
    max_input_chars: int = _env("MAX_INPUT_CHARS", INPUT_CHARS_PER_TOKEN * DEFAULT_MODEL_MAX_INPUT_TOKENS)
    #: Cap on the request body.
    max_body_bytes: int = _env("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    #: A stream still running after this many seconds ends with an ``error`` event.
    time_budget_seconds: float = _env("TIME_BUDGET_SECONDS",
                                      float(DEFAULT_FUNCTION_TIMEOUT_SECONDS - TIME_BUDGET_MARGIN_SECONDS))
    upstream_connect_timeout_seconds: float = _env("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 5.0)
    #: Longest silence tolerated from the endpoint, first token included.
    upstream_read_timeout_seconds: float = _env("UPSTREAM_READ_TIMEOUT_SECONDS", 60.0)
    #: Attempts for the invoke call itself (throttling, 5xx); never retried once bytes have streamed.
    upstream_max_attempts: int = _env("UPSTREAM_MAX_ATTEMPTS", 2)
    #: Streams served at once by one process.
    max_concurrent_streams: int = _env("MAX_CONCURRENT_STREAMS", DEFAULT_MAX_CONCURRENT_STREAMS)
    #: Longest wait for a stream slot; 0 refuses at once when every slot is busy.
    queue_wait_seconds: float = _env("QUEUE_WAIT_SECONDS", DEFAULT_QUEUE_WAIT_SECONDS)
    body_read_timeout_seconds: float = _env("BODY_READ_TIMEOUT_SECONDS", DEFAULT_BODY_READ_TIMEOUT_SECONDS)
    #: Web origins (besides the function's own) whose pages may call it; ``*`` allows any.
    cors_origins: tuple[str, ...] = _env("CORS_ORIGINS", ())
    #: Log prompt text (off by default: prompts may hold personal data).
    log_prompts: bool = _env("LOG_PROMPTS", False)
    #: CloudWatch namespace and ``Service`` dimension of the function's metrics (EMF).
    metrics_namespace: str = _env("METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE)
    service_name: str = _env("SERVICE_NAME", DEFAULT_SERVICE_NAME)
    #: How a conversation becomes the model's prompt (``chat_formats.py``); ``none`` for a base model.
    chat_format: str = _env("CHAT_FORMAT", DEFAULT_CHAT_FORMAT)
    #: The model container's request and stream dialect (``families/``): ``tgi`` or ``lmi``.
    container_family: str = _env("CONTAINER_FAMILY", DEFAULT_CONTAINER_FAMILY)
    #: What the model's pinned container can do (of ``families.CAPABILITIES``): structured output and tools
    #: need ``grammar`` and ``tools``, ``logprobs`` and ``top_logprobs`` the token log probabilities.
    container_capabilities: tuple[str, ...] = _env("CONTAINER_CAPABILITIES", DEFAULT_CONTAINER_CAPABILITIES)
    #: One of :data:`AUTH_MODES`; only ``api_key`` changes what the function does.
    auth_mode: str = _env("AUTH_MODE", "none")
    #: api_key auth: the key document's Secrets Manager secret (ARN or name), or its file (local runs).
    api_keys_secret_id: str = _env("API_KEYS_SECRET_ID", "")
    api_keys_file: str = _env("API_KEYS_FILE", "")
    #: api_key auth: the DynamoDB table of key records, limit state and usage (``limits_table.py``). With a
    #: secret as well, that secret is an older deployment's key document, read until it is copied in.
    api_keys_table: str = _env("API_KEYS_TABLE", "", opt_in=True)
    #: Limits for keys without their own, as ``max_streams=4 rpm=60`` (``key_limits.py``; "": none).
    key_limit_defaults: str = _env("KEY_LIMIT_DEFAULTS", "", opt_in=True)
    limits_unavailable: str = _env("LIMITS_UNAVAILABLE", "allow", opt_in=True)
    #: The SNS topic a key's budget alerts go to (80 % and 100 % of its monthly_tokens; "": the log line only).
    budget_alerts_topic_arn: str = _env("BUDGET_ALERTS_TOPIC_ARN", "", opt_in=True)
    api_keys_refresh_seconds: float = _env("API_KEYS_REFRESH_SECONDS", DEFAULT_API_KEYS_REFRESH_SECONDS)
    api_keys_max_stale_intervals: int = _env("API_KEYS_MAX_STALE_INTERVALS", DEFAULT_API_KEYS_MAX_STALE_INTERVALS)
    #: Scale to zero: the endpoint's inference component, named in every invocation ("": none).
    inference_component_name: str = _env("INFERENCE_COMPONENT_NAME", "", opt_in=True)
    #: Several models on the endpoint, each an inference component (JSON, ``ServedModel`` entries; the first is
    #: the one the fields above describe, and the default where a request names none). Empty: one model.
    served_models: tuple[ServedModel, ...] = _env("MODELS", (), opt_in=True)
    #: Scale to zero: how long waking the model is expected to take (the 503's ``Retry-After`` counts it down).
    wake_up_seconds: int = _env("WAKE_UP_SECONDS", DEFAULT_WAKE_UP_SECONDS, opt_in=True)
    #: Set by Lambda itself in every execution environment (a reserved variable; never by the stack): only
    #: there does the Web Adapter stand in front and write ``x-amzn-lambda-context``, replacing what a
    #: caller sent. Elsewhere (``make dev``) that header comes from the caller and is not read.
    lambda_runtime_api: str = _env("AWS_LAMBDA_RUNTIME_API", "", opt_in=True)

    def __post_init__(self) -> None:
        _require(bool(self.endpoint_name.strip()), "endpoint_name", self.endpoint_name, "a non-empty name")
        for name in ("model_max_total_tokens", "max_new_tokens", "default_max_new_tokens", "max_input_chars",
                     "max_body_bytes", "upstream_max_attempts", "max_concurrent_streams",
                     "api_keys_max_stale_intervals", "wake_up_seconds"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        _require(self.chat_format in (NO_CHAT_FORMAT, *FORMATS), "chat_format", self.chat_format,
                 f"{NO_CHAT_FORMAT} (a base model) or one of {', '.join(FORMATS)}")
        _require(self.container_family in REGISTERED, "container_family", self.container_family,
                 f"one of {', '.join(REGISTERED)}")
        _require(all(name in CAPABILITIES for name in self.container_capabilities), "container_capabilities",
                 ",".join(self.container_capabilities), f"names among {', '.join(CAPABILITIES)}")
        _require(self.queue_wait_seconds >= 0, "queue_wait_seconds", self.queue_wait_seconds, "a number >= 0")
        for name in ("time_budget_seconds", "upstream_connect_timeout_seconds", "upstream_read_timeout_seconds",
                     "body_read_timeout_seconds", "api_keys_refresh_seconds"):
            value = getattr(self, name)
            _require(value > 0 and math.isfinite(value), name, value, "a finite number > 0")
        _require(self.max_new_tokens < self.model_max_total_tokens, "max_new_tokens", self.max_new_tokens,
                 f"less than MODEL_MAX_TOTAL_TOKENS ({self.model_max_total_tokens})")
        _require(self.default_max_new_tokens <= self.max_new_tokens, "default_max_new_tokens",
                 self.default_max_new_tokens, f"at most MAX_NEW_TOKENS ({self.max_new_tokens})")
        _require(self.auth_mode in AUTH_MODES, "auth_mode", self.auth_mode, f"one of {', '.join(AUTH_MODES)}")
        key_sources = [name for name in ("api_keys_table", "api_keys_secret_id", "api_keys_file")
                       if getattr(self, name)]
        if self.auth_mode == "api_key":
            _require(key_sources in (["api_keys_table"], ["api_keys_table", "api_keys_secret_id"],
                                     ["api_keys_secret_id"], ["api_keys_file"]), "api_keys_table", self.api_keys_table,
                     f"with AUTH_MODE=api_key, {env_name('api_keys_table')} (and, while an older deployment's keys "
                     f"are copied in, {env_name('api_keys_secret_id')}), or one of {env_name('api_keys_secret_id')} "
                     f"and {env_name('api_keys_file')}")
        for name in key_sources:
            _require(self.auth_mode == "api_key", name, getattr(self, name), "nothing unless AUTH_MODE=api_key")
        try:
            KeyLimits(**parse_limits(self.key_limit_defaults))
        except LimitsError as exc:
            raise SettingsError(f"{env_name('key_limit_defaults')}={self.key_limit_defaults!r} is not valid: "
                                f"{exc}") from None
        _require(not self.key_limit_defaults or bool(self.api_keys_table), "key_limit_defaults",
                 self.key_limit_defaults, f"nothing unless {env_name('api_keys_table')} is set (limits are kept there)")
        _require(not self.budget_alerts_topic_arn or bool(self.api_keys_table), "budget_alerts_topic_arn",
                 self.budget_alerts_topic_arn, f"nothing unless {env_name('api_keys_table')} is set")
        _require(self.limits_unavailable in LIMITS_UNAVAILABLE_CHOICES, "limits_unavailable", self.limits_unavailable,
                 f"one of {', '.join(LIMITS_UNAVAILABLE_CHOICES)}")
        if self.served_models:
            self._check_served_models()

    def _check_served_models(self) -> None:
        ids = [served.model_id for served in self.served_models]
        shown = ",".join(ids)
        _require(len(ids) >= 2, "served_models", shown, "two models or more (one model needs no MODELS)")
        _require(len(set(ids)) == len(ids), "served_models", shown, "each model once")
        _require(len({served.inference_component_name for served in self.served_models}) == len(ids)
                 and all(served.inference_component_name for served in self.served_models), "served_models", shown,
                 "each model with an inference component of its own")
        first = self.served_models[0]
        _require(all(getattr(self, name) == getattr(first, name) for name in SERVED_FIELDS), "served_models", shown,
                 f"the first model's fields equal to this deployment's own ({env_name('model_id')}, ...)")
        self._other_models  # noqa: B018 (each model's settings derived once, valid as a deployment's)

    @property
    def in_lambda(self) -> bool:
        """Whether the function runs in Lambda, behind the Web Adapter."""
        return bool(self.lambda_runtime_api)

    @property
    def family(self) -> ContainerFamily:
        return family(self.container_family)

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The models served here, the default first."""
        return tuple(served.model_id for served in self.served_models) or (self.model_id,)

    def for_model(self, model_id: str) -> Settings | None:
        """The settings for requests to ``model_id`` (these, for the default model); ``None``: not served."""
        return self if model_id == self.model_id else self._other_models.get(model_id)

    @functools.cached_property
    def _other_models(self) -> dict[str, Settings]:
        """Each other served model's settings, derived (and validated, naming the entry at fault) once."""
        derived = {}
        for index, served in enumerate(self.served_models[1:], start=1):
            try:
                derived[served.model_id] = replace(
                    self, served_models=(),
                    default_max_new_tokens=min(self.default_max_new_tokens, served.max_new_tokens),
                    **{name: getattr(served, name) for name in SERVED_FIELDS})
            except SettingsError as exc:
                raise SettingsError(f"{env_name('served_models')}: model {index} ({served.model_id}): {exc}") from None
        return derived

    def can(self, capability: str) -> bool:
        """Whether the model's container has this capability (``families.CAPABILITIES``): listed, and one some
        version of its family has (so an LMI container never claims ``grammar``, whatever the list says). The
        family's rules are read on first use, after ready (its module builds pydantic models)."""
        return capability in self.container_capabilities and capability in self._possible_capabilities

    @functools.cached_property
    def _possible_capabilities(self) -> frozenset[str]:
        return frozenset(rule.capability for rule in self.family.capability_rules if rule.since)

    @property
    def default_limits(self) -> KeyLimits:
        """The limits of keys without their own."""
        return KeyLimits(**parse_limits(self.key_limit_defaults))

    @property
    def lease_seconds(self) -> float:
        """How long a stream's lease lasts if its holder vanishes: past any invocation's end."""
        return self.time_budget_seconds + TIME_BUDGET_MARGIN_SECONDS + LEASE_MARGIN_SECONDS

    @property
    def api_keys_max_age_seconds(self) -> float:
        """How old the last good copy of the keys may be before requests are refused (fail closed)."""
        return self.api_keys_refresh_seconds * self.api_keys_max_stale_intervals

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from its environment variable; unset or empty ones keep their default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            raw = environ.get(env_name(setting.name))
            if raw is not None and raw != "":
                values[setting.name] = _convert(env_name(setting.name), raw, _PARSERS[str(setting.type)])
        if "endpoint_name" not in values:
            raise SettingsError("SAGEMAKER_ENDPOINT_NAME is not set: name the SageMaker endpoint to stream from")
        return cls(**values)

    def to_environment(self) -> dict[str, str]:
        """The environment variables :meth:`from_env` reads back into these settings; refused when they would
        not leave room for the rest within Lambda's 4 KB for all of a function's variables."""
        environment = {env_name(setting.name): _format(getattr(self, setting.name)) for setting in fields(self)
                       if not setting.metadata.get("opt_in") or getattr(self, setting.name) != setting.default}
        size = sum(len(name) + len(value) for name, value in environment.items())
        _require(size <= ENVIRONMENT_BUDGET_BYTES, "served_models", f"{len(self.served_models)} models",
                 f"settings within {ENVIRONMENT_BUDGET_BYTES} bytes of environment (these take {size}; Lambda "
                 "allows 4 KB for all of a function's variables): fewer models")
        return environment


def env_name(field_name: str) -> str:
    """The environment variable a field is read from."""
    return str(_FIELDS[field_name].metadata["env"])


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_served_models(raw: str) -> tuple[ServedModel, ...]:
    entries = json.loads(raw)
    if not isinstance(entries, list):
        raise ValueError("expected a JSON list of models")
    return tuple(ServedModel.from_json(entry, f"model {index}") for index, entry in enumerate(entries))


def _format(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], ServedModel):
        return json.dumps([served.to_json() for served in value], separators=(",", ":"))
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Field types are strings here (``from __future__ import annotations``).
_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _parse_bool,
                                             "tuple[str, ...]": _parse_list,
                                             "tuple[ServedModel, ...]": _parse_served_models}
_FIELDS = {setting.name: setting for setting in fields(Settings)}


def _convert(env: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{env}={raw!r} is not valid: {exc}") from None


def _require(ok: bool, field_name: str, value: object, allowed: str) -> None:
    if not ok:
        raise SettingsError(f"{env_name(field_name)}={value!r} is not valid: expected {allowed}")
