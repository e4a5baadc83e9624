"""The floor of a cold start: a bare ASGI app (no framework, no SDK) under the same uvicorn.

Whatever the function adds to its start is measured against this (``cold_start.py``)."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status": "ok"}'})
