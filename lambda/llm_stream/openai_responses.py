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
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from .errors import ApiError
from .stats import RequestStats

if TYPE_CHECKING:  # pydantic loads after the server is ready (preload.py)
    from .openai_payloads import OpenAIRequest

#: TGI's finish reasons in OpenAI's words.
FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop", "stop": "stop"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
                415: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(exc: ApiError, request_id: str) -> JSONResponse:
    """An error before any byte, in OpenAI's shape; 422 becomes 400, as OpenAI answers invalid requests."""
    status = 400 if exc.status == 422 else exc.status
    return JSONResponse(error_object(status, exc.error_type, exc.message, request_id, exc.param), status_code=status,
                        headers={**exc.headers, "x-request-id": request_id})


def error_object(status: int, code: str, message: str, request_id: str, param: str | None = None) -> dict[str, Any]:
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code,
                      "request_id": request_id}}


def finish_reason(stats: RequestStats) -> str:
    return FINISH_REASONS.get(stats.finish_reason or "", "stop")


def usage(stats: RequestStats) -> dict[str, int]:
    completion = stats.generated_tokens if stats.generated_tokens is not None else stats.tokens
    counted = {"completion_tokens": completion}
    if stats.input_tokens is not None:
        counted |= {"prompt_tokens": stats.input_tokens, "total_tokens": stats.input_tokens + completion}
    return counted


class OpenAIEncoder:
    """Server-sent ``chat.completion.chunk`` or ``text_completion`` objects, then ``[DONE]``."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, request: OpenAIRequest, model_id: str) -> None:
        self._chat = request.kind == "chat"
        self._include_usage = request.include_usage
        self._object = "chat.completion.chunk" if self._chat else "text_completion"
        self._base = {"id": f"{'chatcmpl' if self._chat else 'cmpl'}-{uuid.uuid4().hex}", "object": self._object,
                      "created": int(time.time()), "model": model_id}
        self._started = False

    def token(self, text: str) -> bytes:
        return self._choice(text, None)

    def done(self, stats: RequestStats) -> bytes:
        events = self._choice("", finish_reason(stats))
        if self._include_usage:
            events += _data({**self._base, "choices": [], "usage": usage(stats)})
        return events + b"data: [DONE]\n\n"

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        return _data(error_object(500, error_type, message, request_id))

    def _choice(self, text: str, finish: str | None) -> bytes:
        if self._chat:
            delta: dict[str, str] = {} if finish else {"content": text}
            if not self._started:
                delta = {"role": "assistant", **delta}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        self._started = True
        return _data({**self._base, "choices": [choice]})


def complete_answer(request: OpenAIRequest, model_id: str, text: str, stats: RequestStats) -> dict[str, Any]:
    """The whole answer (as the reader sees it: ``answer_text.py``) as one ``chat.completion`` or
    ``text_completion`` object."""
    base = {"created": int(time.time()), "model": model_id, "usage": usage(stats)}
    if request.kind == "chat":
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(stats)}
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "choices": [choice], **base}
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(stats)}
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "choices": [choice], **base}


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8", "replace")
