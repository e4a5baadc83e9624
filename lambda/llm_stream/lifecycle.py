"""Every request's life in one place: its stats, its log line, its headers, and what a crash becomes.

An ASGI middleware around the whole app, so each invariant holds on every path without a
special case per route:

* every request writes exactly one log line (``logs.py``), after its last byte, crashes included;
* an exception nobody handled becomes a 500 ``internal_error`` JSON with the request id (or, once
  the response has started, ends it), and its traceback goes to that log line only;
* every response carries the request id, ``X-Content-Type-Options: nosniff``, and unless it says
  otherwise, ``Cache-Control: no-store``;
* a request head larger than :data:`MAX_HEAD_BYTES` is refused (431) before any route sees it, however
  it arrived (the HTTP server's own cap holds only for heads that arrive in several reads); its body, within
  the body cap and :data:`DRAIN_SECONDS`, is read first, so the close that follows is not a reset that could
  take the answer with it;
* what the HTTP server refused itself (``http_protocol.py``: malformed HTTP, too many requests at once)
  is answered and logged here or with this request's id, never without one.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import traceback
import uuid
from typing import Any

import anyio
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, internal_error
from .logs import log_request
from .settings import Settings
from .stats import RequestStats

STATS_KEY = "llm_stream.stats"
_CONTEXT_KEY = "llm_stream.lambda_context"
_MAX_CONTEXT_CHARS = 4096
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,128}")
#: How long a refused request's body is read before the refusal is sent (``_drain_body``).
DRAIN_SECONDS = 1.0
#: Largest request head (request line and headers), counted as they came on the wire.
MAX_HEAD_BYTES = 16 * 1024
#: Scope state set by the HTTP server (``http_protocol.py``): it refused this request with this error, and
#: (when it answered before the app saw the request) with this request id.
SERVER_REFUSAL_KEY = "llm_stream.server_refusal"
REQUEST_ID_KEY = "llm_stream.request_id"
#: Lambda's longest timeout; a deadline further away than this (and some slack) is not Lambda's.
_LONGEST_INVOCATION_MS = (15 * 60 + 60) * 1000


def security_headers() -> list[tuple[bytes, bytes]]:
    """What every response says besides its request id: not to be sniffed, and (unless it says otherwise) not
    to be stored."""
    return [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]


def request_stats(scope: Scope) -> RequestStats:
    """The stats the middleware opened for this request (routes fill them in)."""
    stats: RequestStats = scope["state"][STATS_KEY]
    return stats


def lambda_context(scope: Scope) -> dict[str, Any]:
    """The invocation context the Web Adapter passes in ``x-amzn-lambda-context``, parsed once per request
    by the lifecycle: empty outside Lambda, where the header comes from the caller, and when the value is
    not a small JSON object."""
    context: dict[str, Any] = scope.setdefault("state", {}).get(_CONTEXT_KEY, {})
    return context


def lambda_deadline(scope: Scope) -> float | None:
    """Lambda's deadline for this invocation in seconds since the epoch, when the context gives a plausible one."""
    deadline_ms = lambda_context(scope).get("deadline")
    if not isinstance(deadline_ms, int | float) or isinstance(deadline_ms, bool):
        return None
    if isinstance(deadline_ms, float) and not math.isfinite(deadline_ms):
        return None
    if not 0 < deadline_ms - time.time_ns() // 1_000_000 <= _LONGEST_INVOCATION_MS:  # int arithmetic: no overflow
        return None
    return deadline_ms / 1000


def _parse_context(raw: str) -> dict[str, Any]:
    if len(raw) > _MAX_CONTEXT_CHARS:
        return {}
    try:
        context = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return context if isinstance(context, dict) else {}


def _request_id(scope: Scope) -> str:
    """The id the server already answered with; else Lambda's, when it has one that can go in a header; else
    a new one."""
    answered: str | None = scope["state"].get(REQUEST_ID_KEY)
    if answered is not None:
        return answered
    given = lambda_context(scope).get("request_id")
    if isinstance(given, str) and _REQUEST_ID.fullmatch(given):
        return given
    return str(uuid.uuid4())


class RequestLifecycle:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan (the server speaks no WebSocket: serve.py)
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.settings.in_lambda:
            state[_CONTEXT_KEY] = _parse_context(Headers(scope=scope).get("x-amzn-lambda-context", "{}"))
        request_id = _request_id(scope)
        stats = RequestStats(request_id=request_id, method=scope["method"], path=scope["path"],
                             model_id=self.settings.model_id)
        state[STATS_KEY] = stats
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                stats.status = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers["x-request-id"] = request_id
                for name, value in security_headers():
                    response_headers.setdefault(name.decode(), value.decode())
                started = True
            await send(message)

        try:
            refusal = _refusal(scope)
            if refusal is None:
                await self.app(scope, receive, send_with_headers)
            else:
                stats.error_type = refusal.error_type
                if state.get(SERVER_REFUSAL_KEY) is None and _body_on_its_way(scope, self.settings.max_body_bytes):
                    await _drain_body(receive, self.settings.max_body_bytes)
                await refusal.response(request_id)(scope, receive, send_with_headers)
        except Exception:
            stats.traceback = traceback.format_exc()
            if stats.error_type is None:
                stats.error_type = "internal_error"
            if not started:
                await internal_error().response(request_id)(scope, receive, send_with_headers)
            else:
                stats.status = 500
                await _end_started_response(send)
        finally:
            server_refusal: ApiError | None = state.get(SERVER_REFUSAL_KEY)
            if server_refusal is not None:  # the server answered it (a malformed body): that is what the caller got
                stats.status, stats.error_type = server_refusal.status, server_refusal.error_type
                stats.error_detail = server_refusal.detail
            log_request(stats, self.settings)


def _refusal(scope: Scope) -> ApiError | None:
    """What the lifecycle refuses before any route runs: the server's own refusal, or a head too large."""
    refused: ApiError | None = scope["state"].get(SERVER_REFUSAL_KEY)
    if refused is not None:
        return refused
    head = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 12
    head += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
    if head > MAX_HEAD_BYTES:
        return ApiError(431, "request_header_fields_too_large", f"the request head has {head} bytes; this "
                        f"function reads at most {MAX_HEAD_BYTES}", {"connection": "close"})
    return None


def _body_on_its_way(scope: Scope, limit: int) -> bool:
    """Whether a well-formed request's body is being sent, and within what may be read of it: not one that waits
    for ``100 Continue`` (reading would invite it), nor one larger than the cap (its reset cannot be helped)."""
    headers = Headers(scope=scope)
    declared = headers.get("content-length", "")
    if "expect" in headers or not declared.isdigit():
        return False
    return 0 < int(declared) <= limit


async def _drain_body(receive: Receive, limit: int) -> None:
    """Read (and drop) what a refused request sent after its head, within bounds: a connection closed with
    bytes left unread is reset by the kernel, and the caller may then lose the refusal meant for it."""
    received = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while received <= limit:
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return


async def _end_started_response(send: Send) -> None:
    """Close a response that was already streaming when the bug struck (the client sees it cut short)."""
    with contextlib.suppress(Exception):  # the connection may be gone or closed already
        await send({"type": "http.response.body", "body": b"", "more_body": False})
