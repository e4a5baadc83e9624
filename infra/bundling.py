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
        subprocess.run(  # noqa: S603 (this interpreter's pip, fixed arguments)
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
             "--requirement", str(self.source / "requirements.txt"), "--target", str(output),
             "--platform", self.platform, "--implementation", "cp", "--python-version", self.python_version,
             "--only-binary=:all:"],
            check=True,
        )
        shutil.copytree(self.source / PACKAGE, output / PACKAGE, ignore=shutil.ignore_patterns(*_EXCLUDE))
        shutil.copy2(self.source / HANDLER_SCRIPT, output / HANDLER_SCRIPT)  # keeps mode 755
        return True


def function_code(runtime: lambda_.Runtime, architecture: lambda_.Architecture) -> lambda_.Code:
    """The asset: fastapi + uvicorn wheels for the runtime, ``llm_stream/`` and ``run.sh``.

    Local bundling first; Docker (the runtime's build image) only where it fails.
    """
    python_version = runtime.name.removeprefix("python")
    arm = architecture.name == lambda_.Architecture.ARM_64.name  # jsii proxies do not compare equal
    platform = "manylinux2014_aarch64" if arm else "manylinux2014_x86_64"
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
