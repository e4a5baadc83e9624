"""Assertions on the synthesized templates, built with cdk.json's context as `cdk synth` builds them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from infra.catalog import load_catalog
from infra.settings import SettingsError
from tests.cdk_app import ROOT, build_app, templates

DEFAULT_MODEL = "huggingface-llm-falcon-7b-instruct-bf16"


def only(template, resource_type: str) -> dict:
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, f"expected one {resource_type}, found {len(resources)}"
    return next(iter(resources.values()))


def joined(value: dict) -> list:
    """The parts of an Fn::Join."""
    return value["Fn::Join"][1]


# -- endpoint stack --------------------------------------------------------------


def test_default_model_image_and_artifacts() -> None:
    endpoint, _ = templates()
    container = only(endpoint, "AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]
    image = joined(container["Image"])
    assert image[0] == {"Fn::FindInMap": ["ImageAccounts", {"Ref": "AWS::Region"}, "account"]}
    assert image[-1] == "/huggingface-pytorch-tgi-inference:2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04"
    accounts = endpoint.to_json()["Mappings"]["ImageAccounts"]
    assert accounts["us-east-1"] == {"account": "763104351884"}
    assert accounts["af-south-1"] == {"account": "626614931356"}
    source = container["ModelDataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix" and source["CompressionType"] == "None"
    assert joined(source["S3Uri"]) == [
        "s3://jumpstart-cache-prod-", {"Ref": "AWS::Region"},
        "/huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference-prepack/v2.0.0/"]
    assert "ModelDataUrl" not in container


def test_model_environment_and_network_isolation() -> None:
    endpoint, _ = templates()
    model = only(endpoint, "AWS::SageMaker::Model")["Properties"]
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"]["Environment"] == {
        "ENDPOINT_SERVER_TIMEOUT": "3600", "HF_MODEL_ID": "/opt/ml/model", "MAX_INPUT_LENGTH": "1024",
        "MAX_TOTAL_TOKENS": "2048", "MODEL_CACHE_ROOT": "/opt/ml/model", "SAGEMAKER_ENV": "1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_PROGRAM": "inference.py", "SM_NUM_GPUS": "1",
    }


def test_archive_artifacts_use_model_data_url() -> None:
    endpoint, _ = templates(model="huggingface-llm-falcon-180b-bf16")
    container = only(endpoint, "AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]
    assert joined(container["ModelDataUrl"])[-1].endswith("infer-prepack-huggingface-llm-falcon-180b-bf16.tar.gz")
    assert "ModelDataSource" not in container


@pytest.mark.parametrize(("instance_type", "expected"), [
    (None, {"SM_NUM_GPUS": "8"}),  # the model's default, ml.g5.48xlarge
    ("ml.g5.12xlarge", {"SM_NUM_GPUS": "4", "MAX_BATCH_PREFILL_TOKENS": "2048", "MAX_BATCH_TOTAL_TOKENS": "2048"}),
    ("ml.p4d.24xlarge", {"SM_NUM_GPUS": "8"}),
])
def test_per_instance_environment_overrides(instance_type: str | None, expected: dict) -> None:
    overrides = {"model": "huggingface-llm-falcon-40b-bf16"}
    if instance_type:
        overrides["instance_type"] = instance_type
    endpoint, _ = templates(**overrides)
    environment = only(endpoint, "AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]["Environment"]
    assert {key: environment.get(key) for key in expected} == expected


def test_endpoint_config_variant() -> None:
    endpoint, _ = templates()
    (variant,) = only(endpoint, "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g5.2xlarge"
    assert variant["InitialInstanceCount"] == 1
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 3600
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 3600
    assert "VolumeSizeInGB" not in variant
    assert "KmsKeyId" not in only(endpoint, "AWS::SageMaker::EndpointConfig")["Properties"]
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {
        "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}})


def test_generated_names_and_tags() -> None:
    endpoint, _ = templates()
    for resource_type in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        properties = only(endpoint, resource_type)["Properties"]
        assert not {"ModelName", "EndpointName"} & set(properties) or resource_type == "AWS::SageMaker::EndpointConfig"
        tags = {tag["Key"]: tag["Value"] for tag in properties["Tags"]}
        assert tags["llm-stream:model-id"] == DEFAULT_MODEL
        assert tags["llm-stream:spec-version"] == "4.6.16"


def test_execution_role_is_least_privilege() -> None:
    endpoint, _ = templates()
    role = only(endpoint, "AWS::IAM::Role")["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    statements = {s["Sid"]: s for s in only(endpoint, "AWS::IAM::Policy")["Properties"]["PolicyDocument"]["Statement"]}
    assert {sid: sorted(s["Action"]) if isinstance(s["Action"], list) else [s["Action"]]
            for sid, s in statements.items()} == {
        "ReadModelArtifacts": ["s3:GetObject"],
        "ListModelArtifacts": ["s3:ListBucket"],
        "EcrLogin": ["ecr:GetAuthorizationToken"],
        "PullImage": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "WriteLogs": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        "PutMetrics": ["cloudwatch:PutMetricData"],
    }
    prefix = "huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference-prepack/v2.0.0/"
    assert joined(statements["ReadModelArtifacts"]["Resource"])[-1] == f"/{prefix}*"
    assert statements["ListModelArtifacts"]["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    assert joined(statements["PullImage"]["Resource"])[-1] == ":repository/huggingface-pytorch-tgi-inference"
    assert joined(statements["WriteLogs"]["Resource"][0])[-1] == ":log-group:/aws/sagemaker/Endpoints/*"
    model = only(endpoint, "AWS::SageMaker::Model")
    assert model["DependsOn"] == [next(iter(endpoint.find_resources("AWS::IAM::Policy")))]


def test_no_autoscaling_when_bounds_are_equal() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 0)


def test_target_tracking_autoscaling() -> None:
    endpoint, _ = templates(min_instances=1, max_instances=4, target_invocations_per_instance=15)
    target = only(endpoint, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["ServiceNamespace"] == "sagemaker"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert joined(target["ResourceId"]) == ["endpoint/", {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
                                             "/variant/AllTraffic"]
    assert "RoleARN" not in target  # the service-linked role
    policy = only(endpoint, "AWS::ApplicationAutoScaling::ScalingPolicy")["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert tracking["TargetValue"] == 15
    endpoint.resource_count_is("AWS::IAM::Role", 1)


# -- streaming stack -------------------------------------------------------------


def test_function_runtime_handler_layer_and_environment() -> None:
    _, streaming = templates()
    function = only(streaming, "AWS::Lambda::Function")["Properties"]
    assert function["Runtime"] == "python3.14" and function["Architectures"] == ["arm64"]
    assert function["Handler"] == "run.sh"
    (layer,) = function["Layers"]
    assert joined(layer) == ["arn:", {"Ref": "AWS::Partition"}, ":lambda:", {"Ref": "AWS::Region"},
                             ":753240598075:layer:LambdaAdapterLayerArm64:28"]
    env = function["Environment"]["Variables"]
    assert {k: env[k] for k in ("AWS_LAMBDA_EXEC_WRAPPER", "AWS_LWA_INVOKE_MODE", "AWS_LWA_PORT",
                                 "AWS_LWA_READINESS_CHECK_PATH")} == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": "8080", "AWS_LWA_READINESS_CHECK_PATH": "/healthz"}
    assert env["MODEL_ID"] == DEFAULT_MODEL and env["MODEL_MAX_TOTAL_TOKENS"] == "2048"
    assert env["MAX_NEW_TOKENS"] == "1024" and env["MAX_INPUT_CHARS"] == "4096"
    assert env["DEFAULT_MAX_NEW_TOKENS"] == "256" and env["MAX_BODY_BYTES"] == "65536"
    assert env["TIME_BUDGET_SECONDS"] == "285" and function["Timeout"] == 300
    assert env["LOG_PROMPTS"] == "false"
    assert env["MESSAGES_API"] == "true"  # TGI 2.4
    assert "Fn::GetStackOutput" in json.dumps(env["SAGEMAKER_ENDPOINT_NAME"]) or "Fn::ImportValue" in json.dumps(
        env["SAGEMAKER_ENDPOINT_NAME"])
    assert function["ReservedConcurrentExecutions"] == 10
    assert function["MemorySize"] == 512


def test_function_environment_names_match_the_app_settings() -> None:
    from llm_stream.settings import Settings

    _, streaming = templates()
    env = only(streaming, "AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
    app_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    app_env["SAGEMAKER_ENDPOINT_NAME"] = "resolved-at-deploy"
    settings = Settings.from_env(app_env)
    assert settings.max_new_tokens == 1024 and settings.time_budget_seconds == 285
    assert settings.max_concurrent_streams == 4


def test_log_group_with_retention_destroyed_with_the_stack() -> None:
    _, streaming = templates(log_retention_days=90)
    (logical_id, log_group), = streaming.find_resources("AWS::Logs::LogGroup").items()
    assert log_group["Properties"]["RetentionInDays"] == 90
    assert log_group["DeletionPolicy"] == "Delete" and log_group["UpdateReplacePolicy"] == "Delete"
    function = only(streaming, "AWS::Lambda::Function")["Properties"]
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": logical_id}}


def test_function_url_streams_with_iam_auth_by_default() -> None:
    _, streaming = templates()
    url = only(streaming, "AWS::Lambda::Url")["Properties"]
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    assert url["AuthType"] == "AWS_IAM"
    assert "Cors" not in url
    streaming.resource_count_is("AWS::Lambda::Permission", 0)


def test_public_url_grants_both_invoke_permissions_to_everyone() -> None:
    _, streaming = templates(auth="none")
    assert only(streaming, "AWS::Lambda::Url")["Properties"]["AuthType"] == "NONE"
    permissions = [p["Properties"] for p in streaming.find_resources("AWS::Lambda::Permission").values()]
    assert sorted(p["Action"] for p in permissions) == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    assert all(p["Principal"] == "*" for p in permissions)
    url_permission = next(p for p in permissions if p["Action"] == "lambda:InvokeFunctionUrl")
    assert url_permission["FunctionUrlAuthType"] == "NONE"


def test_cors_origins() -> None:
    _, streaming = templates(cors_origins=["https://app.example.com", "http://localhost:3000"])
    cors = only(streaming, "AWS::Lambda::Url")["Properties"]["Cors"]
    assert cors["AllowOrigins"] == ["https://app.example.com", "http://localhost:3000"]
    assert sorted(cors["AllowMethods"]) == ["GET", "POST"]
    assert "authorization" in cors["AllowHeaders"]


def test_function_may_only_invoke_this_endpoint_and_write_its_logs() -> None:
    _, streaming = templates()
    role = only(streaming, "AWS::IAM::Role")["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    statements = only(streaming, "AWS::IAM::Policy")["Properties"]["PolicyDocument"]["Statement"]
    invoke = next(s for s in statements if s.get("Sid") == "InvokeTheEndpoint")
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    assert "Endpoint" in json.dumps(invoke["Resource"])  # the endpoint stack's ARN, by reference
    others = [s for s in statements if s is not invoke]
    assert all(str(action).startswith("logs:") for s in others for action in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    assert all("FunctionLogs" in json.dumps(s["Resource"]) for s in others)
    everything = json.dumps(statements)
    assert '"*"' not in everything and "sagemaker:*" not in everything


def test_outputs() -> None:
    endpoint, streaming = templates()
    assert set(streaming.to_json()["Outputs"]) >= {"FunctionUrl", "AuthMode", "EndpointName", "ModelId"}
    assert streaming.to_json()["Outputs"]["AuthMode"]["Value"] == "iam"
    assert set(endpoint.to_json()["Outputs"]) >= {"EndpointName", "ModelId"}


def test_stacks_are_environment_agnostic_and_named_by_prefix() -> None:
    app, endpoint, streaming = build_app(name_prefix="team-b")
    assert (endpoint.stack_name, streaming.stack_name) == ("team-b-endpoint", "team-b-streaming")
    assert endpoint.environment == "aws://unknown-account/unknown-region"


def test_nothing_is_retained_on_destroy() -> None:
    for template in (*templates(), *templates(auth="none", max_instances=3)):
        for logical_id, resource in template.to_json()["Resources"].items():
            assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
            assert resource.get("UpdateReplacePolicy", "Delete") == "Delete", logical_id


@pytest.mark.parametrize("model_id", sorted(load_catalog().models))
def test_every_catalog_model_synthesizes(model_id: str) -> None:
    endpoint, streaming = templates(model=model_id)
    model = load_catalog().get(model_id)
    (variant,) = only(endpoint, "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == model.default_instance_type
    env = only(streaming, "AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
    assert env["MODEL_ID"] == model_id
    assert env["MESSAGES_API"] == ("true" if model.supports_messages_api else "false")


# -- settings --------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model": "gpt-5"}, "context key 'model': model 'gpt-5' is not in the catalog; allowed: huggingface-llm-"),
    ({"model": "huggingface-llm-mistral-7b-instruct"}, "carries no container image aliases"),
    ({"model": "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16"}, "absent from the recorded spec data"),
    ({"instance_type": "ml.m5.large"}, "'instance_type': 'ml.m5.large' is not supported by "
                                       "huggingface-llm-falcon-7b-instruct-bf16; allowed: ml.g5.2xlarge, "),
    ({"auth": "open"}, "context key 'auth': 'open' is not allowed; allowed: iam, none"),
    ({"min_instances": 3, "max_instances": 2}, "'max_instances': 2 is below min_instances (3)"),
    ({"min_instances": 0}, "'min_instances': 0 is out of range; allowed: 1..20"),
    ({"reserved_concurrency": "ten"}, "'reserved_concurrency': 'ten' is not a whole number"),
    ({"log_retention_days": 8}, "'log_retention_days': 8 is not a CloudWatch retention period; allowed: 1, 3, 5"),
    ({"name_prefix": "1-bad"}, "'name_prefix': '1-bad' is not allowed"),
    ({"max_new_tokens": 5000}, "'max_new_tokens': 5000 is out of range; allowed: 1..2047"),
    ({"default_max_new_tokens": 2000}, "'default_max_new_tokens': 2000 is out of range; allowed: 1..1024"),
    ({"cors_origins": "ftp://x"}, "'cors_origins': ['ftp://x'] are not origins"),
    ({"function_timeout_seconds": 901}, "'function_timeout_seconds': 901 is out of range; allowed: 30..900"),
    ({"log_prompts": "yes"}, "'log_prompts': 'yes' is not allowed; allowed: true, false"),
])
def test_bad_settings_are_refused_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build_app(**overrides)
    assert message in str(raised.value)


def test_command_line_context_strings_are_converted() -> None:
    endpoint, streaming = templates(min_instances="2", max_instances="5", log_prompts="true", cors_origins="*")
    (variant,) = only(endpoint, "AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"]
    assert variant["InitialInstanceCount"] == 2
    assert only(streaming, "AWS::Lambda::Url")["Properties"]["Cors"]["AllowOrigins"] == ["*"]


def test_cdk_synth_fails_with_the_settings_message(tmp_path) -> None:
    """The real CLI, as a deployer runs it: `cdk synth -c auth=open`."""
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "the CDK CLI is missing: `make test` installs it (npm install)"
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "CDK_DISABLE_VERSION_CHECK": "1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run([str(cdk), "synth", "--quiet", "--output", str(tmp_path / "out"), "-c", "auth=open"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "error: context key 'auth': 'open' is not allowed; allowed: iam, none" in result.stderr
    assert "Traceback" not in result.stderr


# -- observability ----------------------------------------------------------------


def alarm_target(props: dict) -> tuple[str, str, dict]:
    """(namespace, metric name or math expression, the metric's stat and dimensions) of an alarm, in either form."""
    if "MetricName" in props:
        return props["Namespace"], props["MetricName"], {
            "stat": props.get("ExtendedStatistic") or props["Statistic"], "dimensions": props["Dimensions"]}
    returned = next(m for m in props["Metrics"] if m.get("ReturnData", True))
    if "Expression" in returned:
        return "math", returned["Expression"], {}
    stat = returned["MetricStat"]
    return stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], {
        "stat": stat["Stat"], "dimensions": stat["Metric"]["Dimensions"]}


def test_alarms_cover_function_and_endpoint() -> None:
    _, streaming = templates()
    alarms = [a["Properties"] for a in streaming.find_resources("AWS::CloudWatch::Alarm").values()]
    targets = {alarm_target(a)[:2]: (a, alarm_target(a)[2]) for a in alarms}
    assert set(targets) == {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("LlmStream", "ServerErrors"),
                            ("math", "e4xx + e5xx"), ("AWS/SageMaker", "ModelLatency")}
    latency, latency_metric = targets[("AWS/SageMaker", "ModelLatency")]
    assert latency_metric["stat"] == "p90" and latency["Threshold"] == 60_000_000
    assert {d["Name"] for d in latency_metric["dimensions"]} == {"EndpointName", "VariantName"}
    errors, _ = targets[("math", "e4xx + e5xx")]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in errors["Metrics"] if "MetricStat" in m} == {
        "Invocation4XXErrors", "Invocation5XXErrors"}
    assert targets[("LlmStream", "ServerErrors")][1]["dimensions"] == [{"Name": "Service", "Value": "llm-stream"}]
    assert all(a["Threshold"] >= 0 and a["TreatMissingData"] == "notBreaching" for a in alarms)
    assert all(a["AlarmDescription"] for a in alarms)


def test_dashboard_shows_function_and_endpoint_side_by_side() -> None:
    _, streaming = templates()
    dashboard = only(streaming, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    body = json.dumps(dashboard)
    for needle in ("AWS/Lambda", "AWS/SageMaker", "TimeToFirstToken", "ModelLatency", "Invocation5XXErrors",
                   "ConcurrentExecutions", "alarm"):
        assert needle in body, needle


def test_function_metrics_settings_match_the_alarms() -> None:
    _, streaming = templates(name_prefix="team-b")
    env = only(streaming, "AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
    assert env["METRICS_NAMESPACE"] == "LlmStream" and env["SERVICE_NAME"] == "team-b"
