"""The function: an ASGI app that streams an LLM's answer from a SageMaker endpoint.

In Lambda, the Web Adapter runs it under uvicorn (``run.sh`` starts ``serve.py``) and streams what
it sends through the function URL; locally, the same server runs in front of the emulator.

Plain Starlette (routing, lifespan, exception handlers), with pydantic for validation and a generated
OpenAPI document (``openapi.py``): FastAPI alone took longer to import than the whole cold start may
(docs/deploying.md, *Cold start*), and its request injection and generated documents were all it added here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from .error_responses import error_response
from .errors import ApiError, error_body
from .http_input import check_origin, read_body
from .lifecycle import RequestLifecycle, lambda_deadline, request_stats
from .openai_routes import OpenedStream, openai_routes
from .page import PAGE_PATHS, page_routes
from .preload import Preload
from .reader import StreamReader
from .responses import PlainEncoder, SseEncoder, TokenStreamResponse, unless_caller_leaves
from .settings import READINESS_PATH, Settings
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd, UpstreamStream, open_stream
from .upstream_errors import first_event_error
from .wake_up import WakeUpClock

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

    from .key_store import KeyStore
    from .payloads import UpstreamRequest

#: Seconds kept back from Lambda's own deadline to send the final ``error`` event.
DEADLINE_MARGIN_SECONDS = 2.0
_HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed"}
_Parsed = TypeVar("_Parsed")


def _parse_body(raw: bytes, settings: Settings) -> UpstreamRequest:
    from .payloads import parse_body

    return parse_body(raw, settings)


def create_app(settings: Settings | None = None, client: SageMakerRuntimeClient | None = None,
               key_store: KeyStore | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    preload = Preload(settings, client)
    if key_store is None and settings.auth_mode == "api_key":
        from .key_store import create_key_store

        key_store = create_key_store(settings)
    wake_up = WakeUpClock(settings.wake_up_seconds)
    state: dict[str, anyio.CapacityLimiter] = {}
    openapi_document: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["limiter"] = anyio.CapacityLimiter(settings.max_concurrent_streams)
        if key_store is not None:
            await key_store.ring()  # read the keys at start-up (Lambda's init), not on the first request
        preload.start()  # after the keys: their read is on the way to ready, the preload is not
        yield

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, HTTPException):  # registered for HTTPException only
            raise exc
        stats = request_stats(request.scope)
        stats.error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        headers = {name: value for name, value in (exc.headers or {}).items() if name.lower() != "allow"}
        if exc.status_code == 405:
            headers["allow"] = ", ".join(_methods_of(app, request.scope))
        return JSONResponse(error_body(stats.error_type, str(exc.detail), stats.request_id),
                            status_code=exc.status_code, headers=headers)

    async def healthz(request: Request) -> JSONResponse:
        """Readiness: never calls the endpoint; says which auth mode is in force."""
        return JSONResponse({"status": "ok", "auth": settings.auth_mode})

    async def validated(request: Request, parse: Callable[[bytes, Settings], _Parsed]) -> _Parsed:
        """Every route's input: origin, body within its limits, then validation once the models are loaded."""
        check_origin(request, settings)
        raw = await read_body(request, settings)
        await preload.ready()
        return parse(raw, settings)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, ApiError):  # registered for ApiError only
            raise exc
        return error_response(exc, request.scope)

    async def invoke(request: Request) -> Response:
        stats = request_stats(request.scope)
        stats.metered = True
        upstream_request = await validated(request, _parse_body)
        opened = await open_upstream(request, upstream_request)
        encoder = SseEncoder() if "text/event-stream" in request.headers.get("accept", "") else PlainEncoder()
        return TokenStreamResponse(opened.reader, opened.first, encoder, stats, opened.deadline,
                                   opened.answer_text())

    async def open_upstream(request: Request, upstream_request: UpstreamRequest) -> OpenedStream:
        """Every streaming route's way to the endpoint: counted, within the deadline, first token awaited."""
        stats = request_stats(request.scope)
        stats.kind, stats.input_chars = upstream_request.kind, upstream_request.input_chars
        stats.max_new_tokens, stats.prompt = upstream_request.max_new_tokens, upstream_request.prompt
        deadline = _deadline(request, stats.started, settings)
        reader, first = await _open_until_first_token(
            request, lambda: open_stream(preload.client(), settings, upstream_request, stats.request_id, wake_up),
            settings, deadline, state["limiter"], stats)
        if first is not None:
            stats.first_token_at = time.monotonic()
        return OpenedStream(reader, first, deadline, upstream_request)

    async def openapi(request: Request) -> JSONResponse:
        if not openapi_document:
            await preload.ready()
            from .openapi import openapi_document as build

            openapi_document.append(build(settings))
        return JSONResponse(openapi_document[0])

    middleware = [Middleware(RequestLifecycle, settings=settings)]
    if key_store is not None:  # inside the lifecycle: a refusal is a logged request like any other
        from .auth_gate import ApiKeyGate

        middleware.append(Middleware(ApiKeyGate, store=key_store, open_paths=(READINESS_PATH, *PAGE_PATHS),
                                     realm=settings.service_name))
    routes = [*page_routes(), Route(READINESS_PATH, healthz, methods=["GET"]), Route("/", invoke, methods=["POST"]),
              *openai_routes(settings, validated, open_upstream), Route("/openapi.json", openapi, methods=["GET"])]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, ApiError: api_error})
    app.router.redirect_slashes = False  # a trailing slash is a 404: no Location is ever built from the Host
    return app


async def _open_until_first_token(
    request: Request, open_now: Callable[[], UpstreamStream], settings: Settings, deadline: float,
    limiter: anyio.CapacityLimiter, stats: RequestStats,
) -> tuple[StreamReader, str | None]:
    """Take a stream slot, open the stream and wait for its first item, so failures before any byte get
    an HTTP status. A caller who leaves while waiting for the slot stops waiting at once, and neither they
    nor one whose time ran out reach the endpoint; one who leaves while the endpoint prepares the first
    token stops it at once."""
    reserving = StreamReader.reserve(open_now, limiter, settings.queue_wait_seconds)
    reader = await unless_caller_leaves(request.receive, stats, reserving)
    if reader is None or await request.is_disconnected() or time.monotonic() >= deadline:
        if reader is not None:
            reader.release_unstarted()
        raise ApiError(499, "client_gone", "the caller left, or its time ran out, before a stream slot was free")
    reader.start()
    first = await unless_caller_leaves(request.receive, stats, reader.next(deadline))
    if stats.client_disconnected:
        reader.cancel()
        raise ApiError(499, "client_gone", "the caller left before the first token")
    if isinstance(first, str):
        return reader, first
    if isinstance(first, StreamEnd):  # an empty answer: the response is just the done event
        return reader, None
    reader.cancel()
    if isinstance(first, ApiError):
        raise first
    if isinstance(first, StreamError):
        raise first_event_error(first)
    raise ApiError(504, "upstream_timeout", "the endpoint sent nothing within this deployment's time budget")


def _methods_of(app: Starlette, scope: Scope) -> list[str]:
    """Every method some route answers on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _deadline(request: Request, started: float, settings: Settings) -> float:
    """Monotonic time by which the stream must end: the budget, or Lambda's deadline if sooner."""
    deadline = started + settings.time_budget_seconds
    lambda_deadline_at = lambda_deadline(request.scope)
    if lambda_deadline_at is not None:
        remaining = lambda_deadline_at - time.time() - DEADLINE_MARGIN_SECONDS
        deadline = min(deadline, time.monotonic() + max(remaining, 0))
    return deadline


