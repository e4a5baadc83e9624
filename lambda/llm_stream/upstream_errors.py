"""What the endpoint's failures mean to a caller: a status, a type and a message safe to show anyone.

The SageMaker runtime's and the container's own words (ARNs with the account id, log-group names,
URLs, stack traces) are kept as the ``detail``, which only the request's log line carries. The one
exception is the container's input validation, which is about the caller's own request: its message
is shown, cut short and with anything that looks like an ARN, a URL or an account id masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from .errors import INTERNAL_ERROR_MESSAGE, ApiError
from .tokens import StreamError
from .wake_up import MIN_RETRY_AFTER_SECONDS, WakeUpClock, WakeUpEstimate

if TYPE_CHECKING:  # botocore is imported where a failure is classified, in the reader thread (upstream.py)
    from botocore.exceptions import BotoCoreError, ClientError

_RETRY_SOON: Final = {"Retry-After": "1"}
#: SageMaker's answer while an inference component has no copies (scaled to zero, or scaling out from it):
#: a ValidationError like any bad request, told apart only by its message (AWS's scale-to-zero launch post
#: and notebooks; botocore has no code of its own for it).
NO_CAPACITY_MESSAGE: Final = "Inference Component has no capacity to process this request"

#: Pre-stream failures of the SageMaker runtime, by botocore error code.
_CLIENT_ERRORS: Final[Mapping[str, tuple[int, str, str]]] = {
    "ThrottlingException": (429, "throttled", "the endpoint is throttling requests; retry shortly"),
    "ModelNotReadyException": (503, "model_not_ready", "the model is not ready yet; retry shortly"),
    "ModelError": (502, "model_error", "the model failed to process the request"),
    "InternalFailure": (502, "upstream_error", "the SageMaker runtime failed"),
    "ServiceUnavailable": (503, "upstream_unavailable", "the SageMaker runtime is unavailable; retry shortly"),
    "AccessDeniedException": (502, "upstream_access_denied",
                              "this deployment may not invoke its endpoint (a deployment problem)"),
}

#: In-band failures before the first token, by the stream's error type; others are 502.
_FIRST_EVENT_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "validation": (422, "validation_error"),
    "overloaded": (503, "model_overloaded"),
    "read_timeout": (504, "upstream_timeout"),
    "internal_error": (500, "internal_error"),  # the function's own reader failed, not the endpoint
}

#: What a caller is told about a stream that failed, by the stream's error type.
_STREAM_MESSAGES: Final[Mapping[str, str]] = {
    "generation": "the model failed while generating",
    "ModelStreamError": "the model failed while generating",
    "InternalStreamFailure": "the SageMaker runtime failed while streaming",
    "overloaded": "the model is overloaded; retry shortly",
    "incomplete": "the endpoint's stream ended before the answer did",
    "malformed": "the endpoint sent something that is not a token",
    "connection_lost": "the connection to the endpoint broke",
    "read_timeout": "the endpoint went silent",
    "internal_error": INTERNAL_ERROR_MESSAGE,
}
_DEFAULT_STREAM_MESSAGE: Final = "the endpoint's stream failed"
_SHOWN_CHARS: Final = 300
_MASKS: Final = ((re.compile(r"arn:[^\s\"']+"), "<arn>"), (re.compile(r"https?://[^\s\"']+"), "<url>"),
                 (re.compile(r"\b\d{12}\b"), "<account>"))


def client_error(exc: ClientError, wake_up: WakeUpClock | None = None) -> ApiError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", str(exc))
    detail = f"{code}: {message}"
    if code == "ValidationError" and NO_CAPACITY_MESSAGE.lower() in message.lower():
        estimate = wake_up.estimate() if wake_up else WakeUpEstimate(0, MIN_RETRY_AFTER_SECONDS)
        ready = f"ready in about {estimate.seconds_left} s" if estimate.seconds_left else "nearly ready"
        return ApiError(503, "model_waking_up", f"the model is starting (it scales to zero while idle), {ready}; "
                        f"retry in {estimate.retry_after} s", {"Retry-After": str(estimate.retry_after)}, detail)
    if code == "ValidationError" and "not found" in message:
        return ApiError(503, "endpoint_not_found", "the endpoint does not exist (yet)", dict(_RETRY_SOON), detail)
    status, error_type, safe = _CLIENT_ERRORS.get(code, (502, "upstream_error", "calling the endpoint failed"))
    return ApiError(status, error_type, safe, dict(_RETRY_SOON) if status in (429, 503) else {}, detail)


def transport_error(exc: BotoCoreError) -> ApiError:
    """The runtime could not be reached, or did not answer in time."""
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return ApiError(504, "upstream_timeout", "the endpoint did not answer in time", detail=repr(exc))
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return ApiError(502, "upstream_unreachable", "could not reach the SageMaker runtime", detail=repr(exc))
    return ApiError(502, "upstream_error", "calling the endpoint failed", detail=repr(exc))


def first_event_error(error: StreamError) -> ApiError:
    """A stream that failed before its first token, as an HTTP error."""
    status, error_type = _FIRST_EVENT_ERRORS.get(error.error_type, (502, "upstream_stream_error"))
    headers = dict(_RETRY_SOON) if status == 503 else {}
    return ApiError(status, error_type, stream_message(error), headers, detail=str(error))


def stream_message(error: StreamError) -> str:
    """The caller's message for a failed stream."""
    if error.error_type == "validation":
        return shown(error.message)
    return _STREAM_MESSAGES.get(error.error_type, _DEFAULT_STREAM_MESSAGE)


def shown(text: str) -> str:
    """Container text fit to show a caller: short, with ARNs, URLs and account ids masked."""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
