"""CloudWatch metrics as Embedded Metric Format fields on the request's log line (no API calls, no agent).

Per request, dimension ``Service``: ``Requests``, ``Tokens``, ``Duration``, ``TimeToFirstToken`` (when a
token was sent), ``ServerErrors`` (the endpoint or the function failed: a 5xx status, or an error after
the first byte; not a scaled-to-zero model's 503 ``model_waking_up``, which is that mode working).
Dimensions ``Service, ErrorType``: ``Errors``, for every error, 4xx included. ``LimitsUnavailable``
(dimension ``Service``): a keyed request whose limits could not be checked. Where several models are served
(``MODELS``), the per-request metrics are also published per model (dimensions ``Service, Model``); a
deployment of one model publishes what it always did. Nothing per API key: a
dimension per key would make a custom metric per key; the log line's ``consumer`` serves per-key views
(the dashboard's Logs Insights queries) instead.
"""

from __future__ import annotations

import time
from typing import Any

from .stats import RequestStats

_PER_REQUEST = (("Requests", "Count"), ("Tokens", "Count"), ("Duration", "Milliseconds"),
                ("ServerErrors", "Count"))


#: 5xx answers that are a feature working, not a failure (the alarm on ServerErrors must not page for them).
_EXPECTED_UNAVAILABILITY = frozenset({"model_waking_up"})


def is_server_error(stats: RequestStats) -> bool:
    return (bool(stats.error_type) and stats.error_type not in _EXPECTED_UNAVAILABILITY
            and (stats.status >= 500 or stats.status == 200))


def emf_fields(stats: RequestStats, namespace: str, service: str, per_model: bool = False) -> dict[str, Any]:
    metrics = [{"Name": name, "Unit": unit} for name, unit in _PER_REQUEST]
    values: dict[str, Any] = {
        **({"Model": stats.model_id} if per_model else {}),
        "Service": service,
        "Requests": 1,
        "Tokens": stats.tokens,
        "Duration": stats.duration_ms(),
        "ServerErrors": 1 if is_server_error(stats) else 0,
    }
    ttft = stats.ttft_ms()
    if ttft is not None:
        metrics.append({"Name": "TimeToFirstToken", "Unit": "Milliseconds"})
        values["TimeToFirstToken"] = ttft
    dimensions = [["Service"], ["Service", "Model"]] if per_model else [["Service"]]
    directives = [{"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}]
    if stats.limits_unavailable:
        metrics.append({"Name": "LimitsUnavailable", "Unit": "Count"})
        values["LimitsUnavailable"] = 1
    if stats.error_type:
        directives.append({"Namespace": namespace, "Dimensions": [["Service", "ErrorType"]],
                           "Metrics": [{"Name": "Errors", "Unit": "Count"}]})
        values.update(ErrorType=stats.error_type, Errors=1)
    return {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}, **values}
