"""The OpenAI-compatible API: ``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/responses`` (stateless: ``responses_api_payloads.py``).

Same validation, caps, stream slots, deadline and log line as ``POST /``; only the request and answer
shapes differ (``openai_payloads.py``, ``openai_responses.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .answer_shapes import finish_answer
from .answer_text import AnswerText
from .error_responses import error_response
from .errors import ApiError
from .gateway import Gateway, OpenedStream
from .lifecycle import request_stats
from .model_routing import usable_models
from .openai_responses import OpenAIEncoder, complete_answer
from .responses import Encoder, TokenStreamResponse, unless_caller_leaves
from .settings import Settings
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd
from .upstream_errors import first_event_error

if TYPE_CHECKING:  # pydantic and the request models load after the server is ready (preload.py)
    from .openai_payloads import OpenAIRequest
    from .responses_api_payloads import ResponsesRequest


def _parse_chat(raw: bytes, settings: Settings) -> OpenAIRequest:
    from .openai_payloads import parse_chat

    return parse_chat(raw, settings)


def _parse_completion(raw: bytes, settings: Settings) -> OpenAIRequest:
    from .openai_payloads import parse_completion

    return parse_completion(raw, settings)


def _parse_responses(raw: bytes, settings: Settings) -> ResponsesRequest:
    from .responses_api_payloads import parse_responses

    return parse_responses(raw, settings)


def openai_routes(gateway: Gateway) -> list[Route]:
    settings = gateway.settings
    started = int(time.time())

    def model_object(model_id: str) -> dict[str, object]:
        return {"id": model_id, "object": "model", "created": started, "owned_by": "sagemaker-jumpstart"}

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_object(model_id)
                                                        for model_id in usable_models(request.scope, settings)]})

    async def model(request: Request) -> Response:
        """``client.models.retrieve(id)``: a served model, or OpenAI's 404 naming those there are."""
        usable = usable_models(request.scope, settings)
        if request.path_params["model_id"] not in usable:
            served = ", ".join(repr(model_id) for model_id in usable)
            raise ApiError(404, "model_not_found", f"the model {request.path_params['model_id']!r} is not served "
                           f"here; this deployment serves {served}", param="model")
        return JSONResponse(model_object(request.path_params["model_id"]))

    async def answer(request: Request, parse: Callable[[bytes, Settings], Any],
                     encoder: Callable[[Any, str, AnswerText], Encoder],
                     complete: Callable[[Any, str, str, RequestStats, AnswerText], Mapping[str, Any]]) -> Response:
        """Every OpenAI route: its request parsed, the endpoint opened, then a stream of the route's events
        or, not streamed, the route's whole answer."""
        stats = request_stats(request.scope)
        stats.metered = True
        openai_request = await gateway.validated(request, parse)
        stats.user = openai_request.payload.user
        opened = await gateway.open_upstream(request, openai_request.upstream)
        answer_text, model_id = opened.answer_text(), stats.model_id  # the model the request was routed to
        if openai_request.stream:
            return TokenStreamResponse(opened.reader, opened.first, encoder(openai_request, model_id, answer_text),
                                       stats, opened.deadline, answer_text)
        return await _whole_answer(request, opened, answer_text, stats,
                                   lambda text: complete(openai_request, model_id, text, stats, answer_text))

    async def chat_completions(request: Request) -> Response:
        return await answer(request, _parse_chat, OpenAIEncoder, complete_answer)

    async def completions(request: Request) -> Response:
        return await answer(request, _parse_completion, OpenAIEncoder, complete_answer)

    async def responses(request: Request) -> Response:
        from .responses_api_answers import ResponsesEncoder, whole_response

        return await answer(request, _parse_responses, ResponsesEncoder, whole_response)

    return [Route("/v1/models", models, methods=["GET"]), Route("/v1/models/{model_id}", model, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"])]


async def _whole_answer(http_request: Request, opened: OpenedStream, answer: AnswerText, stats: RequestStats,
                        complete: Callable[[str], Mapping[str, Any]]) -> Response:
    """Read the stream to its end; as no byte has been sent, a failure on the way is still a status.

    A caller who leaves meanwhile stops the generation, as with a stream."""
    texts = [] if opened.first is None else [opened.first]
    finished = False
    try:
        failure = await unless_caller_leaves(http_request.receive, stats, _read_to_the_end(opened, texts))
        finished = failure is None and not stats.client_disconnected
    finally:
        stats.tokens = len(texts)
        if not finished:  # failed, caller gone, or cancelled: the endpoint stops generating for nobody
            opened.reader.cancel()
    if stats.client_disconnected:
        return Response(status_code=499)  # nobody is listening; the status is for the log line
    if failure is not None:
        return error_response(failure, http_request.scope)
    opened.reader.record_end(stats)
    text = "".join(answer.feed(token) for token in texts) + await finish_answer(answer, stats.finish_reason)
    if answer.failure is not None:  # the answer does not have the shape asked for (answer_shapes.py)
        # Not worth a retry: a grammar the container cannot compile fails alike every time, and so does a limit.
        misfit = answer.failure
        return error_response(ApiError(502, misfit.error_type, misfit.message, {"x-should-retry": "false"},
                                       detail=str(misfit)), http_request.scope)
    return JSONResponse(complete(text))


async def _read_to_the_end(opened: OpenedStream, texts: list[str]) -> ApiError | None:
    """The rest of the answer, gathered into ``texts``; the failure that ended it early, if one did."""
    while True:
        item = await opened.reader.next(opened.deadline)
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, StreamEnd):
            return None
        elif isinstance(item, StreamError):
            return first_event_error(item)
        else:
            return ApiError(504, "upstream_timeout", "the answer took longer than this deployment's time budget")
