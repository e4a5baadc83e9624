"""The AWS Lambda Web Adapter's arm64 layer, by region: only where its version number is established.

The adapter's release workflow publishes the layer once per release in every region of its
``.github/workflows/prod.json`` (one new layer version per region and release; old ones are kept), and
its README gives one ARN for all regions. That number holds where arm64 has been published since the
workflow's first publish (commit 95ddf12, 2022): the ten regions below. Regions added later
(7c91f88, ca7a563, 5187096) started counting later unless old versions were back-published, which
nothing in the repository or its issues records (PR #264: "consider if we should backfill"), so their
number for a release is unknown: they are left out. me-south-1 (09da213) and me-central-1 (PR #744)
are no longer published; China's layers live in other accounts (aws-cn) and GovCloud has none (#277).

Release v1.0.1 is layer 28 (PR #746 moved the README to :28). v1.1.0 (layer 30: 29 went to a release
that was reverted, #793) is newer; the function is tested against v1.0.1's behaviour (NOTES.md), so 28
stays the default until v1.1.0's changes are read and tested. ``web_adapter_layer_version`` names
another version for every region (the deployer vouches for it; ``make preflight`` resolves it).
"""

from __future__ import annotations

from typing import Final

ACCOUNT: Final = "753240598075"
LAYER_NAME: Final = "LambdaAdapterLayerArm64"
RELEASE: Final = "v1.0.1"
#: Region -> the layer version of :data:`RELEASE`.
LAYER_VERSIONS: Final = dict.fromkeys((
    "ap-northeast-1", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "eu-central-1", "eu-west-1", "eu-west-2",
    "us-east-1", "us-east-2", "us-west-2"), 28)


def layer_version(region: str, named: int | None) -> int | None:
    """The version a deployment to ``region`` uses: the one the deployer named, else the pinned release's
    version there (``None``: not established in that region)."""
    return named if named is not None else LAYER_VERSIONS.get(region)


def layer_arn(partition: str, region: str, version: int | str) -> str:
    """The layer's ARN: literal values (``make preflight``), or the template's tokens (the stack)."""
    return f"arn:{partition}:lambda:{region}:{ACCOUNT}:layer:{LAYER_NAME}:{version}"
