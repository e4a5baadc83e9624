"""Resolve JumpStart models with the ``sagemaker`` SDK v2's own JumpStart code (run by ``infra.jumpstart_sdk``).

It runs in ``.venv-sagemaker`` (the SDK is never installed in ``.venv`` nor bundled): it imports only the
standard library, boto3 and the SDK, reads one JSON request on stdin and writes one JSON answer to the file
its argument names (the SDK logs to stdout)::

    {"region": "us-east-1", "role_arn": "arn:...", "models": [
        {"model_id": "...", "pinned": "4.6.16", "instance_type": "ml.g5.2xlarge", "newer": true,
         "raw_spec_of": "4.6.17"}]}

For each model: every version the manifest lists (newest first, with the oldest SDK each admits), the pinned
version resolved as ``JumpStartModel(...).prepare_container_def(instance_type)`` builds CreateModel's
container (image, model data, environment), the versions newer than the pin resolved the same way (or why
not), and on request one version's raw spec as the bucket holds it. The JumpStart bucket is read unsigned
(it is public); ``AWS_ENDPOINT_URL_S3`` or the SDK's ``AWS_JUMPSTART_*_LOCAL_ROOT_DIR_OVERRIDE`` variables
point it elsewhere (tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from packaging.version import Version
from sagemaker import __version__ as SDK_VERSION
from sagemaker import image_uris
from sagemaker.jumpstart.accessors import JumpStartModelsAccessor
from sagemaker.jumpstart.enums import JumpStartModelType
from sagemaker.jumpstart.model import JumpStartModel
from sagemaker.jumpstart.types import JumpStartS3FileType
from sagemaker.session import Session

#: The SDK's message when a spec names no image for the instance type in the region (its own aliases).
NO_IMAGE = "No inference ECR configuration found"


def session_for(region: str) -> Session:
    boto_session = boto3.Session(region_name=region)
    session = Session(boto_session=boto_session)
    session.s3_client = boto_session.client("s3", region_name=region, config=Config(signature_version=UNSIGNED))
    return session


def manifest_versions(session: Session, region: str, model_id: str) -> list[dict[str, str]]:
    """Every version of the model the open-weights manifest lists, newest first."""
    # The accessor's listing of every header (the public list_jumpstart_models keeps only the latest and
    # also needs the proprietary manifest).
    headers = JumpStartModelsAccessor._get_manifest(
        region=region, s3_client=session.s3_client, model_type=JumpStartModelType.OPEN_WEIGHTS)
    versions = [{"version": header.version, "min_sdk_version": header.min_version, "spec_key": header.spec_key}
                for header in headers if header.model_id == model_id]
    return sorted(versions, key=lambda entry: Version(entry["version"]), reverse=True)


def raw_spec(spec_key: str) -> dict[str, Any]:
    """The spec exactly as the bucket holds it (the SDK's parsed object adds and drops keys)."""
    spec, _etag = JumpStartModelsAccessor._cache._get_json_file(
        spec_key, JumpStartS3FileType.OPEN_WEIGHT_SPECS)
    return dict(spec)


def resolve(session: Session, region: str, role_arn: str, model_id: str, version: str, instance_type: str,
            spec_key: str) -> dict[str, Any]:
    """CreateModel's container as the SDK builds it, or why it cannot: ``{"ok": true, "container": {...}}``."""
    try:
        model = JumpStartModel(model_id=model_id, model_version=version, region=region, instance_type=instance_type,
                               role=role_arn, sagemaker_session=session)
        container = model.prepare_container_def(instance_type=instance_type)
    except (ValueError, KeyError) as exc:  # the SDK's refusals (deprecated and vulnerable are ValueErrors)
        answer: dict[str, Any] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()}
        if NO_IMAGE in str(exc):
            answer.update(framework_image(spec_key, region, instance_type))
        return answer
    return {"ok": True, "container": container, "network_isolation": bool(model.enable_network_isolation())}


def framework_image(spec_key: str, region: str, instance_type: str) -> dict[str, Any]:
    """For a spec that names its container only by framework (``hosting_ecr_specs``): the image the SDK's
    own framework table gives, which the SDK no longer uses for JumpStart models (since 2.237.1)."""
    ecr = raw_spec(spec_key).get("hosting_ecr_specs") or {}
    if not ecr.get("framework"):
        return {}
    try:
        uri = image_uris.retrieve(framework=ecr["framework"], region=region, version=ecr.get("framework_version"),
                                  instance_type=instance_type, image_scope="inference")
    except ValueError as exc:
        return {"hosting_ecr_specs": ecr, "framework_image_error": str(exc)}
    return {"hosting_ecr_specs": ecr, "framework_image": uri}


def answer_model(session: Session, request: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    region, role_arn, model_id = request["region"], request["role_arn"], query["model_id"]
    versions = manifest_versions(session, region, model_id)
    keys = {entry["version"]: entry["spec_key"] for entry in versions}
    answer: dict[str, Any] = {"versions": versions}
    if not versions:
        return {**answer, "pinned": {"ok": False, "error": f"{model_id} is not in the manifest"}, "newer": []}

    def resolved(version: str) -> dict[str, Any]:
        if version not in keys:
            return {"ok": False, "error": f"version {version} is not in the manifest"}
        return resolve(session, region, role_arn, model_id, version, query["instance_type"], keys[version])

    answer["pinned"] = resolved(query["pinned"])
    answer["newer"] = [{"version": entry["version"], **(
        resolved(entry["version"]) if Version(entry["min_sdk_version"]) <= Version(SDK_VERSION) else
        {"ok": False, "error": f"needs sagemaker {entry['min_sdk_version']} or newer (this is {SDK_VERSION})"})}
        for entry in versions if query.get("newer") and Version(entry["version"]) > Version(query["pinned"])]
    if query.get("raw_spec_of") in keys:
        answer["raw_spec"] = raw_spec(keys[query["raw_spec_of"]])
    return answer


def main() -> int:
    request = json.load(sys.stdin)
    session = session_for(request["region"])
    answer = {"sdk_version": SDK_VERSION, "region": request["region"],
              "models": {query["model_id"]: answer_model(session, request, query) for query in request["models"]}}
    Path(sys.argv[1]).write_text(json.dumps(answer), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
