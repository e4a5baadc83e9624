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

import json
import uuid
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import ApiError
from .lifecycle import REQUEST_ID_KEY, SERVER_REFUSAL_KEY, STATS_KEY, security_headers
from .logs import log_request
from .settings import Settings
from .stats import RequestStats

_INVALID_HTTP = "the request is not valid HTTP/1.1 (or its head is larger than the function reads)"
_BUSY = "the function is serving as many requests as it can; retry shortly"


def function_protocol(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the function's refusals, for ``uvicorn.Config(http=...)``."""

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
            if cycle is not None and not cycle.response_complete:  # a request the app has (or is about to have)
                state = cycle.scope.setdefault("state", {})
                stats: RequestStats | None = state.get(STATS_KEY)
                request_id = stats.request_id if stats is not None else str(uuid.uuid4())
                state[SERVER_REFUSAL_KEY], state[REQUEST_ID_KEY] = refusal, request_id
                # What the app sends from now on goes nowhere; its log line records this refusal, once.
                cycle.disconnected = True
                cycle.message_event.set()
            else:
                request_id = str(uuid.uuid4())
                log_request(RequestStats(request_id=request_id, model_id=settings.model_id, status=400,
                                         error_type=refusal.error_type, error_detail=msg), settings)
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no response has started
                self._write_error(refusal, request_id)
            self.transport.close()

        def _write_error(self, refusal: ApiError, request_id: str) -> None:
            body = json.dumps(refusal.body(request_id)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close"), (b"x-request-id", request_id.encode()),
                       *security_headers()]
            for event in (h11.Response(status_code=400, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")

    return FunctionProtocol


def _refused_app(app: Any) -> Any:
    async def refused(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("state", {})[SERVER_REFUSAL_KEY] = ApiError(
            503, "server_busy", _BUSY, {"retry-after": "1", "connection": "close"})
        await app(scope, receive, send)

    return refused
