"""Recorded JumpStart specs served as the JumpStart bucket serves live ones, for the tests that run the
``sagemaker`` SDK offline: the live spec a recorded one came from (the inverse of
``infra.live_specs.recorded_from_live``), and its entry in the bucket's manifest (sagemaker 2.257.7)."""

from __future__ import annotations

from typing import Any

from infra.spec_mapping import CONTAINER_ENVIRONMENT_KEYS

#: The live bucket's layout for open-weight models' specs.
SPEC_KEY_FORMAT = "community_models/{model_id}/specs_v{version}.json"
MANIFEST = "models_manifest.json"
#: The oldest SDK a fixture version admits (the manifest's ``min_version``).
FIXTURE_MIN_SDK_VERSION = "2.189.0"


def live_from_recorded(recorded: dict[str, Any]) -> dict[str, Any]:
    """The live spec a recorded one came from, as far as the SDK reads it to build a model: environment
    variables flagged ``required_for_model_class`` as JumpStart's TGI specs flag them (those the container
    needs; the SDK drops the rest), artifacts, instance types, timeouts, per-region image aliases and
    per-instance variants."""
    environment = [
        {"name": name, "type": "int" if isinstance(value, int) else "text", "default": value, "scope": "container",
         "required_for_model_class": name in CONTAINER_ENVIRONMENT_KEYS}
        for name, value in (recorded.get("environment") or {}).items()]
    spec: dict[str, Any] = {
        "model_id": recorded["modelId"], "version": recorded["version"], "min_sdk_version": FIXTURE_MIN_SDK_VERSION,
        "training_supported": False, "incremental_training_supported": False,
        "hosting_artifact_key": recorded.get("artifactKey"),
        "inference_environment_variables": environment,
        "default_inference_instance_type": recorded["defaultInstanceType"],
        "supported_inference_instance_types": list(recorded.get("instanceTypes") or []),
        "inference_enable_network_isolation": recorded.get("networkIsolation", True),
        "inference_vulnerable": False, "inference_vulnerabilities": [], "deprecated": False,
    }
    if recorded.get("prepackedArtifactKey"):
        spec["hosting_prepacked_artifact_key"] = recorded["prepackedArtifactKey"]
    deploy = {key: recorded[field] for key, field in (("model_data_download_timeout", "modelDataDownloadTimeout"),
              ("container_startup_health_check_timeout", "containerStartupHealthCheckTimeout")) if recorded.get(field)}
    if deploy:
        spec["deploy_kwargs"] = deploy
    variants: dict[str, Any] = {}
    for entry in recorded.get("instanceVariants") or []:
        variant: dict[str, Any] = {}
        if entry.get("imageUri"):
            variant["regional_properties"] = {"image_uri": entry["imageUri"]}
        if entry.get("environment") or not variant:
            variant["properties"] = {"environment_variables": dict(entry.get("environment") or {})}
        variants[entry["instanceType"]] = variant
    aliases = {entry["region"]: dict(entry["aliases"]) for entry in recorded.get("instanceAliases") or []}
    if aliases or variants:
        spec["hosting_instance_type_variants"] = {"regional_aliases": aliases, "variants": variants}
    return spec


def manifest_entry(spec: dict[str, Any], min_sdk_version: str = FIXTURE_MIN_SDK_VERSION) -> dict[str, str]:
    """The ``models_manifest.json`` entry of a live spec, at the bucket's own key."""
    return {"model_id": spec["model_id"], "version": spec["version"], "min_version": min_sdk_version,
            "spec_key": SPEC_KEY_FORMAT.format(model_id=spec["model_id"], version=spec["version"])}
