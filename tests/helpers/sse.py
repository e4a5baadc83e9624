"""Reading the function's server-sent events in tests."""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

SSE = {"accept": "text/event-stream"}
#: The blog's own request.
SEED: dict[str, Any] = {"inputs": "我该如何建立一个网站?", "parameters": {"max_new_tokens": 256}, "stream": True}


def post_sse(url: str, payload: object, headers: dict[str, str] | None = None,
             **kwargs: Any) -> tuple[httpx.Response, list[ServerSentEvent]]:
    with httpx.stream("POST", url, json=payload, headers={**SSE, **(headers or {})}, timeout=30, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            return response, []
        events = list(EventSource(response).iter_sse())
    return response, events


def tokens_of(events: list[ServerSentEvent]) -> list[str]:
    return [json.loads(e.data)["text"] for e in events if e.event == "token"]


def last(events: list[ServerSentEvent]) -> tuple[str, dict]:
    return events[-1].event, json.loads(events[-1].data)
