"""``POST /v1/responses`` requests (OpenAI's Responses API, stateless), validated and mapped to the model
container's generate parameters, as the chat route maps a conversation.

* ``instructions`` -> a system turn first; ``input`` a string (one user turn) or a list of message items
  (``{"role", "content"}``, with ``type: "message"`` or without; content a string or ``input_text`` /
  ``output_text`` parts, so a client may replay earlier output items);
* ``max_output_tokens`` -> ``max_new_tokens`` (the deployment's caps apply), ``temperature`` and ``top_p`` as
  on the chat route; the chat format's own stop sequences end the answer.

No server-side state is kept: ``previous_response_id`` and ``background: true`` are refused by name;
``store`` is accepted and the answer says ``"store": false``. Fields this API cannot honour are accepted at
their neutral values only (``text.format`` ``text``, no ``tools``, ...), as on the other OpenAI routes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from . import logprobs
from .answer_shapes import AnswerShape
from .chat_formats import Turn
from .errors import ApiError
from .logprobs import with_top_tokens
from .model_requests import render_conversation, sampling_parameters
from .openai_payloads import answer_shape, validate_body, with_grammar, with_tool_prompt
from .payloads import UpstreamRequest, check_caps
from .settings import Settings
from .strict_model import U32_MAX, StrictModel
from .tool_calls import Conversation, ToolChoice

#: Message roles an input item may have (``developer`` is a system turn, as on the chat route).
ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
#: Content parts whose text makes up a message.
TEXT_PARTS = ("input_text", "output_text")
MAX_INPUT_ITEMS = 256


class ResponsesApiRequest(StrictModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = Field(default=None, max_length=256)
    # Accepted only at their neutral values (NEUTRAL below), or refused by name.
    text: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    background: bool | None = None
    truncation: str | None = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    service_tier: str | None = None
    top_logprobs: int | None = Field(default=None, ge=0)


ResponsesApiRequest.model_rebuild()

NEUTRAL: dict[str, tuple[object, ...]] = {
    "previous_response_id": (None,), "background": (None, False),
    "parallel_tool_calls": (None, True, False), "truncation": (None, "disabled"),
    "reasoning": (None, {}), "service_tier": (None, "auto", "default"),
}
#: What ``include`` may ask for: the answer's token log probabilities (``logprobs.py``).
LOGPROBS_INCLUDE = "message.output_text.logprobs"


#: Why a field is refused, where "the container cannot honour other values" is not the reason.
_STATELESS = "this API keeps no state between requests: send the earlier turns in `input`"
REASONS = {"previous_response_id": _STATELESS, "background": "this API keeps no state between requests"}


class ResponsesRequest:
    """A validated Responses API request: what goes upstream, and how to answer."""

    kind = "responses"

    def __init__(self, payload: ResponsesApiRequest, upstream: UpstreamRequest) -> None:
        self.payload = payload
        self.upstream = upstream

    @property
    def stream(self) -> bool:
        return bool(self.payload.stream)


def parse_responses(raw: bytes, settings: Settings) -> ResponsesRequest:
    payload = _validate(raw, settings)
    shape = answer_shape(_text_format(payload.text), payload.tools, payload.tool_choice, settings, nested=False)
    turns = ([Turn("system", payload.instructions)] if payload.instructions else []) + _turns(payload.input)
    turns = with_tool_prompt(turns, shape)
    prompt, chat_format = render_conversation(turns, settings, status=400)
    input_chars = sum(len(turn.content) for turn in turns)
    max_new_tokens = check_caps(input_chars, payload.max_output_tokens, settings, "max_output_tokens")
    parameters = sampling_parameters(settings.family, max_new_tokens, payload.temperature, payload.top_p, None,
                                     chat_format.stop, None, status=400)
    top = _logprobs(payload, shape, settings)
    upstream = UpstreamRequest.for_prompt("chat", prompt, with_top_tokens(with_grammar(parameters, shape), top),
                                          input_chars, settings.family, chat_format.newline, shape, top)
    return ResponsesRequest(payload, upstream)


def _logprobs(payload: ResponsesApiRequest, shape: AnswerShape | None, settings: Settings) -> int | None:
    """How many alternatives per token the answer lists, where ``include`` asks for its log probabilities."""
    unknown = [item for item in payload.include or () if item != LOGPROBS_INCLUDE]
    if unknown:
        raise ApiError(400, "unsupported_parameter", f"`include` may hold only {LOGPROBS_INCLUDE!r} here (no state "
                       "or built-in tools are kept to include)", param="include")
    if LOGPROBS_INCLUDE not in (payload.include or ()):
        if payload.top_logprobs:
            raise ApiError(400, "validation_error", f"`top_logprobs` needs `include: [{LOGPROBS_INCLUDE!r}]`",
                           param="top_logprobs")
        return None
    if isinstance(shape, ToolChoice):
        raise ApiError(400, "unsupported_parameter", "log probabilities cannot be included with `tools`: a tool "
                       "answer is read whole, and its tokens are the call's JSON", param="include")
    return logprobs.requested(payload.top_logprobs, settings, "top_logprobs")


def _text_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format``, the one part of ``text`` this API reads (``verbosity`` is accepted at its default)."""
    if not text:
        return None
    unknown = sorted(set(text) - {"format", "verbosity"})
    if unknown or text.get("verbosity", "medium") != "medium":
        name = unknown[0][:64] if unknown else "verbosity"
        raise ApiError(400, "unsupported_parameter", f"`text.{name}` is not served: this API reads `text.format`",
                       param=f"text.{name}")
    text_format = text.get("format")
    if text_format is not None and not isinstance(text_format, dict):
        raise ApiError(400, "validation_error", "`text.format` must be an object", param="text.format")
    return text_format


def _validate(raw: bytes, settings: Settings) -> ResponsesApiRequest:
    return validate_body(ResponsesApiRequest, raw, settings, NEUTRAL, REASONS)


def _turns(given: str | list[dict[str, Any]]) -> list[Turn]:
    if isinstance(given, str):
        return [Turn("user", given)]
    if not 1 <= len(given) <= MAX_INPUT_ITEMS:
        raise ApiError(400, "validation_error", f"`input` must hold 1 to {MAX_INPUT_ITEMS} items", param="input")
    conversation = Conversation()
    return [_turn(item, f"input[{index}]", conversation) for index, item in enumerate(given)]


def _turn(item: dict[str, Any], where: str, conversation: Conversation) -> Turn:
    """One input item as a turn: a message, an earlier answer's function call (as the model wrote it), or a
    function's output (the next user turn)."""
    kind = item.get("type", "message")
    if kind == "function_call":
        call_id, name, arguments = (_string(item, key, where) for key in ("call_id", "name", "arguments"))
        return Turn("assistant", conversation.call(call_id, name, arguments, f"{where}.arguments"))
    if kind == "function_call_output":
        call_id, output = _string(item, "call_id", where), _string(item, "output", where)
        return Turn("user", conversation.result(call_id, output))
    if kind != "message":
        raise ApiError(400, "unsupported_parameter", f"`{where}.type` is {_shown(kind)}: this API takes message, "
                       "function_call and function_call_output items", param=f"{where}.type")
    role = item.get("role")
    if role not in ROLES:
        raise ApiError(400, "validation_error", f"`{where}.role` is {_shown(role)}; expected one of "
                       f"{', '.join(ROLES)}", param=f"{where}.role")
    return Turn(ROLES[role], _text(item.get("content"), f"{where}.content"))


def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, "validation_error", f"`{where}` must be a string or a list of text parts", param=where)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(text, str):
            raise ApiError(400, "unsupported_parameter", f"`{where}[{index}]` is not a text part ({_shown(kind)}): "
                           f"this API takes {' and '.join(TEXT_PARTS)} parts", param=f"{where}[{index}]")
        texts.append(text)
    return "".join(texts)


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ApiError(400, "validation_error", f"`{where}.{key}` must be a string", param=f"{where}.{key}")
    return value


def _shown(value: object) -> str:
    """A caller's value in a message: JSON, cut short."""
    text = json.dumps(value) if isinstance(value, str | int | float | bool | type(None)) else "an object"
    return text if len(text) <= 64 else text[:61] + "..."
