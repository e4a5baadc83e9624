"""The streaming function: Python on the Lambda Web Adapter, behind a RESPONSE_STREAM function URL."""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, CfnOutput, Duration, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import web_adapter
from .bundling import function_code
from .checkov import cfn_resource, skip_checkov
from .endpoint_stack import EndpointStack
from .function_settings import (
    KEY_PARTITION,
    TABLE_PARTITION_KEY,
    TABLE_SORT_KEY,
    TABLE_TIDY_ATTRIBUTE,
    api_keys,
    function_settings,
)
from .monitoring import Monitoring, ServedComponent
from .settings import LOG_RETENTION, DeploymentSettings

RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python runtime in this aws-cdk-lib
ARCHITECTURE = lambda_.Architecture.ARM_64
APP_PORT = "8080"
READINESS_PATH = function_settings.READINESS_PATH
#: Headers a browser may send: JSON body, SSE, an API key, and SigV4's own.
CORS_HEADERS = ["content-type", "accept", "authorization", "x-api-key", "x-amz-date", "x-amz-security-token",
                "x-amz-content-sha256"]
#: OpenAI's rate-limit headers, which the function sends on a limited key's answers (``rate_limits.py``).
RATE_LIMIT_HEADERS = [f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset")
                      for kind in ("requests", "tokens")] + ["x-should-retry"]
#: What the function URL checks itself; with api_key auth the function is the gate.
URL_AUTH = {"iam": lambda_.FunctionUrlAuthType.AWS_IAM, "none": lambda_.FunctionUrlAuthType.NONE,
            "api_key": lambda_.FunctionUrlAuthType.NONE}


def web_adapter_layer_arn(scope: Construct, version: int | None) -> str:
    """The arm64 layer's ARN in the deployment's region: ``version`` everywhere when the deployer names one,
    else the region's own version of the pinned release (``web_adapter.py``; other regions are refused)."""
    if version is None:
        mapping = CfnMapping(scope, "WebAdapterLayer", mapping={
            region: {"version": str(number)} for region, number in sorted(web_adapter.LAYER_VERSIONS.items())})
        number: str = mapping.find_in_map(Aws.REGION, "version")
    else:
        number = str(version)
    return web_adapter.layer_arn(Aws.PARTITION, Aws.REGION, number)


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
        skip_checkov(log_group, {
            "CKV_AWS_158": "CloudWatch Logs encrypts at rest with service-managed keys; the lines hold request "
                           "metadata, and no prompt text unless the deployer enables log_prompts.",
        })
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Streams from one SageMaker endpoint; writes its own logs")
        endpoint.grant_invoke(role)
        log_group.grant_write(role)
        self.api_keys = self._api_key_secret(role) if settings.auth == "api_key" else None
        self.key_table = self._key_table(role) if settings.auth == "api_key" else None
        self.budget_alerts = self._budget_alerts(role) if settings.auth == "api_key" else None
        self.function = self._function(settings, endpoint_name, role, log_group)
        self.url = self._function_url(settings)
        self.monitoring = Monitoring(
            self, "Monitoring", function=self.function, endpoint_name=endpoint_name,
            service_name=settings.name_prefix, model_latency_alarm_seconds=settings.model_latency_alarm_seconds,
            log_group=log_group, per_consumer=settings.auth == "api_key", components=_served_components(settings))

        CfnOutput(self, "FunctionUrl", value=self.url.url)
        CfnOutput(self, "AuthMode", value=settings.auth)
        CfnOutput(self, "FunctionName", value=self.function.function_name)
        CfnOutput(self, "EndpointName", value=endpoint_name)
        CfnOutput(self, "ModelId", value=settings.model.model_id)
        if settings.hosted_models:
            CfnOutput(self, "ModelIds", value=",".join(model.model_id for model in settings.models),
                      description="The models served, the default first: GET /v1/models lists those a caller may use")
        if self.api_keys is not None:
            CfnOutput(self, "ApiKeysSecretArn", value=self.api_keys.secret_arn,
                      description="Before the key table, the API keys' digests: python -m stream_client keys migrate")
        if self.key_table is not None:
            CfnOutput(self, "ApiKeysTableName", value=self.key_table.table_name,
                      description="API keys, their limits and usage: python -m stream_client keys --help")
        if self.budget_alerts is not None:
            CfnOutput(self, "BudgetAlertsTopicArn", value=self.budget_alerts.topic_arn,
                      description="A key at 80 % and 100 % of its monthly_tokens: subscribe to be told")

    def _function(self, settings: DeploymentSettings, endpoint_name: str, role: iam.Role,
                  log_group: logs.LogGroup) -> lambda_.Function:
        function = lambda_.Function(
            self, "Function",
            description=f"Streams {settings.model.model_id} token by token" if not settings.hosted_models else
            f"Streams {len(settings.hosted_models)} models token by token (the model field picks one)",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="run.sh",
            code=function_code(RUNTIME, ARCHITECTURE),
            layers=[lambda_.LayerVersion.from_layer_version_arn(
                self, "WebAdapter", web_adapter_layer_arn(self, settings.web_adapter_layer_version))],
            memory_size=settings.function_memory_mb,
            timeout=Duration.seconds(settings.function_timeout_seconds),
            reserved_concurrent_executions=settings.reserved_concurrency or None,  # 0: no reservation
            role=role,
            log_group=log_group,
            environment=_environment(settings, endpoint_name, self.api_keys, self.key_table, self.budget_alerts),
        )
        # The function must wait for the role's policy (CDK adds that), but the role itself is already
        # ordered by the function's GetAtt on it; the extra DependsOn is what cfn-lint W3005 reports.
        policy = cfn_resource(role.node.find_child("DefaultPolicy"))
        cfn_resource(function).add_override("DependsOn", [self.get_logical_id(policy)])
        skip_checkov(function, {
            "CKV_AWS_116": "Invoked synchronously through its function URL; a dead-letter queue only receives "
                           "failed asynchronous invocations.",
            "CKV_AWS_117": "Function URLs do not stream from inside a VPC, and the function reaches only the "
                           "SageMaker runtime's public HTTPS endpoint, with SigV4.",
            "CKV_AWS_173": "The environment holds no secrets (endpoint name, model id, caps); Lambda encrypts it "
                           "at rest with an AWS managed key.",
            **({} if settings.reserved_concurrency else {
                "CKV_AWS_115": "The deployer asked for no reservation (context reserved_concurrency=0, for accounts "
                               "whose concurrency quota cannot spare one); docs/deploying.md warns what that leaves "
                               "unbound.",
            }),
        })
        return function

    def _function_url(self, settings: DeploymentSettings) -> lambda_.FunctionUrl:
        url = self.function.add_function_url(
            auth_type=URL_AUTH[settings.auth],
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
            cors=lambda_.FunctionUrlCorsOptions(
                allowed_origins=list(settings.cors_origins),
                allowed_methods=[lambda_.HttpMethod.POST, lambda_.HttpMethod.GET],
                allowed_headers=CORS_HEADERS,
                # A page on another origin reads when to retry a throttled or waking model, and its key's limits.
                exposed_headers=["retry-after", *RATE_LIMIT_HEADERS],
                max_age=Duration.hours(1),
            ) if settings.cors_origins else None,
        )
        if settings.auth == "none":
            skip_checkov(url, {
                "CKV_AWS_258": "The deployer asked for a public URL (context auth=none, off by default); reserved "
                               "concurrency and the token, input and body caps bound what callers can spend.",
            })
        elif settings.auth == "api_key":
            skip_checkov(url, {
                "CKV_AWS_258": "The deployer chose API keys (context auth=api_key): the function itself refuses "
                               "every request without a valid key (401) before reading its body or calling the "
                               "endpoint; only /healthz and the page's static files are open.",
            })
        return url

    def _key_table(self, role: iam.IRole) -> dynamodb.Table:
        """The keys, their limit state and the usage ledger (``lambda/llm_stream/limits_table.py``), and the
        function's access: Query of the key records and UpdateItem of the limit state and the ledger, each
        on those items only (``dynamodb:LeadingKeys``), this table only.

        On demand (the load follows the streams), point-in-time recovery on (the keys and the ledger are worth
        restoring), TTL on ``tidy_at`` only to remove idle keys' state and old ledger days (never relied on for
        a limit: a lease holds its own expiry, which admission reads), removed by ``cdk destroy``."""
        table = dynamodb.Table(
            self, "ApiKeysTable",
            partition_key=dynamodb.Attribute(name=TABLE_PARTITION_KEY,
                                             type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=TABLE_SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=TABLE_TIDY_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Each action only on its own items (the partition key's value: limits_table.py): the function reads key
        # records and may not change them or their audit trail.
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [KEY_PARTITION]}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:UpdateItem"], resources=[table.table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["state#*", "usage#*"]}}))
        reason = ("Encrypted at rest with the AWS owned key: the table holds key digests, limits and token counts, "
                  "never a key, prompt or answer; a customer managed key would add a key policy and cost for nothing.")
        skip_checkov(table, {"CKV_AWS_119": reason})
        return table

    def _budget_alerts(self, role: iam.IRole) -> sns.Topic:
        """Where a key's budget alerts go (``lambda/llm_stream/budget_alerts.py``); the function may only publish
        to it. HTTPS only (a policy denying other transport); no subscription: the deployer adds theirs."""
        topic = sns.Topic(self, "BudgetAlerts", display_name="LLM stream budget alerts", enforce_ssl=True)
        topic.grant_publish(role)
        skip_checkov(topic, {
            "CKV_AWS_26": "An alert holds a key's name and token counts, never a key, prompt or answer; encrypting "
                          "with a KMS key would need a key policy granting the publisher and every subscriber.",
        })
        return topic

    def _api_key_secret(self, role: iam.IRole) -> secretsmanager.Secret:
        """Before the key table, the key document's secret; kept so that an upgraded deployment's keys keep
        working until ``stream_client keys migrate`` (which ``make deploy`` runs) copied them into the table.
        The function's access: GetSecretValue, this secret only.

        Its initial value is an empty key list, public by nature. CloudFormation updates a property only when
        the template's value changes, and this one never does, so a redeploy leaves the issued keys alone."""
        secret = secretsmanager.Secret(
            self, "ApiKeys",
            description="Digests of the API keys the streaming function accepts (python -m stream_client keys)",
            secret_string_value=SecretValue.unsafe_plain_text(api_keys.EMPTY_DOCUMENT),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"],
                                                         resources=[secret.secret_arn]))
        skip_checkov(secret, {
            "CKV_AWS_149": "The secret holds SHA-256 digests of random keys, not keys: a customer managed KMS key "
                           "would add a key policy and cost without protecting anything a digest does not.",
        })
        return secret


def _served_components(settings: DeploymentSettings) -> tuple[ServedComponent, ...]:
    """The endpoint's inference components, as its alarms and dashboard follow them (none: its variant)."""
    return tuple(ServedComponent(hosted.model.model_id, name, hosted.scale_to_zero)
                 for name, hosted in settings.inference_components)


def _environment(settings: DeploymentSettings, endpoint_name: str, api_keys_secret: secretsmanager.Secret | None,
                 key_table: dynamodb.Table | None, budget_alerts: sns.Topic | None) -> dict[str, str]:
    secret_id = "" if api_keys_secret is None else api_keys_secret.secret_arn
    table_name = "" if key_table is None else key_table.table_name
    topic_arn = "" if budget_alerts is None else budget_alerts.topic_arn
    return {
        # Lambda Web Adapter: run run.sh's server, stream its responses, wait for /healthz.
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": APP_PORT,
        "AWS_LWA_READINESS_CHECK_PATH": READINESS_PATH,
        **settings.for_function(endpoint_name, secret_id, table_name, topic_arn).to_environment(),
    }
