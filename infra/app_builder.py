"""Build the CDK app from settings: both stacks, tags, and the cdk-nag checks."""

from __future__ import annotations

from aws_cdk import App, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from .endpoint_stack import EndpointStack
from .nag import acknowledge_findings
from .settings import DeploymentSettings, check_context_keys
from .streaming_stack import StreamingStack


def endpoint_stack_name(name_prefix: str) -> str:
    return f"{name_prefix}-endpoint"


def streaming_stack_name(name_prefix: str) -> str:
    return f"{name_prefix}-streaming"


def build(app: App, settings: DeploymentSettings | None = None) -> tuple[EndpointStack, StreamingStack]:
    if settings is None:
        check_context_keys(app.node.get_all_context())
        settings = DeploymentSettings.from_context(app.node.try_get_context)
    prefix = settings.name_prefix
    endpoint = EndpointStack(app, endpoint_stack_name(prefix), settings=settings,
                             description=f"SageMaker JumpStart endpoint for {settings.model.model_id}")
    streaming = StreamingStack(app, streaming_stack_name(prefix), settings=settings,
                               endpoint=endpoint,
                               description="Lambda function URL that streams the endpoint's answers")
    # The streaming stack holds the endpoint's name and ARN itself (no cross-stack reference): order by hand.
    streaming.add_dependency(endpoint)
    for stack in (endpoint, streaming):
        Tags.of(stack).add("llm-stream:deployment", prefix)
        acknowledge_findings(stack, settings)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return endpoint, streaming
