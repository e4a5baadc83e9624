"""The HTTP server's own refusals, made like the function's: a JSON error, a request id, one log line.

uvicorn answers two things without the app: a request that is not valid HTTP (a malformed head, a
bad chunk size, two Content-Lengths, a head past its size cap) gets a plain-text 400, and a request
past ``limit_concurrency`` a plain-text 503. Both would reach the caller without a request id and
the operator without a log line. This protocol (uvicorn's h11 one, which ``serve.py`` names) keeps
uvicorn's rules and hands both to the app's lifecycle instead:

* past the limit, the request goes to the app marked as refused, and the lifecycle answers 503
  ``server_busy`` (``lifecycle.SERVER_REFUSAL_KEY``) without running any route;
* malformed HTTP is answered here with the lifecycle's error shape and headers; when it broke a request
  the app has (its body, say), the answer carries that request's id, the app's sends go nowhere, and its
  log line records the 400 (not the disconnect the app saw); otherwise this writes the log line itself.

It depends on uvicorn internals (``handle_events``, ``send_400_response``, ``cycle``), pinned with
uvicorn in ``requirements.txt``; ``tests/integration/test_server_refusals.py`` fails if they move.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import ApiError
from .lifecycle import REQUEST_ID_KEY, SERVER_REFUSAL_KEY, STATS_KEY, security_headers
from .logs import log_request
from .settings import Settings
from .stats import RequestStats

#: What uvicorn logs before it sends its 400: the function's own log line says it instead, once.
_UVICORN_INVALID_HTTP = "Invalid HTTP request received."
_INVALID_HTTP = "the request is not valid HTTP/1.1 (or its head is larger than the function reads)"
_BUSY = "the function is serving as many requests as it can; retry shortly"


def function_protocol(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the function's refusals, for ``uvicorn.Config(http=...)``."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _WithoutInvalidHttpWarning) for existing in uvicorn_log.filters):
        uvicorn_log.addFilter(_WithoutInvalidHttpWarning())

    class FunctionProtocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # uvicorn's own 503 would bypass the app: the limit is checked here and answered by the lifecycle.
            self._limit, self.limit_concurrency = self.limit_concurrency, None
            self._function_app = self.app

        def handle_events(self) -> None:
            limit = self._limit
            busy = limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)
            self.app = _refused_app(self._function_app) if busy else self._function_app
            super().handle_events()

        def send_400_response(self, msg: str) -> None:
            refusal = ApiError(400, "invalid_http", _INVALID_HTTP, detail=msg)
            cycle = self.cycle
            in_flight = cycle is not None and not cycle.response_complete
            writable = self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)  # no response has started
            request_id = str(uuid.uuid4())
            if in_flight:  # a request the app has (or is about to have): its one log line records the refusal
                state = cycle.scope.setdefault("state", {})
                stats: RequestStats | None = state.get(STATS_KEY)
                request_id = stats.request_id if stats is not None else request_id
                state[SERVER_REFUSAL_KEY], state[REQUEST_ID_KEY] = refusal, request_id
                cycle.disconnected = True  # what the app sends from now on goes nowhere
                cycle.message_event.set()
            elif writable:  # a new request that never reached the app: this is its log line
                log_request(RequestStats(request_id=request_id, model_id=settings.model_id, status=400,
                                         error_type=refusal.error_type, error_detail=msg), settings)
            # Otherwise the bytes broke the body of a request already answered (and logged): nothing to say.
            if writable:
                with contextlib.suppress(h11.LocalProtocolError):  # h11 allows no body (a HEAD request's)
                    self._write_error(refusal, request_id)
            self.transport.close()

        def _write_error(self, refusal: ApiError, request_id: str) -> None:
            body = json.dumps(refusal.body(request_id)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close"), (b"x-request-id", request_id.encode()),
                       *security_headers()]
            response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
            for event in (response, h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")

        def _unsupported_upgrade_warning(self) -> None:
            """An upgrade is an ordinary request here (``serve.py``: no WebSocket), logged by the lifecycle."""

    return FunctionProtocol


class _WithoutInvalidHttpWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UVICORN_INVALID_HTTP


def _refused_app(app: Any) -> Any:
    async def refused(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("state", {})[SERVER_REFUSAL_KEY] = ApiError(
            503, "server_busy", _BUSY, {"retry-after": "1", "connection": "close"})
        await app(scope, receive, send)

    return refused
