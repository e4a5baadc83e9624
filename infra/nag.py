"""cdk-nag findings this design accepts, each with the reason it is right here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations

from .endpoint_stack import EndpointStack
from .settings import DeploymentSettings

_LOG_GROUPS = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*"


def acknowledge_findings(stack: Stack, settings: DeploymentSettings) -> None:
    findings = endpoint_findings(settings) if isinstance(stack, EndpointStack) else streaming_findings(settings)
    for rule, reason in findings.items():
        Validations.of(stack).acknowledge(Acknowledgment(id=rule, reason=reason))


def streaming_findings(settings: DeploymentSettings) -> dict[str, str]:
    """The streaming stack's accepted findings (only api_key auth has any)."""
    if settings.auth != "api_key":
        return {}
    return {
        "AwsSolutions-SMG4":
            "The secret lists API keys that people issue to consumers and revoke (python -m stream_client keys); "
            "a rotation function would replace keys consumers hold without telling them. A key is rotated by "
            "issuing a new one, optionally with --expires, and revoking the old one.",
        "AwsSolutions-SNS2":
            "The budget-alert topic carries a key's name and token counts, never a key, prompt or answer; a KMS key "
            "would need a key policy granting the publisher and every subscriber, for nothing secret.",
    }


def endpoint_findings(settings: DeploymentSettings) -> dict[str, str]:
    """The endpoint stack's accepted findings: rule id with its resource -> reason."""
    several = len(settings.models) > 1
    return {
        **{f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{model.artifacts.bucket_prefix}<AWS::Region>/"
           f"{model.artifacts.key}*]":
           f"{model.model_id if several else 'The model'}'s artifacts are every object under its JumpStart prefix (a "
           "model is many files); the grant is read-only and limited to that one prefix of the public JumpStart "
           "bucket." for model in settings.models},
        "AwsSolutions-IAM5[Resource::*]":
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions; "
            "image pulls themselves are scoped to the one DLC repository.",
        f"AwsSolutions-IAM5[Resource::{_LOG_GROUPS}]":
            "SageMaker names the endpoint's log group after the generated endpoint name, unknown until the "
            "endpoint exists; the grant covers only SageMaker endpoint log groups in this account and region.",
        f"AwsSolutions-IAM5[Resource::{_LOG_GROUPS}:log-stream:*]":
            "Log streams are created per instance and container at run time under those same log groups.",
    }
