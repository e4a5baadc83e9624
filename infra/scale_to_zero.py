"""Scale to zero (``scale_to_zero=true``, or a ``models`` entry's ``scale_to_zero``): an inference component
whose copies, and with them the endpoint's instances, go to zero when idle and come back when requests
arrive (the component itself: ``inference_components.py``).

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

from aws_cdk import Aws, Fn
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

SCALABLE_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
#: SageMaker's answer count while a component has no copy (namespace AWS/SageMaker, per component).
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"
#: AWS's (the guide's and the launch post's notebook): "exactly one copy" needs no longer one.
WAKE_UP_COOLDOWN_SECONDS = 60
#: The copies "wake up" sets: one (target tracking adds more under load).
WAKE_UP_COPIES = 1
MINUTE = 60


def inference_component_arn(name: str) -> str:
    return Fn.join("", ["arn:", Aws.PARTITION, ":sagemaker:", Aws.REGION, ":", Aws.ACCOUNT_ID,
                        ":inference-component/", name])


def wake_up_alarm_name(component: str) -> str:
    return f"{component}-wake-up"


def idle_alarm_name(component: str) -> str:
    return f"{component}-idle"


def managed_instance_scaling(min_instances: int,
                             max_instances: int) -> sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty:
    """The endpoint's instances follow its copies (down to none when ``min_instances`` is 0)."""
    return sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
        status="ENABLED", min_instance_count=min_instances, max_instance_count=max_instances)


class ScaleToZero:
    """The two policies on a component's copy count (``target``) and the two alarms that drive them, made in
    ``scope`` (the component's construct)."""

    def __init__(self, scope: Construct, target: appscaling.CfnScalableTarget, component: str,
                 idle_minutes: int) -> None:
        self._scope = scope
        self._component = component
        wake = self._step_policy(target, "WakeUpPolicy", "wake-up", WAKE_UP_COOLDOWN_SECONDS,
                                 appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                                     metric_interval_lower_bound=0, scaling_adjustment=WAKE_UP_COPIES))
        idle = self._step_policy(target, "ToZeroPolicy", "scale-to-zero", MINUTE,
                                 appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                                     metric_interval_upper_bound=0, scaling_adjustment=0))
        self.wake_alarm = self._wake_up_alarm(target, wake)
        self.idle_alarm = self._idle_alarm(target, idle, idle_minutes)

    def _wake_up_alarm(self, target: appscaling.CfnScalableTarget,
                       wake: appscaling.CfnScalingPolicy) -> cloudwatch.CfnAlarm:
        dimensions = [cloudwatch.CfnAlarm.DimensionProperty(name="InferenceComponentName", value=self._component)]
        alarm = cloudwatch.CfnAlarm(
            self._scope, "WakeUpAlarm", alarm_name=wake_up_alarm_name(self._component),
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
            self._scope, "IdleAlarm", alarm_name=idle_alarm_name(self._component),
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
                        cloudwatch.CfnAlarm.DimensionProperty(name="InferenceComponentName", value=self._component)]),
                period=MINUTE, stat="Sum"))

    def _step_policy(self, target: appscaling.CfnScalableTarget, construct_id: str, name: str, cooldown: int,
                     step: appscaling.CfnScalingPolicy.StepAdjustmentProperty) -> appscaling.CfnScalingPolicy:
        return appscaling.CfnScalingPolicy(
            self._scope, construct_id, policy_name=name, policy_type="StepScaling", scaling_target_id=target.ref,
            step_scaling_policy_configuration=appscaling.CfnScalingPolicy.StepScalingPolicyConfigurationProperty(
                adjustment_type="ExactCapacity", cooldown=cooldown, metric_aggregation_type="Maximum",
                step_adjustments=[step]))
