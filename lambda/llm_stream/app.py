"""The function: an ASGI app that streams an LLM's answer from a SageMaker endpoint.

In Lambda, the Web Adapter runs it under uvicorn (``run.sh``) and streams what it
sends through the function URL; locally, the same app runs under uvicorn in front
of the emulator. Start it with ``uvicorn --factory llm_stream.app:create_app``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError
from .logs import log_request
from .page import add_page_routes
from .payloads import ChatPayload, GeneratePayload, UpstreamRequest, parse_body
from .reader import StreamReader
from .responses import PlainEncoder, SseEncoder, TokenStreamResponse
from .settings import Settings
from .stats import StreamStats
from .tokens import StreamError
from .upstream import StreamEnd, create_client, first_event_error, open_stream

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

#: Content types a JSON body may arrive with; form-urlencoded is what ``curl -d`` sends.
ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")
#: Seconds kept back from Lambda's own deadline to send the final ``error`` event.
DEADLINE_MARGIN_SECONDS = 2.0
_HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: Settings | None = None, client: SageMakerRuntimeClient | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    client = client or create_client(settings)
    state: dict[str, anyio.CapacityLimiter] = {}
    request_body, component_schemas = _request_schemas()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["limiter"] = anyio.CapacityLimiter(settings.max_concurrent_streams)
        yield

    app = FastAPI(
        title="LLM streaming function",
        summary=f"Streams {settings.model_id} from SageMaker endpoint {settings.endpoint_name}",
        lifespan=lifespan,
    )
    _with_component_schemas(app, component_schemas)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"type": error_type, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    add_page_routes(app)

    @app.get("/healthz", summary="Readiness: never calls the endpoint")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/",
        summary="Stream an answer",
        response_class=Response,
        openapi_extra=request_body,
        responses={
            200: {"content": {"text/event-stream": {}, "text/plain": {}},
                  "description": "token events then done or error (SSE), or the raw text"},
            400: {"description": "invalid JSON"}, 413: {"description": "body or prompt too large"},
            415: {"description": "unsupported content type"}, 422: {"description": "invalid request"},
            429: {"description": "endpoint throttled"}, 502: {"description": "model or upstream error"},
            503: {"description": "endpoint missing or overloaded"}, 504: {"description": "endpoint timed out"},
        },
    )
    async def invoke(request: Request) -> Response:
        stats = StreamStats(request_id=_request_id(request), model_id=settings.model_id)
        deadline = _deadline(request, stats.started, settings)
        limiter = state["limiter"]
        try:
            upstream_request = parse_body(await _read_body(request, settings), settings)
            stats.kind, stats.input_chars = upstream_request.kind, upstream_request.input_chars
            stats.max_new_tokens, stats.prompt = upstream_request.max_new_tokens, upstream_request.prompt
            reader, first = await _open_until_first_token(client, settings, upstream_request, stats.request_id,
                                                          deadline, limiter)
        except ApiError as exc:
            stats.status, stats.error_type = exc.status, exc.error_type
            log_request(stats, settings)
            headers = {**exc.headers, "x-request-id": stats.request_id}
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        if first is not None:
            stats.first_token_at = time.monotonic()
        encoder = SseEncoder() if "text/event-stream" in request.headers.get("accept", "") else PlainEncoder()
        return TokenStreamResponse(reader, first, encoder, stats, deadline,
                                   on_complete=lambda done: log_request(done, settings))

    return app


async def _read_body(request: Request, settings: Settings) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"content type {content_type!r} is not accepted; "
                       f"send JSON ({', '.join(ACCEPTED_CONTENT_TYPES)})")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid_request", f"invalid Content-Length {declared!r}")
        if int(declared) > settings.max_body_bytes:
            raise _body_too_large(int(declared), settings)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_body_bytes:
            raise _body_too_large(len(body), settings)
    if not body:
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object with `inputs` or `messages`")
    return bytes(body)


def _body_too_large(size: int, settings: Settings) -> ApiError:
    return ApiError(413, "payload_too_large",
                    f"the body has {size} bytes; this deployment allows at most {settings.max_body_bytes}")


async def _open_until_first_token(
    client: SageMakerRuntimeClient, settings: Settings, request: UpstreamRequest, request_id: str, deadline: float,
    limiter: anyio.CapacityLimiter,
) -> tuple[StreamReader, str | None]:
    """Open the stream and wait for its first item, so failures before any byte get an HTTP status."""
    reader = await StreamReader.start(lambda: open_stream(client, settings, request, request_id), limiter)
    first = await reader.next(deadline)
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


def _lambda_context(request: Request) -> dict[str, Any]:
    """The invocation context the Web Adapter passes in ``x-amzn-lambda-context`` (absent locally)."""
    try:
        context = json.loads(request.headers.get("x-amzn-lambda-context", "{}"))
    except ValueError:
        return {}
    return context if isinstance(context, dict) else {}


def _request_id(request: Request) -> str:
    return str(_lambda_context(request).get("request_id") or uuid.uuid4())


def _deadline(request: Request, started: float, settings: Settings) -> float:
    """Monotonic time by which the stream must end: the budget, or Lambda's deadline if sooner."""
    deadline = started + settings.time_budget_seconds
    lambda_deadline_ms = _lambda_context(request).get("deadline")
    if isinstance(lambda_deadline_ms, int | float):
        remaining = lambda_deadline_ms / 1000 - time.time() - DEADLINE_MARGIN_SECONDS
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
