"""Fetch the latest JumpStart specs of the catalog's models from the public JumpStart bucket.

The bucket holds ``models_manifest.json`` (a list of ``{model_id, version, spec_key, ...}``) and
one spec file per model version. Both are public: no credentials and no ``sagemaker`` SDK needed.
Specs are converted to the recorded format of ``jumpstart-specs.json``, which the catalog is built
from, so the one mapping (``spec_mapping.model_from_spec``) serves both sources. For each model the
newest version whose spec that mapping can deploy is taken (newer ones without complete hosting data,
such as an image per region, are walked past and listed under ``skipped`` with the reason).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from .catalog import JUMPSTART_BUCKET_PREFIX
from .spec_mapping import SpecError, model_from_spec

MANIFEST = "models_manifest.json"
TIMEOUT_SECONDS = 30


def bucket_url(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{JUMPSTART_BUCKET_PREFIX}{region}.s3.{region}.{suffix}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def spec_keys_newest_first(manifest: list[dict[str, Any]], model_ids: Iterable[str]) -> dict[str, list[str]]:
    """Model id -> the spec keys of its versions in the manifest, newest first (absent ids are left out)."""
    wanted = set(model_ids)
    versions: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest:
        if entry.get("model_id") in wanted:
            versions.setdefault(entry["model_id"], []).append(entry)
    return {model_id: [entry["spec_key"] for entry in sorted(entries, key=lambda e: _version_key(e["version"]),
                                                             reverse=True)]
            for model_id, entries in versions.items()}


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


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (a fixed https bucket)
        return json.load(response)


def fetch_recorded_specs(model_ids: Iterable[str], region: str = "us-east-1", base_url: str | None = None,
                         get_json: Callable[[str], Any] = _get_json) -> dict[str, Any]:
    """The newest deployable spec of each model, in the recorded format, with where it came from and the
    newer versions skipped on the way (``skipped``: model id -> ``"<version>: <why>"``)."""
    base = (base_url or bucket_url(region)).rstrip("/")
    keys = spec_keys_newest_first(get_json(f"{base}/{MANIFEST}"), model_ids)
    models: dict[str, Any] = {}
    skipped: dict[str, list[str]] = {}
    for model_id, spec_keys in sorted(keys.items()):
        for key in spec_keys:
            recorded = recorded_from_live(get_json(f"{base}/{key}"))
            models.setdefault(model_id, recorded)  # the newest, should no version deploy
            try:
                model_from_spec(recorded)
            except SpecError as exc:
                skipped.setdefault(model_id, []).append(f"{recorded['version']}: {exc}")
                continue
            models[model_id] = recorded
            break
    return {"_source": f"live JumpStart specs from {base}/{MANIFEST} (newest deployable version of each model)",
            "models": models, "skipped": skipped}
