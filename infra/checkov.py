"""checkov findings a stack accepts, recorded with their reasons in the resources' template metadata."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct


def cfn_resource(construct: IConstruct) -> CfnResource:
    """The CloudFormation resource behind an L2 construct."""
    resource = construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource of its own")
    return resource


def skip_checkov(construct: IConstruct, reasons: dict[str, str]) -> None:
    """Record accepted checkov findings, with their reasons, in the resource's template metadata."""
    cfn_resource(construct).add_metadata(
        "checkov", {"skip": [{"id": check, "comment": reason} for check, reason in reasons.items()]})
