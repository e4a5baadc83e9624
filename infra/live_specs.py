"""JumpStart's live spec format (as the bucket and the ``sagemaker`` SDK hold it) and the recorded format.

``recorded_from_live`` turns a live spec into the recorded format of ``jumpstart-specs.json``, which the
catalog is built from (``spec_mapping.model_from_spec``): ``refresh_catalog --live --update`` records a
version that way. (The other way, for the tests that serve recorded specs to the SDK as a JumpStart bucket
would: ``tests/helpers/jumpstart_bucket.py``.)
"""

from __future__ import annotations

from typing import Any


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
