"""Every request's life in one place: its stats, its log line, its headers, and what a crash becomes.

An ASGI middleware around the whole app, so each invariant holds on every path without a
special case per route:

* every request writes exactly one log line (``logs.py``), after its last byte, crashes included;
* an exception nobody handled becomes a 500 ``internal_error`` JSON with the request id (or, once
  the response has started, ends it), and its traceback goes to that log line only;
* every response carries the request id, ``X-Content-Type-Options: nosniff``, and unless it says
  otherwise, ``Cache-Control: no-store``.
"""

from __future__ import annotations

import contextlib
import json
import re
import traceback
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import internal_error
from .logs import log_request
from .settings import Settings
from .stats import RequestStats

_STATS_KEY = "llm_stream.stats"
_CONTEXT_KEY = "llm_stream.lambda_context"
_MAX_CONTEXT_CHARS = 4096
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,128}")


def request_stats(scope: Scope) -> RequestStats:
    """The stats the middleware opened for this request (routes fill them in)."""
    stats: RequestStats = scope["state"][_STATS_KEY]
    return stats


def lambda_context(scope: Scope) -> dict[str, Any]:
    """The invocation context the Web Adapter passes in ``x-amzn-lambda-context``, parsed once per request
    (absent locally, where a client could send anything: a value that is not a small JSON object counts
    as absent)."""
    state = scope.setdefault("state", {})
    if _CONTEXT_KEY not in state:
        state[_CONTEXT_KEY] = _parse_context(Headers(scope=scope).get("x-amzn-lambda-context", "{}"))
    context: dict[str, Any] = state[_CONTEXT_KEY]
    return context


def _parse_context(raw: str) -> dict[str, Any]:
    if len(raw) > _MAX_CONTEXT_CHARS:
        return {}
    try:
        context = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return context if isinstance(context, dict) else {}


def _request_id(scope: Scope) -> str:
    """Lambda's request id when it has one that can go in a header; otherwise a new one."""
    given = lambda_context(scope).get("request_id")
    if isinstance(given, str) and _REQUEST_ID.fullmatch(given):
        return given
    return str(uuid.uuid4())


class RequestLifecycle:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        stats = RequestStats(request_id=request_id, method=scope["method"], path=scope["path"],
                             model_id=self.settings.model_id)
        scope.setdefault("state", {})[_STATS_KEY] = stats
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                stats.status = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers["x-request-id"] = request_id
                response_headers["x-content-type-options"] = "nosniff"
                response_headers.setdefault("cache-control", "no-store")
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
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
            log_request(stats, self.settings)


async def _end_started_response(send: Send) -> None:
    """Close a response that was already streaming when the bug struck (the client sees it cut short)."""
    with contextlib.suppress(Exception):  # the connection may be gone or closed already
        await send({"type": "http.response.body", "body": b"", "more_body": False})
