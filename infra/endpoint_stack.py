"""The SageMaker JumpStart endpoint: model, endpoint config, endpoint, its log group, execution role, autoscaling;
with ``scale_to_zero`` or several ``models``, each model as an inference component (``inference_components.py``)."""

from __future__ import annotations

import re

from aws_cdk import Aws, CfnMapping, CfnOutput, CfnRule, CfnRuleAssertion, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .catalog import CatalogModel, is_nvme_instance
from .checkov import skip_checkov
from .inference_components import (
    SCALE_IN_COOLDOWN_SECONDS,
    SCALE_OUT_COOLDOWN_SECONDS,
    ComponentPlan,
    HostedComponent,
)
from .instance_types import copy_requirements
from .scale_to_zero import inference_component_arn, managed_instance_scaling
from .settings import LOG_RETENTION, DeploymentSettings, short_model_id

VARIANT_NAME = "AllTraffic"
#: What invoking the endpoint takes. The API reference says InvokeEndpointWithResponseStream is authorized by
#: sagemaker:InvokeEndpoint; the Service Authorization Reference lists a separate
#: sagemaker:InvokeEndpointWithResponseStream action (and AWS's JumpStart policies grant both): both, so a
#: stream works under either reading, on this one endpoint only.
INVOKE_ACTIONS = ["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"]
#: The tags the sagemaker SDK's JumpStartModel.deploy puts on what it creates (sagemaker/jumpstart/enums.py
#: JumpStartTag), so consoles and cost tools recognise a JumpStart model.
JUMPSTART_MODEL_ID_TAG = "sagemaker-sdk:jumpstart-model-id"
JUMPSTART_MODEL_VERSION_TAG = "sagemaker-sdk:jumpstart-model-version"


class EndpointStack(Stack):
    """Environment-agnostic: region-specific values resolve at deploy time (mapping and pseudo parameters)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploymentSettings, description: str) -> None:
        super().__init__(scope, construct_id, description=description)
        model = settings.model
        self.endpoint_name = settings.endpoint_name
        self._refuse_other_regions(settings.supported_regions)
        images = self._images(settings.models)
        plans = _component_plans(settings)
        log_groups = self._log_groups(settings, plans)
        self.log_group = log_groups[0]
        model_ids = ", ".join(listed.model_id for listed in settings.models)
        self.role = iam.Role(self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"SageMaker execution role for {model_ids}")
        policy = iam.Policy(self, "ExecutionPolicy", roles=[self.role], statements=_execution_statements(
            settings.models, images, [group.log_group_arn for group in log_groups]))
        self.sagemaker_models = {
            listed.model_id: self._model(listed, _environment(settings, listed), images[listed.model_id]["uri"],
                                         f"{_construct_id(listed)}Model" if settings.hosted_models else "Model")
            for listed in settings.models}
        self.sagemaker_model = self.sagemaker_models[model.model_id]
        for sagemaker_model in self.sagemaker_models.values():
            # CreateModel checks the role's access: the policy must be attached first.
            sagemaker_model.node.add_dependency(policy)
        self.endpoint_config = self._endpoint_config(settings)
        if settings.components:
            # An endpoint for inference components has a role of its own (the models': it pulls the same
            # images and artifacts), which CreateEndpointConfig checks: the policy must be attached first.
            self.endpoint_config.node.add_dependency(policy)
        self.endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # An update (a new config: other caps, timeouts, model version) keeps the instance count
            # autoscaling has set, instead of dropping back to the config's initial count.
            retain_all_variant_properties=settings.autoscaling or settings.components or None,
        )
        self.endpoint.node.add_dependency(*log_groups)
        self.components = self._components(settings, plans)
        if settings.autoscaling:
            self._add_autoscaling(settings)
        self._tag_and_output(settings)

    def _refuse_other_regions(self, regions: list[str]) -> None:
        """The endpoint stack deploys first: refuse a region where a model's image or the function's Web
        Adapter layer is missing before anything (a GPU instance above all) is created."""
        CfnRule(self, "SupportedRegion", assertions=[CfnRuleAssertion(
            assert_=Fn.condition_contains(regions, Aws.REGION),
            assert_description=f"This deployment runs only in {', '.join(regions)}: the model's container image "
                               "and the Lambda Web Adapter layer version must both exist in the region "
                               "(docs/deploying.md, The endpoint: Regions).")])

    def _images(self, models: tuple[CatalogModel, ...]) -> dict[str, dict[str, str]]:
        """Each model's container image for the deploying region: its registry account, repository, tag and
        URI (a mapping per region, as a few regions serve another image; one mapping per distinct image)."""
        by_image: dict[str, dict[str, str]] = {}
        images = {}
        for model in models:
            key = repr(sorted(model.image.regions.items()))
            if key not in by_image:
                mapping_id = "Images" if not by_image else f"Images{_construct_id(model)}"
                by_image[key] = self._image(model, mapping_id)
            images[model.model_id] = by_image[key]
        return images

    def _image(self, model: CatalogModel, mapping_id: str) -> dict[str, str]:
        images = CfnMapping(self, mapping_id, mapping={
            region: {"account": image.account, "repository": image.repository, "tag": image.tag}
            for region, image in model.image.regions.items()})
        image = {key: images.find_in_map(Aws.REGION, key) for key in ("account", "repository", "tag")}
        image["uri"] = Fn.join("", [image["account"], ".dkr.ecr.", Aws.REGION, ".", Aws.URL_SUFFIX, "/",
                                    image["repository"], ":", image["tag"]])
        return image

    def _log_groups(self, settings: DeploymentSettings, plans: list[ComponentPlan]) -> list[logs.LogGroup]:
        """The endpoint's log group first. SageMaker writes the endpoint's logs to
        /aws/sagemaker/Endpoints/<name>, creating the group itself (without retention, and outside the stack)
        unless it exists: the stack creates it first."""
        log_groups = [logs.LogGroup(
            self, "EndpointLogs", log_group_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            retention=LOG_RETENTION[settings.log_retention_days], removal_policy=RemovalPolicy.DESTROY)]
        # An inference component's container logs go to a group of its own, by every public example (AWS
        # documents no path): created too, so it has retention and goes with the stack either way.
        for plan in plans:
            log_groups.append(logs.LogGroup(
                self, f"{_construct_id(plan.hosted.model)}Logs" if settings.hosted_models else "InferenceComponentLogs",
                log_group_name=f"/aws/sagemaker/InferenceComponents/{plan.name}",
                retention=LOG_RETENTION[settings.log_retention_days], removal_policy=RemovalPolicy.DESTROY))
        for log_group in log_groups:
            skip_checkov(log_group, {
                "CKV_AWS_158": "CloudWatch Logs encrypts at rest with service-managed keys; this group only holds "
                               "what SageMaker would otherwise write to a group of its own making, unencrypted by "
                               "KMS and without retention: creating it adds retention and takes nothing away.",
            })
        return log_groups

    def _model(self, model: CatalogModel, environment: dict[str, str], image_uri: str,
               construct_id: str) -> sagemaker.CfnModel:
        bucket = _bucket(model)
        return sagemaker.CfnModel(
            self, construct_id,
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=model.network_isolation,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                environment=environment,
                model_data_url=_model_data_url(model, bucket),
                model_data_source=_model_data_source(model, bucket),
            ),
        )

    def _endpoint_config(self, settings: DeploymentSettings) -> sagemaker.CfnEndpointConfig:
        if not is_nvme_instance(settings.instance_type):
            # Every instance type in the catalog has local NVMe, where CreateEndpointConfig rejects
            # VolumeSizeInGB and KmsKeyId; another type would need both, which this stack does not set.
            raise ValueError(f"instance type {settings.instance_type} has no local NVMe storage; "
                             f"allowed: the catalog's NVMe types ({', '.join(settings.model.instance_types)})")
        models = settings.models
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            # With inference components the models are the components', not the variant's.
            model_name=None if settings.components else self.sagemaker_model.attr_model_name,
            instance_type=settings.instance_type,
            initial_instance_count=settings.initial_instances,
            # A variant without a model takes no weight: the SDK's inference-component deploy path and AWS's
            # notebooks leave it out (session.production_variant sets it only with a model name).
            initial_variant_weight=None if settings.components else 1.0,
            # The longest of the models' (each component has its own as well).
            model_data_download_timeout_in_seconds=max(m.download_timeout_seconds for m in models),
            container_startup_health_check_timeout_in_seconds=max(m.startup_timeout_seconds for m in models),
            # Up to max_instances (at least what the copies fill: settings.py checks), so an update's new copies
            # can start before the old ones go.
            managed_instance_scaling=managed_instance_scaling(settings.fewest_instances, settings.max_instances)
            if settings.components else None,
            routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                routing_strategy="LEAST_OUTSTANDING_REQUESTS") if settings.components else None,
        )
        return sagemaker.CfnEndpointConfig(
            self, "EndpointConfig", production_variants=[variant],
            execution_role_arn=self.role.role_arn if settings.components else None,
            # With inference components the endpoint config's flag is the one that isolates the components'
            # containers (the SDK's deploy path sets it there; terraform-provider-aws documents it as the one that
            # counts); each model keeps its own as well, so the setting holds under either reading. Isolated only
            # when every model is (one flag for all).
            enable_network_isolation=all(m.network_isolation for m in models) if settings.components else None)

    def _components(self, settings: DeploymentSettings, plans: list[ComponentPlan]) -> list[HostedComponent]:
        """One inference component per model, each created after the one before: SageMaker documents nothing
        about several components changing on one endpoint at once, and one at a time works either way."""
        components: list[HostedComponent] = []
        for plan in plans:
            model = plan.hosted.model
            component = HostedComponent(
                self, _construct_id(model) if settings.hosted_models else "ScaleToZero", plan=plan,
                endpoint=self.endpoint, model_name=self.sagemaker_models[model.model_id].attr_model_name,
                variant_name=VARIANT_NAME, tags=_jumpstart_tags(model))
            if components:
                component.component.add_dependency(components[-1].component)
            components.append(component)
        return components

    def _tag_and_output(self, settings: DeploymentSettings) -> None:
        for model in settings.models:
            for key, value in _jumpstart_tags(model).items():
                Tags.of(self.sagemaker_models[model.model_id]).add(key, value)
        if not settings.hosted_models:  # the endpoint serves one model, and the stack is that model's
            for resource in (self.endpoint_config, self.endpoint):
                for key, value in _jumpstart_tags(settings.model).items():
                    Tags.of(resource).add(key, value)
            Tags.of(self).add("llm-stream:model-id", settings.model.model_id)
            Tags.of(self).add("llm-stream:spec-version", settings.model.spec_version)
        if settings.scale_to_zero and not settings.hosted_models:
            CfnOutput(self, "InferenceComponentName", value=settings.inference_component_name)
        CfnOutput(self, "EndpointName", value=self.endpoint.attr_endpoint_name)
        CfnOutput(self, "ModelId", value=settings.model.model_id)
        CfnOutput(self, "InstanceType", value=settings.instance_type)
        if settings.hosted_models:
            CfnOutput(self, "ModelIds", value=",".join(m.model_id for m in settings.models),
                      description="The models served, the default first: the model field picks one")

    @property
    def endpoint_arn(self) -> str:
        """Built from the known name with unscoped pseudo parameters, so another stack can use it without a
        cross-stack reference (SageMaker's ARNs hold the name in lowercase; ``endpoint_name`` is)."""
        return Fn.join("", ["arn:", Aws.PARTITION, ":sagemaker:", Aws.REGION, ":", Aws.ACCOUNT_ID, ":endpoint/",
                            self.endpoint_name])

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke this endpoint, streaming included, and nothing else (with inference components,
        those too: the Service Authorization Reference lists them as the invoke actions' optional resource, so
        granting them works whether or not SageMaker checks it)."""
        components = [inference_component_arn(component.name) for component in self.components]
        return iam.Grant.add_to_principal(grantee=grantee, actions=INVOKE_ACTIONS,
                                          resource_arns=[self.endpoint_arn, *components])

    def _add_autoscaling(self, settings: DeploymentSettings) -> None:
        # L1 on purpose: without RoleARN, Application Auto Scaling uses its service-linked role for
        # SageMaker; the L2 construct would create a role of its own with nothing to do.
        target = appscaling.CfnScalableTarget(
            self, "ScalableTarget",
            service_namespace="sagemaker",
            resource_id=Fn.join("", ["endpoint/", self.endpoint.attr_endpoint_name, "/variant/", VARIANT_NAME]),
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=settings.min_instances,
            max_capacity=settings.max_instances,
        )
        appscaling.CfnScalingPolicy(
            self, "InvocationsPerInstance",
            policy_name="invocations-per-instance",
            policy_type="TargetTrackingScaling",
            scaling_target_id=target.ref,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=settings.target_invocations_per_instance,
                predefined_metric_specification=appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                    predefined_metric_type="SageMakerVariantInvocationsPerInstance"),
                scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
                scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
            ),
        )


def _component_plans(settings: DeploymentSettings) -> list[ComponentPlan]:
    """What each inference component runs (none when the endpoint's variant holds the model)."""
    return [ComponentPlan(name=name, hosted=hosted,
                          needs=copy_requirements(settings.instance_type, hosted.gpus_per_copy),
                          idle_minutes=settings.scale_to_zero_after_minutes,
                          target_invocations_per_copy=settings.target_invocations_per_instance)
            for name, hosted in settings.inference_components]


def _environment(settings: DeploymentSettings, model: CatalogModel) -> dict[str, str]:
    """A model's container environment: with several models, its copy's GPU count set (a copy may hold fewer
    than the instance's GPUs)."""
    for hosted in settings.hosted_models:
        if hosted.model == model:
            return hosted.environment_for(settings.instance_type)
    return model.environment_for(settings.instance_type)


def _jumpstart_tags(model: CatalogModel) -> dict[str, str]:
    return {JUMPSTART_MODEL_ID_TAG: model.model_id, JUMPSTART_MODEL_VERSION_TAG: model.spec_version}


def _construct_id(model: CatalogModel) -> str:
    """A model's construct id, from its id (``Falcon7bInstructBf16``): stable when the list is reordered, so
    its resources (and their names) stay where they are."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", short_model_id(model.model_id)))


def _bucket(model: CatalogModel) -> str:
    return Fn.join("", [model.artifacts.bucket_prefix, Aws.REGION])


def _artifacts_uri(model: CatalogModel, bucket: str) -> str:
    return Fn.join("", ["s3://", bucket, "/", model.artifacts.key])


def _model_data_url(model: CatalogModel, bucket: str) -> str | None:
    """A ``.tar.gz`` archive goes in ``ModelDataUrl``."""
    return _artifacts_uri(model, bucket) if model.artifacts.is_archive else None


def _model_data_source(model: CatalogModel, bucket: str) -> sagemaker.CfnModel.ModelDataSourceProperty | None:
    """An uncompressed prefix goes in ``ModelDataSource``."""
    if model.artifacts.is_archive:
        return None
    return sagemaker.CfnModel.ModelDataSourceProperty(s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
        s3_uri=_artifacts_uri(model, bucket), s3_data_type="S3Prefix", compression_type="None"))


def _execution_statements(models: tuple[CatalogModel, ...], images: dict[str, dict[str, str]],
                          log_group_arns: list[str]) -> list[iam.PolicyStatement]:
    """What the endpoint needs: its models' artifacts and images, its logs and metrics. Nothing else."""
    # One ARN per bucket and per repository, however many models share it.
    buckets = list({model.artifacts.bucket_prefix: _bucket_arn(model) for model in models}.values())
    repositories = list({
        (images[model.model_id]["account"], images[model.model_id]["repository"]): Fn.join("", [
            "arn:", Aws.PARTITION, ":ecr:", Aws.REGION, ":", images[model.model_id]["account"], ":repository/",
            images[model.model_id]["repository"]]) for model in models}.values())
    return [
        iam.PolicyStatement(sid="ReadModelArtifacts", actions=["s3:GetObject"], resources=[
            Fn.join("", [_bucket_arn(model), "/", model.artifacts.key, "*"]) for model in models]),
        iam.PolicyStatement(sid="ListModelArtifacts", actions=["s3:ListBucket"], resources=buckets,
                            conditions={"StringLike": {"s3:prefix": [f"{m.artifacts.key}*" for m in models]}}),
        iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(sid="PullImage", resources=repositories, actions=[
            "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]),
        # The log group's ARN ends in ":*", which also covers its streams. CreateLogGroup stays: SageMaker's
        # documented execution-role permissions list it, and here it can only meet the existing group.
        iam.PolicyStatement(sid="WriteLogs", resources=log_group_arns,
                            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                     "logs:DescribeLogStreams"]),
        iam.PolicyStatement(sid="PutMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"]),
    ]


def _bucket_arn(model: CatalogModel) -> str:
    return Fn.join("", ["arn:", Aws.PARTITION, ":s3:::", _bucket(model)])
