"""``POST /v1/responses`` answers: a ``response`` object, or OpenAI's stream of response events.

Streamed, in the order openai-python's stream helper requires, each event with its ``sequence_number``:
``response.created`` and ``response.in_progress`` (the response, status ``in_progress``), then the one
message item: ``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token (with ``item_id``, ``output_index``, ``content_index``),
``response.output_text.done``, ``response.content_part.done``, ``response.output_item.done``; last
``response.completed``, or ``response.incomplete`` when the answer reached ``max_output_tokens``. A
function call (``tool_calls.py``) is a ``function_call`` item instead of the message:
``response.output_item.added``, ``response.function_call_arguments.delta`` (the arguments whole: they are known
once the answer is), ``response.function_call_arguments.done``, ``response.output_item.done``. A failure after
the first byte is an ``error`` event followed by ``response.failed``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from .logprobs import chat_content
from .openai_responses import usage as chat_usage
from .stats import RequestStats

if TYPE_CHECKING:  # pydantic loads after the server is ready (preload.py)
    from .answer_shapes import ToolCall
    from .answer_text import AnswerText
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
            "tool_choice": payload.tool_choice or "auto", "tools": payload.tools or [],
            "text": {"format": (payload.text or {}).get("format") or {"type": "text"}}, "store": False,
            "metadata": payload.metadata or {}, "previous_response_id": None, "truncation": "disabled",
            "reasoning": None, "user": payload.user, "background": False}

    def response(self, status: str, output: list[dict[str, Any]], stats: RequestStats | None = None,
                 error: dict[str, str] | None = None) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "error": error, "incomplete_details": incomplete, "output": output,
                "usage": None if stats is None else response_usage(stats), **self.fields}

    def message(self, status: str, text: str | None, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        content = [] if text is None else [self.text_part(text, logprobs)]
        return {"type": "message", "id": self.item_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def text_part(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}

    @staticmethod
    def function_call(call: ToolCall, status: str, arguments: str | None = None) -> dict[str, Any]:
        return {"type": "function_call", "id": f"fc_{call.id.removeprefix('call_')}", "call_id": call.id,
                "name": call.name, "arguments": call.arguments if arguments is None else arguments,
                "status": status}


def status_of(stats: RequestStats) -> str:
    return "incomplete" if stats.finish_reason == "length" else "completed"


def whole_response(request: ResponsesRequest, model_id: str, text: str, stats: RequestStats,
                   answer: AnswerText) -> dict[str, Any]:
    """The whole answer (as the reader sees it: ``answer_text.py``) as one ``response`` object: its message, or
    its function call."""
    shape, status = ResponseShape(request, model_id), status_of(stats)
    output = [shape.function_call(call, "completed") for call in answer.tool_calls] or \
        [shape.message("completed", text, chat_content(answer.take_scores()))]
    return shape.response(status, output, stats)


class ResponsesEncoder:
    """The Responses API's server-sent events (the function's Encoder: ``responses.py``)."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, request: ResponsesRequest, model_id: str, answer: AnswerText) -> None:
        self._shape = ResponseShape(request, model_id)
        self._answer = answer
        self._sequence = 0
        self._text: list[str] = []
        #: The answer's log probabilities so far, where ``include`` asked for them (``logprobs.py``).
        self._logprobs: list[dict[str, Any]] = []
        self._begun = self._message_open = False

    def token(self, text: str) -> bytes:
        self._text.append(text)
        scores = chat_content(self._answer.take_scores())
        self._logprobs.extend(scores)
        return self._open_message() + self._event("response.output_text.delta", **self._where(), delta=text,
                                                  logprobs=scores)

    def done(self, stats: RequestStats) -> bytes:
        status = status_of(stats)
        if self._answer.tool_calls:
            events, output = self._begin(), []
            for index, call in enumerate(self._answer.tool_calls):
                events += self._function_call(index, call)
                output.append(self._shape.function_call(call, "completed"))
        else:
            text, scores = "".join(self._text), self._logprobs
            part, item = self._shape.text_part(text, scores), self._shape.message("completed", text, scores)
            events = (self._open_message()
                      + self._event("response.output_text.done", **self._where(), text=text, logprobs=scores)
                      + self._event("response.content_part.done", **self._where(), part=part)
                      + self._event("response.output_item.done", output_index=0, item=item))
            output = [item]
        return events + self._event(f"response.{status}", response=self._shape.response(status, output, stats))

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        output = [self._shape.message("incomplete", "".join(self._text))] if self._message_open else []
        failed = self._shape.response("failed", output, error={"code": error_type, "message": message})
        return (self._begin()
                + self._event("error", code=error_type, message=f"{message} (request {request_id})", param=None)
                + self._event("response.failed", response=failed))

    def _function_call(self, index: int, call: ToolCall) -> bytes:
        """One function call's events: the item, its arguments (whole: known once the answer is), the item done."""
        where = {"item_id": self._shape.function_call(call, "")["id"], "output_index": index}
        return (self._event("response.output_item.added", output_index=index,
                            item=self._shape.function_call(call, "in_progress", arguments=""))
                + self._event("response.function_call_arguments.delta", **where, delta=call.arguments)
                + self._event("response.function_call_arguments.done", **where, name=call.name,
                              arguments=call.arguments)
                + self._event("response.output_item.done", output_index=index,
                              item=self._shape.function_call(call, "completed")))

    def _begin(self) -> bytes:
        """The events that open the response, once."""
        if self._begun:
            return b""
        self._begun = True
        in_progress = self._shape.response("in_progress", [])
        return self._event("response.created", response=in_progress) + self._event("response.in_progress",
                                                                                   response=in_progress)

    def _open_message(self) -> bytes:
        """The events before the message's first delta, once."""
        if self._message_open:
            return b""
        self._message_open = True
        item = self._shape.message("in_progress", None)
        return (self._begin() + self._event("response.output_item.added", output_index=0, item=item)
                + self._event("response.content_part.added", **self._where(), part=self._shape.text_part("")))

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._shape.item_id, "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8", "replace")
