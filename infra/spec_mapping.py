"""The mapping from JumpStart spec data (recorded format) to catalog entries.

Both sources of spec data go through it: the recorded ``jumpstart-specs.json`` and the live
specs ``live_specs.py`` converts to that format, so ``refresh_catalog.py`` has one mapping.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from llm_stream.families import ContainerFamily, family

from .catalog import (
    CONTAINER_FAMILIES,
    DEFAULT_TIMEOUT_SECONDS,
    JUMPSTART_BUCKET_PREFIX,
    Catalog,
    CatalogModel,
    ContainerImage,
    ModelArtifacts,
    RegionImage,
)

#: The image alias GPU instances use when the spec's variants do not name one.
IMAGE_ALIAS = "gpu_ecr_uri_1"

#: The environment variables the SageMaker SDK passes to these containers; the spec lists more
#: (for the SDK's own script mode), which a prepacked model does not need.
CONTAINER_ENVIRONMENT_KEYS = (
    "SAGEMAKER_PROGRAM", "ENDPOINT_SERVER_TIMEOUT", "MODEL_CACHE_ROOT", "SAGEMAKER_ENV", "HF_MODEL_ID",
    "SM_NUM_GPUS", "MAX_INPUT_LENGTH", "MAX_TOTAL_TOKENS", "SAGEMAKER_MODEL_SERVER_WORKERS",
)
#: Token limits of models whose family's specs carry none (LMI's, unlike TGI's MAX_INPUT_LENGTH /
#: MAX_TOTAL_TOKENS), and whose prepacked serving.properties is not readable here: (input, total) tokens,
#: conservative and UNVERIFIED until a first deployment. Mistral 7B v0.1's config.json:
#: max_position_embeddings 32768, sliding_window 4096; LMI's lmi-dist defaults to the former, which its
#: own guide warns can exhaust GPU memory. 4096 total keeps every request within the sliding window, where
#: the model was trained to attend.
TOKEN_LIMITS_NOT_IN_SPECS = {
    "huggingface-llm-mistral-7b": (3072, 4096),
    "huggingface-llm-mistral-7b-instruct": (3072, 4096),
}

#: Variant timeouts (download, startup health check) when a spec sets none, by model size in billions of
#: parameters. The variant's limits are 60..3600 s each (CreateEndpointConfig), and waiting the maximum for
#: a container that will never be healthy bills GPU time for up to two hours before the rollback. In bf16
#: a 7B model is ~15 GB (minutes from S3 in the same region, then a few minutes to load); 40B ~80 GB;
#: 180B ~360 GB across 8 GPUs keeps the maximum. Our estimate, not AWS's: a live spec's deploy_kwargs win.
FALLBACK_TIMEOUTS = ((10, (600, 900)), (50, (1200, 1800)), (float("inf"), (DEFAULT_TIMEOUT_SECONDS,
                                                                           DEFAULT_TIMEOUT_SECONDS)))
MODEL_BILLIONS_OF_PARAMETERS = {
    "huggingface-llm-falcon-7b-instruct-bf16": 7, "huggingface-llm-falcon-7b-bf16": 7,
    "huggingface-llm-falcon-40b-instruct-bf16": 40, "huggingface-llm-falcon-40b-bf16": 40,
    "huggingface-llm-falcon-180b-chat-bf16": 180, "huggingface-llm-falcon-180b-bf16": 180,
    "huggingface-llm-mistral-7b-instruct": 7, "huggingface-llm-mistral-7b": 7,
    "huggingface-llm-rinna-3-6b-instruction-ppo-bf16": 3.6,
    "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16": 4,
}

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
    "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16": "rinna-bilingual-instruction",
    "huggingface-llm-mistral-7b-instruct": "mistral-instruct",
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
    image = ContainerImage(regions={region: _region_image(uri) for region, uri in sorted(image_uris.items())})
    families = {CONTAINER_FAMILIES.get(entry.repository) for entry in image.regions.values()}
    if len(families) != 1 or None in families:
        known = ", ".join(f"{repository} ({family})" for repository, family in CONTAINER_FAMILIES.items())
        raise SpecError(f"its images are not all of one known container family ({known}): "
                        f"{sorted({entry.repository for entry in image.regions.values()})}")
    container = family(str(families.pop()))

    spec_env = _as_env(spec.get("environment", {}))
    max_input_tokens, max_total_tokens = _token_limits(model_id, container, spec_env)
    environment = {key: spec_env[key] for key in CONTAINER_ENVIRONMENT_KEYS if key in spec_env}
    instance_types = tuple(spec["instanceTypes"])
    instance_environment = {
        variant["instanceType"]: _as_env(variant["environment"])
        for variant in spec.get("instanceVariants", [])
        if variant["instanceType"] in instance_types and variant.get("environment")
    }
    try:
        capabilities = container.capabilities(image.main.tag)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    key = spec.get("prepackedArtifactKey") or spec["artifactKey"]
    fallback_download, fallback_startup = fallback_timeouts(model_id)
    return CatalogModel(
        model_id=model_id,
        spec_version=spec["version"],
        default_instance_type=spec["defaultInstanceType"],
        instance_types=instance_types,
        artifacts=ModelArtifacts(bucket_prefix=JUMPSTART_BUCKET_PREFIX, key=key),
        container_family=container.name,
        capabilities=capabilities,
        image=image,
        environment=environment,
        instance_environment=instance_environment,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
        network_isolation=bool(spec.get("networkIsolation", True)),
        download_timeout_seconds=_timeout(spec, "modelDataDownloadTimeout", fallback_download),
        startup_timeout_seconds=_timeout(spec, "containerStartupHealthCheckTimeout", fallback_startup),
        chat_format=CHAT_FORMATS.get(model_id),
    )


def _region_image(uri: str) -> RegionImage:
    """``<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>``."""
    host, _, reference = uri.partition("/")
    repository, _, tag = reference.rpartition(":")
    if not (host and repository and tag):
        raise SpecError(f"image {uri!r} is not <registry>/<repository>:<tag>")
    return RegionImage(account=host.split(".", 1)[0], repository=repository, tag=tag)


def _token_limits(model_id: str, container: ContainerFamily, spec_env: dict[str, str]) -> tuple[int, int]:
    """(input, total) tokens: from the spec where the family's specs carry them, else the project's table."""
    absent = [key for key in container.required_spec_environment if key not in spec_env]
    if absent:
        raise SpecError(f"its spec environment lacks {', '.join(absent)} (a {container.name} container needs them)")
    if container.spec_token_limits:
        input_key, total_key = container.spec_token_limits
        return int(spec_env[input_key]), int(spec_env[total_key])
    if model_id in TOKEN_LIMITS_NOT_IN_SPECS:
        return TOKEN_LIMITS_NOT_IN_SPECS[model_id]
    raise SpecError(f"{model_id} runs on {container.name}, whose specs carry no token limits: give them in "
                    "spec_mapping.TOKEN_LIMITS_NOT_IN_SPECS")


def _image_alias(spec: dict[str, Any]) -> str:
    """The alias the default instance's family (or type) variant points its image at."""
    default = spec["defaultInstanceType"]
    family = default.removeprefix("ml.").split(".", 1)[0]
    for variant in spec.get("instanceVariants", []):
        if variant["instanceType"] in (default, family) and str(variant.get("imageUri", "")).startswith("$"):
            return str(variant["imageUri"])[1:]
    return IMAGE_ALIAS


def fallback_timeouts(model_id: str) -> tuple[int, int]:
    """(download, startup health check) seconds for a model whose spec sets none (no ``deploy_kwargs``)."""
    size = MODEL_BILLIONS_OF_PARAMETERS.get(model_id)
    if size is None:
        return DEFAULT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS
    return next(timeouts for most, timeouts in FALLBACK_TIMEOUTS if size <= most)


def _timeout(spec: dict[str, Any], key: str, fallback: int) -> int:
    value = int(spec.get(key) or fallback)
    if not 60 <= value <= 3600:
        raise SpecError(f"{key} {value} is outside what CreateEndpointConfig allows (60..3600)")
    return value


def catalog_from_specs(specs: dict[str, Any], pinned: dict[str, Any] | None = None,
                       model_ids: tuple[str, ...] = BLOG_MODELS) -> Catalog:
    """The catalog from the recorded specs; where a model's spec cannot be deployed, from its pinned
    complete version in ``pinned`` (with a note saying which newer version was skipped and why)."""
    models: dict[str, CatalogModel] = {}
    unavailable: dict[str, str] = {}
    remedy = ("; resolve a version with JumpStart's own data and pin it "
              "(python -m infra.refresh_catalog --live --update MODEL)")
    fallbacks = (pinned or {}).get("models", {})
    for model_id in model_ids:
        spec = specs["models"].get(model_id)
        try:
            if spec is None:
                raise SpecError("absent from the recorded spec data")
            models[model_id] = model_from_spec(spec)
        except SpecError as exc:
            if model_id not in fallbacks:
                unavailable[model_id] = f"{exc}{remedy}"
                continue
            newest = "it is absent from the newest spec data" if spec is None else \
                f"the newest recorded spec ({spec['version']}) cannot be deployed: {exc}"
            note = (f"pinned to {fallbacks[model_id]['version']}, the newest recorded version with complete "
                    f"hosting data ({newest}); JumpStart keeps old versions deployable by version")
            models[model_id] = replace(model_from_spec(fallbacks[model_id]), pin_note=note)
    sources = [str(specs.get("_source", "unknown")), *([str(pinned["_source"])] if pinned else [])]
    return Catalog(source=" | ".join(sources), models=models, unavailable=unavailable)
