"""The OpenAI-compatible API: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``.

Same validation, caps, stream slots, deadline and log line as ``POST /``; only the request and answer
shapes differ (``openai_payloads.py``, ``openai_responses.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .answer_text import AnswerText
from .errors import ApiError
from .http_input import check_origin, read_body
from .lifecycle import request_stats
from .openai_payloads import OpenAIRequest, parse_chat, parse_completion
from .openai_responses import OpenAIEncoder, complete_answer, openai_error
from .payloads import UpstreamRequest
from .reader import StreamReader
from .responses import TokenStreamResponse, watch_disconnect
from .settings import Settings
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd
from .upstream_errors import first_event_error


@dataclass(frozen=True)
class OpenedStream:
    reader: StreamReader
    first: str | None
    deadline: float
    request: UpstreamRequest

    def answer_text(self) -> AnswerText:
        """How the reader should see the model's text (stops trimmed, newlines restored)."""
        return self.request.answer_text()


OpenUpstream = Callable[[Request, UpstreamRequest], Awaitable[OpenedStream]]
Parse = Callable[[bytes, Settings], OpenAIRequest]


def add_openai_routes(app: FastAPI, settings: Settings, open_upstream: OpenUpstream) -> None:
    started = int(time.time())

    @app.get("/v1/models", summary="The deployed model, as OpenAI lists models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": settings.model_id, "object": "model", "created": started,
                                            "owned_by": "sagemaker-jumpstart"}]}

    async def answer(request: Request, parse: Parse) -> Response:
        stats = request_stats(request.scope)
        stats.metered = True
        try:
            check_origin(request, settings)
            openai_request = parse(await read_body(request, settings), settings)
            stats.user = openai_request.payload.user
            opened = await open_upstream(request, openai_request.upstream)
        except ApiError as exc:
            stats.error_type, stats.error_detail = exc.error_type, exc.detail
            return openai_error(exc, stats.request_id)
        if openai_request.stream:
            encoder = OpenAIEncoder(openai_request, settings.model_id)
            return TokenStreamResponse(opened.reader, opened.first, encoder, stats, opened.deadline,
                                       opened.answer_text())
        return await _whole_answer(request, openai_request, opened, stats, settings)

    @app.post("/v1/chat/completions", summary="OpenAI-compatible chat (streamed or not)")
    async def chat_completions(request: Request) -> Response:
        return await answer(request, parse_chat)

    @app.post("/v1/completions", summary="OpenAI-compatible text completion (streamed or not)")
    async def completions(request: Request) -> Response:
        return await answer(request, parse_completion)


async def _whole_answer(http_request: Request, request: OpenAIRequest, opened: OpenedStream, stats: RequestStats,
                        settings: Settings) -> Response:
    """Read the stream to its end; as no byte has been sent, a failure on the way is still a status.

    A caller who leaves meanwhile stops the generation, as with a stream (the watcher below)."""
    texts = [] if opened.first is None else [opened.first]
    failure: ApiError | None = None
    finished = False
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_disconnect, http_request.receive, stats, tasks.cancel_scope)
            while failure is None:
                item = await opened.reader.next(opened.deadline)
                if isinstance(item, str):
                    texts.append(item)
                elif isinstance(item, StreamEnd):
                    break
                elif isinstance(item, StreamError):
                    failure = first_event_error(item)
                else:
                    failure = ApiError(504, "upstream_timeout", "the answer took longer than this deployment's "
                                       "time budget")
            tasks.cancel_scope.cancel()
        finished = failure is None and not stats.client_disconnected
    finally:
        stats.tokens = len(texts)
        if not finished:  # failed, caller gone, or cancelled: the endpoint stops generating for nobody
            opened.reader.cancel()
    if stats.client_disconnected:
        return Response(status_code=499)  # nobody is listening; the status is for the log line
    if failure is not None:
        stats.error_type, stats.error_detail = failure.error_type, failure.detail
        return openai_error(failure, stats.request_id)
    opened.reader.record_end(stats)
    answer = opened.answer_text()
    text = answer.feed("".join(texts)) + answer.finish(stats.finish_reason)
    return JSONResponse(complete_answer(request, settings.model_id, text, stats))

