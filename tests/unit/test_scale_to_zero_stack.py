"""Templates with ``scale_to_zero=true``: the model as an inference component that scales to zero copies.

The default deployment's templates are unchanged (tests/unit/test_default_templates.py holds them whole).
"""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match

from infra.settings import SettingsError
from tests.helpers.cdk_app import PARTITION, REGION, app_environment, build_app, join, templates

NAME = "llm-stream-falcon-7b-instruct-bf16-g5-2xlarge-ic"
ACCOUNT = {"Ref": "AWS::AccountId"}


def test_the_endpoint_config_has_no_model_a_role_and_instances_managed_down_to_zero() -> None:
    endpoint, _ = templates(scale_to_zero=True, max_instances=3)
    role = endpoint.get_resource_id("AWS::IAM::Role")
    endpoint.has_resource("AWS::SageMaker::EndpointConfig", {
        "Properties": Match.object_like({
            "ExecutionRoleArn": {"Fn::GetAtt": [role, "Arn"]},
            # The components' containers are isolated by the endpoint config's flag (the SDK's deploy path)...
            "EnableNetworkIsolation": True,
            # ...and a variant without a model has no weight (object_equals: none is set).
            "ProductionVariants": [Match.object_equals({
                "VariantName": "AllTraffic", "InstanceType": "ml.g5.2xlarge", "InitialInstanceCount": 1,
                "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0, "MaxInstanceCount": 3},
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                "ModelDataDownloadTimeoutInSeconds": 600, "ContainerStartupHealthCheckTimeoutInSeconds": 900,
            })]}),
        # CreateEndpointConfig checks the role's access: its policy is attached first.
        "DependsOn": Match.array_with([endpoint.get_resource_id("AWS::IAM::Policy")]),
    })
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": NAME,
                                                                  "RetainAllVariantProperties": True})
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"EnableNetworkIsolation": True})  # kept there too
    endpoint.has_output("InferenceComponentName", {"Value": NAME})
    # The variant's own autoscaling is not used: the copies scale, and the instances follow them.
    endpoint.resource_properties_count_is("AWS::ApplicationAutoScaling::ScalableTarget", {
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}, 0)


FALCON_40B = "huggingface-llm-falcon-40b-instruct-bf16"


@pytest.mark.parametrize(("model", "instance_type", "needs", "timeouts"), [
    ("huggingface-llm-falcon-7b-instruct-bf16", "ml.g5.2xlarge", {
        "NumberOfAcceleratorDevicesRequired": 1, "NumberOfCpuCoresRequired": 2, "MinMemoryRequiredInMb": 16384},
     (600, 900)),
    (FALCON_40B, "ml.g5.12xlarge", {
        "NumberOfAcceleratorDevicesRequired": 4, "NumberOfCpuCoresRequired": 12, "MinMemoryRequiredInMb": 98304},
     (1200, 1800)),
])
def test_the_inference_component_holds_the_model_with_a_copy_sized_to_the_instance(
        model: str, instance_type: str, needs: dict, timeouts: tuple[int, int]) -> None:
    endpoint, _ = templates(scale_to_zero=True, model=model, instance_type=instance_type)
    name = f"llm-stream-{model.removeprefix('huggingface-llm-')}-{instance_type[3:].replace('.', '-')}-ic"
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 1)
    endpoint.has_resource_properties("AWS::SageMaker::InferenceComponent", {
        "InferenceComponentName": name,
        "EndpointName": {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
        "VariantName": "AllTraffic",
        "Specification": Match.object_equals({
            "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
            "ComputeResourceRequirements": needs,
            "StartupParameters": {"ModelDataDownloadTimeoutInSeconds": timeouts[0],
                                  "ContainerStartupHealthCheckTimeoutInSeconds": timeouts[1]},
        }),
        # One copy at deploy time: a model that cannot load fails the deployment, not the first request.
        "RuntimeConfig": {"CopyCount": 1},
        "Tags": Match.array_with([{"Key": "sagemaker-sdk:jumpstart-model-id", "Value": model}]),
    })


def test_copies_scale_from_zero_on_refused_requests_and_to_zero_when_idle() -> None:
    endpoint, _ = templates(scale_to_zero=True, max_instances=3, scale_to_zero_after_minutes=30)
    component = endpoint.get_resource_id("AWS::SageMaker::InferenceComponent")
    endpoint.has_resource("AWS::ApplicationAutoScaling::ScalableTarget", {
        "Properties": {"ServiceNamespace": "sagemaker", "ResourceId": f"inference-component/{NAME}",
                       "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
                       "MinCapacity": 0, "MaxCapacity": 3},
        "DependsOn": [component]})
    target = endpoint.get_resource_id("AWS::ApplicationAutoScaling::ScalableTarget")
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 3)
    # Under load, more copies (up to max_instances); never fewer by target tracking: the idle alarm does that.
    endpoint.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "PolicyType": "TargetTrackingScaling", "ScalingTargetId": {"Ref": target},
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 20, "DisableScaleIn": True, "ScaleOutCooldown": 300,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"}}})
    wake, to_zero = Capture(), Capture()
    endpoint.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"{NAME}-wake-up", "Namespace": "AWS/SageMaker", "MetricName": "NoCapacityInvocationFailures",
        "Dimensions": [{"Name": "InferenceComponentName", "Value": NAME}], "Statistic": "Sum", "Period": 60,
        "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": wake}]})
    endpoint.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"{NAME}-idle", "EvaluationPeriods": 30, "DatapointsToAlarm": 30, "Threshold": 1,
        "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
        "Metrics": [
            Match.object_like({"Id": "invocations", "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations",
                           "Dimensions": [{"Name": "InferenceComponentName", "Value": NAME}]},
                "Period": 60, "Stat": "Sum"}}),
            Match.object_like({"Id": "refused", "MetricStat": Match.object_like({"Metric": Match.object_like({
                "MetricName": "NoCapacityInvocationFailures"})})}),
            Match.object_like({"Id": "attempts", "Expression": "FILL(invocations, 0) + FILL(refused, 0)",
                               "ReturnData": True})],
        "AlarmActions": [{"Ref": to_zero}]})
    policies = endpoint.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policies[wake.as_string()]["Properties"] == {
        "PolicyName": "wake-up", "PolicyType": "StepScaling", "ScalingTargetId": {"Ref": target},
        "StepScalingPolicyConfiguration": {
            # Exactly one copy: idempotent while the alarm, in ALARM, invokes it every minute as a copy starts,
            # so AWS's 60 s cooldown does, and nothing can lock the wake-up out for long (scale_to_zero.py).
            "AdjustmentType": "ExactCapacity", "Cooldown": 60, "MetricAggregationType": "Maximum",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}}
    assert policies[to_zero.as_string()]["Properties"]["StepScalingPolicyConfiguration"] == {
        "AdjustmentType": "ExactCapacity", "Cooldown": 60, "MetricAggregationType": "Maximum",
        "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0}]}


def test_the_component_s_log_group_is_the_stack_s_and_the_role_writes_only_to_its_two_groups() -> None:
    endpoint, _ = templates(scale_to_zero=True, log_retention_days=90)
    endpoint.resource_count_is("AWS::Logs::LogGroup", 2)
    for group in (f"/aws/sagemaker/Endpoints/{NAME}", f"/aws/sagemaker/InferenceComponents/{NAME}"):
        endpoint.has_resource("AWS::Logs::LogGroup", {
            "Properties": {"LogGroupName": group, "RetentionInDays": 90},
            "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    groups = sorted(endpoint.find_resources("AWS::Logs::LogGroup"))
    endpoint.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Sid": "WriteLogs", "Resource": [{"Fn::GetAtt": [group, "Arn"]} for group in groups]})])}})
    # Created before the endpoint, hence before the component that logs there.
    endpoint.has_resource("AWS::SageMaker::Endpoint", {"DependsOn": Match.array_with(groups)})


def test_one_instance_at_most_needs_no_target_tracking() -> None:
    endpoint, _ = templates(scale_to_zero=True)
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalingPolicy", 2)
    endpoint.resource_properties_count_is("AWS::ApplicationAutoScaling::ScalingPolicy",
                                          {"PolicyType": "TargetTrackingScaling"}, 0)


def test_the_function_names_the_component_and_may_invoke_it_and_its_endpoint_only() -> None:
    _, streaming = templates(scale_to_zero=True)
    environment = app_environment(streaming)
    assert (environment["SAGEMAKER_ENDPOINT_NAME"], environment["INFERENCE_COMPONENT_NAME"]) == (NAME, NAME)
    assert "WAKE_UP_SECONDS" not in environment  # the function's default, the expected wake-up (480 s), holds
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([{
        "Effect": "Allow", "Action": ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
        "Resource": [join("arn:", PARTITION, ":sagemaker:", REGION, ":", ACCOUNT, f":endpoint/{NAME}"),
                     join("arn:", PARTITION, ":sagemaker:", REGION, ":", ACCOUNT, f":inference-component/{NAME}")]}])}})


def test_the_endpoint_s_metrics_and_the_dashboard_follow_the_component() -> None:
    _, streaming = templates(scale_to_zero=True)
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Metrics": [Match.object_like({"MetricStat": {
        "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency",
                   "Dimensions": [{"Name": "InferenceComponentName", "Value": NAME}]},
        "Period": 300, "Stat": "p90"}})]})
    # Requests refused while at zero are the mode working: taken out of the errors the alarm counts.
    streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Metrics": Match.array_with([Match.object_like({
        "Expression": "FILL(e5xx, 0) + IF(FILL(e4xx, 0) > FILL(refused, 0), FILL(e4xx, 0) - FILL(refused, 0), 0)"})])})
    body = Capture()
    streaming.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardBody": body})
    rendered = str(body.as_object())
    for expected in ("Scale to zero: requests served and refused at zero", "NoCapacityInvocationFailures",
                     "GPUUtilizationNormalized", f"alarm:{NAME}-wake-up", f"alarm:{NAME}-idle"):
        assert expected in rendered, expected


@pytest.mark.parametrize(("overrides", "message"), [
    ({"scale_to_zero": "maybe"}, "context key 'scale_to_zero': 'maybe' is not allowed; allowed: true, false"),
    ({"scale_to_zero": True, "min_instances": 2}, (
        "context key 'min_instances': 2 does not apply with scale_to_zero=true (the endpoint then runs "
        "0..max_instances instances); allowed: 1")),
    ({"scale_to_zero": True, "scale_to_zero_after_minutes": 14},
     "context key 'scale_to_zero_after_minutes': 14 is out of range; allowed: 15..1440"),
    ({"scale_to_zero": True, "scale_to_zero_after_minutes": 15, "function_timeout_seconds": 900}, (
        "context key 'scale_to_zero_after_minutes': 15 minutes does not outlast function_timeout_seconds (900), "
        "so a stream could outlive its model copy; allowed: 16..1440")),
])
def test_bad_scale_to_zero_settings_are_refused_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build_app(**overrides)
    assert message in str(raised.value)


def test_the_command_line_strings_turn_it_on() -> None:
    endpoint, _ = templates(scale_to_zero="true", scale_to_zero_after_minutes="20")
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 1)
    endpoint.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmName": f"{NAME}-idle", "EvaluationPeriods": 20})


def test_every_catalog_instance_type_has_its_hardware_recorded() -> None:
    from infra.catalog import load_catalog
    from infra.instance_types import INSTANCE_HARDWARE

    used = {instance for model in load_catalog().models.values() for instance in model.instance_types}
    assert used <= set(INSTANCE_HARDWARE), used - set(INSTANCE_HARDWARE)
