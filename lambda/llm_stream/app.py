"""The function: an ASGI app that streams an LLM's answer from a SageMaker endpoint.

In Lambda, the Web Adapter runs it under uvicorn (``run.sh`` starts ``serve.py``) and streams what
it sends through the function URL; locally, the same server runs in front of the emulator.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from .auth_gate import ApiKeyGate
from .errors import ApiError, error_body
from .http_input import check_origin, read_body
from .key_store import KeyStore, create_key_store
from .lifecycle import RequestLifecycle, lambda_deadline, request_stats
from .openai_routes import OpenedStream, add_openai_routes
from .page import PAGE_PATHS, add_page_routes
from .payloads import ChatPayload, GeneratePayload, UpstreamRequest, parse_body
from .reader import Item, StreamReader
from .responses import PlainEncoder, SseEncoder, TokenStreamResponse, watch_disconnect
from .settings import READINESS_PATH, Settings
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd, UpstreamStream, create_client, open_stream
from .upstream_errors import first_event_error
from .wake_up import WakeUpClock

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

#: Seconds kept back from Lambda's own deadline to send the final ``error`` event.
DEADLINE_MARGIN_SECONDS = 2.0
_HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: Settings | None = None, client: SageMakerRuntimeClient | None = None,
               key_store: KeyStore | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    client = client or create_client(settings)
    key_store = key_store or create_key_store(settings)
    wake_up = WakeUpClock(settings.wake_up_seconds)
    state: dict[str, anyio.CapacityLimiter] = {}
    request_body, component_schemas = _request_schemas()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["limiter"] = anyio.CapacityLimiter(settings.max_concurrent_streams)
        if key_store is not None:
            await key_store.ring()  # read the keys at start-up (Lambda's init), not on the first request
        yield

    # No /docs or /redoc: FastAPI's pages load their scripts from a third-party CDN, which the page's
    # Content-Security-Policy forbids; /openapi.json describes the API for any tool.
    app = FastAPI(title="LLM streaming function", summary=f"Streams {settings.model_id} token by token",
                  lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False)
    if key_store is not None:  # inside the lifecycle: a refusal is a logged request like any other
        app.add_middleware(ApiKeyGate, store=key_store, open_paths=(READINESS_PATH, *PAGE_PATHS),
                           realm=settings.service_name)
    app.add_middleware(RequestLifecycle, settings=settings)
    _with_component_schemas(app, component_schemas)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        stats = request_stats(request.scope)
        stats.error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        headers = {name: value for name, value in (exc.headers or {}).items() if name.lower() != "allow"}
        if exc.status_code == 405:
            headers["allow"] = ", ".join(_methods_of(app, request.scope))
        return JSONResponse(error_body(stats.error_type, str(exc.detail), stats.request_id),
                            status_code=exc.status_code, headers=headers)

    add_page_routes(app)

    @app.get(READINESS_PATH, summary="Readiness: never calls the endpoint; says which auth mode is in force")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "auth": settings.auth_mode}

    @app.post(
        "/",
        summary="Stream an answer",
        response_class=Response,
        openapi_extra=request_body,
        responses={
            200: {"content": {"text/event-stream": {}, "text/plain": {}},
                  "description": "token events then done or error (SSE), or the raw text"},
            400: {"description": "invalid JSON"}, 403: {"description": "foreign web origin"},
            408: {"description": "the body arrived too slowly"}, 413: {"description": "body or prompt too large"},
            415: {"description": "unsupported content type"}, 422: {"description": "invalid request"},
            429: {"description": "endpoint throttled"}, 502: {"description": "model or upstream error"},
            503: {"description": "endpoint missing or overloaded, or every stream slot busy"},
            504: {"description": "endpoint timed out"},
        },
    )
    async def invoke(request: Request) -> Response:
        stats = request_stats(request.scope)
        stats.metered = True
        try:
            check_origin(request, settings)
            upstream_request = parse_body(await read_body(request, settings), settings)
            opened = await open_upstream(request, upstream_request)
        except ApiError as exc:
            stats.error_type, stats.error_detail = exc.error_type, exc.detail
            return exc.response(stats.request_id)
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
            request, lambda: open_stream(client, settings, upstream_request, stats.request_id, wake_up), settings,
            deadline, state["limiter"], stats)
        if first is not None:
            stats.first_token_at = time.monotonic()
        return OpenedStream(reader, first, deadline, upstream_request)

    add_openai_routes(app, settings, open_upstream)
    _answer_head_on_get_routes(app)
    return app


def _answer_head_on_get_routes(app: FastAPI) -> None:
    """HEAD wherever GET is answered (HTTP requires it; FastAPI's GET routes refuse it)."""
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or set()):
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False,
                              response_class=route.response_class)


async def _open_until_first_token(
    request: Request, open_now: Callable[[], UpstreamStream], settings: Settings, deadline: float,
    limiter: anyio.CapacityLimiter, stats: RequestStats,
) -> tuple[StreamReader, str | None]:
    """Take a stream slot, open the stream and wait for its first item, so failures before any byte get
    an HTTP status. A caller who left while waiting for the slot, or whose time ran out, never reaches
    the endpoint; one who leaves while the endpoint prepares the first token stops it at once."""
    reader = await StreamReader.reserve(open_now, limiter, settings.queue_wait_seconds)
    if await request.is_disconnected() or time.monotonic() >= deadline:
        reader.release_unstarted()
        raise ApiError(499, "client_gone", "the caller left, or its time ran out, before a stream slot was free")
    reader.start()
    first: Item | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch_disconnect, request.receive, stats, tasks.cancel_scope)
        first = await reader.next(deadline)
        tasks.cancel_scope.cancel()
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


def _methods_of(app: FastAPI, scope: Scope) -> list[str]:
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


def _request_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The POST body's OpenAPI description (the route reads the raw body itself) and its component schemas."""
    _, definitions = models_json_schema(
        [(GeneratePayload, "validation"), (ChatPayload, "validation")], ref_template="#/components/schemas/{model}"
    )
    one_of = [{"$ref": "#/components/schemas/GeneratePayload"}, {"$ref": "#/components/schemas/ChatPayload"}]
    request_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": one_of}}}}}
    return request_body, definitions["$defs"]


def _with_component_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            FastAPI.openapi(app).setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
