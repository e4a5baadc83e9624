"""Deployment settings: one typed object, read once from CDK context, validated with clear errors.

Deployment keys have their defaults in ``cdk.json``; keys that only shape the function's settings
(caps, timeout, prompt logging) default to the function's own defaults (``lambda/llm_stream/settings.py``),
so each default lives in one place. ``cdk deploy -c key=value`` overrides any of them (values given on
the command line arrive as strings and are converted here).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from aws_cdk import aws_logs as logs

from llm_stream.key_limits import LIMITS as KEY_LIMITS
from llm_stream.key_limits import KeyLimits, LimitsError, parse_limits

from . import web_adapter
from .catalog import Catalog, CatalogError, CatalogModel, load_catalog
from .function_settings import FunctionSettings, ServedModel, function_settings, model_settings
from .hosted_models import HostedModel, ModelsError, default_instance_type, hosted_on, instances_for, parse_models
from .instance_types import INSTANCE_HARDWARE

#: CloudWatch Logs retention periods CloudFormation accepts (days), as the L2 construct's enum.
LOG_RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS, 120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS, 545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS, 1096: logs.RetentionDays.THREE_YEARS, 1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS, 2557: logs.RetentionDays.SEVEN_YEARS, 2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}
LAMBDA_MAX_TIMEOUT_SECONDS = 900
ENDPOINT_NAME_MAX_LENGTH = 63
TIME_BUDGET_MARGIN_SECONDS = function_settings.TIME_BUDGET_MARGIN_SECONDS
_NAME_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,23}$")
_ORIGIN = re.compile(r"^(\*|https?://[A-Za-z0-9.-]+(:\d+)?)$")

CONTEXT_KEYS = (
    "model", "instance_type", "auth", "min_instances", "max_instances", "target_invocations_per_instance",
    "cors_origins", "max_new_tokens", "default_max_new_tokens", "max_input_chars", "max_body_bytes",
    "reserved_concurrency", "function_timeout_seconds", "function_memory_mb", "log_retention_days", "name_prefix",
    "web_adapter_layer_version", "log_prompts", "model_latency_alarm_seconds", "api_keys_refresh_seconds",
    "api_keys_max_stale_intervals", "lmi_max_model_len", "scale_to_zero", "scale_to_zero_after_minutes",
    "key_limits", "limits_unavailable", "models",
)
#: Keys the CDK CLI and framework write themselves (besides the ``@aws-cdk...`` feature flags, the
#: ``aws:cdk:...`` keys and lookup caches such as ``availability-zones:account=...:region=...``, which all hold
#: a ``:``): aws-cdk-cli's ``cdk acknowledge``, ``cdk cli-telemetry`` and ``cdk migrate``.
CDK_OWN_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry", "cdk-migrate"})
AUTH_MODES = function_settings.AUTH_MODES
#: ``lmi_max_model_len`` (an LMI model's window, input and answer together): at least the answer room
#: plus 1024 prompt tokens; at most Mistral 7B's 32768 (config.json ``max_position_embeddings``).
LMI_MAX_MODEL_LEN_RANGE = (2048, 32768)
#: ``scale_to_zero_after_minutes``: the idle alarm's one-minute periods; at least 15 (longer than a copy takes
#: to start, so a copy still starting for a caller who gave up is not taken away), at most a day (a CloudWatch
#: alarm's longest window). It must also outlast the function's timeout: invocations are counted when they
#: start, so a stream never outlives its copy.
SCALE_TO_ZERO_AFTER_MINUTES_RANGE = (15, 1440)
#: Appended to the endpoint's name in scale-to-zero mode: switching modes replaces the endpoint (SageMaker
#: cannot turn a model's endpoint into one for inference components in place).
INFERENCE_COMPONENT_SUFFIX = "-ic"
#: The endpoint's name with several models (``models``): the models are its components, not in its name, so
#: a model added or removed is a component created or deleted, never a new endpoint.
SEVERAL_MODELS_NAME = "models"
#: The key table's, secret's and topic's names are tokens in the template at synth time, resolved at deploy
#: time to names (ARNs) of up to about this length: what the function's environment must have room for.
DEPLOY_TIME_NAME_ROOM = 100


class SettingsError(ValueError):
    """A context value is missing or not allowed; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class DeploymentSettings:
    model: CatalogModel
    instance_type: str
    auth: Literal["iam", "none", "api_key"]
    min_instances: int
    max_instances: int
    target_invocations_per_instance: int
    cors_origins: tuple[str, ...]
    max_new_tokens: int
    default_max_new_tokens: int
    max_input_chars: int
    max_body_bytes: int
    reserved_concurrency: int
    function_timeout_seconds: int
    function_memory_mb: int
    log_retention_days: int
    name_prefix: str
    #: ``None``: the pinned release's version in each region where it is established (``web_adapter.py``).
    web_adapter_layer_version: int | None
    log_prompts: bool
    model_latency_alarm_seconds: int
    api_keys_refresh_seconds: int
    api_keys_max_stale_intervals: int
    #: Host the model as an inference component that scales to zero copies (and instances) when idle.
    scale_to_zero: bool = False
    scale_to_zero_after_minutes: int = 15
    #: api_key auth: the limits of keys without their own (``max_streams=4 rpm=60``; "": none).
    key_limits: str = ""
    limits_unavailable: str = "allow"
    #: Several models (context ``models``), each an inference component on the endpoint, the default
    #: (``model``) first; empty: one model, as ``model`` and ``scale_to_zero`` say.
    hosted_models: tuple[HostedModel, ...] = ()
    #: With several models: ``max_new_tokens`` and ``max_input_chars`` where the context sets them, which lower
    #: the other models' own (the fields above are the default model's).
    context_caps: tuple[int | None, int | None] = (None, None)

    @property
    def autoscaling(self) -> bool:
        """The variant's instance count scales (with inference components, their copies do instead)."""
        return self.max_instances > self.min_instances and not self.components

    @property
    def components(self) -> bool:
        """The endpoint hosts inference components (scale to zero, or several models), not a model of its own."""
        return self.scale_to_zero or bool(self.hosted_models)

    @property
    def models(self) -> tuple[CatalogModel, ...]:
        """Every model deployed, the default first."""
        return tuple(hosted.model for hosted in self.hosted_models) or (self.model,)

    @property
    def instances_needed(self) -> int:
        """The instances the endpoint's copies fill at most: with several models, every model at its max_copies
        (``max_instances`` must hold them)."""
        if not self.hosted_models:
            return self.max_instances
        return instances_for(self.hosted_models, self.instance_type, lambda hosted: hosted.max_copies)

    @property
    def fewest_instances(self) -> int:
        """The fewest instances an endpoint of inference components keeps: what the minimum copies fill (0 when
        every model scales to zero)."""
        if not self.hosted_models:
            return 0
        return instances_for(self.hosted_models, self.instance_type, lambda hosted: hosted.min_copies)

    @property
    def initial_instances(self) -> int:
        """Instances at deploy time: with several models, what their first copies fill."""
        if not self.hosted_models:
            return self.min_instances
        return instances_for(self.hosted_models, self.instance_type, lambda hosted: hosted.initial_copies)

    @property
    def endpoint_name(self) -> str:
        """``<name_prefix>-<model>-<instance type>``, lowercase (SageMaker writes endpoint ARNs in lowercase),
        cut to SageMaker's 63 characters with a digest of the whole name where it is longer.

        Known at synth time, so the streaming stack holds the name itself (a template that changes when
        the endpoint does) and the endpoint's log group can be created by name. The instance type is in it
        because SageMaker refuses to update an autoscaled variant to another instance type: a new one
        replaces it instead."""
        model = SEVERAL_MODELS_NAME if self.hosted_models else short_model_id(self.model.model_id)
        instance = self.instance_type.removeprefix("ml.").replace(".", "-")
        mode = INFERENCE_COMPONENT_SUFFIX if self.scale_to_zero and not self.hosted_models else ""
        return _sagemaker_name(f"{self.name_prefix}-{model}-{instance}{mode}")

    @property
    def inference_component_name(self) -> str:
        """With ``scale_to_zero``: the model's inference component, named as its endpoint (another namespace);
        with several models, the default model's."""
        if self.hosted_models:
            return self.component_name(self.model.model_id)
        return self.endpoint_name if self.scale_to_zero else ""

    def component_name(self, model_id: str) -> str:
        """With several models: ``model_id``'s inference component, ``<endpoint>-<model>`` (a new endpoint, as
        another instance type makes, is new components too, never a name still held by the old ones)."""
        return _sagemaker_name(f"{self.endpoint_name}-{short_model_id(model_id)}")

    @property
    def inference_components(self) -> tuple[tuple[str, HostedModel], ...]:
        """Each inference component's name and what it hosts: with several models, each model as listed; with
        ``scale_to_zero`` alone, the model on whole instances, 0..max_instances copies; otherwise none (the
        endpoint's variant holds the model)."""
        if self.hosted_models:
            return tuple((self.component_name(hosted.model.model_id), hosted) for hosted in self.hosted_models)
        if self.scale_to_zero:
            whole = INSTANCE_HARDWARE[self.instance_type].gpus
            return ((self.inference_component_name, HostedModel(self.model, 0, self.max_instances, True, whole)),)
        return ()

    @property
    def served_models(self) -> tuple[ServedModel, ...]:
        """With several models: each model's entry of the function's settings, the default first."""
        return tuple(ServedModel(**self._capped(hosted.model), inference_component_name=self.component_name(
            hosted.model.model_id)) for hosted in self.hosted_models)

    def _capped(self, model: CatalogModel) -> dict[str, Any]:
        """The function's settings ``model`` decides, with the deployment's caps: the default model's are the
        context's (within its window, as validated); another model's its own, lowered to the context's where it
        sets them."""
        from_model = model_settings(model)
        if model == self.model:
            return {**from_model, "max_new_tokens": self.max_new_tokens, "max_input_chars": self.max_input_chars}
        caps = dict(zip(("max_new_tokens", "max_input_chars"), self.context_caps, strict=True))
        return {**from_model, **{name: min(cap, from_model[name]) for name, cap in caps.items() if cap is not None}}

    @property
    def supported_regions(self) -> list[str]:
        """Where this deployment can run: every model's image is published there, and (unless the deployer
        names a layer version) the Web Adapter layer's version is established there."""
        regions = set.intersection(*(set(model.serving_regions) for model in self.models))
        if self.web_adapter_layer_version is None:
            regions &= set(web_adapter.LAYER_VERSIONS)
        return sorted(regions)

    @property
    def time_budget_seconds(self) -> int:
        return self.function_timeout_seconds - TIME_BUDGET_MARGIN_SECONDS

    def for_function(self, endpoint_name: str, api_keys_secret_id: str = "", api_keys_table: str = "",
                     budget_alerts_topic_arn: str = "") -> FunctionSettings:
        """The function's settings for this deployment, validated by the function's own rules (with api_key
        auth, ``api_keys_table``: the keys' table; ``api_keys_secret_id``: an older deployment's key secret;
        ``budget_alerts_topic_arn``: where budget alerts go)."""
        return FunctionSettings(
            **self._capped(self.model),
            endpoint_name=endpoint_name,
            default_max_new_tokens=self.default_max_new_tokens,
            max_body_bytes=self.max_body_bytes,
            time_budget_seconds=self.time_budget_seconds,
            max_concurrent_streams=function_settings.LAMBDA_MAX_CONCURRENT_STREAMS,
            log_prompts=self.log_prompts,
            cors_origins=self.cors_origins,
            metrics_namespace=function_settings.DEFAULT_METRICS_NAMESPACE,
            service_name=self.name_prefix,
            auth_mode=self.auth,
            api_keys_secret_id=api_keys_secret_id,
            api_keys_table=api_keys_table,
            budget_alerts_topic_arn=budget_alerts_topic_arn,
            key_limit_defaults=self.key_limits,
            limits_unavailable=self.limits_unavailable,
            api_keys_refresh_seconds=self.api_keys_refresh_seconds,
            api_keys_max_stale_intervals=self.api_keys_max_stale_intervals,
            inference_component_name=self.inference_component_name,
            served_models=self.served_models,
        )

    @classmethod
    def from_context(cls, get: Callable[[str], Any], catalog: Catalog | None = None) -> DeploymentSettings:
        """Read every key through ``get`` (``node.try_get_context``); raise :class:`SettingsError`."""
        catalog = catalog or load_catalog()
        raw = {key: get(key) for key in CONTEXT_KEYS}
        number = _IntReader(raw)
        scale_to_zero = _boolean(raw, "scale_to_zero", default=False)
        hosted, instance_type = _hosted_models(raw, number, catalog, scale_to_zero)
        model, instance_type = ((hosted[0].model, instance_type) if hosted
                                else _model_and_instance_type(raw, number, catalog))
        auth = str(_required(raw, "auth")).lower()
        if auth not in AUTH_MODES:
            raise SettingsError(f"context key 'auth': {raw['auth']!r} is not allowed; allowed: {', '.join(AUTH_MODES)}")
        min_instances, max_instances = _instance_counts(
            number, "models" if hosted else "scale_to_zero=true" if scale_to_zero else "")
        from_model = model_settings(model)
        # Read once: the default model's caps, and (set or not) what lowers the other models' own.
        caps = (number.optional("max_new_tokens", 1, model.max_total_tokens - 1),
                number.optional("max_input_chars", 1, 1_000_000))
        max_new_tokens = from_model["max_new_tokens"] if caps[0] is None else caps[0]
        timeout = number("function_timeout_seconds", TIME_BUDGET_MARGIN_SECONDS + 15, LAMBDA_MAX_TIMEOUT_SECONDS,
                         default=function_settings.DEFAULT_FUNCTION_TIMEOUT_SECONDS)
        retention = number("log_retention_days", 1, 3653)
        if retention not in LOG_RETENTION:
            raise SettingsError(f"context key 'log_retention_days': {retention} is not a CloudWatch retention "
                                f"period; allowed: {', '.join(map(str, LOG_RETENTION))}")
        after_minutes = _scale_to_zero_after_minutes(
            number, scale_to_zero or any(h.scale_to_zero for h in hosted), timeout)
        name_prefix = str(_required(raw, "name_prefix"))
        if not _NAME_PREFIX.match(name_prefix):
            raise SettingsError(f"context key 'name_prefix': {name_prefix!r} is not allowed; allowed: a letter then "
                                "up to 23 letters, digits or hyphens")
        settings = cls(
            model=model,
            instance_type=instance_type,
            auth=auth,  # type: ignore[arg-type]
            min_instances=min_instances,
            max_instances=max_instances,
            target_invocations_per_instance=number("target_invocations_per_instance", 1, 10_000),
            cors_origins=_origins(raw["cors_origins"]),
            max_new_tokens=max_new_tokens,
            default_max_new_tokens=number("default_max_new_tokens", 1, max_new_tokens,
                                          default=function_settings.DEFAULT_MAX_NEW_TOKENS),
            max_input_chars=from_model["max_input_chars"] if caps[1] is None else caps[1],
            max_body_bytes=number("max_body_bytes", 1024, 6 * 1024 * 1024,
                                  default=function_settings.DEFAULT_MAX_BODY_BYTES),
            reserved_concurrency=number("reserved_concurrency", 0, 1000),
            function_timeout_seconds=timeout,
            function_memory_mb=number("function_memory_mb", 128, 10_240),
            log_retention_days=retention,
            name_prefix=name_prefix,
            web_adapter_layer_version=number.optional("web_adapter_layer_version", 1, 1000),
            log_prompts=_boolean(raw, "log_prompts", default=False),
            model_latency_alarm_seconds=number("model_latency_alarm_seconds", 1, 3600),
            api_keys_refresh_seconds=number("api_keys_refresh_seconds", 1, 3600,
                                            default=int(function_settings.DEFAULT_API_KEYS_REFRESH_SECONDS)),
            api_keys_max_stale_intervals=number("api_keys_max_stale_intervals", 1, 1000,
                                                default=function_settings.DEFAULT_API_KEYS_MAX_STALE_INTERVALS),
            scale_to_zero=scale_to_zero,
            scale_to_zero_after_minutes=after_minutes,
            key_limits=_key_limits(raw["key_limits"], auth),
            limits_unavailable=_limits_unavailable(raw["limits_unavailable"], auth),
            hosted_models=hosted,
            context_caps=caps,
        )
        if hosted:
            _check_several_models(settings)
        return settings


def _model_and_instance_type(raw: dict[str, Any], number: _IntReader, catalog: Catalog) -> tuple[CatalogModel, str]:
    model_id = _required(raw, "model")
    try:
        model = catalog.get(str(model_id))
    except CatalogError as exc:
        raise SettingsError(f"context key 'model': {exc}") from None
    model = _with_lmi_window(model, number.optional("lmi_max_model_len", *LMI_MAX_MODEL_LEN_RANGE), catalog)
    instance_type = raw["instance_type"] or model.default_instance_type
    if instance_type not in model.instance_types:
        raise SettingsError(f"context key 'instance_type': {instance_type!r} is not supported by {model.model_id}; "
                            f"allowed: {', '.join(model.instance_types)}")
    return model, instance_type


def _hosted_models(raw: dict[str, Any], number: _IntReader, catalog: Catalog,
                   scale_to_zero: bool) -> tuple[tuple[HostedModel, ...], str]:
    """``models``, each on the one instance type (``instance_type``, else the first that every model supports
    in the default model's order, its default first), LMI models with ``lmi_max_model_len``'s window; nothing
    without ``models``."""
    try:
        parsed = parse_models(raw["models"], catalog, scale_to_zero)
        if not parsed:
            return (), ""
        window = number.optional("lmi_max_model_len", *LMI_MAX_MODEL_LEN_RANGE)
        if window is not None and not any(model.family.window_variable for model, *_ in parsed):
            _with_lmi_window(parsed[0][0], window, catalog)  # refused, naming the models that take it
        parsed = tuple((_with_lmi_window(model, window, catalog) if model.family.window_variable else model,
                        min_copies, max_copies, to_zero) for model, min_copies, max_copies, to_zero in parsed)
        instance_type = str(raw["instance_type"] or default_instance_type(parsed))
        return hosted_on(parsed, instance_type), instance_type
    except ModelsError as exc:
        raise SettingsError(f"context key 'models': {exc}") from None


def _check_several_models(settings: DeploymentSettings) -> None:
    """Room for every model's copies within ``max_instances``, and for their settings in the function's
    environment."""
    needed = settings.instances_needed
    if needed > settings.max_instances:
        copies = ", ".join(f"{h.model.model_id} {h.max_copies} x {h.gpus_per_copy} GPU" for h in settings.hosted_models)
        raise SettingsError(
            f"context key 'max_instances': {settings.max_instances} cannot hold every model at its max_copies "
            f"({copies}; {settings.instance_type} has {INSTANCE_HARDWARE[settings.instance_type].gpus} GPU): they "
            f"need {needed} instances; allowed: {needed}..20, or fewer copies in 'models'")
    name = "x" * DEPLOY_TIME_NAME_ROOM if settings.auth == "api_key" else ""  # as long as they may get
    try:
        settings.for_function(settings.endpoint_name, name, name, name).to_environment()
    except function_settings.SettingsError as exc:
        raise SettingsError(f"context key 'models': {len(settings.hosted_models)} models: {exc}") from None


def _instance_counts(number: _IntReader, fixed_by: str) -> tuple[int, int]:
    """``fixed_by``: what makes the endpoint run 0..max_instances instances (then min_instances must be 1)."""
    min_instances = number("min_instances", 1, 20)
    max_instances = number("max_instances", 1, 20)
    if fixed_by and min_instances != 1:
        raise SettingsError(f"context key 'min_instances': {min_instances} does not apply with {fixed_by} (the "
                            "endpoint then runs 0..max_instances instances); allowed: 1")
    if max_instances < min_instances:
        raise SettingsError(f"context key 'max_instances': {max_instances} is below min_instances "
                            f"({min_instances}); allowed: {min_instances}..20")
    return min_instances, max_instances


def _scale_to_zero_after_minutes(number: _IntReader, scale_to_zero: bool, timeout: int) -> int:
    after_minutes = number("scale_to_zero_after_minutes", *SCALE_TO_ZERO_AFTER_MINUTES_RANGE)
    if scale_to_zero and after_minutes * 60 <= timeout:
        raise SettingsError(f"context key 'scale_to_zero_after_minutes': {after_minutes} minutes does not outlast "
                            f"function_timeout_seconds ({timeout}), so a stream could outlive its model copy; "
                            f"allowed: {timeout // 60 + 1}..{SCALE_TO_ZERO_AFTER_MINUTES_RANGE[1]}")
    return after_minutes


def _with_lmi_window(model: CatalogModel, total: int | None, catalog: Catalog) -> CatalogModel:
    """The model with the window ``lmi_max_model_len`` asks for (the answer room stays the catalog's): only a
    family whose container is told its window (``ContainerFamily.window_variable``) can take it."""
    if total is None:
        return model
    if not model.family.window_variable:
        windowed = sorted(model_id for model_id, listed in catalog.models.items() if listed.family.window_variable)
        raise SettingsError(f"context key 'lmi_max_model_len': {total} applies only to a model on the LMI "
                            f"container, and {model.model_id} runs on {model.container_family}; allowed with: "
                            f"{', '.join(windowed)}")
    answer_room = model.max_total_tokens - model.max_input_tokens
    return replace(model, max_total_tokens=total, max_input_tokens=total - answer_room)


def short_model_id(model_id: str) -> str:
    """A model's id in resource names: without JumpStart's ``huggingface-llm-``."""
    return model_id.removeprefix("huggingface-llm-")


def _sagemaker_name(name: str) -> str:
    """``name`` in lowercase (SageMaker writes ARNs so), cut to SageMaker's 63 characters with a digest of the
    whole name where it is longer."""
    name = name.lower()
    if len(name) > ENDPOINT_NAME_MAX_LENGTH:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: ENDPOINT_NAME_MAX_LENGTH - len(digest) - 1].rstrip('-')}-{digest}"
    return name


def check_context_keys(keys: Iterable[str]) -> None:
    """Refuse a context key this app does not read (``-c modle=...`` would otherwise deploy the default model).

    The app's keys are :data:`CONTEXT_KEYS` (a new setting adds its key there); the CDK's own are left alone."""
    unknown = sorted(key for key in keys if key not in CONTEXT_KEYS and key not in CDK_OWN_KEYS
                     and not key.startswith("@") and ":" not in key)
    if not unknown:
        return
    hints = [f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, CONTEXT_KEYS, 1))
             else repr(key) for key in unknown]
    raise SettingsError(f"unknown context key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                        f"allowed: {', '.join(CONTEXT_KEYS)}")


def _required(raw: dict[str, Any], key: str) -> Any:
    value = raw.get(key)
    if value is None or value == "":
        raise SettingsError(f"context key {key!r} is not set (its default belongs in cdk.json)")
    return value


class _IntReader:
    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def __call__(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self._raw.get(key)
        if value is None or value == "":
            if default is None:
                raise SettingsError(f"context key {key!r} is not set (its default belongs in cdk.json)")
            return default
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise SettingsError(f"context key {key!r}: {value!r} is not a whole number; allowed: {low}..{high}")
        number = int(value)
        if not low <= number <= high:
            raise SettingsError(f"context key {key!r}: {number} is out of range; allowed: {low}..{high}")
        return number

    def optional(self, key: str, low: int, high: int) -> int | None:
        """The key's whole number, or ``None`` when it is not set (a key whose absence means something)."""
        value = self._raw.get(key)
        return None if value is None or value == "" else self(key, low, high)


def _boolean(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SettingsError(f"context key {key!r}: {value!r} is not allowed; allowed: true, false")


def _key_limits(value: Any, auth: str) -> str:
    """``{"max_streams": 4, "rpm": 60}`` (cdk.json) or ``max_streams=4,rpm=60`` (``-c``), as the function reads it."""
    if value is None or value == "" or value == {}:
        return ""
    allowed = f"limits among {', '.join(KEY_LIMITS)}, as an object or NAME=VALUE pairs"
    if auth != "api_key":
        raise SettingsError(f"context key 'key_limits': {value!r} applies only with auth=api_key (limits are per "
                            f"API key); auth is {auth!r}")
    try:
        if isinstance(value, dict):
            limits = KeyLimits.from_json(value, "context key 'key_limits'")
        elif isinstance(value, str):
            limits = KeyLimits(**parse_limits(value))
        else:
            raise LimitsError(f"{value!r} is not allowed")
    except LimitsError as exc:
        raise SettingsError(f"context key 'key_limits': {exc}; allowed: {allowed}") from None
    return " ".join(f"{name}={limit}" for name, limit in limits.to_json().items())


def _limits_unavailable(value: Any, auth: str) -> str:
    if value is None or value == "":
        return "allow"
    choice = str(value).lower()
    if choice not in function_settings.LIMITS_UNAVAILABLE_CHOICES or auth != "api_key":
        raise SettingsError(f"context key 'limits_unavailable': {value!r} is not allowed; allowed: "
                            f"{', '.join(function_settings.LIMITS_UNAVAILABLE_CHOICES)}, with auth=api_key")
    return choice


def _origins(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    origins = [o.strip() for o in value.split(",")] if isinstance(value, str) else list(value)
    bad = [o for o in origins if not isinstance(o, str) or not _ORIGIN.match(o)]
    if bad:
        raise SettingsError(f"context key 'cors_origins': {bad!r} are not origins; allowed: a list of "
                            "https://host[:port] origins, or \"*\"")
    return tuple(origins)
