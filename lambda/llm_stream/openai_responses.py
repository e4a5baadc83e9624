"""OpenAI-compatible answers: ``chat.completion(.chunk)`` and ``text_completion`` objects, and errors.

Streamed (``stream: true``): one chunk per token, flushed as it arrives, a last chunk with the
``finish_reason``, an optional usage chunk, then ``data: [DONE]``; a failure after the first byte is a
final ``data: {"error": {...}}`` event (the OpenAI SDKs raise an ``APIError`` carrying its message).
Not streamed: one object with ``usage``. ``prompt_tokens`` is the container's own count (TGI reports
it as ``details.input_length``); where it did not say, usage gives the completion tokens only.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from starlette.responses import JSONResponse

from .errors import ApiError
from .logprobs import chat_content, completion_logprobs
from .stats import RequestStats

if TYPE_CHECKING:  # pydantic loads after the server is ready (preload.py)
    from .answer_shapes import ToolCall
    from .answer_text import AnswerText
    from .openai_payloads import OpenAIRequest

#: TGI's finish reasons in OpenAI's words.
FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop", "stop": "stop"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
                415: "invalid_request_error", 429: "rate_limit_error"}


# The answers' shapes, as OpenAI's API reference gives them (the fields this API fills), typed so that a
# missing or misspelt field is a type error, at no cost per token (TypedDicts are plain dicts at run time).
class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str
    request_id: str


class ErrorObject(TypedDict):
    error: ErrorDetail


class Usage(TypedDict):
    completion_tokens: int
    prompt_tokens: NotRequired[int]
    total_tokens: NotRequired[int]


class CalledFunction(TypedDict):
    name: str
    arguments: str


class ToolCallObject(TypedDict):
    id: str
    type: Literal["function"]
    function: CalledFunction


class ToolCallDelta(ToolCallObject):
    index: int


class Delta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    tool_calls: list[ToolCallDelta]


class ChatChunkChoice(TypedDict):
    index: int
    delta: Delta
    #: ``{"content": [...], "refusal": None}`` where the caller asked for log probabilities (``logprobs.py``).
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class TextChoice(TypedDict):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    tool_calls: NotRequired[list[ToolCallObject]]


class ChatChoice(TypedDict):
    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None
    finish_reason: str


class _Answer(TypedDict):
    id: str
    created: int
    model: str


class Chunk(_Answer):
    """A ``chat.completion.chunk`` or a streamed ``text_completion``."""

    object: Literal["chat.completion.chunk", "text_completion"]
    choices: list[ChatChunkChoice] | list[TextChoice]
    usage: NotRequired[Usage]


class Completion(_Answer):
    """A whole ``chat.completion`` or ``text_completion``."""

    object: Literal["chat.completion", "text_completion"]
    choices: list[ChatChoice] | list[TextChoice]
    usage: Usage


def openai_error(exc: ApiError, request_id: str) -> JSONResponse:
    """An error before any byte, in OpenAI's shape; 422 becomes 400, as OpenAI answers invalid requests."""
    status = 400 if exc.status == 422 else exc.status
    return JSONResponse(error_object(status, exc.error_type, exc.message, request_id, exc.param), status_code=status,
                        headers={**exc.headers, "x-request-id": request_id})


def error_object(status: int, code: str, message: str, request_id: str, param: str | None = None) -> ErrorObject:
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code,
                      "request_id": request_id}}


def finish_reason(stats: RequestStats, answer: AnswerText | None = None) -> str:
    if answer is not None and answer.tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(stats.finish_reason or "", "stop")


def tool_call_objects(calls: tuple[ToolCall, ...]) -> list[ToolCallObject]:
    return [ToolCallObject(id=call.id, type="function", function=CalledFunction(name=call.name,
                                                                                arguments=call.arguments))
            for call in calls]


def usage(stats: RequestStats) -> Usage:
    completion = stats.generated_tokens if stats.generated_tokens is not None else stats.tokens
    if stats.input_tokens is None:
        return Usage(completion_tokens=completion)
    return Usage(completion_tokens=completion, prompt_tokens=stats.input_tokens,
                 total_tokens=stats.input_tokens + completion)


class OpenAIEncoder:
    """Server-sent ``chat.completion.chunk`` or ``text_completion`` objects, then ``[DONE]``."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, request: OpenAIRequest, model_id: str, answer: AnswerText) -> None:
        self._answer = answer
        self._scored = request.upstream.logprobs is not None
        self._offset = 0  # characters sent so far (the completions API's ``text_offset``)
        self._chat = request.kind == "chat"
        self._include_usage = request.include_usage
        self._id = f"{'chatcmpl' if self._chat else 'cmpl'}-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._model = model_id
        self._started = False

    def _chunk(self, choices: list[ChatChunkChoice] | list[TextChoice]) -> Chunk:
        return Chunk(id=self._id, object="chat.completion.chunk" if self._chat else "text_completion",
                     created=self._created, model=self._model, choices=choices)

    def token(self, text: str) -> bytes:
        return self._choice(text, None, self._scores(text))

    def _scores(self, text: str) -> dict[str, Any] | None:
        """The log probabilities of the tokens behind ``text``, where the caller asked for them."""
        if not self._scored:
            return None
        tokens = self._answer.take_scores()
        if self._chat:
            return {"content": chat_content(tokens), "refusal": None}
        scores, self._offset = completion_logprobs(tokens, self._offset), self._offset + len(text)
        return scores

    def done(self, stats: RequestStats) -> bytes:
        events = b""
        if self._answer.tool_calls:
            calls = [ToolCallDelta(index=index, **call)
                     for index, call in enumerate(tool_call_objects(self._answer.tool_calls))]
            events = self._delta(Delta(tool_calls=calls))
        events += self._choice("", finish_reason(stats, self._answer))
        if self._include_usage:
            with_usage = self._chunk([])
            with_usage["usage"] = usage(stats)
            events += _data(with_usage)
        return events + b"data: [DONE]\n\n"

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        return _data(error_object(500, error_type, message, request_id))

    def _delta(self, delta: Delta, finish: str | None = None, scores: dict[str, Any] | None = None) -> bytes:
        if not self._started:
            delta = Delta(role="assistant", **delta)
        self._started = True
        return _data(self._chunk([ChatChunkChoice(index=0, delta=delta, logprobs=scores, finish_reason=finish)]))

    def _choice(self, text: str, finish: str | None, scores: dict[str, Any] | None = None) -> bytes:
        if self._chat:
            return self._delta(Delta() if finish else Delta(content=text), finish, scores)
        return _data(self._chunk([TextChoice(index=0, text=text, logprobs=scores, finish_reason=finish)]))


def complete_answer(request: OpenAIRequest, model_id: str, text: str, stats: RequestStats,
                    answer: AnswerText) -> Completion:
    """The whole answer (as the reader sees it: ``answer_text.py``) as one ``chat.completion`` or
    ``text_completion`` object."""
    created, counted, finish = int(time.time()), usage(stats), finish_reason(stats, answer)
    tokens = answer.take_scores() if request.upstream.logprobs is not None else None
    if request.kind == "chat":
        message = AssistantMessage(role="assistant", content=text)
        if answer.tool_calls:
            message = AssistantMessage(role="assistant", content=None,
                                       tool_calls=tool_call_objects(answer.tool_calls))
        scores = None if tokens is None else {"content": chat_content(tokens), "refusal": None}
        return Completion(id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion", created=created,
                          model=model_id, usage=counted,
                          choices=[ChatChoice(index=0, message=message, logprobs=scores, finish_reason=finish)])
    scores = None if tokens is None else completion_logprobs(tokens, 0)
    return Completion(id=f"cmpl-{uuid.uuid4().hex}", object="text_completion", created=created, model=model_id,
                      usage=counted, choices=[TextChoice(index=0, text=text, logprobs=scores, finish_reason=finish)])


def _data(payload: Mapping[str, object]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8", "replace")
