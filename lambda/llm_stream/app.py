"""The function: an ASGI app that streams an LLM's answer from a SageMaker endpoint.

In Lambda, the Web Adapter runs it under uvicorn (``run.sh`` starts ``serve.py``) and streams what
it sends through the function URL; locally, the same server runs in front of the emulator.

Plain Starlette (routing, lifespan, exception handlers), with pydantic for validation and a generated
OpenAPI document (``openapi.py``): FastAPI alone took longer to import than the whole cold start may
(docs/deploying.md, *Cold start*), and its request injection and generated documents were all it added here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import Scope

from .error_responses import OPENAI_PREFIX, error_response
from .errors import ApiError, error_body
from .gateway import Gateway
from .lifecycle import RequestLifecycle, request_stats
from .native_routes import native_routes
from .openai_responses import error_object
from .openai_routes import openai_routes
from .page import PAGE_PATHS, page_routes
from .settings import READINESS_PATH, Settings

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

    from .key_store import KeyStore

_HTTP_ERROR_TYPES = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: Settings | None = None, client: SageMakerRuntimeClient | None = None,
               key_store: KeyStore | None = None) -> Starlette:
    """The app: the page, the native API and the OpenAI-compatible one, each request inside its lifecycle
    (and, with api_key auth, behind the key gate); every ``ApiError`` answered by one handler."""
    settings = settings or Settings.from_env()
    if key_store is None and settings.auth_mode == "api_key":
        from .key_store import create_key_store

        key_store = create_key_store(settings)
    accounting = None
    if key_store is not None and key_store.table is not None:  # keys with limits and a ledger
        from .key_accounting import KeyAccounting

        accounting = KeyAccounting(settings, key_store.table)
    gateway = Gateway(settings, client, accounting)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if key_store is not None:
            await key_store.ring()  # read the keys at start-up (Lambda's init), not on the first request
        gateway.start()  # after the keys: their read is on the way to ready, the preload is not
        yield

    middleware = [Middleware(RequestLifecycle, settings=settings)]
    if key_store is not None:  # inside the lifecycle: a refusal is a logged request like any other
        from .auth_gate import ApiKeyGate

        middleware.append(Middleware(ApiKeyGate, store=key_store, open_paths=(READINESS_PATH, *PAGE_PATHS),
                                     realm=settings.service_name, model_ids=settings.model_ids))
    if accounting is not None:  # inside the gate: only requests with a valid key are counted
        from .key_accounting import AccountingMiddleware

        middleware.append(Middleware(AccountingMiddleware, accounting=accounting))
    routes = [*page_routes(), *native_routes(gateway), *openai_routes(gateway)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, ApiError: _api_error})
    app.router.redirect_slashes = False  # a trailing slash is a 404: no Location is ever built from the Host
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ApiError):  # registered for ApiError only
        raise exc
    return error_response(exc, request.scope)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404 and 405, in the function's error shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    stats = request_stats(request.scope)
    stats.error_type = _HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
    headers = {name: value for name, value in (exc.headers or {}).items() if name.lower() != "allow"}
    if exc.status_code == 405:
        headers["allow"] = ", ".join(_methods_of(request.app, request.scope))
    if request.url.path.startswith(OPENAI_PREFIX):  # OpenAI's shape, and what this API does serve
        served = "; ".join(f"{' '.join(sorted(methods - {'HEAD'}))} {path}" for path, methods in _openai_routes(
            request.app))
        message = (f"{request.method} {request.url.path} is not a route of this API (it serves {served})"
                   if exc.status_code == 404 else f"{request.url.path} does not answer {request.method}")
        return JSONResponse(error_object(exc.status_code, stats.error_type, message, stats.request_id),
                            status_code=exc.status_code, headers=headers)
    return JSONResponse(error_body(stats.error_type, str(exc.detail), stats.request_id),
                        status_code=exc.status_code, headers=headers)


def _openai_routes(app: Starlette) -> list[tuple[str, set[str]]]:
    return [(route.path, route.methods or set()) for route in app.router.routes
            if isinstance(route, Route) and route.path.startswith(OPENAI_PREFIX)]


def _methods_of(app: Starlette, scope: Scope) -> list[str]:
    """Every method some route answers on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
