"""The default deployment's templates, whole: an opt-in feature must leave them as they are.

A deliberate change to the default templates updates the snapshot: ``UPDATE_SNAPSHOTS=1 make test-fast``,
then review its diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.helpers.cdk_app import templates

SNAPSHOT = Path(__file__).with_name("snapshots") / "default_templates.json"
#: Stands in for the function's asset key: a digest of the function's source, which changes with any edit.
ASSET = "<function asset>"


def default_templates() -> dict[str, Any]:
    endpoint, streaming = templates()
    streaming_json = streaming.to_json()
    for resource in streaming_json["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            resource["Properties"]["Code"]["S3Key"] = ASSET
    return {"endpoint": endpoint.to_json(), "streaming": streaming_json}


def test_the_default_templates_are_the_snapshot() -> None:
    current = default_templates()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the default templates changed: if on purpose, UPDATE_SNAPSHOTS=1 and review the snapshot's diff")
