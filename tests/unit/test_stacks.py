"""Assertions on the synthesized templates, built with cdk.json's context as `cdk synth` builds them."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Capture, Match

from infra.catalog import load_catalog
from infra.settings import SettingsError
from tests.helpers.cdk_app import PARTITION, REGION, build_app, join, templates

DEFAULT_MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
ARTIFACTS_PREFIX = "huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference-prepack/v2.0.0/"


# -- endpoint stack --------------------------------------------------------------


def test_default_model_image_and_artifacts() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"PrimaryContainer": {
        "Image": Match.object_equals(join(
            {"Fn::FindInMap": ["Images", REGION, "account"]}, ".dkr.ecr.", REGION, ".", {"Ref": "AWS::URLSuffix"},
            "/", {"Fn::FindInMap": ["Images", REGION, "repository"]}, ":",
            {"Fn::FindInMap": ["Images", REGION, "tag"]})),
        "ModelDataSource": Match.object_equals({"S3DataSource": {
            "S3DataType": "S3Prefix", "CompressionType": "None",
            "S3Uri": join("s3://jumpstart-cache-prod-", REGION, f"/{ARTIFACTS_PREFIX}")}}),
        "ModelDataUrl": Match.absent(),
    }})
    tgi = {"repository": "huggingface-pytorch-tgi-inference", "tag": "2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04"}
    endpoint.has_mapping("Images", {
        "us-east-1": Match.object_equals({"account": "763104351884", **tgi}),
        "af-south-1": Match.object_equals({"account": "626614931356", **tgi}),
    })


def test_model_environment_and_network_isolation() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    endpoint.has_resource_properties("AWS::SageMaker::Model", {
        "EnableNetworkIsolation": True,
        "PrimaryContainer": {"Environment": Match.object_equals({
            "ENDPOINT_SERVER_TIMEOUT": "3600", "HF_MODEL_ID": "/opt/ml/model", "MAX_INPUT_LENGTH": "1024",
            "MAX_TOTAL_TOKENS": "2048", "MODEL_CACHE_ROOT": "/opt/ml/model", "SAGEMAKER_ENV": "1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_PROGRAM": "inference.py", "SM_NUM_GPUS": "1",
        })},
    })


def test_archive_artifacts_use_model_data_url() -> None:
    endpoint, _ = templates(model="huggingface-llm-falcon-180b-bf16")
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"PrimaryContainer": {
        "ModelDataUrl": Match.object_equals(join(
            "s3://jumpstart-cache-prod-", REGION,
            Match.string_like_regexp(r"/infer-prepack-huggingface-llm-falcon-180b-bf16\.tar\.gz$"))),
        "ModelDataSource": Match.absent(),
    }})


MISTRAL_INSTRUCT = "huggingface-llm-mistral-7b-instruct"


def test_an_lmi_model_gets_the_djl_image_per_region_its_environment_and_artifacts() -> None:
    endpoint, streaming = templates(model=MISTRAL_INSTRUCT)
    lmi = {"repository": "djl-inference", "tag": "0.28.0-lmi10.0.0-cu124"}
    deepspeed = {"repository": "djl-inference", "tag": "0.27.0-deepspeed0.12.6-cu121"}
    endpoint.has_mapping("Images", {
        "us-east-1": Match.object_equals({"account": "763104351884", **lmi}),
        "af-south-1": Match.object_equals({"account": "626614931356", **lmi}),
        # The spec's two exceptions: an older DJL DeepSpeed image where LMI 10 is not published.
        "ap-northeast-3": Match.object_equals({"account": "364406365360", **deepspeed}),
        "ap-southeast-3": Match.object_equals({"account": "907027046896", **deepspeed}),
    })
    assert len(endpoint.to_json()["Mappings"]["Images"]) == 24  # the regions the spec has an image for
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"PrimaryContainer": {
        "Environment": Match.object_equals({
            "MODEL_CACHE_ROOT": "/opt/ml/model", "SAGEMAKER_ENV": "1", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "SAGEMAKER_PROGRAM": "inference.py", "OPTION_MAX_MODEL_LEN": "4096"}),
        "ModelDataSource": Match.object_equals({"S3DataSource": {
            "S3DataType": "S3Prefix", "CompressionType": "None",
            "S3Uri": join("s3://jumpstart-cache-prod-", REGION, "/huggingface-llm/huggingface-llm-mistral-7b-instruct"
                          "/artifacts/inference-prepack/v2.1.0/")}}),
    }})
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": Match.array_equals([Match.object_like({"InstanceType": "ml.g5.12xlarge"})])})
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "CONTAINER_FAMILY": "lmi", "CHAT_FORMAT": "mistral-instruct", "MODEL_MAX_TOTAL_TOKENS": "4096",
        "MAX_NEW_TOKENS": "1024", "MAX_INPUT_CHARS": str(4 * 3072)})}})


def test_an_lmi_model_s_window_is_a_setting_told_to_the_container_and_the_function() -> None:
    endpoint, streaming = templates(model=MISTRAL_INSTRUCT, lmi_max_model_len="8192")
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"PrimaryContainer": {
        "Environment": Match.object_like({"OPTION_MAX_MODEL_LEN": "8192"})}})
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "MODEL_MAX_TOTAL_TOKENS": "8192", "MAX_NEW_TOKENS": "1024", "MAX_INPUT_CHARS": str(4 * 7168)})}})


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
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    # object_like: these keys with these values; the rest of the environment is the model's.
    endpoint.has_resource_properties("AWS::SageMaker::Model", {
        "PrimaryContainer": {"Environment": Match.object_like(expected)}})


def test_endpoint_config_variant() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::SageMaker::EndpointConfig", 1)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": Match.array_equals([Match.object_like({  # exactly one variant
            "InstanceType": "ml.g5.2xlarge",
            "InitialInstanceCount": 1,
            # The spec sets no deploy_kwargs: a 7B model's fallback, not CreateEndpointConfig's maximum 3600.
            "ModelDataDownloadTimeoutInSeconds": 600,
            "ContainerStartupHealthCheckTimeoutInSeconds": 900,
            "VolumeSizeInGB": Match.absent(),
        })]),
        "KmsKeyId": Match.absent(),
    })
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {
        "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
        "RetainAllVariantProperties": Match.absent()})  # no autoscaling: the config's count applies


@pytest.mark.parametrize(("model_id", "timeouts"), [
    ("huggingface-llm-falcon-40b-instruct-bf16", (1200, 1800)), ("huggingface-llm-falcon-180b-bf16", (3600, 3600))])
def test_variant_timeouts_follow_the_model_s_size(model_id: str, timeouts: tuple[int, int]) -> None:
    endpoint, _ = templates(model=model_id)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": [Match.object_like({"ModelDataDownloadTimeoutInSeconds": timeouts[0],
                                                  "ContainerStartupHealthCheckTimeoutInSeconds": timeouts[1]})]})


@pytest.mark.parametrize(("overrides", "name"), [
    ({}, "llm-stream-falcon-7b-instruct-bf16-g5-2xlarge"),
    ({"name_prefix": "Team-B", "instance_type": "ml.g5.4xlarge"}, "team-b-falcon-7b-instruct-bf16-g5-4xlarge"),
    # 24 + 55 + 9 characters: cut to 63 with a digest of the whole name, so two long names stay apart.
    ({"name_prefix": "a-very-long-team-prefix1", "model": "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16"},
     Match.string_like_regexp(r"^a-very-long-team-prefix1-bilingual-rinna-4b-instructio-[0-9a-f]{8}$")),
])
def test_the_endpoint_s_name_is_fixed_at_synth_and_its_log_group_is_the_stack_s(overrides: dict, name: object) -> None:
    endpoint, streaming = templates(**overrides)
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": name})
    resolved = endpoint.find_resources("AWS::SageMaker::Endpoint")
    (endpoint_name,) = [resource["Properties"]["EndpointName"] for resource in resolved.values()]
    assert len(endpoint_name) <= 63
    assert re.fullmatch(r"[a-z0-9](-*[a-z0-9])*", endpoint_name)  # SageMaker's pattern, lowercase as its ARNs
    # The log group SageMaker writes to, created first so that SageMaker does not create it without retention.
    log_group_id = endpoint.get_resource_id("AWS::Logs::LogGroup", {
        "Properties": {"LogGroupName": f"/aws/sagemaker/Endpoints/{endpoint_name}", "RetentionInDays": 30},
        "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    endpoint.has_resource("AWS::SageMaker::Endpoint", {"DependsOn": Match.array_with([log_group_id])})
    # The function is told the same name, as a plain value (no cross-stack reference to go stale).
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "SAGEMAKER_ENDPOINT_NAME": endpoint_name})}})


def test_generated_names_and_tags() -> None:
    endpoint, _ = templates()
    for resource_type in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        endpoint.resource_count_is(resource_type, 1)
        names = {"ModelName": Match.absent()} if resource_type == "AWS::SageMaker::Model" else {}
        # Ours, and the ones the sagemaker SDK's JumpStartModel.deploy puts on what it creates.
        for key, value in (("llm-stream:model-id", DEFAULT_MODEL), ("llm-stream:spec-version", "4.6.16"),
                           ("sagemaker-sdk:jumpstart-model-id", DEFAULT_MODEL),
                           ("sagemaker-sdk:jumpstart-model-version", "4.6.16")):
            endpoint.has_resource_properties(resource_type, {
                **names, "Tags": Match.array_with([Match.object_equals({"Key": key, "Value": value})])})
    # Only the SageMaker resources carry JumpStart's tags.
    endpoint.has_resource_properties("AWS::IAM::Role", {"Tags": Match.not_(Match.array_with([
        Match.object_like({"Key": "sagemaker-sdk:jumpstart-model-id"})]))})


def test_execution_role_is_least_privilege() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::IAM::Role", 1)
    endpoint.resource_count_is("AWS::IAM::Policy", 1)
    endpoint.has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": {"Statement": Match.array_equals([Match.object_equals({
            "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}})])},
        "ManagedPolicyArns": Match.absent(),
    })
    bucket_arn = join("arn:", PARTITION, ":s3:::jumpstart-cache-prod-", REGION)
    # The whole document, statement by statement: nothing else is granted.
    endpoint.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": Match.object_equals({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadModelArtifacts", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": join("arn:", PARTITION, ":s3:::jumpstart-cache-prod-", REGION, f"/{ARTIFACTS_PREFIX}*")},
            {"Sid": "ListModelArtifacts", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{ARTIFACTS_PREFIX}*"]}}},
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "PullImage", "Effect": "Allow",
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
             "Resource": join("arn:", PARTITION, ":ecr:", REGION, ":",
                              {"Fn::FindInMap": ["Images", REGION, "account"]}, ":repository/",
                              {"Fn::FindInMap": ["Images", REGION, "repository"]})},
            {"Sid": "WriteLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                        "logs:PutLogEvents"],
             # This endpoint's log group only (its ARN attribute ends in ":*", covering its streams).
             "Resource": {"Fn::GetAtt": [endpoint.get_resource_id("AWS::Logs::LogGroup"), "Arn"]}},
            {"Sid": "PutMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        ],
    })})
    # The model runs as the role, waits for the policy, and the policy is the role's.
    role, policy = Capture(), Capture()
    endpoint.has_resource("AWS::SageMaker::Model", {
        "Properties": {"ExecutionRoleArn": {"Fn::GetAtt": [role, "Arn"]}},
        "DependsOn": Match.array_equals([policy]),
    })
    assert role.as_string() == endpoint.get_resource_id("AWS::IAM::Role")
    assert policy.as_string() == endpoint.get_resource_id("AWS::IAM::Policy", {
        "Properties": {"Roles": Match.array_equals([{"Ref": role.as_string()}])}})


def test_no_autoscaling_when_bounds_are_equal() -> None:
    endpoint, _ = templates()
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 0)


def test_target_tracking_autoscaling() -> None:
    endpoint, _ = templates(min_instances=1, max_instances=4, target_invocations_per_instance=15)
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 1)
    endpoint.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 4,
        "ResourceId": Match.object_equals(join("endpoint/", {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
                                               "/variant/AllTraffic")),
        "RoleARN": Match.absent(),  # the service-linked role
    })
    # An update keeps the count autoscaling set (else a new config drops the endpoint to min_instances).
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {"RetainAllVariantProperties": True})
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 1)
    target = Capture()
    endpoint.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "ScalingTargetId": {"Ref": target},
        "TargetTrackingScalingPolicyConfiguration": {
            "PredefinedMetricSpecification": Match.object_equals({
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}),
            "TargetValue": 15,
        },
    })
    assert target.as_string() == endpoint.get_resource_id("AWS::ApplicationAutoScaling::ScalableTarget")
    endpoint.resource_count_is("AWS::IAM::Role", 1)


# -- streaming stack -------------------------------------------------------------


def test_function_runtime_handler_layer_and_environment() -> None:
    _, streaming = templates()
    streaming.resource_count_is("AWS::Lambda::Function", 1)
    streaming.has_resource_properties("AWS::Lambda::Function", {
        "Runtime": "python3.14",
        "Architectures": Match.array_equals(["arm64"]),
        "Handler": "run.sh",
        "Layers": Match.array_equals([join("arn:", PARTITION, ":lambda:", REGION,
                                           ":753240598075:layer:LambdaAdapterLayerArm64:",
                                           {"Fn::FindInMap": ["WebAdapterLayer", REGION, "version"]})]),
        "Environment": {"Variables": Match.object_like({
            "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_INVOKE_MODE": "response_stream",
            "AWS_LWA_PORT": "8080", "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
            "MODEL_ID": DEFAULT_MODEL, "MODEL_MAX_TOTAL_TOKENS": "2048",
            "MAX_NEW_TOKENS": "1024", "MAX_INPUT_CHARS": "4096",
            "DEFAULT_MAX_NEW_TOKENS": "256", "MAX_BODY_BYTES": "65536",
            "TIME_BUDGET_SECONDS": "285",
            "LOG_PROMPTS": "false",
            "CHAT_FORMAT": "falcon-instruct",
            "SAGEMAKER_ENDPOINT_NAME": "llm-stream-falcon-7b-instruct-bf16-g5-2xlarge",
        })},
        "Timeout": 300,
        "ReservedConcurrentExecutions": 10,
        "MemorySize": 1024,
    })


LAYER_REGIONS = ["ap-northeast-1", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "eu-central-1", "eu-west-1",
                 "eu-west-2", "us-east-1", "us-east-2", "us-west-2"]


def region_rule(regions: list[str]) -> dict:
    return {"Assertions": [{"Assert": {"Fn::Contains": [regions, REGION]},
                            "AssertDescription": Match.string_like_regexp("^This deployment runs only in ")}]}


def test_reserved_concurrency_0_reserves_nothing_and_says_why_checkov_s_rule_is_waived() -> None:
    _, streaming = templates(reserved_concurrency=0)
    streaming.has_resource("AWS::Lambda::Function", {
        "Properties": Match.object_like({"ReservedConcurrentExecutions": Match.absent()}),
        "Metadata": {"checkov": {"skip": Match.array_with([
            Match.object_like({"id": "CKV_AWS_115", "comment": Match.string_like_regexp("reserved_concurrency=0")})])}},
    })
    _, default = templates()
    default.has_resource("AWS::Lambda::Function", {"Metadata": {"checkov": {"skip": Match.not_(Match.array_with([
        Match.object_like({"id": "CKV_AWS_115"})]))}}})
    with pytest.raises(SettingsError, match=r"'reserved_concurrency': -1 is out of range; allowed: 0\.\.1000"):
        build_app(reserved_concurrency=-1)


def test_the_web_adapter_layer_is_the_region_s_own_and_other_regions_are_refused_before_anything() -> None:
    endpoint, streaming = templates()
    # v1.0.1 is layer 28 where arm64 has been published since the adapter's first release; elsewhere unknown.
    assert streaming.to_json()["Mappings"]["WebAdapterLayer"] == {region: {"version": "28"}
                                                                   for region in LAYER_REGIONS}
    # The endpoint stack deploys first: its rule refuses a region without the layer or the model's image.
    images = set(load_catalog().get(DEFAULT_MODEL).image.regions)
    assert set(LAYER_REGIONS) <= images
    endpoint.template_matches({"Rules": {"SupportedRegion": region_rule(LAYER_REGIONS)}})


def test_a_named_layer_version_applies_everywhere_and_only_the_image_bounds_the_regions() -> None:
    endpoint, streaming = templates(model="huggingface-llm-mistral-7b-instruct", web_adapter_layer_version="30")
    streaming.has_resource_properties("AWS::Lambda::Function", {"Layers": Match.array_equals([join(
        "arn:", PARTITION, ":lambda:", REGION, ":753240598075:layer:LambdaAdapterLayerArm64:30")])})
    assert "Mappings" not in streaming.to_json()
    mistral_regions = sorted(load_catalog().get("huggingface-llm-mistral-7b-instruct").image.regions)
    # Without the two regions whose image is DJL 0.27 DeepSpeed (another window option, another stop reason).
    mistral_regions = [region for region in mistral_regions if region not in ("ap-northeast-3", "ap-southeast-3")]
    assert len(mistral_regions) == 22
    endpoint.template_matches({"Rules": {"SupportedRegion": region_rule(mistral_regions)}})


def test_log_group_with_retention_destroyed_with_the_stack() -> None:
    _, streaming = templates(log_retention_days=90)
    streaming.resource_count_is("AWS::Logs::LogGroup", 1)
    streaming.has_resource("AWS::Logs::LogGroup", {
        "Properties": {"RetentionInDays": 90}, "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    log_group = Capture()
    streaming.resource_count_is("AWS::Lambda::Function", 1)
    streaming.has_resource_properties("AWS::Lambda::Function", {
        "LoggingConfig": Match.object_equals({"LogGroup": {"Ref": log_group}})})
    assert log_group.as_string() == streaming.get_resource_id("AWS::Logs::LogGroup")
    # The function's role writes to that log group, and to no other.
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": Match.array_with(["logs:PutLogEvents"]),
                           "Resource": Match.object_equals({"Fn::GetAtt": [log_group.as_string(), "Arn"]})})])}})


def test_function_url_streams_with_iam_auth_by_default() -> None:
    _, streaming = templates()
    streaming.resource_count_is("AWS::Lambda::Url", 1)
    streaming.has_resource_properties("AWS::Lambda::Url", {
        "InvokeMode": "RESPONSE_STREAM",
        "AuthType": "AWS_IAM",
        "Cors": Match.absent(),
    })
    streaming.resource_count_is("AWS::Lambda::Permission", 0)


def test_public_url_grants_both_invoke_permissions_to_everyone() -> None:
    _, streaming = templates(auth="none")
    streaming.resource_count_is("AWS::Lambda::Url", 1)
    streaming.has_resource_properties("AWS::Lambda::Url", {"AuthType": "NONE"})
    # Two permissions, one of each action (the two patterns cannot match the same resource), both to "*".
    streaming.resource_count_is("AWS::Lambda::Permission", 2)
    streaming.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "Principal": "*"})
    streaming.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE"})


def test_api_key_auth_makes_the_function_the_gate_with_its_own_secret() -> None:
    _, streaming = templates(auth="api_key")
    # The URL lets everyone reach the function (both invoke permissions, as for a public URL) ...
    streaming.has_resource_properties("AWS::Lambda::Url", {"AuthType": "NONE", "InvokeMode": "RESPONSE_STREAM"})
    streaming.resource_count_is("AWS::Lambda::Permission", 2)
    streaming.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "Principal": "*", "InvokedViaFunctionUrl": True})
    streaming.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE"})
    # ... which checks keys against one secret, created empty and deleted with the stack.
    streaming.resource_count_is("AWS::SecretsManager::Secret", 1)
    streaming.has_resource("AWS::SecretsManager::Secret", {
        "Properties": {"SecretString": '{\n "format": "llm-stream-api-keys/1",\n "keys": []\n}',
                       "Name": Match.absent(), "GenerateSecretString": Match.absent()},
        "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    secret = streaming.get_resource_id("AWS::SecretsManager::Secret")
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "AUTH_MODE": "api_key", "API_KEYS_SECRET_ID": {"Ref": secret}, "API_KEYS_FILE": "",
        "API_KEYS_REFRESH_SECONDS": "60", "API_KEYS_MAX_STALE_INTERVALS": "5"})}})
    # The function may read that one secret's value, and nothing else of Secrets Manager.
    streaming.resource_count_is("AWS::IAM::Policy", 1)
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_equals({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                             "Resource": {"Ref": secret}})])}})
    policy = Capture()
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": policy}})
    secret_actions = [s["Action"] for s in policy.as_array() if "secretsmanager" in str(s["Action"])]
    assert secret_actions == ["secretsmanager:GetSecretValue"]
    streaming.has_output("AuthMode", {"Value": "api_key"})
    streaming.has_output("ApiKeysSecretArn", {"Value": {"Ref": secret}})


def test_api_key_auth_keeps_keys_limits_and_usage_in_one_table_the_function_may_only_query_and_update() -> None:
    _, streaming = templates(auth="api_key", key_limits={"max_streams": 4, "rpm": 60}, limits_unavailable="refuse")
    streaming.resource_count_is("AWS::DynamoDB::Table", 1)
    streaming.has_resource("AWS::DynamoDB::Table", {
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": Match.array_equals([{"AttributeName": "pk", "KeyType": "HASH"},
                                             {"AttributeName": "sk", "KeyType": "RANGE"}]),
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "tidy_at", "Enabled": True},
        },
        "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    table = streaming.get_resource_id("AWS::DynamoDB::Table")
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "API_KEYS_TABLE": {"Ref": table}, "KEY_LIMIT_DEFAULTS": "max_streams=4 rpm=60",
        "LIMITS_UNAVAILABLE": "refuse"})}})
    statements = Capture()
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": statements}})
    table_statements = [s for s in statements.as_array() if "dynamodb" in str(s["Action"])]
    arn = {"Fn::GetAtt": [table, "Arn"]}
    assert table_statements == [  # each action on its own items only: the key records cannot be changed
        {"Action": "dynamodb:Query", "Effect": "Allow", "Resource": arn,
         "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["key"]}}},
        {"Action": "dynamodb:UpdateItem", "Effect": "Allow", "Resource": arn,
         "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["state#*", "usage#*"]}}}]
    streaming.has_output("ApiKeysTableName", {"Value": {"Ref": table}})
    # Budget alerts: one topic, HTTPS only, that the function may only publish to.
    streaming.resource_count_is("AWS::SNS::Topic", 1)
    topic = streaming.get_resource_id("AWS::SNS::Topic")
    assert [s for s in statements.as_array() if "sns" in str(s["Action"])] == [
        {"Action": "sns:Publish", "Effect": "Allow", "Resource": {"Ref": topic}}]
    streaming.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": [Match.object_like({
        "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]}})
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "BUDGET_ALERTS_TOPIC_ARN": {"Ref": topic}})}})
    streaming.has_output("BudgetAlertsTopicArn", {"Value": {"Ref": topic}})
    # Per consumer from the log lines (no metric per key), and an alarm when limits cannot be checked.
    streaming.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardBody": {"Fn::Join": [
        "", Match.array_with([Match.string_like_regexp(re.escape("by consumer"))])]}})
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Threshold": 0, "Metrics": [Match.object_like({
        "MetricStat": Match.object_like({"Stat": "Sum", "Metric": Match.object_like({
            "MetricName": "LimitsUnavailable", "Namespace": "LlmStream"})})})]})


@pytest.mark.parametrize("auth", ["iam", "none"])
def test_other_auth_modes_have_no_secret(auth: str) -> None:
    _, streaming = templates(auth=auth)
    streaming.resource_count_is("AWS::SecretsManager::Secret", 0)
    streaming.resource_count_is("AWS::DynamoDB::Table", 0)
    streaming.resource_count_is("AWS::SNS::Topic", 0)
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like({
        "AUTH_MODE": auth, "API_KEYS_SECRET_ID": ""})}})
    assert "ApiKeysSecretArn" not in streaming.to_json()["Outputs"]


def test_cors_origins() -> None:
    _, streaming = templates(cors_origins=["https://app.example.com", "http://localhost:3000"])
    streaming.resource_count_is("AWS::Lambda::Url", 1)
    methods = Capture()
    streaming.has_resource_properties("AWS::Lambda::Url", {"Cors": {
        "AllowOrigins": Match.array_equals(["https://app.example.com", "http://localhost:3000"]),
        "AllowMethods": methods,
        "AllowHeaders": Match.array_with(["authorization", "x-api-key"]),
    }})
    assert sorted(methods.as_array()) == ["GET", "POST"]  # in any order


def test_function_may_only_invoke_this_endpoint_and_write_its_logs() -> None:
    endpoint, streaming = templates()
    streaming.resource_count_is("AWS::IAM::Role", 1)
    streaming.has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": {"Statement": Match.array_equals([Match.object_equals({
            "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}})])},
        "ManagedPolicyArns": Match.absent(),
    })
    log_group = Capture()
    streaming.has_resource_properties("AWS::Lambda::Function", {"LoggingConfig": {"LogGroup": {"Ref": log_group}}})
    assert log_group.as_string() == streaming.get_resource_id("AWS::Logs::LogGroup")
    # The whole document: no other statement, action or resource (so no "*" and no "sagemaker:*").
    streaming.resource_count_is("AWS::IAM::Policy", 1)
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": Match.object_equals({
        "Version": "2012-10-17",
        "Statement": [
            # Both actions (the API reference and the Service Authorization Reference disagree on what
            # authorizes streaming), on this endpoint's ARN: its name in lowercase, in this stack's
            # partition, region and account (no cross-stack reference).
            {"Effect": "Allow", "Action": ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
             "Resource": join("arn:", PARTITION, ":sagemaker:", REGION, ":", {"Ref": "AWS::AccountId"},
                              ":endpoint/llm-stream-falcon-7b-instruct-bf16-g5-2xlarge")},
            {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": {"Fn::GetAtt": [log_group.as_string(), "Arn"]}},
        ],
    })})
    # The name in the ARN is the endpoint's own.
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {
        "EndpointName": "llm-stream-falcon-7b-instruct-bf16-g5-2xlarge"})
    # No weak reference (Fn::GetStackOutput) anywhere: the CLI would skip a stack whose template did not change.
    assert "Fn::GetStackOutput" not in json.dumps(streaming.to_json())


def test_outputs() -> None:
    endpoint, streaming = templates()
    for name in ("FunctionUrl", "EndpointName", "ModelId"):
        streaming.has_output(name, {"Value": Match.any_value()})
    streaming.has_output("AuthMode", {"Value": "iam"})
    for name in ("EndpointName", "ModelId"):
        endpoint.has_output(name, {"Value": Match.any_value()})


def test_stacks_are_environment_agnostic_and_named_by_prefix() -> None:
    _app, endpoint, streaming = build_app(name_prefix="team-b")
    assert (endpoint.stack_name, streaming.stack_name) == ("team-b-endpoint", "team-b-streaming")
    assert endpoint.environment == "aws://unknown-account/unknown-region"


def test_nothing_is_retained_on_destroy() -> None:
    for template in (*templates(), *templates(auth="none", max_instances=3), *templates(auth="api_key")):
        # Every resource type present, each checked for a policy that is there and is not Delete.
        for resource_type in {resource["Type"] for resource in template.to_json()["Resources"].values()}:
            for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
                kept = template.find_resources(resource_type, {policy: Match.not_("Delete")})
                assert not kept, (policy, sorted(kept))


@pytest.mark.parametrize("model_id", sorted(load_catalog().models))
def test_every_catalog_model_synthesizes(model_id: str) -> None:
    endpoint, streaming = templates(model=model_id)
    model = load_catalog().get(model_id)
    endpoint.resource_count_is("AWS::SageMaker::EndpointConfig", 1)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": Match.array_equals([Match.object_like({"InstanceType": model.default_instance_type})])})
    streaming.resource_count_is("AWS::Lambda::Function", 1)
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": {
        "MODEL_ID": model_id,
        "CHAT_FORMAT": model.chat_format or "none",
        "CONTAINER_FAMILY": model.container_family,
    }}})


# -- settings --------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model": "gpt-5"}, "context key 'model': model 'gpt-5' is not in the catalog; allowed: huggingface-llm-"),
    ({"lmi_max_model_len": 8192}, (
        "'lmi_max_model_len': 8192 applies only to a model on the LMI container, and huggingface-llm-falcon-7b-"
        "instruct-bf16 runs on tgi; allowed with: huggingface-llm-mistral-7b, huggingface-llm-mistral-7b-instruct")),
    ({"model": MISTRAL_INSTRUCT, "lmi_max_model_len": 65536},
     "'lmi_max_model_len': 65536 is out of range; allowed: 2048..32768"),
    ({"instance_type": "ml.m5.large"}, ("'instance_type': 'ml.m5.large' is not supported by "
                                        "huggingface-llm-falcon-7b-instruct-bf16; allowed: ml.g5.2xlarge, ")),
    ({"auth": "open"}, "context key 'auth': 'open' is not allowed; allowed: iam, none, api_key"),
    ({"api_keys_refresh_seconds": 0}, "'api_keys_refresh_seconds': 0 is out of range; allowed: 1..3600"),
    ({"key_limits": {"rpm": 60}}, "'key_limits': {'rpm': 60} applies only with auth=api_key"),
    ({"auth": "api_key", "key_limits": {"rpn": 60}}, "'key_limits': context key 'key_limits' has unknown limits rpn"),
    ({"auth": "api_key", "key_limits": "max_streams=0"}, "max_streams=0 is not valid: expected an integer from 1"),
    ({"auth": "api_key", "limits_unavailable": "maybe"}, "'limits_unavailable': 'maybe' is not allowed; allowed: "
                                                         "allow, refuse"),
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
    endpoint.resource_count_is("AWS::SageMaker::EndpointConfig", 1)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": Match.array_equals([Match.object_like({"InitialInstanceCount": 2})])})
    streaming.resource_count_is("AWS::Lambda::Url", 1)
    streaming.has_resource_properties("AWS::Lambda::Url", {"Cors": {"AllowOrigins": Match.array_equals(["*"])}})


# -- observability ----------------------------------------------------------------


def metric_stat(namespace: str, name: str, dimensions: object, stat: object = Match.any_value()) -> dict:
    """An alarm's MetricStat (the Metrics form), as a pattern."""
    return {"Stat": stat, "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions}}


def sagemaker_dimensions() -> object:
    return Match.array_equals([Match.object_like({"Name": "EndpointName", "Value": Match.any_value()}),
                               Match.object_equals({"Name": "VariantName", "Value": "AllTraffic"})])


def test_alarms_cover_function_and_endpoint() -> None:
    _, streaming = templates()
    # Five alarms, and five patterns no two of which one alarm can match: exactly these five.
    streaming.resource_count_is("AWS::CloudWatch::Alarm", 5)
    for name in ("Errors", "Throttles"):  # the function's own metrics, rendered inline
        streaming.has_resource_properties("AWS::CloudWatch::Alarm", {
            "Namespace": "AWS/Lambda", "MetricName": name, "Threshold": 0})
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Threshold": 0, "Metrics": Match.array_equals([
        Match.object_like({"ReturnData": True, "MetricStat": metric_stat(
            "LlmStream", "ServerErrors", Match.array_equals([{"Name": "Service", "Value": "llm-stream"}]))}),
    ])})
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Threshold": 0, "Metrics": Match.array_equals([
        Match.object_like({"Expression": "e4xx + e5xx", "ReturnData": True}),
        Match.object_like({"Id": "e4xx", "ReturnData": False, "MetricStat": metric_stat(
            "AWS/SageMaker", "Invocation4XXErrors", sagemaker_dimensions())}),
        Match.object_like({"Id": "e5xx", "ReturnData": False, "MetricStat": metric_stat(
            "AWS/SageMaker", "Invocation5XXErrors", sagemaker_dimensions())}),
    ])})
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Threshold": 60_000_000,  # 60 s, in microseconds
        "Metrics": Match.array_equals([Match.object_like({"ReturnData": True, "MetricStat": metric_stat(
            "AWS/SageMaker", "ModelLatency", sagemaker_dimensions(), stat="p90")})]),
    })
    streaming.all_resources_properties("AWS::CloudWatch::Alarm", {
        "TreatMissingData": "notBreaching",
        "AlarmDescription": Match.string_like_regexp(r"\S"),  # not empty
    })


def test_dashboard_shows_function_and_endpoint_side_by_side() -> None:
    _, streaming = templates()
    streaming.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    for needle in ("AWS/Lambda", "AWS/SageMaker", "TimeToFirstToken", "ModelLatency", "Invocation5XXErrors",
                   "ConcurrentExecutions", "alarm"):
        streaming.has_resource_properties("AWS::CloudWatch::Dashboard", {
            "DashboardBody": {"Fn::Join": ["", Match.array_with([Match.string_like_regexp(re.escape(needle))])]}})


def test_function_metrics_settings_match_the_alarms() -> None:
    _, streaming = templates(name_prefix="team-b")
    streaming.resource_count_is("AWS::Lambda::Function", 1)
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": {
        "METRICS_NAMESPACE": "LlmStream", "SERVICE_NAME": "team-b"}}})
