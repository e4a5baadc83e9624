"""The function's own API: ``POST /`` (an answer streamed as server-sent events or plain text),
``GET /healthz`` (readiness) and ``GET /openapi.json`` (built on its first request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .gateway import Gateway
from .lifecycle import request_stats
from .responses import PlainEncoder, SseEncoder, TokenStreamResponse
from .settings import READINESS_PATH, Settings

if TYPE_CHECKING:  # pydantic and the request models load after the server is ready (preload.py)
    from .payloads import UpstreamRequest


def _parse_body(raw: bytes, settings: Settings) -> UpstreamRequest:
    from .payloads import parse_body

    return parse_body(raw, settings)


def native_routes(gateway: Gateway) -> list[Route]:
    settings = gateway.settings
    openapi_document: list[dict[str, Any]] = []

    async def healthz(request: Request) -> JSONResponse:
        """Readiness: never calls the endpoint; says which auth mode is in force."""
        return JSONResponse({"status": "ok", "auth": settings.auth_mode})

    async def invoke(request: Request) -> Response:
        stats = request_stats(request.scope)
        stats.metered = True
        upstream_request = await gateway.validated(request, _parse_body)
        opened = await gateway.open_upstream(request, upstream_request)
        encoder = SseEncoder() if "text/event-stream" in request.headers.get("accept", "") else PlainEncoder()
        return TokenStreamResponse(opened.reader, opened.first, encoder, stats, opened.deadline,
                                   opened.answer_text())

    async def openapi(request: Request) -> JSONResponse:
        if not openapi_document:
            await gateway.preload.ready()
            from .openapi import openapi_document as build

            openapi_document.append(build(settings))
        return JSONResponse(openapi_document[0])

    return [Route(READINESS_PATH, healthz, methods=["GET"]), Route("/", invoke, methods=["POST"]),
            Route("/openapi.json", openapi, methods=["GET"])]
