"""``POST /v1/responses`` answers: a ``response`` object, or OpenAI's stream of response events.

Streamed, in the order openai-python's stream helper requires, each event with its ``sequence_number``:
``response.created`` and ``response.in_progress`` (the response, status ``in_progress``), then the one
message item: ``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token (with ``item_id``, ``output_index``, ``content_index``),
``response.output_text.done``, ``response.content_part.done``, ``response.output_item.done``; last
``response.completed``, or ``response.incomplete`` when the answer reached ``max_output_tokens``. A
failure after the first byte is an ``error`` event followed by ``response.failed``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from .openai_responses import usage as chat_usage
from .stats import RequestStats

if TYPE_CHECKING:  # pydantic loads after the server is ready (preload.py)
    from .responses_api_payloads import ResponsesRequest


def response_usage(stats: RequestStats) -> dict[str, Any]:
    """Token counts in the Responses API's words; the prompt's only where the container counted it."""
    counted = chat_usage(stats)
    result: dict[str, Any] = {"output_tokens": counted["completion_tokens"],
                              "output_tokens_details": {"reasoning_tokens": 0}}
    if "prompt_tokens" in counted:
        result.update(input_tokens=counted["prompt_tokens"], input_tokens_details={"cached_tokens": 0},
                      total_tokens=counted.get("total_tokens"))
    return result


class ResponseShape:
    """The parts of one response that stay the same from its first event to its last."""

    def __init__(self, request: ResponsesRequest, model_id: str) -> None:
        payload = request.payload
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.fields: dict[str, Any] = {
            "model": model_id, "instructions": payload.instructions, "max_output_tokens": payload.max_output_tokens,
            "temperature": payload.temperature, "top_p": payload.top_p, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}}, "store": False,
            "metadata": payload.metadata or {}, "previous_response_id": None, "truncation": "disabled",
            "reasoning": None, "user": payload.user, "background": False}

    def response(self, status: str, output: list[dict[str, Any]], stats: RequestStats | None = None,
                 error: dict[str, str] | None = None) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "error": error, "incomplete_details": incomplete, "output": output,
                "usage": None if stats is None else response_usage(stats), **self.fields}

    def message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self.text_part(text)]
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def status_of(stats: RequestStats) -> str:
    return "incomplete" if stats.finish_reason == "length" else "completed"


def whole_response(request: ResponsesRequest, model_id: str, text: str, stats: RequestStats) -> dict[str, Any]:
    """The whole answer (as the reader sees it: ``answer_text.py``) as one ``response`` object."""
    shape, status = ResponseShape(request, model_id), status_of(stats)
    return shape.response(status, [shape.message("completed", text)], stats)


class ResponsesEncoder:
    """The Responses API's server-sent events (the function's Encoder: ``responses.py``)."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, request: ResponsesRequest, model_id: str) -> None:
        self._shape = ResponseShape(request, model_id)
        self._sequence = 0
        self._text: list[str] = []
        self._started = False

    def token(self, text: str) -> bytes:
        self._text.append(text)
        return self._start() + self._event("response.output_text.delta", **self._where(), delta=text, logprobs=[])

    def done(self, stats: RequestStats) -> bytes:
        text, status = "".join(self._text), status_of(stats)
        part, item = self._shape.text_part(text), self._shape.message("completed", text)
        return (self._start()
                + self._event("response.output_text.done", **self._where(), text=text, logprobs=[])
                + self._event("response.content_part.done", **self._where(), part=part)
                + self._event("response.output_item.done", output_index=0, item=item)
                + self._event(f"response.{status}", response=self._shape.response(status, [item], stats)))

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        item = self._shape.message("incomplete", "".join(self._text))
        failed = self._shape.response("failed", [item], error={"code": error_type, "message": message})
        return (self._start()
                + self._event("error", code=error_type, message=f"{message} (request {request_id})", param=None)
                + self._event("response.failed", response=failed))

    def _start(self) -> bytes:
        """The events before the first delta, once."""
        if self._started:
            return b""
        self._started = True
        in_progress, item = self._shape.response("in_progress", []), self._shape.message("in_progress", None)
        return (self._event("response.created", response=in_progress)
                + self._event("response.in_progress", response=in_progress)
                + self._event("response.output_item.added", output_index=0, item=item)
                + self._event("response.content_part.added", **self._where(), part=self._shape.text_part("")))

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._shape.item_id, "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8", "replace")
