"""JumpStart's own resolution of the catalog's models, by the ``sagemaker`` SDK in ``.venv-sagemaker``.

``resolve`` runs ``jumpstart_sdk_script.py`` with that environment's Python (the SDK never enters ``.venv``
nor the Lambda bundle) and returns its answer. ``catalog_container`` is CreateModel's container as the
endpoint stack builds it from the catalog for one region, in the shape of the SDK's
``prepare_container_def``, so ``differences`` can say where the catalog and the SDK disagree.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .catalog import CatalogModel

ROOT = Path(__file__).resolve().parent.parent
SDK_PYTHON = ROOT / ".venv-sagemaker" / "bin" / "python"
SCRIPT = Path(__file__).with_name("jumpstart_sdk_script.py")
#: Any well-formed role: building a container definition reads it, calls nothing with it.
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::111111111111:role/jumpstart-resolution"
TIMEOUT_SECONDS = 600


class SdkError(RuntimeError):
    pass


def resolve(region: str, queries: list[dict[str, Any]], sdk_python: Path = SDK_PYTHON) -> dict[str, Any]:
    """The script's answer for ``queries`` (``{"model_id", "pinned", "instance_type", "newer"?,
    "raw_spec_of"?}`` each) in ``region``."""
    if not sdk_python.exists():
        raise SdkError(f"{sdk_python} is missing: make refresh-catalog-live installs the sagemaker SDK there")
    request = {"region": region, "role_arn": PLACEHOLDER_ROLE_ARN, "models": queries}
    with tempfile.TemporaryDirectory(prefix="jumpstart-sdk-") as folder:
        answer_file = Path(folder) / "answer.json"
        result = subprocess.run(  # noqa: S603 (the project's own script, with its own interpreter)
            [str(sdk_python), str(SCRIPT), str(answer_file)], input=json.dumps(request), capture_output=True,
            text=True, check=False, timeout=TIMEOUT_SECONDS, env={**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"})
        if result.returncode != 0:
            # The SDK prints some tracebacks to stdout (rich's console).
            output = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise SdkError(f"the sagemaker SDK failed (exit {result.returncode}): {output}")
        answer: dict[str, Any] = json.loads(answer_file.read_text())
    return answer


def url_suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def catalog_container(model: CatalogModel, region: str, instance_type: str) -> dict[str, Any]:
    """CreateModel's ``PrimaryContainer`` the endpoint stack gives ``model`` in ``region`` (its mapping and
    pseudo parameters resolved), as the SDK's ``prepare_container_def`` writes one."""
    image = model.image.regions.get(region)
    if image is None:
        raise KeyError(f"{model.model_id} has no image in {region}")
    location = f"s3://{model.artifacts.bucket_prefix}{region}/{model.artifacts.key}"
    container: dict[str, Any] = {
        "Image": f"{image.account}.dkr.ecr.{region}.{url_suffix(region)}/{image.repository}:{image.tag}",
        "Environment": model.environment_for(instance_type),
    }
    if model.artifacts.is_archive:
        container["ModelDataUrl"] = location
    else:
        container["ModelDataSource"] = {"S3DataSource": {
            "S3Uri": location, "S3DataType": "S3Prefix", "CompressionType": "None"}}
    return container


def differences(catalog: dict[str, Any], sdk: dict[str, Any], own_environment: frozenset[str]) -> list[str]:
    """Where the catalog's container and the SDK's differ, one line each; ``own_environment``: variables the
    project sets on purpose beyond the spec (say, LMI's window), left out of the comparison."""
    found = []
    for key in sorted(set(catalog) | set(sdk)):
        ours, theirs = catalog.get(key), sdk.get(key)
        if key == "Environment":
            ours = {name: value for name, value in (ours or {}).items() if name not in own_environment}
            theirs = {name: str(value) for name, value in (theirs or {}).items()}
            for name in sorted(set(ours) | set(theirs)):
                if ours.get(name) != theirs.get(name):
                    found.append(f"Environment {name}: catalog {ours.get(name)!r}, SDK {theirs.get(name)!r}")
        elif ours != theirs:
            found.append(f"{key}: catalog {json.dumps(ours)}, SDK {json.dumps(theirs)}")
    return found
