"""The streaming function: Python on the Lambda Web Adapter, behind a RESPONSE_STREAM function URL."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, CfnResource, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from .bundling import function_code
from .endpoint_stack import EndpointStack
from .monitoring import Monitoring
from .settings import LOG_RETENTION, DeploymentSettings

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python runtime in this aws-cdk-lib
ARCHITECTURE = lambda_.Architecture.ARM_64
WEB_ADAPTER_ACCOUNT = "753240598075"
WEB_ADAPTER_LAYER = {lambda_.Architecture.ARM_64.name: "LambdaAdapterLayerArm64",
                     lambda_.Architecture.X86_64.name: "LambdaAdapterLayerX86"}
APP_PORT = "8080"
READINESS_PATH = "/healthz"
#: Headers a browser may send: JSON body, SSE, and SigV4's own.
CORS_HEADERS = ["content-type", "accept", "authorization", "x-amz-date", "x-amz-security-token",
                "x-amz-content-sha256"]


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


def web_adapter_layer_arn(version: int, architecture: lambda_.Architecture = ARCHITECTURE) -> str:
    return Fn.join("", ["arn:", Aws.PARTITION, ":lambda:", Aws.REGION, f":{WEB_ADAPTER_ACCOUNT}:layer:",
                        f"{WEB_ADAPTER_LAYER[architecture.name]}:{version}"])


class StreamingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        endpoint: EndpointStack,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id, description=description)
        endpoint_name = endpoint.endpoint_name
        log_group = logs.LogGroup(
            self, "FunctionLogs",
            retention=LOG_RETENTION[settings.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Streams from one SageMaker endpoint; writes its own logs")
        endpoint.grant_invoke(role)
        log_group.grant_write(role)

        self.function = lambda_.Function(
            self, "Function",
            description=f"Streams {settings.model.model_id} token by token",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="run.sh",
            code=function_code(RUNTIME, ARCHITECTURE),
            layers=[lambda_.LayerVersion.from_layer_version_arn(
                self, "WebAdapter", web_adapter_layer_arn(settings.web_adapter_layer_version))],
            memory_size=settings.function_memory_mb,
            timeout=Duration.seconds(settings.function_timeout_seconds),
            reserved_concurrent_executions=settings.reserved_concurrency,
            role=role,
            log_group=log_group,
            environment=_environment(settings, endpoint_name),
        )
        # The function must wait for the role's policy (CDK adds that), but the role itself is already
        # ordered by the function's GetAtt on it; the extra DependsOn is what cfn-lint W3005 reports.
        policy = cfn_resource(role.node.find_child("DefaultPolicy"))
        cfn_resource(self.function).add_override("DependsOn", [self.get_logical_id(policy)])
        skip_checkov(self.function, {
            "CKV_AWS_116": "Invoked synchronously through its function URL; a dead-letter queue only receives "
                           "failed asynchronous invocations.",
            "CKV_AWS_117": "Function URLs do not stream from inside a VPC, and the function reaches only the "
                           "SageMaker runtime's public HTTPS endpoint, with SigV4.",
            "CKV_AWS_173": "The environment holds no secrets (endpoint name, model id, caps); Lambda encrypts it "
                           "at rest with an AWS managed key.",
        })
        skip_checkov(log_group, {
            "CKV_AWS_158": "CloudWatch Logs encrypts at rest with service-managed keys; the lines hold request "
                           "metadata, and no prompt text unless the deployer enables log_prompts.",
        })

        self.url = self.function.add_function_url(
            auth_type=(lambda_.FunctionUrlAuthType.AWS_IAM if settings.auth == "iam"
                       else lambda_.FunctionUrlAuthType.NONE),
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
            cors=lambda_.FunctionUrlCorsOptions(
                allowed_origins=list(settings.cors_origins),
                allowed_methods=[lambda_.HttpMethod.POST, lambda_.HttpMethod.GET],
                allowed_headers=CORS_HEADERS,
                max_age=Duration.hours(1),
            ) if settings.cors_origins else None,
        )

        if settings.auth == "none":
            skip_checkov(self.url, {
                "CKV_AWS_258": "The deployer asked for a public URL (context auth=none, off by default); reserved "
                               "concurrency and the token, input and body caps bound what callers can spend.",
            })

        self.monitoring = Monitoring(
            self, "Monitoring", function=self.function, endpoint_name=endpoint_name,
            service_name=settings.name_prefix, model_latency_alarm_seconds=settings.model_latency_alarm_seconds)

        CfnOutput(self, "FunctionUrl", value=self.url.url)
        CfnOutput(self, "AuthMode", value=settings.auth)
        CfnOutput(self, "FunctionName", value=self.function.function_name)
        CfnOutput(self, "EndpointName", value=endpoint_name)
        CfnOutput(self, "ModelId", value=settings.model.model_id)


def _environment(settings: DeploymentSettings, endpoint_name: str) -> dict[str, str]:
    return {
        # Lambda Web Adapter: run run.sh's server, stream its responses, wait for /healthz.
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": APP_PORT,
        "AWS_LWA_READINESS_CHECK_PATH": READINESS_PATH,
        **settings.for_function(endpoint_name).to_environment(),
    }
