"""The SageMaker side: one botocore client and opening a stream (its failures: ``upstream_errors.py``).

botocore is imported where it is used, never on the way to ready: the client is created by ``preload.py``
after the server listens, and everything here runs in a reader thread. botocore's own session, not boto3's:
the client is the same (credentials, region, ``AWS_ENDPOINT_URL_*``, retries), without importing boto3 and
s3transfer (about 26 ms of a cold start, ``make bench-coldstart``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING, Final, cast

from .settings import Settings
from .tokens import StreamError, TokenIterator
from .upstream_errors import client_error, transport_error
from .wake_up import WakeUpClock

if TYPE_CHECKING:  # the stubs are a development dependency; the bundle has none of them
    from botocore.eventstream import EventStream
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sagemaker_runtime.type_defs import ResponseStreamTypeDef

    from .payloads import UpstreamRequest

class StreamEnd:
    """Returned by :meth:`UpstreamStream.next_item` when the answer is complete."""


END: Final = StreamEnd()


def create_client(settings: Settings) -> SageMakerRuntimeClient:
    """The function's only SageMaker runtime client (honours ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``)."""
    from botocore.config import Config
    from botocore.session import get_session

    config = Config(
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.upstream_max_attempts},
        max_pool_connections=settings.max_concurrent_streams,
        tcp_keepalive=True,
    )
    return cast("SageMakerRuntimeClient", get_session().create_client("sagemaker-runtime", config=config))


class UpstreamStream:
    """One open response stream: ``next_item`` and ``close`` block and belong to the reader thread;
    ``cancel`` may be called from any thread, the event loop's included, and never blocks."""

    def __init__(self, body: EventStream[ResponseStreamTypeDef], scored: bool = False) -> None:
        self._body = body
        self.tokens = TokenIterator(body, scored)
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

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
        except Exception as exc:  # the socket was shut down under us, or botocore failed in a new way
            if self._cancelled.is_set():
                return END
            return StreamError("upstream_error", f"reading the endpoint's stream failed: {exc!r}")

    def cancel(self) -> None:
        """Stop reading: wake a read blocked on a silent endpoint by shutting the socket's reading side.

        Closing the body here would wait for that read (urllib3's file object holds a lock while it
        reads), so the reader thread closes it (:meth:`close`) once its read has returned."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        with contextlib.suppress(Exception):  # already closed, or released: nothing left to wake
            _shut_reading_side(self._body)

    def close(self) -> None:
        """Close the connection, so the endpoint stops generating for nobody (blocking: reader thread only)."""
        with contextlib.suppress(Exception):  # a half-read connection may fail to close; it is given up either way
            self._body.close()


def _shut_reading_side(body: object) -> None:
    """``shutdown(SHUT_RD)`` on the stream's socket, which returns at once and ends a blocked read.

    botocore keeps the urllib3 response as ``_raw_stream``; urllib3 (2.3+) shuts it with
    ``HTTPResponse.shutdown``, made for this; older ones expose the connection's socket."""
    raw = getattr(body, "_raw_stream", None)
    shutdown = getattr(raw, "shutdown", None)
    if callable(shutdown):
        shutdown()
        return
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.shutdown(socket.SHUT_RD)


def open_stream(
    client: SageMakerRuntimeClient, settings: Settings, request: UpstreamRequest, request_id: str,
    wake_up: WakeUpClock | None = None,
) -> UpstreamStream:
    """Invoke the endpoint (its inference component, where the model is one); raises :class:`ApiError` for
    anything that fails before the stream opens.

    The request id travels in ``CustomAttributes``, so the container's logs can be matched with ours.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    component = {"InferenceComponentName": settings.inference_component_name} \
        if settings.inference_component_name else {}
    try:
        response = client.invoke_endpoint_with_response_stream(
            EndpointName=settings.endpoint_name,
            Body=request.encoded,
            ContentType="application/json",
            Accept=request.family.accept,
            CustomAttributes=f"request_id={request_id}",
            **component,
        )
    except ClientError as exc:
        raise client_error(exc, wake_up) from exc
    except BotoCoreError as exc:
        raise transport_error(exc) from exc
    if wake_up is not None:
        wake_up.awake()
    return UpstreamStream(response["Body"], scored=request.logprobs is not None)
