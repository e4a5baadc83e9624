"""The SageMaker side: one boto3 client, opening a stream, and what its failures mean to a caller."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .errors import ApiError
from .payloads import UpstreamRequest
from .settings import Settings
from .tokens import StreamError, TokenIterator

if TYPE_CHECKING:  # the stubs are a development dependency; the bundle has none of them
    from botocore.eventstream import EventStream
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sagemaker_runtime.type_defs import ResponseStreamTypeDef

#: What a pre-stream failure of the endpoint becomes for the caller: (status, type).
_CLIENT_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "ThrottlingException": (429, "throttled"),
    "ModelNotReadyException": (503, "model_not_ready"),
    "ModelError": (502, "model_error"),
    "InternalFailure": (502, "upstream_error"),
    "ServiceUnavailable": (503, "upstream_unavailable"),
    "AccessDeniedException": (502, "upstream_access_denied"),
}

#: What an in-band failure seen before the first token becomes (status, type); others are 502.
_FIRST_EVENT_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "validation": (422, "validation_error"),
    "overloaded": (503, "model_overloaded"),
    "read_timeout": (504, "upstream_timeout"),
}


class StreamEnd:
    """Returned by :meth:`UpstreamStream.next_item` when the answer is complete."""


END: Final = StreamEnd()


def create_client(settings: Settings) -> SageMakerRuntimeClient:
    """The function's only SageMaker runtime client (honours ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``)."""
    config = Config(
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.upstream_max_attempts},
        max_pool_connections=settings.max_concurrent_streams,
        tcp_keepalive=True,
    )
    return boto3.client("sagemaker-runtime", config=config)


class UpstreamStream:
    """One open response stream; ``next_item`` blocks, ``cancel`` may be called from any thread."""

    def __init__(self, body: EventStream[ResponseStreamTypeDef]) -> None:
        self._body = body
        self.tokens = TokenIterator(body)
        self._cancelled = threading.Event()

    def next_item(self) -> str | StreamEnd | StreamError:
        """The next token text, :data:`END`, or the :class:`StreamError` that ended the stream."""
        if self._cancelled.is_set():
            return END
        try:
            return next(self.tokens)
        except StopIteration:
            return END
        except StreamError as error:
            return END if self._cancelled.is_set() else error
        except Exception as exc:  # the body was closed under us, or botocore failed in a new way
            if self._cancelled.is_set():
                return END
            return StreamError("upstream_error", f"reading the endpoint's stream failed: {exc!r}")

    def cancel(self) -> None:
        """Stop reading and close the connection, so the endpoint stops generating for nobody."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        # Closing a half-read connection from another thread may itself fail; the stream is given up either way.
        with contextlib.suppress(Exception):
            self._body.close()


def open_stream(
    client: SageMakerRuntimeClient, settings: Settings, request: UpstreamRequest, request_id: str
) -> UpstreamStream:
    """Invoke the endpoint; raises :class:`ApiError` for anything that fails before the stream opens.

    The request id travels in ``CustomAttributes``, so the container's logs can be matched with ours.
    """
    try:
        response = client.invoke_endpoint_with_response_stream(
            EndpointName=settings.endpoint_name,
            Body=request.encode(),
            ContentType="application/json",
            Accept="text/event-stream",
            CustomAttributes=f"request_id={request_id}",
        )
    except ClientError as exc:
        raise _client_error(exc, settings) from exc
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise ApiError(504, "upstream_timeout", f"the endpoint did not answer in time: {exc}") from exc
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise ApiError(502, "upstream_unreachable", f"could not reach the SageMaker runtime: {exc}") from exc
    except BotoCoreError as exc:
        raise ApiError(502, "upstream_error", f"calling the endpoint failed: {exc}") from exc
    return UpstreamStream(response["Body"])


def _client_error(exc: ClientError, settings: Settings) -> ApiError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", str(exc))
    if code == "ValidationError" and "not found" in message:
        return ApiError(503, "endpoint_not_found", f"the SageMaker endpoint {settings.endpoint_name!r} does not exist")
    status, error_type = _CLIENT_ERRORS.get(code, (502, "upstream_error"))
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    return ApiError(status, error_type, f"{code}: {message}", headers)


def first_event_error(error: StreamError) -> ApiError:
    """A stream that failed before its first token, as an HTTP error."""
    status, error_type = _FIRST_EVENT_ERRORS.get(error.error_type, (502, "upstream_stream_error"))
    return ApiError(status, error_type, f"{error.error_type}: {error.message}")
