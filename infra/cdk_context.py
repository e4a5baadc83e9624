"""The CDK app's context as ``cdk synth`` sees it, for the tools that run beside the CLI (``make preflight``).

cdk.json's ``context`` with ``-c key=value`` pairs on top: the same values, read by the same
:meth:`DeploymentSettings.from_context`, so a check and the deployment it guards agree on the settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .settings import DeploymentSettings, SettingsError, check_context_keys

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def project_context(cdk_json: Path = CDK_JSON) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(cdk_json.read_text())["context"]
    return context


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings as the CDK CLI's ``-c`` takes them (values stay strings, as they reach the app)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SettingsError(f"context argument {pair!r} is not key=value; allowed: -c key=value")
        parsed[key] = value
    return parsed


def deployment_settings(pairs: Iterable[str] = (), cdk_json: Path = CDK_JSON) -> DeploymentSettings:
    context = {**project_context(cdk_json), **parse_pairs(pairs)}
    check_context_keys(context)
    return DeploymentSettings.from_context(context.get)
