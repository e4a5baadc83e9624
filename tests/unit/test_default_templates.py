"""Whole templates: the default deployment's (an opt-in feature must leave them as they are), and those of the
opt-in modes a refactor must leave as they are too (API keys, scale to zero).

A deliberate change updates the snapshots: ``UPDATE_SNAPSHOTS=1 make test-fast``, then review their diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cdk_app import templates

SNAPSHOTS = Path(__file__).with_name("snapshots")
#: Each snapshot's context overrides, by the snapshot's name.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "default": {}, "api_key": {"auth": "api_key"}, "scale_to_zero": {"scale_to_zero": "true"}}
#: Stands in for the function's asset key: a digest of the function's source, which changes with any edit.
ASSET = "<function asset>"


def current_templates(overrides: dict[str, Any]) -> dict[str, Any]:
    endpoint, streaming = templates(**overrides)
    streaming_json = streaming.to_json()
    for resource in streaming_json["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"]["S3Key"] = ASSET
    return {"endpoint": endpoint.to_json(), "streaming": streaming_json}


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_the_templates_are_the_snapshot(name: str) -> None:
    snapshot = SNAPSHOTS / f"{name}_templates.json"
    current = current_templates(CONFIGURATIONS[name])
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(snapshot.read_text()), (
        f"the {name} templates changed: if on purpose, UPDATE_SNAPSHOTS=1 and review the snapshot's diff")
