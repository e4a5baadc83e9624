"""Bundle the function without Docker: pip installs Lambda-platform wheels into the asset directly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .function_settings import LAMBDA_DIR

PACKAGE = "llm_stream"
HANDLER_SCRIPT = "run.sh"
_EXCLUDE = ["__pycache__", "*.pyc", ".pytest_cache"]


def pip_install_arguments(python_version: str, platform: str, target: Path, source: Path = LAMBDA_DIR) -> list[str]:
    """This interpreter's ``pip install`` of the function's requirements as wheels for the Lambda platform
    (``make preflight`` runs the same command with ``--dry-run``)."""
    return [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--requirement", str(source / "requirements.txt"), "--target", str(target),
            "--platform", platform, "--implementation", "cp", "--python-version", python_version,
            "--only-binary=:all:"]


def lambda_platform(runtime: lambda_.Runtime, architecture: lambda_.Architecture) -> tuple[str, str]:
    """(Python version, pip platform tag) of a Lambda runtime and architecture."""
    arm = architecture.name == lambda_.Architecture.ARM_64.name  # jsii proxies do not compare equal
    return runtime.name.removeprefix("python"), "manylinux2014_aarch64" if arm else "manylinux2014_x86_64"


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """``pip install --platform`` for the runtime's Python version and architecture, then the package."""

    def __init__(self, python_version: str, platform: str, source: Path = LAMBDA_DIR) -> None:
        self.python_version = python_version
        self.platform = platform
        self.source = source

    def try_bundle(self, output_dir: str, *_options: Any, **_keywords: Any) -> bool:
        """Bundle into ``output_dir``; the bundling options (jsii passes them as one struct) are not needed."""
        output = Path(output_dir)
        subprocess.run(pip_install_arguments(self.python_version, self.platform, output, self.source),  # noqa: S603
                       check=True)
        shutil.copytree(self.source / PACKAGE, output / PACKAGE, ignore=shutil.ignore_patterns(*_EXCLUDE))
        shutil.copy2(self.source / HANDLER_SCRIPT, output / HANDLER_SCRIPT)  # keeps mode 755
        return True


def function_code(runtime: lambda_.Runtime, architecture: lambda_.Architecture) -> lambda_.Code:
    """The asset: starlette, pydantic and uvicorn wheels for the runtime, ``llm_stream/`` and ``run.sh``.

    Local bundling first; Docker (the runtime's build image) only where it fails.
    """
    python_version, platform = lambda_platform(runtime, architecture)
    return lambda_.Code.from_asset(
        str(LAMBDA_DIR),
        exclude=_EXCLUDE,
        asset_hash_type=AssetHashType.OUTPUT,  # the bundle's content, wheels included, names the asset
        bundling=BundlingOptions(
            image=runtime.bundling_image,
            platform=architecture.docker_platform,
            local=PipLocalBundling(python_version, platform),
            command=["bash", "-c",
                     f"pip install --no-compile -r requirements.txt -t /asset-output && "
                     f"cp -r {PACKAGE} {HANDLER_SCRIPT} /asset-output/"],
        ),
    )
