"""The streaming function: Python on the Lambda Web Adapter, behind a RESPONSE_STREAM function URL."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .bundling import function_code
from .monitoring import METRICS_NAMESPACE, Monitoring
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


def skip_checkov(construct: Construct, reasons: dict[str, str]) -> None:
    """Record accepted checkov findings, with their reasons, in the resource's template metadata."""
    construct.node.default_child.add_metadata(  # type: ignore[union-attr]
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
        endpoint_name: str,
        endpoint_arn: str,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        log_group = logs.LogGroup(
            self, "FunctionLogs",
            retention=LOG_RETENTION[settings.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Streams from one SageMaker endpoint; writes its own logs")
        # The API reference: InvokeEndpointWithResponseStream is authorized by sagemaker:InvokeEndpoint.
        role.add_to_policy(iam.PolicyStatement(sid="InvokeTheEndpoint", actions=["sagemaker:InvokeEndpoint"],
                                               resources=[endpoint_arn]))
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
        policy = role.node.find_child("DefaultPolicy").node.default_child
        self.function.node.default_child.add_override("DependsOn", [self.get_logical_id(policy)])
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
            auth_type=lambda_.FunctionUrlAuthType.AWS_IAM if settings.auth == "iam" else lambda_.FunctionUrlAuthType.NONE,
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
        # The app's settings (lambda/llm_stream/settings.py).
        "SAGEMAKER_ENDPOINT_NAME": endpoint_name,
        "MODEL_ID": settings.model.model_id,
        "MODEL_MAX_TOTAL_TOKENS": str(settings.model.max_total_tokens),
        "MAX_NEW_TOKENS": str(settings.max_new_tokens),
        "DEFAULT_MAX_NEW_TOKENS": str(settings.default_max_new_tokens),
        "MAX_INPUT_CHARS": str(settings.max_input_chars),
        "MAX_BODY_BYTES": str(settings.max_body_bytes),
        "TIME_BUDGET_SECONDS": str(settings.time_budget_seconds),
        # Lambda sends an instance one request at a time; the slack covers reader threads still
        # winding down after a cancelled stream.
        "MAX_CONCURRENT_STREAMS": "4",
        "LOG_PROMPTS": "true" if settings.log_prompts else "false",
        "MESSAGES_API": "true" if settings.model.supports_messages_api else "false",
        "METRICS_NAMESPACE": METRICS_NAMESPACE,
        "SERVICE_NAME": settings.name_prefix,
    }
