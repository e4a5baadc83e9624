"""The SageMaker JumpStart endpoint: model, endpoint config, endpoint, its log group, execution role, autoscaling."""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, CfnOutput, CfnRule, CfnRuleAssertion, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .catalog import CatalogModel, is_nvme_instance
from .checkov import skip_checkov
from .scale_to_zero import ScaleToZero, inference_component_arn, managed_instance_scaling
from .settings import LOG_RETENTION, DeploymentSettings

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
SCALE_IN_COOLDOWN_SECONDS = 600
SCALE_OUT_COOLDOWN_SECONDS = 300


class EndpointStack(Stack):
    """Environment-agnostic: region-specific values resolve at deploy time (mapping and pseudo parameters)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploymentSettings, description: str) -> None:
        super().__init__(scope, construct_id, description=description)
        model = settings.model
        self.endpoint_name = settings.endpoint_name
        self._refuse_other_regions(settings.supported_regions)
        bucket = Fn.join("", [model.artifacts.bucket_prefix, Aws.REGION])
        image = self._image(model)
        log_groups = self._log_groups(settings)
        self.log_group = log_groups[0]
        self.role = iam.Role(self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"SageMaker execution role for {model.model_id}")
        policy = iam.Policy(self, "ExecutionPolicy", roles=[self.role], statements=_execution_statements(
            model, bucket, image["account"], image["repository"], [group.log_group_arn for group in log_groups]))
        self.sagemaker_model = self._model(settings, bucket, image["uri"])
        # CreateModel checks the role's access: the policy must be attached first.
        self.sagemaker_model.node.add_dependency(policy)
        self.endpoint_config = self._endpoint_config(settings)
        if settings.scale_to_zero:
            # An endpoint for inference components has a role of its own (the model's: it pulls the same
            # image and artifacts), which CreateEndpointConfig checks: the policy must be attached first.
            self.endpoint_config.node.add_dependency(policy)
        self.endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # An update (a new config: other caps, timeouts, model version) keeps the instance count
            # autoscaling has set, instead of dropping back to the config's initial count.
            retain_all_variant_properties=settings.autoscaling or settings.scale_to_zero or None,
        )
        self.endpoint.node.add_dependency(*log_groups)

        jumpstart_tags = {JUMPSTART_MODEL_ID_TAG: model.model_id, JUMPSTART_MODEL_VERSION_TAG: model.spec_version}
        self.scale_to_zero = ScaleToZero(
            self, "ScaleToZero", settings=settings, endpoint=self.endpoint, model=self.sagemaker_model,
            variant_name=VARIANT_NAME, tags=jumpstart_tags) if settings.scale_to_zero else None
        if settings.autoscaling:
            self._add_autoscaling(settings)
        self._tag_and_output(settings, jumpstart_tags)

    def _refuse_other_regions(self, regions: list[str]) -> None:
        """The endpoint stack deploys first: refuse a region where the model's image or the function's Web
        Adapter layer is missing before anything (a GPU instance above all) is created."""
        CfnRule(self, "SupportedRegion", assertions=[CfnRuleAssertion(
            assert_=Fn.condition_contains(regions, Aws.REGION),
            assert_description=f"This deployment runs only in {', '.join(regions)}: the model's container image "
                               "and the Lambda Web Adapter layer version must both exist in the region "
                               "(docs/deploying.md, The endpoint: Regions).")])

    def _image(self, model: CatalogModel) -> dict[str, str]:
        """The container image for the deploying region: its registry account, repository, tag and URI (a
        mapping per region: a few regions serve another image)."""
        images = CfnMapping(self, "Images", mapping={
            region: {"account": image.account, "repository": image.repository, "tag": image.tag}
            for region, image in model.image.regions.items()})
        image = {key: images.find_in_map(Aws.REGION, key) for key in ("account", "repository", "tag")}
        image["uri"] = Fn.join("", [image["account"], ".dkr.ecr.", Aws.REGION, ".", Aws.URL_SUFFIX, "/",
                                    image["repository"], ":", image["tag"]])
        return image

    def _log_groups(self, settings: DeploymentSettings) -> list[logs.LogGroup]:
        """The endpoint's log group first. SageMaker writes the endpoint's logs to
        /aws/sagemaker/Endpoints/<name>, creating the group itself (without retention, and outside the stack)
        unless it exists: the stack creates it first."""
        log_groups = [logs.LogGroup(
            self, "EndpointLogs", log_group_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            retention=LOG_RETENTION[settings.log_retention_days], removal_policy=RemovalPolicy.DESTROY)]
        if settings.scale_to_zero:
            # An inference component's container logs go to a group of its own, by every public example
            # (AWS documents no path): created too, so it has retention and goes with the stack either way.
            log_groups.append(logs.LogGroup(
                self, "InferenceComponentLogs",
                log_group_name=f"/aws/sagemaker/InferenceComponents/{settings.inference_component_name}",
                retention=LOG_RETENTION[settings.log_retention_days], removal_policy=RemovalPolicy.DESTROY))
        for log_group in log_groups:
            skip_checkov(log_group, {
                "CKV_AWS_158": "CloudWatch Logs encrypts at rest with service-managed keys; this group only holds "
                               "what SageMaker would otherwise write to a group of its own making, unencrypted by "
                               "KMS and without retention: creating it adds retention and takes nothing away.",
            })
        return log_groups

    def _model(self, settings: DeploymentSettings, bucket: str, image_uri: str) -> sagemaker.CfnModel:
        model = settings.model
        return sagemaker.CfnModel(
            self, "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=model.network_isolation,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                environment=model.environment_for(settings.instance_type),
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
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            # With scale to zero the model is the inference component's, not the variant's.
            model_name=None if settings.scale_to_zero else self.sagemaker_model.attr_model_name,
            instance_type=settings.instance_type,
            initial_instance_count=settings.min_instances,
            # A variant without a model takes no weight: the SDK's inference-component deploy path and AWS's
            # notebooks leave it out (session.production_variant sets it only with a model name).
            initial_variant_weight=None if settings.scale_to_zero else 1.0,
            model_data_download_timeout_in_seconds=settings.model.download_timeout_seconds,
            container_startup_health_check_timeout_in_seconds=settings.model.startup_timeout_seconds,
            managed_instance_scaling=managed_instance_scaling(settings) if settings.scale_to_zero else None,
            routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                routing_strategy="LEAST_OUTSTANDING_REQUESTS") if settings.scale_to_zero else None,
        )
        return sagemaker.CfnEndpointConfig(
            self, "EndpointConfig", production_variants=[variant],
            execution_role_arn=self.role.role_arn if settings.scale_to_zero else None,
            # With inference components the endpoint config's flag is the one that isolates the components'
            # containers (the SDK's deploy path sets it there; terraform-provider-aws documents it as the one that
            # counts); the model keeps its own as well, so the setting holds under either reading.
            enable_network_isolation=settings.model.network_isolation if settings.scale_to_zero else None)

    def _tag_and_output(self, settings: DeploymentSettings, jumpstart_tags: dict[str, str]) -> None:
        for resource in (self.sagemaker_model, self.endpoint_config, self.endpoint):
            for key, value in jumpstart_tags.items():
                Tags.of(resource).add(key, value)
        Tags.of(self).add("llm-stream:model-id", settings.model.model_id)
        Tags.of(self).add("llm-stream:spec-version", settings.model.spec_version)
        CfnOutput(self, "EndpointName", value=self.endpoint.attr_endpoint_name)
        CfnOutput(self, "ModelId", value=settings.model.model_id)
        CfnOutput(self, "InstanceType", value=settings.instance_type)

    @property
    def endpoint_arn(self) -> str:
        """Built from the known name with unscoped pseudo parameters, so another stack can use it without a
        cross-stack reference (SageMaker's ARNs hold the name in lowercase; ``endpoint_name`` is)."""
        return Fn.join("", ["arn:", Aws.PARTITION, ":sagemaker:", Aws.REGION, ":", Aws.ACCOUNT_ID, ":endpoint/",
                            self.endpoint_name])

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke this endpoint, streaming included, and nothing else (with scale to zero, its
        inference component too: the Service Authorization Reference lists it as the invoke actions' optional
        resource, so granting it works whether or not SageMaker checks it)."""
        component = [] if self.scale_to_zero is None else [inference_component_arn(self.scale_to_zero.name)]
        return iam.Grant.add_to_principal(grantee=grantee, actions=INVOKE_ACTIONS,
                                          resource_arns=[self.endpoint_arn, *component])

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


def _execution_statements(model: CatalogModel, bucket: str, image_account: str, image_repository: str,
                          log_group_arns: list[str]) -> list[iam.PolicyStatement]:
    """What the endpoint needs: its artifacts, its image, its logs and metrics. Nothing else."""
    bucket_arn = Fn.join("", ["arn:", Aws.PARTITION, ":s3:::", bucket])
    repository_arn = Fn.join("", ["arn:", Aws.PARTITION, ":ecr:", Aws.REGION, ":", image_account,
                                  ":repository/", image_repository])
    return [
        iam.PolicyStatement(sid="ReadModelArtifacts", actions=["s3:GetObject"],
                            resources=[Fn.join("", [bucket_arn, "/", model.artifacts.key, "*"])]),
        iam.PolicyStatement(sid="ListModelArtifacts", actions=["s3:ListBucket"], resources=[bucket_arn],
                            conditions={"StringLike": {"s3:prefix": [f"{model.artifacts.key}*"]}}),
        iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(sid="PullImage", resources=[repository_arn], actions=[
            "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]),
        # The log group's ARN ends in ":*", which also covers its streams. CreateLogGroup stays: SageMaker's
        # documented execution-role permissions list it, and here it can only meet the existing group.
        iam.PolicyStatement(sid="WriteLogs", resources=log_group_arns,
                            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                     "logs:DescribeLogStreams"]),
        iam.PolicyStatement(sid="PutMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"]),
    ]
