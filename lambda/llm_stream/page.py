"""The browser page (``GET /``): plain HTML, CSS and JavaScript from ``static/``, under a strict CSP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STATIC = Path(__file__).with_name("static")
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}
#: Only this origin's own script, style and fetches; no inline code, no frames, no forms elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _file_route(content: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=HEADERS)

    return serve


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


#: Every path the page is served from (none holds a secret: api_key auth leaves them open).
PAGE_PATHS = (*FILES, "/favicon.ico")


def page_routes() -> list[Route]:
    """``GET`` (and ``HEAD``) of the page's files, read once, when the app is built."""
    files = [Route(path, _file_route((STATIC / name).read_bytes(), media_type), methods=["GET"])
             for path, (name, media_type) in FILES.items()]
    return [*files, Route("/favicon.ico", _no_icon, methods=["GET"])]
