"""Scale to zero (``scale_to_zero=true``): the model as an inference component whose copies, and with them
the endpoint's instances, go to zero when idle and come back when requests arrive.

The pattern is AWS's ("Scale an endpoint to zero instances", SageMaker developer guide, and the launch post
"Unlock cost savings with the new scale down to zero feature in SageMaker Inference"): an endpoint config
with managed instance scaling from 0, an inference component, Application Auto Scaling on its copy count
with a minimum of 0, and a step-scaling policy on a ``NoCapacityInvocationFailures`` alarm that brings the
first copy back (target tracking cannot scale out from zero). Where this differs from AWS's examples, and
why:

* **Going to zero**: an idle alarm (no invocations and no refused attempts for
  ``scale_to_zero_after_minutes`` one-minute periods) sets the copies to 0. AWS's examples leave it to
  target tracking, whose own scale-in alarm waits a fixed 15 minutes; the setting would then mean nothing.
  Target tracking (with ``max_instances`` > 1) only adds copies under load here (``DisableScaleIn``), so
  extra copies stay until the endpoint has been idle that long, then all go.
* **Waking**: the alarm fires on one refused request in a minute (Sum ≥ 1). The guide's example (Sum > 1)
  needs two; the launch post's (Maximum ≥ 1 over 30 s) fires on one: this works under either reading. The
  step policy sets the copies to exactly one (AWS's examples add one), with their cooldown of 60 s. An
  alarm keeps invoking a scaling policy while it stays in ALARM ("Except for Auto Scaling actions, the
  actions happen only on state transitions", CloudWatch's alarm actions page), and refused retries keep it
  there while a copy starts (5 to 10 minutes): "exactly one" is idempotent, so that adds no second copy,
  where "add one" needed a long cooldown, which in turn locked the wake-up out for its length if anything
  took the copy away (a step policy's cooldown counts what it added as still there). The alarm fires only
  when no copy is active (SageMaker emits ``NoCapacityInvocationFailures`` when "the endpoint has no active
  instances to serve the request"): while one is starting, or when every copy target tracking asked for
  has failed, in which case "exactly one" brings one back and target tracking adds the rest under load.
* **The two cannot lock each other out.** The idle alarm counts refused attempts as activity, so the datapoint
  that fires the wake-up also ends the idle alarm's ALARM, at its next evaluation. Within that one gap
  (about a minute), a run of "to zero" may still undo a fresh wake-up; Application Auto Scaling then scales
  out at once ("if another alarm triggers a scale-out activity during the cooldown period after a scale-in,
  Application Auto Scaling scales out the target immediately", its step-scaling guide), and the wake-up's
  next run, a minute later while requests are refused, sets one copy again: at worst a minute's delay,
  never the cooldown's.
* **A metric-math alarm invoking a step policy** (the idle alarm): AWS's documents show no example, and
  forbid math alarms EC2 actions only ("Alarms based on math expressions cannot perform Amazon EC2
  actions", CloudWatch's user guide) and composite alarms Auto Scaling actions; only a deployment confirms
  that the policy runs (``make smoke`` after an idle period shows it: the model is at zero).
* **After a deployment** the idle alarm has no data, which counts as idle: the copy the deployment started
  (proof that the model loads) goes to zero within minutes unless requests arrive.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Fn, Tags
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .instance_types import copy_requirements
from .settings import DeploymentSettings

SCALABLE_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
#: SageMaker's answer count while a component has no copy (namespace AWS/SageMaker, per component).
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"
SCALE_OUT_COOLDOWN_SECONDS = 300
#: AWS's (the guide's and the launch post's notebook): "exactly one copy" needs no longer one.
WAKE_UP_COOLDOWN_SECONDS = 60
#: The copy a deployment starts with: the model loads once at deploy time, so a broken container fails the
#: deployment instead of the first request (and the idle alarm then takes it to zero).
INITIAL_COPIES = 1
MINUTE = 60


def inference_component_arn(name: str) -> str:
    return Fn.join("", ["arn:", Aws.PARTITION, ":sagemaker:", Aws.REGION, ":", Aws.ACCOUNT_ID,
                        ":inference-component/", name])


def wake_up_alarm_name(component: str) -> str:
    return f"{component}-wake-up"


def idle_alarm_name(component: str) -> str:
    return f"{component}-idle"


def managed_instance_scaling(
        settings: DeploymentSettings) -> sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty:
    """The endpoint's instances follow its copies, down to none."""
    return sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
        status="ENABLED", min_instance_count=0, max_instance_count=settings.max_instances)


class ScaleToZero(Construct):
    """The inference component on ``endpoint``, its copy-count scaling and the two alarms that drive it."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploymentSettings,
                 endpoint: sagemaker.CfnEndpoint, model: sagemaker.CfnModel, variant_name: str,
                 tags: dict[str, str]) -> None:
        super().__init__(scope, construct_id)
        self.name = settings.inference_component_name
        self.component = self._component(settings, endpoint, model, variant_name)
        for key, value in tags.items():
            Tags.of(self.component).add(key, value)
        target = self._copy_count(settings)
        wake = self._step_policy(target, "WakeUpPolicy", "wake-up", "ExactCapacity", WAKE_UP_COOLDOWN_SECONDS,
                                 appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                                     metric_interval_lower_bound=0, scaling_adjustment=INITIAL_COPIES))
        idle = self._step_policy(target, "ToZeroPolicy", "scale-to-zero", "ExactCapacity", MINUTE,
                                 appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                                     metric_interval_upper_bound=0, scaling_adjustment=0))
        self.wake_alarm = self._wake_up_alarm(target, wake)
        self.idle_alarm = self._idle_alarm(target, idle, settings.scale_to_zero_after_minutes)
        CfnOutput(scope, "InferenceComponentName", value=self.name)

    def _component(self, settings: DeploymentSettings, endpoint: sagemaker.CfnEndpoint, model: sagemaker.CfnModel,
                   variant_name: str) -> sagemaker.CfnInferenceComponent:
        needs = copy_requirements(settings.instance_type)
        return sagemaker.CfnInferenceComponent(  # after the endpoint, hence after its log groups
            self, "InferenceComponent",
            inference_component_name=self.name,
            endpoint_name=endpoint.attr_endpoint_name,
            variant_name=variant_name,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=model.attr_model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent
                .InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=needs.accelerators,
                    number_of_cpu_cores_required=needs.cpu_cores,
                    min_memory_required_in_mb=needs.min_memory_mb),
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    model_data_download_timeout_in_seconds=settings.model.download_timeout_seconds,
                    container_startup_health_check_timeout_in_seconds=settings.model.startup_timeout_seconds),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=INITIAL_COPIES),
        )

    def _copy_count(self, settings: DeploymentSettings) -> appscaling.CfnScalableTarget:
        """The copy count as a scalable target, followed by load above one copy."""
        # L1 on purpose (as the variant's autoscaling): Application Auto Scaling's service-linked role.
        target = appscaling.CfnScalableTarget(
            self, "CopyCount", service_namespace="sagemaker", resource_id=f"inference-component/{self.name}",
            scalable_dimension=SCALABLE_DIMENSION, min_capacity=0, max_capacity=settings.max_instances)
        target.add_dependency(self.component)  # the name is a string: no reference orders them
        if settings.max_instances > 1:
            appscaling.CfnScalingPolicy(
                self, "InvocationsPerCopy", policy_name="invocations-per-copy", policy_type="TargetTrackingScaling",
                scaling_target_id=target.ref,
                target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy
                .TargetTrackingScalingPolicyConfigurationProperty(
                    target_value=settings.target_invocations_per_instance,
                    predefined_metric_specification=appscaling.CfnScalingPolicy.PredefinedMetricSpecificationProperty(
                        predefined_metric_type="SageMakerInferenceComponentInvocationsPerCopy"),
                    disable_scale_in=True, scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS))
        return target

    def _wake_up_alarm(self, target: appscaling.CfnScalableTarget,
                       wake: appscaling.CfnScalingPolicy) -> cloudwatch.CfnAlarm:
        dimensions = [cloudwatch.CfnAlarm.DimensionProperty(name="InferenceComponentName", value=self.name)]
        alarm = cloudwatch.CfnAlarm(
            self, "WakeUpAlarm", alarm_name=wake_up_alarm_name(self.name),
            alarm_description="Requests were refused for want of an active model copy: set one (scale to zero's "
                              "wake-up).",
            namespace="AWS/SageMaker", metric_name=NO_CAPACITY_METRIC, dimensions=dimensions, statistic="Sum",
            period=MINUTE, evaluation_periods=1, datapoints_to_alarm=1, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching",
            alarm_actions=[wake.ref])
        alarm.add_dependency(target)
        return alarm

    def _idle_alarm(self, target: appscaling.CfnScalableTarget, idle: appscaling.CfnScalingPolicy,
                    minutes: int) -> cloudwatch.CfnAlarm:
        alarm = cloudwatch.CfnAlarm(
            self, "IdleAlarm", alarm_name=idle_alarm_name(self.name),
            alarm_description=f"No request reached the model for {minutes} minutes: its copies go to zero.",
            metrics=[self._component_metric("invocations", "Invocations"),
                     self._component_metric("refused", NO_CAPACITY_METRIC),
                     cloudwatch.CfnAlarm.MetricDataQueryProperty(
                         id="attempts", expression="FILL(invocations, 0) + FILL(refused, 0)",
                         label="invocations and refused attempts", return_data=True)],
            evaluation_periods=minutes, datapoints_to_alarm=minutes, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching", alarm_actions=[idle.ref])
        alarm.add_dependency(target)
        return alarm

    def _component_metric(self, query_id: str, metric_name: str) -> cloudwatch.CfnAlarm.MetricDataQueryProperty:
        return cloudwatch.CfnAlarm.MetricDataQueryProperty(
            id=query_id, return_data=False, metric_stat=cloudwatch.CfnAlarm.MetricStatProperty(
                metric=cloudwatch.CfnAlarm.MetricProperty(
                    namespace="AWS/SageMaker", metric_name=metric_name, dimensions=[
                        cloudwatch.CfnAlarm.DimensionProperty(name="InferenceComponentName", value=self.name)]),
                period=MINUTE, stat="Sum"))

    def _step_policy(self, target: appscaling.CfnScalableTarget, construct_id: str, name: str, adjustment_type: str,
                     cooldown: int, step: appscaling.CfnScalingPolicy.StepAdjustmentProperty
                     ) -> appscaling.CfnScalingPolicy:
        return appscaling.CfnScalingPolicy(
            self, construct_id, policy_name=name, policy_type="StepScaling", scaling_target_id=target.ref,
            step_scaling_policy_configuration=appscaling.CfnScalingPolicy.StepScalingPolicyConfigurationProperty(
                adjustment_type=adjustment_type, cooldown=cooldown, metric_aggregation_type="Maximum",
                step_adjustments=[step]))
