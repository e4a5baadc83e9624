"""An inference component on the endpoint: its copies of one model, their scaling, and (when it scales to
zero) what takes them to zero and back (``scale_to_zero.py``).

One construct for both uses: ``scale_to_zero=true`` (one model, as a component) and ``models`` (one component
per model). Properties as CreateInferenceComponent and the ``AWS::SageMaker::InferenceComponent`` schema
name them; the copy count's autoscaling as Application Auto Scaling's guide for SageMaker inference components
("Autoscale an inference component": the ``sagemaker:inference-component:DesiredCopyCount`` dimension and
the ``SageMakerInferenceComponentInvocationsPerCopy`` predefined metric).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Tags
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .hosted_models import HostedModel
from .instance_types import CopyRequirements
from .scale_to_zero import SCALABLE_DIMENSION, ScaleToZero

#: Target tracking of a variant's instances (``endpoint_stack.py``) and of a component's copies: either takes
#: minutes to start, so add soon and remove late.
SCALE_IN_COOLDOWN_SECONDS = 600
SCALE_OUT_COOLDOWN_SECONDS = 300


@dataclass(frozen=True)
class ComponentPlan:
    """What one component runs: its name, its model and copies, a copy's needs, and its scaling's settings."""

    name: str
    hosted: HostedModel
    needs: CopyRequirements
    idle_minutes: int
    target_invocations_per_copy: int


class HostedComponent(Construct):
    """The component on ``endpoint``'s variant, holding ``model_name``, and its copy count's scaling."""

    def __init__(self, scope: Construct, construct_id: str, *, plan: ComponentPlan, endpoint: sagemaker.CfnEndpoint,
                 model_name: str, variant_name: str, tags: dict[str, str]) -> None:
        super().__init__(scope, construct_id)
        self.name = plan.name
        self.component = self._component(plan, endpoint, model_name, variant_name)
        for key, value in tags.items():
            Tags.of(self.component).add(key, value)
        target = self._copy_count(plan)
        if plan.hosted.scale_to_zero:
            ScaleToZero(self, target, plan.name, plan.idle_minutes)

    def _component(self, plan: ComponentPlan, endpoint: sagemaker.CfnEndpoint, model_name: str,
                   variant_name: str) -> sagemaker.CfnInferenceComponent:
        return sagemaker.CfnInferenceComponent(  # after the endpoint, hence after its log groups
            self, "InferenceComponent",
            inference_component_name=plan.name,
            endpoint_name=endpoint.attr_endpoint_name,
            variant_name=variant_name,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent
                .InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=plan.needs.accelerators,
                    number_of_cpu_cores_required=plan.needs.cpu_cores,
                    min_memory_required_in_mb=plan.needs.min_memory_mb),
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    model_data_download_timeout_in_seconds=plan.hosted.model.download_timeout_seconds,
                    container_startup_health_check_timeout_in_seconds=plan.hosted.model.startup_timeout_seconds),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=plan.hosted.initial_copies),
        )

    def _copy_count(self, plan: ComponentPlan) -> appscaling.CfnScalableTarget:
        """The copy count as a scalable target, followed by load above one copy. A component that scales to
        zero only adds copies by load (``DisableScaleIn``: its idle alarm takes them all away); another also
        removes them."""
        # L1 on purpose (as the variant's autoscaling): Application Auto Scaling's service-linked role.
        target = appscaling.CfnScalableTarget(
            self, "CopyCount", service_namespace="sagemaker", resource_id=f"inference-component/{plan.name}",
            scalable_dimension=SCALABLE_DIMENSION, min_capacity=plan.hosted.min_copies,
            max_capacity=plan.hosted.max_copies)
        target.add_dependency(self.component)  # the name is a string: no reference orders them
        if plan.hosted.tracks_load:
            appscaling.CfnScalingPolicy(
                self, "InvocationsPerCopy", policy_name="invocations-per-copy", policy_type="TargetTrackingScaling",
                scaling_target_id=target.ref,
                target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy
                .TargetTrackingScalingPolicyConfigurationProperty(
                    target_value=plan.target_invocations_per_copy,
                    predefined_metric_specification=appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                        predefined_metric_type="SageMakerInferenceComponentInvocationsPerCopy"),
                    disable_scale_in=True if plan.hosted.scale_to_zero else None,
                    scale_in_cooldown=None if plan.hosted.scale_to_zero else SCALE_IN_COOLDOWN_SECONDS,
                    scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS))
        return target
