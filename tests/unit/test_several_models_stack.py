"""Templates with ``models``: several models on one endpoint, each an inference component.

Two models on two container families (TGI Falcon always on, LMI Mistral scaling to zero), and three on a
four-GPU type. The default deployment's templates are unchanged (tests/unit/test_default_templates.py holds
them whole); the gates (cfn-lint, cdk-nag, checkov) run on these too (tests/e2e/test_gates.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from infra.settings import DeploymentSettings, SettingsError
from tests.helpers.cdk_app import PARTITION, REGION, app_environment, build_app, cdk_context, join, templates

FALCON = "huggingface-llm-falcon-7b-instruct-bf16"
MISTRAL = "huggingface-llm-mistral-7b-instruct"
MISTRAL_BASE = "huggingface-llm-mistral-7b"
FALCON_40B = "huggingface-llm-falcon-40b-instruct-bf16"
ENDPOINT = "llm-stream-models-g5-2xlarge"
FALCON_COMPONENT = f"{ENDPOINT}-falcon-7b-instruct-bf16"
MISTRAL_COMPONENT = f"{ENDPOINT}-mistral-7b-instruct"
ACCOUNT = {"Ref": "AWS::AccountId"}
#: Falcon always on (one copy, up to two under load), Mistral at zero until asked.
TWO_MODELS = {"models": [{"id": FALCON, "max_copies": 2}, {"id": MISTRAL, "scale_to_zero": True}],
              "max_instances": 3}
THREE_MODELS = {"models": f"{FALCON_40B},{MISTRAL},{MISTRAL_BASE}", "instance_type": "ml.g5.12xlarge",
                "max_instances": 2}


def _components(endpoint: Template) -> dict[str, Any]:
    """Each inference component's resource, by its name."""
    return {resource["Properties"]["InferenceComponentName"]: resource
            for resource in endpoint.find_resources("AWS::SageMaker::InferenceComponent").values()}


def _models(endpoint: Template) -> dict[str, Any]:
    """Each SageMaker model's properties, by the JumpStart model id it is tagged with."""
    models = {}
    for resource in endpoint.find_resources("AWS::SageMaker::Model").values():
        tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"]["Tags"]}
        models[tags["sagemaker-sdk:jumpstart-model-id"]] = resource["Properties"]
    return models


def test_one_endpoint_without_a_model_holds_every_model_as_a_component_created_one_after_another() -> None:
    endpoint, _ = templates(**TWO_MODELS)
    endpoint.resource_count_is("AWS::SageMaker::Endpoint", 1)
    endpoint.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": ENDPOINT,
                                                                  "RetainAllVariantProperties": True})
    role = endpoint.get_resource_id("AWS::IAM::Role")
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ExecutionRoleArn": {"Fn::GetAtt": [role, "Arn"]}, "EnableNetworkIsolation": True,
        "ProductionVariants": [Match.object_equals({
            "VariantName": "AllTraffic", "InstanceType": "ml.g5.2xlarge",
            # Falcon's first copy and Mistral's (loaded once at deploy time): one GPU each, one per instance.
            "InitialInstanceCount": 2,
            # Falcon's one copy stays; at most Falcon's two copies and Mistral's one.
            "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 3},
            "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
            "ModelDataDownloadTimeoutInSeconds": 600, "ContainerStartupHealthCheckTimeoutInSeconds": 900})]})
    components = _components(endpoint)
    assert sorted(components) == sorted([FALCON_COMPONENT, MISTRAL_COMPONENT])
    falcon_id = endpoint.get_resource_id("AWS::SageMaker::InferenceComponent",
                                         {"Properties": {"InferenceComponentName": FALCON_COMPONENT}})
    # SageMaker documents nothing on changing two components of one endpoint at once: one after the other.
    assert components[MISTRAL_COMPONENT]["DependsOn"] == [falcon_id]
    for name, model in ((FALCON_COMPONENT, FALCON), (MISTRAL_COMPONENT, MISTRAL)):
        model_resource = endpoint.get_resource_id("AWS::SageMaker::Model", {"Properties": {"Tags": Match.array_with([
            {"Key": "sagemaker-sdk:jumpstart-model-id", "Value": model}])}})
        properties = dict(components[name]["Properties"])
        tags = properties.pop("Tags")
        assert properties == {
            "InferenceComponentName": name, "EndpointName": {"Fn::GetAtt": ["Endpoint", "EndpointName"]},
            "VariantName": "AllTraffic",
            "Specification": {
                "ModelName": {"Fn::GetAtt": [model_resource, "ModelName"]},
                # One of ml.g5.2xlarge's one GPU, with a quarter of its 8 vCPUs and half its 32 GiB.
                "ComputeResourceRequirements": {"NumberOfAcceleratorDevicesRequired": 1,
                                                "NumberOfCpuCoresRequired": 2, "MinMemoryRequiredInMb": 16384},
                "StartupParameters": {"ModelDataDownloadTimeoutInSeconds": 600,
                                      "ContainerStartupHealthCheckTimeoutInSeconds": 900}},
            "RuntimeConfig": {"CopyCount": 1},
        }
        assert {"Key": "sagemaker-sdk:jumpstart-model-id", "Value": model} in tags
    endpoint.has_output("ModelIds", {"Value": f"{FALCON},{MISTRAL}"})


def test_each_model_runs_on_its_own_family_s_image_told_the_gpus_its_copy_holds() -> None:
    endpoint, _ = templates(**TWO_MODELS)
    models = _models(endpoint)
    assert sorted(models) == sorted([FALCON, MISTRAL])
    image = Capture()
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"PrimaryContainer": {"Image": image, "Environment": {
        "HF_MODEL_ID": "/opt/ml/model", "SM_NUM_GPUS": "1"}}})
    mappings = endpoint.to_json()["Mappings"]
    falcon_map = models[FALCON]["PrimaryContainer"]["Image"]["Fn::Join"][1][0]["Fn::FindInMap"][0]
    mistral_map = models[MISTRAL]["PrimaryContainer"]["Image"]["Fn::Join"][1][0]["Fn::FindInMap"][0]
    assert mappings[falcon_map]["us-east-1"]["repository"] == "huggingface-pytorch-tgi-inference"
    assert mappings[mistral_map]["us-east-1"]["repository"] == "djl-inference"
    # LMI would shard over every GPU it sees: told its copy's one, with the window the function assumes.
    assert models[MISTRAL]["PrimaryContainer"]["Environment"]["OPTION_TENSOR_PARALLEL_DEGREE"] == "1"
    assert models[MISTRAL]["PrimaryContainer"]["Environment"]["OPTION_MAX_MODEL_LEN"] == "4096"
    assert all(model["EnableNetworkIsolation"] is True for model in models.values())


def test_a_model_that_scales_to_zero_has_its_own_wake_up_and_idle_alarms_and_an_always_on_one_tracks_load() -> None:
    endpoint, _ = templates(**TWO_MODELS, scale_to_zero_after_minutes=20)
    targets = {resource["Properties"]["ResourceId"]: resource["Properties"] for resource in
               endpoint.find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()}
    assert {name: (target["MinCapacity"], target["MaxCapacity"]) for name, target in targets.items()} == {
        f"inference-component/{FALCON_COMPONENT}": (1, 2), f"inference-component/{MISTRAL_COMPONENT}": (0, 1)}
    # Falcon: copies follow the load, both ways; Mistral (at most one copy): only its two step policies.
    tracking = endpoint.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy",
                                       {"Properties": {"PolicyType": "TargetTrackingScaling"}})
    assert len(tracking) == 1
    [policy] = tracking.values()
    configuration = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert configuration["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"}
    assert (configuration.get("DisableScaleIn"), configuration["ScaleInCooldown"]) == (None, 600)
    endpoint.resource_properties_count_is("AWS::ApplicationAutoScaling::ScalingPolicy",
                                          {"PolicyType": "StepScaling"}, 2)
    for alarm, evaluation in ((f"{MISTRAL_COMPONENT}-wake-up", 1), (f"{MISTRAL_COMPONENT}-idle", 20)):
        endpoint.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmName": alarm,
                                                                    "EvaluationPeriods": evaluation})
    endpoint.resource_count_is("AWS::CloudWatch::Alarm", 2)


def test_every_component_logs_to_its_own_group_and_the_role_reads_each_model_s_artifacts_and_image() -> None:
    endpoint, _ = templates(**TWO_MODELS, log_retention_days=90)
    groups = {resource["Properties"]["LogGroupName"]: resource["Properties"]["RetentionInDays"]
              for resource in endpoint.find_resources("AWS::Logs::LogGroup").values()}
    assert groups == {f"/aws/sagemaker/Endpoints/{ENDPOINT}": 90,
                      f"/aws/sagemaker/InferenceComponents/{FALCON_COMPONENT}": 90,
                      f"/aws/sagemaker/InferenceComponents/{MISTRAL_COMPONENT}": 90}
    statements = Capture()
    endpoint.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": statements}})
    by_sid = {statement["Sid"]: statement for statement in statements.as_array()}
    artifacts = json.dumps(by_sid["ReadModelArtifacts"]["Resource"])
    assert f"{FALCON}/artifacts" in artifacts
    assert f"{MISTRAL}/artifacts" in artifacts
    assert len(by_sid["ReadModelArtifacts"]["Resource"]) == 2
    assert len(by_sid["PullImage"]["Resource"]) == 2  # the TGI and the LMI repository
    assert len(by_sid["WriteLogs"]["Resource"]) == 3
    assert len(by_sid["ListModelArtifacts"]["Condition"]["StringLike"]["s3:prefix"]) == 2


def test_the_function_serves_every_model_and_may_invoke_the_endpoint_and_each_component_only() -> None:
    _, streaming = templates(**TWO_MODELS)
    environment = app_environment(streaming)
    assert environment["SAGEMAKER_ENDPOINT_NAME"] == ENDPOINT
    assert (environment["MODEL_ID"], environment["INFERENCE_COMPONENT_NAME"]) == (FALCON, FALCON_COMPONENT)
    served = json.loads(environment["MODELS"])
    assert [(entry["model_id"], entry["inference_component_name"], entry["container_family"]) for entry in served] == [
        (FALCON, FALCON_COMPONENT, "tgi"), (MISTRAL, MISTRAL_COMPONENT, "lmi")]
    # Each model's own caps: Mistral's window is twice Falcon's.
    assert (served[1]["model_max_total_tokens"], served[1]["max_input_chars"]) == (4096, 12288)
    streaming.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([{
        "Effect": "Allow", "Action": ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
        "Resource": [join("arn:", PARTITION, ":sagemaker:", REGION, ":", ACCOUNT, f":endpoint/{ENDPOINT}"),
                     *[join("arn:", PARTITION, ":sagemaker:", REGION, ":", ACCOUNT, f":inference-component/{name}")
                       for name in (FALCON_COMPONENT, MISTRAL_COMPONENT)]]}])}})


def test_each_model_has_its_own_alarms_and_dashboard_widgets() -> None:
    _, streaming = templates(**TWO_MODELS)
    for component in (FALCON_COMPONENT, MISTRAL_COMPONENT):
        streaming.has_resource_properties("AWS::CloudWatch::Alarm", {"Metrics": [Match.object_like({"MetricStat": {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency",
                       "Dimensions": [{"Name": "InferenceComponentName", "Value": component}]},
            "Period": 300, "Stat": "p90"}})]})
    body = json.dumps(streaming.find_resources("AWS::CloudWatch::Dashboard"))
    for expected in (f"{FALCON}: streams", f"{MISTRAL}: model latency", f"Scale to zero, {MISTRAL}",
                     f"alarm:{MISTRAL_COMPONENT}-wake-up", '\\"Model\\",\\"' + MISTRAL):
        assert expected in body, expected
    assert f"alarm:{FALCON_COMPONENT}-wake-up" not in body  # Falcon never goes to zero


def test_three_models_on_four_gpus_pack_by_the_gpus_each_copy_holds() -> None:
    endpoint, _ = templates(**THREE_MODELS)
    needs = {name: resource["Properties"]["Specification"]["ComputeResourceRequirements"]
             for name, resource in _components(endpoint).items()}
    prefix = "llm-stream-models-g5-12xlarge"
    # Falcon 40B shards over the four GPUs its spec names; each Mistral fits on one (its spec runs it on one).
    assert needs == {
        f"{prefix}-falcon-40b-instruct-bf16": {"NumberOfAcceleratorDevicesRequired": 4,
                                               "NumberOfCpuCoresRequired": 12, "MinMemoryRequiredInMb": 98304},
        f"{prefix}-mistral-7b-instruct": {"NumberOfAcceleratorDevicesRequired": 1,
                                          "NumberOfCpuCoresRequired": 3, "MinMemoryRequiredInMb": 24576},
        f"{prefix}-mistral-7b": {"NumberOfAcceleratorDevicesRequired": 1,
                                 "NumberOfCpuCoresRequired": 3, "MinMemoryRequiredInMb": 24576}}
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {"ProductionVariants": [Match.object_like({
        "InstanceType": "ml.g5.12xlarge", "InitialInstanceCount": 2,
        "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 2, "MaxInstanceCount": 2},
        # The longest of the three models' timeouts (Falcon 40B's).
        "ModelDataDownloadTimeoutInSeconds": 1200, "ContainerStartupHealthCheckTimeoutInSeconds": 1800})]})
    chain = [resource.get("DependsOn", []) for resource in _components(endpoint).values()]
    assert sorted(len(depends) for depends in chain) == [0, 1, 1]
    assert len(endpoint.to_json()["Mappings"]) == 2  # the two Mistrals share one image


def test_a_model_listed_twice_in_a_different_order_keeps_its_resources() -> None:
    """Resources are named after the model, not its place in the list: reordering replaces nothing (each
    component's name is fixed, so a replacement would fail)."""
    first, _ = templates(models=f"{FALCON},{MISTRAL}", max_instances=2)
    second, _ = templates(models=f"{MISTRAL},{FALCON}", max_instances=2)
    ids = {template_id: sorted(template.find_resources("AWS::SageMaker::InferenceComponent"))
           for template_id, template in (("first", first), ("second", second))}
    assert ids["first"] == ids["second"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"models": "huggingface-llm-falcon-7b-instruct-bf16,huggingface-llm-nope"},
     "context key 'models': entry 1: model 'huggingface-llm-nope' is not in the catalog; allowed: "),
    ({"models": f"{FALCON},{FALCON}", "max_instances": 2},
     f"context key 'models': {FALCON} listed more than once; allowed: each model once"),
    ({"models": FALCON}, "lists one model; allowed: two to 10 (one model: context 'model'"),
    ({"models": f"{FALCON},{MISTRAL}", "instance_type": "ml.g5.12xlarge"},
     f"context key 'models': instance type 'ml.g5.12xlarge' is not supported by {FALCON}; allowed for every listed "
     "model: ml.g5.2xlarge, ml.g5.4xlarge, ml.g5.8xlarge"),
    ({"models": f"{FALCON},{MISTRAL}"}, (
        f"context key 'max_instances': 1 cannot hold every model at its max_copies ({FALCON} 1 x 1 GPU, {MISTRAL} "
        "1 x 1 GPU; ml.g5.2xlarge has 1 GPU): they need 2 instances; allowed: 2..20, or fewer copies in 'models'")),
    ({"models": [FALCON, {"id": MISTRAL, "scale_to_zero": True, "min_copies": 1}], "max_instances": 2},
     f"entry 1 ({MISTRAL}): min_copies 1 does not apply with scale_to_zero (its copies go to zero when idle); "
     "allowed: 0"),
    ({"models": [FALCON, {"id": MISTRAL, "min_copies": 0}], "max_instances": 2},
     f"entry 1 ({MISTRAL}): min_copies 0 needs scale_to_zero"),
    ({"models": [FALCON, {"id": MISTRAL, "min_copies": 2, "max_copies": 1}], "max_instances": 4},
     f"entry 1 ({MISTRAL}): max_copies 1 is below 2; allowed: 2..20"),
    ({"models": [FALCON, {"id": MISTRAL, "copies": 2}], "max_instances": 2},
     "entry 1 ({'id': 'huggingface-llm-mistral-7b-instruct', 'copies': 2}) is not allowed; allowed: a model id, or an "
     "object with \"id\" and optionally min_copies, max_copies, scale_to_zero"),
    ({"models": '[{"id": "x"'}, "context key 'models': '[{\"id\": \"x\"' is not a JSON list"),
    ({"models": f"{FALCON},{MISTRAL}", "max_instances": 2, "min_instances": 2},
     "context key 'min_instances': 2 does not apply with models (the endpoint then runs 0..max_instances "
     "instances); allowed: 1"),
    ({"models": f"{FALCON},{MISTRAL}", "max_instances": 2, "lmi_max_model_len": 8192},
     None),  # applies to the LMI model only
    ({"models": f"{FALCON},huggingface-llm-falcon-7b-bf16", "max_instances": 2, "lmi_max_model_len": 8192},
     "context key 'lmi_max_model_len': 8192 applies only to a model on the LMI container"),
])
def test_bad_models_settings_are_refused_by_name(overrides: dict, message: str | None) -> None:
    if message is None:
        settings = DeploymentSettings.from_context(cdk_context(**overrides).get)
        windows = {hosted.model.model_id: hosted.model.max_total_tokens for hosted in settings.hosted_models}
        assert windows == {FALCON: 2048, MISTRAL: 8192}
        return
    with pytest.raises(SettingsError) as raised:
        build_app(**overrides)
    assert message in str(raised.value)


def test_the_command_line_takes_ids_or_a_json_list_and_scale_to_zero_applies_to_every_model_by_default() -> None:
    by_ids = DeploymentSettings.from_context(cdk_context(models=f" {FALCON} , {MISTRAL}", max_instances="2",
                                                         scale_to_zero="true").get)
    assert [(h.model.model_id, h.min_copies, h.max_copies, h.scale_to_zero) for h in by_ids.hosted_models] == [
        (FALCON, 0, 1, True), (MISTRAL, 0, 1, True)]
    assert (by_ids.fewest_instances, by_ids.initial_instances, by_ids.instances_needed) == (0, 2, 2)
    # max_instances beyond what the copies fill is room for an update's new copies: the endpoint may use it.
    endpoint, _ = templates(models=f"{FALCON},{MISTRAL}", max_instances=3)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {"ProductionVariants": [Match.object_like({
        "InitialInstanceCount": 2, "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 2,
                                                              "MaxInstanceCount": 3}})]})
    as_json = DeploymentSettings.from_context(cdk_context(
        models=json.dumps([FALCON, {"id": MISTRAL, "max_copies": 3}]), max_instances="4").get)
    assert [(h.min_copies, h.max_copies, h.scale_to_zero) for h in as_json.hosted_models] == [(1, 1, False),
                                                                                              (1, 3, False)]


def test_the_models_caps_lower_only_where_the_context_sets_them() -> None:
    settings = DeploymentSettings.from_context(cdk_context(models=f"{FALCON},{MISTRAL}", max_instances=2,
                                                           max_new_tokens=500).get)
    served = {entry.model_id: entry for entry in settings.served_models}
    assert (served[FALCON].max_new_tokens, served[MISTRAL].max_new_tokens) == (500, 500)
    assert (served[FALCON].max_input_chars, served[MISTRAL].max_input_chars) == (4096, 12288)


def test_the_packing_table_lists_the_shared_types_fewest_instances_first(capsys) -> None:
    from infra.packing import main, packings

    found = {packing.instance_type: packing for packing in packings(f"{MISTRAL},{MISTRAL_BASE}")}
    # Two one-GPU copies share a four-GPU instance; on one-GPU types each model awake takes one.
    assert (found["ml.g5.12xlarge"].instances_awake, found["ml.g5.2xlarge"].instances_awake) == (1, 2)
    assert found["ml.g5.12xlarge"].gpus_per_copy == {MISTRAL: 1, MISTRAL_BASE: 1}
    # The spec leaves LMI's GPUs to the container on p4de: one A100 of 80 GiB holds what one A10G of 24 does.
    assert found["ml.p4de.24xlarge"].gpus_per_copy == {MISTRAL: 1, MISTRAL_BASE: 1}
    assert main([f"{FALCON},{MISTRAL}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge"]
    assert lines[1].split()[-1] == "2"
    # Falcon 7B and Falcon 40B share no instance type in JumpStart's specs.
    assert main([f"{FALCON},{FALCON_40B}"]) == 1
    assert "need endpoints of their own" in capsys.readouterr().err
    assert main([f"{FALCON},nope"]) == 2


def test_a_spec_naming_no_gpus_is_refused_by_name() -> None:
    from dataclasses import replace

    from infra.catalog import load_catalog
    from infra.hosted_models import ModelsError, gpus_per_copy

    falcon = load_catalog().get(FALCON)
    broken = replace(falcon, instance_environment={"ml.g5.2xlarge": {"SM_NUM_GPUS": "0"}})
    with pytest.raises(ModelsError, match=r"sets SM_NUM_GPUS='0' on ml\.g5\.2xlarge; allowed: a whole number of GPUs"):
        gpus_per_copy(broken, "ml.g5.2xlarge")
    assert gpus_per_copy(falcon, "ml.g5.2xlarge") == 1
