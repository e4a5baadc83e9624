"""JumpStart's live spec format (as the bucket and the ``sagemaker`` SDK hold it) and the recorded format.

``recorded_from_live`` turns a live spec into the recorded format of ``jumpstart-specs.json``, which the
catalog is built from (``spec_mapping.model_from_spec``): ``refresh_catalog --live --update`` records a
version that way. ``live_from_recorded`` goes the other way, for the offline tests that serve recorded
specs to the SDK as a JumpStart bucket would: the minimal live spec the SDK resolves (sagemaker 2.257.7).
"""

from __future__ import annotations

from typing import Any

from .spec_mapping import CONTAINER_ENVIRONMENT_KEYS

#: The live bucket's layout for open-weight models' specs.
SPEC_KEY_FORMAT = "community_models/{model_id}/specs_v{version}.json"
MANIFEST = "models_manifest.json"
#: The oldest SDK a fixture version admits (the manifest's ``min_version``).
FIXTURE_MIN_SDK_VERSION = "2.189.0"


def recorded_from_live(spec: dict[str, Any]) -> dict[str, Any]:
    """A live JumpStart spec in the recorded format that ``spec_mapping.model_from_spec`` reads."""
    variants = (spec.get("hosting_instance_type_variants") or {})
    recorded: dict[str, Any] = {
        "modelId": spec["model_id"],
        "version": spec["version"],
        "artifactKey": spec.get("hosting_artifact_key"),
        "defaultInstanceType": spec["default_inference_instance_type"],
        "instanceTypes": list(spec.get("supported_inference_instance_types") or []),
        "environment": {variable["name"]: variable["default"]
                        for variable in spec.get("inference_environment_variables") or []
                        if variable.get("scope") == "container"},
        "networkIsolation": spec.get("inference_enable_network_isolation", True),
    }
    if spec.get("hosting_prepacked_artifact_key"):
        recorded["prepackedArtifactKey"] = spec["hosting_prepacked_artifact_key"]
    deploy = spec.get("deploy_kwargs") or {}
    if deploy.get("model_data_download_timeout"):
        recorded["modelDataDownloadTimeout"] = deploy["model_data_download_timeout"]
    if deploy.get("container_startup_health_check_timeout"):
        recorded["containerStartupHealthCheckTimeout"] = deploy["container_startup_health_check_timeout"]
    aliases = variants.get("regional_aliases") or {}
    if aliases:
        recorded["instanceAliases"] = [{"region": region, "aliases": values} for region, values in aliases.items()]
    instance_variants = []
    for instance_type, variant in (variants.get("variants") or {}).items():
        entry: dict[str, Any] = {"instanceType": instance_type}
        image = (variant.get("regional_properties") or {}).get("image_uri")
        environment = (variant.get("properties") or {}).get("environment_variables")
        if image:
            entry["imageUri"] = image
        if environment:
            entry["environment"] = environment
        instance_variants.append(entry)
    if instance_variants:
        recorded["instanceVariants"] = instance_variants
    return recorded


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
