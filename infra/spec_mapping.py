"""The mapping from JumpStart spec data (recorded format) to catalog entries.

Both sources of spec data go through it: the recorded ``jumpstart-specs.json`` and the live
specs ``live_specs.py`` converts to that format, so ``refresh_catalog.py`` has one mapping.
"""

from __future__ import annotations

from typing import Any

from .catalog import (
    DEFAULT_TIMEOUT_SECONDS,
    JUMPSTART_BUCKET_PREFIX,
    Catalog,
    CatalogModel,
    ContainerImage,
    ModelArtifacts,
)

#: The image alias GPU instances use when the spec's variants do not name one.
IMAGE_ALIAS = "gpu_ecr_uri_1"

#: The environment variables the SageMaker SDK passes to these containers; the spec lists more
#: (for the SDK's own script mode), which a prepacked model does not need.
CONTAINER_ENVIRONMENT_KEYS = (
    "SAGEMAKER_PROGRAM", "ENDPOINT_SERVER_TIMEOUT", "MODEL_CACHE_ROOT", "SAGEMAKER_ENV", "HF_MODEL_ID",
    "SM_NUM_GPUS", "MAX_INPUT_LENGTH", "MAX_TOTAL_TOKENS", "SAGEMAKER_MODEL_SERVER_WORKERS",
)

#: The blog's ten streaming models: the catalog maps each, or says why it cannot.
BLOG_MODELS = (
    "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-falcon-7b-bf16",
    "huggingface-llm-falcon-40b-instruct-bf16", "huggingface-llm-falcon-40b-bf16",
    "huggingface-llm-falcon-180b-chat-bf16", "huggingface-llm-falcon-180b-bf16",
    "huggingface-llm-mistral-7b-instruct", "huggingface-llm-mistral-7b",
    "huggingface-llm-rinna-3-6b-instruction-ppo-bf16", "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16",
)

#: The chat-tuned models' conversation formats (lambda/llm_stream/chat_formats.py names each one's
#: source). The specs do not say; the other catalog models are base models, without one.
CHAT_FORMATS = {
    "huggingface-llm-falcon-7b-instruct-bf16": "falcon-instruct",
    "huggingface-llm-falcon-40b-instruct-bf16": "falcon-instruct",
    "huggingface-llm-falcon-180b-chat-bf16": "falcon-180b-chat",
    "huggingface-llm-rinna-3-6b-instruction-ppo-bf16": "rinna-instruction",
    "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16": "rinna-instruction",
}


class SpecError(ValueError):
    """The spec lacks something a deployment needs; the message says what."""


def _as_env(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


def model_from_spec(spec: dict[str, Any]) -> CatalogModel:
    """Map one JumpStart spec (recorded format) to a catalog entry, or raise :class:`SpecError`."""
    model_id = spec["modelId"]
    aliases = spec.get("instanceAliases")
    if not aliases:
        raise SpecError("its spec carries no container image aliases (instanceAliases), so the image cannot be "
                        "resolved without a live lookup")
    alias = _image_alias(spec)
    image_uris = {entry["region"]: entry["aliases"].get(alias) for entry in aliases}
    missing = sorted(region for region, uri in image_uris.items() if not uri)
    if missing:
        raise SpecError(f"no {alias} image alias for regions {', '.join(missing)}")
    repositories = {uri.split("/", 1)[1] for uri in image_uris.values()}
    if len(repositories) != 1:
        raise SpecError(f"regions use different images: {sorted(repositories)}")
    repository, tag = repositories.pop().rsplit(":", 1)
    accounts = {region: uri.split(".", 1)[0] for region, uri in sorted(image_uris.items())}

    spec_env = _as_env(spec.get("environment", {}))
    absent = [key for key in ("HF_MODEL_ID", "MAX_TOTAL_TOKENS", "MAX_INPUT_LENGTH", "SM_NUM_GPUS")
              if key not in spec_env]
    if absent:
        raise SpecError(f"its spec environment lacks {', '.join(absent)} (not a TGI model spec)")
    environment = {key: spec_env[key] for key in CONTAINER_ENVIRONMENT_KEYS if key in spec_env}
    instance_types = tuple(spec["instanceTypes"])
    instance_environment = {
        variant["instanceType"]: _as_env(variant["environment"])
        for variant in spec.get("instanceVariants", [])
        if variant["instanceType"] in instance_types and variant.get("environment")
    }
    key = spec.get("prepackedArtifactKey") or spec["artifactKey"]
    return CatalogModel(
        model_id=model_id,
        spec_version=spec["version"],
        default_instance_type=spec["defaultInstanceType"],
        instance_types=instance_types,
        artifacts=ModelArtifacts(bucket_prefix=JUMPSTART_BUCKET_PREFIX, key=key),
        image=ContainerImage(repository=repository, tag=tag, accounts=accounts),
        environment=environment,
        instance_environment=instance_environment,
        max_input_tokens=int(spec_env["MAX_INPUT_LENGTH"]),
        max_total_tokens=int(spec_env["MAX_TOTAL_TOKENS"]),
        network_isolation=bool(spec.get("networkIsolation", True)),
        download_timeout_seconds=_timeout(spec, "modelDataDownloadTimeout"),
        startup_timeout_seconds=_timeout(spec, "containerStartupHealthCheckTimeout"),
        chat_format=CHAT_FORMATS.get(model_id),
    )


def _image_alias(spec: dict[str, Any]) -> str:
    """The alias the default instance's family (or type) variant points its image at."""
    default = spec["defaultInstanceType"]
    family = default.removeprefix("ml.").split(".", 1)[0]
    for variant in spec.get("instanceVariants", []):
        if variant["instanceType"] in (default, family) and str(variant.get("imageUri", "")).startswith("$"):
            return str(variant["imageUri"])[1:]
    return IMAGE_ALIAS


def _timeout(spec: dict[str, Any], key: str) -> int:
    value = int(spec.get(key) or DEFAULT_TIMEOUT_SECONDS)
    if not 60 <= value <= 3600:
        raise SpecError(f"{key} {value} is outside what CreateEndpointConfig allows (60..3600)")
    return value


def catalog_from_specs(specs: dict[str, Any], model_ids: tuple[str, ...] = BLOG_MODELS) -> Catalog:
    models: dict[str, CatalogModel] = {}
    unavailable: dict[str, str] = {}
    live = str(specs.get("_source", "")).startswith("live")
    remedy = ("" if live else "; refresh the catalog from the live JumpStart specs "
              "(python -m infra.refresh_catalog --live) to add it")
    for model_id in model_ids:
        spec = specs["models"].get(model_id)
        if spec is None:
            unavailable[model_id] = f"absent from the {'live' if live else 'recorded'} spec data{remedy}"
            continue
        try:
            models[model_id] = model_from_spec(spec)
        except SpecError as exc:
            unavailable[model_id] = f"{exc}{remedy}"
    return Catalog(source=specs.get("_source", "unknown"), models=models, unavailable=unavailable)
