"""What may arrive over HTTP before the body is validated: who calls from a browser, and the body itself.

Browser rules: a page from a foreign web origin is refused (403) unless the deployment lists that
origin; and a browser (anything that sends ``Origin``) must send JSON, which needs a CORS preflight
from a foreign page, so no page can make its visitors' browsers spend the endpoint with a "simple"
``text/plain`` or form POST. Tools without ``Origin`` (curl's ``-d`` sends a form content type) keep
working. The body must arrive within a time limit and a size limit.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import anyio
from starlette.requests import ClientDisconnect, Request

from .errors import ApiError
from .settings import Settings

JSON = "application/json"
#: What tools without a browser may also send; form-urlencoded is what ``curl -d`` sends.
NON_BROWSER_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded")


#: Names the function itself answers on: its function URL, and loopback (local runs). A page is the
#: function's own only when its origin is one of these: a name that merely equals the Host header may
#: be an attacker's, rebound to this address by their DNS.
_OWN_HOST = re.compile(r"(?:[a-z0-9]+\.lambda-url\.[a-z0-9-]+\.on\.aws|localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])"
                       r"(?::[0-9]{1,5})?", re.IGNORECASE)


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a browser request from a web origin the deployment does not allow."""
    origin = request.headers.get("origin")
    if origin is None or "*" in settings.cors_origins or origin in settings.cors_origins:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc == host and _OWN_HOST.fullmatch(host):  # the function's own page
        return
    raise ApiError(403, "forbidden_origin", "requests from this web origin are not allowed; the deployment's "
                   "cors_origins setting lists the origins that are")


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body, within ``max_body_bytes`` and ``body_read_timeout_seconds``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    browser = "origin" in request.headers
    accepted = (JSON,) if browser else (JSON, *NON_BROWSER_CONTENT_TYPES)
    # A browser must say JSON: without a content type its POST is "simple" too (no CORS preflight).
    if (content_type or browser) and content_type not in accepted:
        raise ApiError(415, "unsupported_media_type",
                       f"content type {content_type!r} is not accepted here; send {' or '.join(accepted)}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid_request", "the Content-Length header is not a number")
        if int(declared) > settings.max_body_bytes:
            raise _body_too_large(int(declared), settings)
    body = bytearray()
    with anyio.move_on_after(settings.body_read_timeout_seconds) as waiting:
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > settings.max_body_bytes:
                    raise _body_too_large(len(body), settings)
        except ClientDisconnect:
            raise ApiError(499, "client_gone", "the caller left before its body arrived") from None
    if waiting.cancelled_caught:
        raise ApiError(408, "request_timeout", f"the body did not arrive within "
                       f"{settings.body_read_timeout_seconds:g} s", {"connection": "close"})
    if not body:
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object with `inputs` or `messages`")
    return bytes(body)


def _body_too_large(size: int, settings: Settings) -> ApiError:
    return ApiError(413, "payload_too_large",
                    f"the body has {size} bytes; this deployment allows at most {settings.max_body_bytes}")
