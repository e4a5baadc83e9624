"""OpenAI-compatible requests (``/v1/chat/completions``, ``/v1/completions``), validated and mapped to the
model container's generate parameters (each family's own names: ``families/``).

Clients send fields this API cannot honour at their neutral values (``n: 1``, ``presence_penalty: 0``,
``logprobs: false``, ...): those are accepted; any other value is refused by name (400
``invalid_request_error`` with ``param``). The mapping (``model_requests.sampling_parameters``):

* ``max_tokens`` / ``max_completion_tokens`` -> ``max_new_tokens`` (the deployment's caps apply);
* ``temperature``: absent -> sampling at the container's default (1.0, as OpenAI's default); ``0`` ->
  greedy (``do_sample: false``; TGI refuses a zero temperature); otherwise sampling at that temperature;
* ``top_p``: ``1`` -> omitted (no nucleus sampling; TGI refuses 1.0); otherwise passed on;
* ``stop`` (a string or up to 4) -> ``stop`` (TGI) or ``stop_sequences`` (LMI), together with the chat
  format's own stop sequences;
* ``seed`` -> ``seed``; ``user`` is logged, not sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError

from . import logprobs
from .answer_shapes import AnswerShape
from .chat_formats import Turn
from .errors import ApiError
from .json_body import load_json, quoted
from .logprobs import with_top_tokens
from .model_requests import MAX_STOP_SEQUENCES, render_conversation, sampling_parameters
from .output_formats import output_format
from .payloads import UpstreamRequest, check_caps
from .settings import Settings
from .strict_model import U32_MAX, U64_MAX, StopSequence, StrictModel
from .tool_calls import Conversation, ToolChoice, tool_choice


class _Request(StrictModel):

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES)] | StopSequence | None = None
    seed: int | None = Field(default=None, ge=0, le=U64_MAX)
    #: ``null`` is what some clients send for "not set" (OpenAI's API takes it as false).
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    # Accepted only at their neutral values (see NEUTRAL below).
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    #: A string, or OpenAI's object form (``{"type": "function", ...}``), refused by name below.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None


class StreamOptions(StrictModel):
    include_usage: bool = False


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class CalledFunction(StrictModel):
    name: str = Field(max_length=64)
    arguments: str


class CallItem(StrictModel):
    """An earlier answer's tool call, replayed in the conversation."""

    id: str = Field(max_length=256)
    type: Literal["function"]
    function: CalledFunction


class Message(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    #: ``null`` in an assistant message that only calls tools.
    content: str | list[TextPart] | None
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[CallItem] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    refusal: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatCompletionRequest(_Request):
    messages: list[Message] = Field(min_length=1, max_length=256)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)


class CompletionRequest(_Request):
    #: A string, or a list of them as some clients send (LangChain's completions class: a list of one).
    prompt: str | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    #: How many alternatives per token to list with their log probabilities (0: the chosen token's only).
    logprobs: int | None = Field(default=None, ge=0)
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


_Request.model_rebuild()
Message.model_rebuild()
ChatCompletionRequest.model_rebuild()
CompletionRequest.model_rebuild()

#: Fields a client may send but this API cannot honour: the values that change nothing.
NEUTRAL: dict[str, tuple[object, ...]] = {
    "n": (None, 1), "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logit_bias": (None, {}),
    # One tool call per answer: ``true`` permits several, which one is within.
    "parallel_tool_calls": (None, True, False),
    "store": (None, False), "metadata": (None, {}), "service_tier": (None, "auto", "default"),
    "echo": (None, False), "best_of": (None, 1), "suffix": (None, ""),
}
#: ``/v1/completions`` answers text only: OpenAI's completions API has neither structured output nor tools.
COMPLETION_NEUTRAL = {**NEUTRAL, "response_format": (None, {"type": "text"}), "tools": (None, []),
                      "tool_choice": (None, "none")}


class OpenAIRequest:
    """A validated OpenAI request: what goes upstream, and how to answer."""

    def __init__(self, kind: Literal["chat", "completion"], payload: _Request, upstream: UpstreamRequest) -> None:
        self.kind = kind
        self.payload = payload
        self.upstream = upstream

    @property
    def stream(self) -> bool:
        return bool(self.payload.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.payload.stream_options and self.payload.stream_options.include_usage)


def parse_chat(raw: bytes, settings: Settings) -> OpenAIRequest:
    payload = validate_body(ChatCompletionRequest, raw, settings, NEUTRAL)
    shape = answer_shape(payload.response_format, payload.tools, payload.tool_choice, settings, nested=True)
    turns = with_tool_prompt(_turns(payload.messages), shape)
    prompt, chat_format = render_conversation(turns, settings, status=400)
    input_chars = sum(len(turn.content) for turn in turns)
    if payload.top_logprobs and not payload.logprobs:
        raise ApiError(400, "validation_error", "`top_logprobs` needs `logprobs: true`", param="top_logprobs")
    if payload.logprobs and isinstance(shape, ToolChoice):
        raise ApiError(400, "unsupported_parameter", "`logprobs` cannot be used with `tools`: a tool answer is read "
                       "whole, and its tokens are the call's JSON, not the text shown", param="logprobs")
    top = logprobs.requested(payload.top_logprobs, settings, "top_logprobs") if payload.logprobs else None
    upstream = _upstream(payload, prompt, input_chars, chat_format.stop, settings, "chat", chat_format.newline,
                         shape, top)
    return OpenAIRequest("chat", payload, upstream)


def answer_shape(output: dict[str, Any] | None, tools: list[dict[str, Any]] | None,
                 choice: str | dict[str, Any] | None, settings: Settings, *, nested: bool) -> AnswerShape | None:
    """The shape the answer must take: JSON for a schema (``output_formats.py``), a tool call
    (``tool_calls.py``), or none. ``nested``: the chat route's shapes (the Responses API's are flat)."""
    output_param = "response_format" if nested else "text.format"
    formatted = output_format(output, output_param, settings, nested=nested)
    calls = tool_choice(tools, choice, settings, nested=nested)
    if formatted is not None and calls is not None:
        raise ApiError(400, "unsupported_parameter", f"`{output_param}` and `tools` cannot be used together: the "
                       "answer is either a tool call or JSON for the schema", param=output_param)
    return formatted or calls


def with_tool_prompt(turns: list[Turn], shape: AnswerShape | None) -> list[Turn]:
    """The turns, with the functions the answer may call appended to the last one (as TGI's template does)."""
    if not isinstance(shape, ToolChoice) or not turns:
        return turns
    return [*turns[:-1], Turn(turns[-1].role, turns[-1].content + shape.prompt())]


def _turns(messages: list[Message]) -> list[Turn]:
    """The conversation as the model's turns: tool calls as the model wrote them, their results as the next
    user turn."""
    turns: list[Turn] = []
    conversation = Conversation()
    for index, message in enumerate(messages):
        if message.role == "tool":
            turns.append(Turn("user", conversation.result(message.tool_call_id or "", message.text())))
            continue
        text = message.text()
        for number, call in enumerate(message.tool_calls or ()):
            text += conversation.call(call.id, call.function.name, call.function.arguments,
                                      f"messages[{index}].tool_calls[{number}].function.arguments")
        turns.append(Turn("system" if message.role == "developer" else message.role, text))
    return turns


#: Prompts one ``/v1/completions`` request may list: one answer per request, for now.
MAX_PROMPTS = 1


def parse_completion(raw: bytes, settings: Settings) -> OpenAIRequest:
    payload = validate_body(CompletionRequest, raw, settings, COMPLETION_NEUTRAL)
    prompts = [payload.prompt] if isinstance(payload.prompt, str) else payload.prompt
    if len(prompts) > MAX_PROMPTS:
        raise ApiError(400, "unsupported_parameter", f"`prompt` lists {len(prompts)} prompts; this API answers at "
                       f"most {MAX_PROMPTS} per request: send one request per prompt", param="prompt")
    prompt = prompts[0]
    if not prompt.strip():
        raise ApiError(400, "validation_error", "`prompt` must contain non-whitespace text", param="prompt")
    top = None if payload.logprobs is None else logprobs.requested(payload.logprobs, settings, "logprobs")
    upstream = _upstream(payload, prompt, len(prompt), (), settings, "generate", logprobs=top)
    return OpenAIRequest("completion", payload, upstream)


_M = TypeVar("_M", bound=StrictModel)


def validate_body(model: type[_M], raw: bytes, settings: Settings, neutral: dict[str, tuple[object, ...]],
                  reasons: dict[str, str] | None = None) -> _M:
    """An OpenAI route's body as ``model``: JSON, its schema, fields it cannot honour at their ``neutral``
    values only (``reasons`` says why, for a field that needs more than "the container cannot"), and the model
    these settings serve named. Every refusal names its field (``param``)."""
    data = load_json(raw)
    if not isinstance(data, dict):
        raise ApiError(400, "validation_error", "the body must be a JSON object")
    try:
        payload = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = quoted(".".join(str(part) for part in first["loc"])) or None
        message = (f"`{param}` is not a known field" if first["type"] == "extra_forbidden"
                   else f"`{param}`: {first['msg']}")
        raise ApiError(400, "validation_error", message, param=param) from None
    for name, accepted in neutral.items():
        value = getattr(payload, name, None)
        if value not in accepted:
            sent = f"`{name}` is {_shape(value)}; " if isinstance(value, dict | list) else ""
            reason = (reasons or {}).get(name, "the model's container cannot honour other values")
            raise ApiError(400, "unsupported_parameter", f"{sent}this API accepts `{name}` only as "
                           f"{_shown(accepted)} ({reason})", param=name)
    requested = getattr(payload, "model", None)
    if requested != settings.model_id:  # several models: routed before (model_routing.py), so never true
        raise ApiError(404, "model_not_found", f"the model {requested!r} is not served here; this "
                       f"deployment serves {settings.model_id!r} (see /v1/models)", param="model")
    return payload


def _shown(values: tuple[object, ...]) -> str:
    """The values as the caller writes them: JSON, not Python (``false``, ``{"type": "text"}``)."""
    return " or ".join(json.dumps(value) for value in values if value is not None) or "absent"


def _shape(value: dict[str, Any] | list[Any]) -> str:
    """What kind of object or list the caller sent, without echoing it whole."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    kind = value.get("type")
    return f'an object of type "{kind}"' if isinstance(kind, str) and len(kind) <= 64 else "an object"


def _upstream(payload: _Request, prompt: str, input_chars: int, format_stops: tuple[str, ...],
              settings: Settings, kind: Literal["generate", "chat"], newline_symbol: str = "\n",
              shape: AnswerShape | None = None, logprobs: int | None = None) -> UpstreamRequest:
    requested = payload.max_completion_tokens if payload.max_completion_tokens is not None else payload.max_tokens
    field = "max_completion_tokens" if payload.max_completion_tokens is not None else "max_tokens"
    max_new_tokens = check_caps(input_chars, requested, settings, field)
    parameters = sampling_parameters(settings.family, max_new_tokens, payload.temperature, payload.top_p,
                                     payload.stop, format_stops, payload.seed, status=400)
    parameters = with_top_tokens(with_grammar(parameters, shape), logprobs)
    return UpstreamRequest.for_prompt(kind, prompt, parameters, input_chars, settings.family, newline_symbol, shape,
                                      logprobs)


def with_grammar(parameters: dict[str, Any], shape: AnswerShape | None) -> dict[str, Any]:
    """The container's parameters with the shape's grammar (TGI's ``grammar``), where the answer has one."""
    grammar = getattr(shape, "grammar", None)
    return parameters if not grammar else {**parameters, "grammar": grammar}
