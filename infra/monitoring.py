"""Alarms and a dashboard with the function and the endpoint side by side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .endpoint_stack import VARIANT_NAME
from .function_settings import function_settings
from .scale_to_zero import NO_CAPACITY_METRIC, idle_alarm_name, wake_up_alarm_name

FIVE_MINUTES = Duration.minutes(5)
ONE_MINUTE = Duration.minutes(1)
#: The function's metrics namespace (EMF, lambda/llm_stream/metrics.py).
METRICS_NAMESPACE = function_settings.DEFAULT_METRICS_NAMESPACE
#: SageMaker reports ModelLatency in microseconds.
MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class ServedComponent:
    """A model as the endpoint serves it, for its alarms and widgets."""

    model_id: str
    #: Its inference component ("": the endpoint's variant holds the model).
    component: str
    scale_to_zero: bool


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        endpoint_name: str,
        service_name: str,
        model_latency_alarm_seconds: int,
        log_group: logs.ILogGroup | None = None,
        per_consumer: bool = False,
        components: tuple[ServedComponent, ...] = (),
    ) -> None:
        """``components``: the endpoint's inference components (with scale to zero, or several models), whose
        invocations, errors and latency SageMaker reports per component; none: the endpoint's variant's."""
        super().__init__(scope, construct_id)
        self._service_name = service_name
        self._several = len(components) > 1
        self.alarms = [
            self._alarm("FunctionErrors", function.metric_errors(period=FIVE_MINUTES), 0,
                        "The streaming function failed invocations (crashes, timeouts, adapter errors)."),
            self._alarm("FunctionThrottles", function.metric_throttles(period=FIVE_MINUTES), 0,
                        "Callers were refused: reserved concurrency is exhausted."),
            self._alarm("StreamServerErrors", self._own_metric("ServerErrors", "Sum", "server errors"), 0,
                        "Streams failed on the endpoint's or the function's side (5xx status or a mid-stream error)."),
        ]
        rows, to_zero = [], []
        for served in components or (ServedComponent("", "", False),):
            dimensions = {"InferenceComponentName": served.component} if served.component else {
                "EndpointName": endpoint_name, "VariantName": VARIANT_NAME}
            metric, row = self._add_model(served, dimensions, model_latency_alarm_seconds, function)
            rows.append(row)
            if served.scale_to_zero:
                to_zero.append((served, metric))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self._add_function_widgets(function)
        for row in rows:
            self.dashboard.add_widgets(*row)
        if self._several:
            self.dashboard.add_widgets(self._duration_widget(function))
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", width=24, alarms=self.alarms))
        for served, metric in to_zero:
            self._add_scale_to_zero_widgets(served, metric)
        if per_consumer and log_group is not None:  # api_key auth: the key's name is on every request's log line
            self.alarms.append(self._alarm(
                "LimitsUnavailable", self._own_metric("LimitsUnavailable", "Sum", "requests not admitted by the "
                                                      "key table"), 0,
                "Keyed requests could not be checked against their limits (the key table did not answer in time)."))
            self._add_per_consumer_widgets(log_group)

    def _add_model(self, served: ServedComponent, dimensions: dict[str, str], latency_alarm_seconds: int,
                   function: lambda_.Function) -> tuple[Callable[[str, str, str], cloudwatch.Metric],
                                                        list[cloudwatch.IWidget]]:
        """The endpoint's (or one component's) alarms; with several models, each model's own. Returns how its
        SageMaker metrics are made and its dashboard row (its name in the titles, and the function's figures for
        that model beside them)."""
        def metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/SageMaker", metric_name=name, statistic=statistic, label=label,
                                     dimensions_map=dimensions, period=FIVE_MINUTES)

        suffix, whose = (f"-{served.model_id}", f"{served.model_id}: ") if self._several else ("", "")
        model_latency = metric("ModelLatency", "p90", "model latency p90 (µs)")
        endpoint_errors = self._endpoint_errors(metric, bool(served.component))
        self.alarms += [
            self._alarm(f"EndpointInvocationErrors{suffix}", endpoint_errors, 0,
                        f"{whose}The SageMaker endpoint answered invocations with errors."),
            self._alarm(f"EndpointModelLatency{suffix}", model_latency, latency_alarm_seconds * MICROSECONDS_PER_SECOND,
                        f"{whose}The model's p90 latency is above {latency_alarm_seconds} s."),
        ]
        endpoint = "Endpoint" if not self._several else served.model_id
        return metric, [
            cloudwatch.GraphWidget(title=f"{endpoint}: invocations and errors", width=8, left=[
                metric("Invocations", "Sum", "invocations")], right=[endpoint_errors]),
            cloudwatch.GraphWidget(title=f"{endpoint}: model latency (µs)", width=8, left=[
                model_latency, metric("ModelLatency", "p50", "model latency p50 (µs)")]),
            self._streams_widget(served.model_id) if self._several else self._duration_widget(function),
        ]

    @staticmethod
    def _duration_widget(function: lambda_.Function) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title="Function: duration and concurrency", width=8, left=[
            function.metric_duration(period=FIVE_MINUTES, statistic="p90")], right=[
            function.metric("ConcurrentExecutions", statistic="Maximum", period=FIVE_MINUTES)])

    def _streams_widget(self, model_id: str) -> cloudwatch.GraphWidget:
        """One model's streams, from the function's metrics with the ``Model`` dimension."""
        def own(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, statistic=statistic, label=label,
                                     dimensions_map={"Service": self._service_name, "Model": model_id},
                                     period=FIVE_MINUTES)

        return cloudwatch.GraphWidget(title=f"{model_id}: streams", width=8, left=[
            own("TimeToFirstToken", "p50", "TTFT p50 (ms)"), own("TimeToFirstToken", "p90", "TTFT p90 (ms)")],
            right=[own("Tokens", "Sum", "tokens"), own("Requests", "Sum", "requests")])

    def _own_metric(self, name: str, statistic: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, statistic=statistic, label=label,
                                 dimensions_map={"Service": self._service_name}, period=FIVE_MINUTES)

    def _alarm(self, alarm_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, alarm_id, metric=metric, threshold=threshold, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING, alarm_description=description)

    @staticmethod
    def _endpoint_errors(metric: Callable[[str, str, str], cloudwatch.Metric],
                         per_component: bool) -> cloudwatch.MathExpression:
        errors = {"e4xx": metric("Invocation4XXErrors", "Sum", "4xx"),
                  "e5xx": metric("Invocation5XXErrors", "Sum", "5xx")}
        if not per_component:
            return cloudwatch.MathExpression(expression="e4xx + e5xx", label="endpoint invocation errors",
                                             period=FIVE_MINUTES, using_metrics=errors)
        # Requests refused while the model is at zero are that mode working, not errors; whether SageMaker
        # counts them among the 4xx is not documented, so they are taken out of the 4xx where they are.
        return cloudwatch.MathExpression(
            expression="FILL(e5xx, 0) + IF(FILL(e4xx, 0) > FILL(refused, 0), FILL(e4xx, 0) - FILL(refused, 0), 0)",
            label="endpoint invocation errors", period=FIVE_MINUTES, using_metrics={
                **errors, "refused": metric(NO_CAPACITY_METRIC, "Sum", "refused at zero")})

    def _add_function_widgets(self, function: lambda_.Function) -> None:
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Function: invocations, errors, throttles", width=8, left=[
                function.metric_invocations(period=FIVE_MINUTES), function.metric_errors(period=FIVE_MINUTES),
                function.metric_throttles(period=FIVE_MINUTES)]),
            cloudwatch.GraphWidget(title="Streams: time to first token (ms)", width=8, left=[
                self._own_metric("TimeToFirstToken", "p50", "TTFT p50"),
                self._own_metric("TimeToFirstToken", "p90", "TTFT p90")]),
            cloudwatch.GraphWidget(title="Streams: tokens and server errors", width=8, left=[
                self._own_metric("Tokens", "Sum", "tokens")], right=[
                self._own_metric("ServerErrors", "Sum", "server errors")]),
        )

    def _add_per_consumer_widgets(self, log_group: logs.ILogGroup) -> None:
        """Per consumer from the request log lines (CloudWatch Logs Insights), not from a metric dimension per
        key: 1,000 keys would be 1,000 custom metrics per metric name, each billed monthly."""
        def per_consumer(title: str, query: list[str]) -> cloudwatch.LogQueryWidget:
            return cloudwatch.LogQueryWidget(title=title, width=12, log_group_names=[log_group.log_group_name],
                                             view=cloudwatch.LogQueryVisualizationType.TABLE,
                                             query_lines=['filter event = "request" and ispresent(consumer)', *query])

        self.dashboard.add_widgets(
            per_consumer("Tokens and requests per consumer (API key name), top 20", [
                "stats count(*) as requests, sum(tokens) as completion_tokens, sum(prompt_tokens) as prompt, "
                "sum(duration_ms) / 1000 as stream_seconds by consumer",
                "sort completion_tokens desc", "limit 20"]),
            per_consumer("Refusals per consumer (limits, budgets, keys), top 20", [
                "filter status = 429 or status = 401 or status = 403",
                "stats count(*) as refusals by consumer, error_type", "sort refusals desc", "limit 20"]),
        )

    def _add_scale_to_zero_widgets(self, served: ServedComponent,
                                   metric: Callable[[str, str, str], cloudwatch.Metric]) -> None:
        """Scale to zero over time. CloudWatch has no copy or instance count for a component (DescribeInference-
        Component's CurrentCopyCount has it): its GPU utilization exists only while a copy runs, and the two
        alarms' states say when it was asked to wake and to go."""
        component = served.component
        gpu = cloudwatch.Metric(namespace="/aws/sagemaker/InferenceComponents", metric_name="GPUUtilizationNormalized",
                                dimensions_map={"InferenceComponentName": component}, statistic="Average",
                                label="copies' GPU utilization (absent: no copy running)", period=ONE_MINUTE)
        suffix, title = (f"-{served.model_id}", f"Scale to zero, {served.model_id}") if self._several else (
            "", "Scale to zero")
        alarms = [cloudwatch.Alarm.from_alarm_name(self, f"{alarm_id}{suffix}", name) for alarm_id, name in (
            ("WakeUpAlarm", wake_up_alarm_name(component)), ("IdleAlarm", idle_alarm_name(component)))]
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title=f"{title}: requests served and refused at zero", width=8, left=[
                metric("Invocations", "Sum", "invocations"),
                metric(NO_CAPACITY_METRIC, "Sum", "refused: no copy (wakes the model)")]),
            cloudwatch.GraphWidget(title=f"{title}: a copy is running while this has data", width=8,
                                   left=[gpu]),
            cloudwatch.AlarmStatusWidget(title=f"{title}: asked to wake / to go to zero", width=8,
                                         alarms=alarms),
        )
