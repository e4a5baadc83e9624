"""What callers may send, validated before anything reaches the endpoint.

Two request shapes are accepted: the container's own payload
``{"inputs": str, "parameters": {...}, "stream": true}`` (the blog's TGI payload; each container family
names its own ``parameters``: ``families/``) and a conversation
``{"messages": [{"role", "content"}, ...], "max_tokens", ...}``, which the function renders in the model's
own chat format and sends as a prompt (``model_requests.py``). The rules are the container's own (so it
never rejects what passed here) plus the deployer's caps.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, create_model, field_validator

from .answer_shapes import AnswerShape, ShapedAnswer
from .answer_text import AnswerText
from .chat_formats import Turn
from .errors import ApiError
from .families import ContainerFamily
from .json_body import load_json, quoted
from .model_requests import MAX_STOP_SEQUENCES, render_conversation, sampling_parameters
from .settings import Settings
from .strict_model import U32_MAX, U64_MAX, StopSequence, StrictModel


class _Inputs(StrictModel):
    inputs: str = Field(min_length=1)
    stream: Literal[True] | None = None
    #: Which of the models served here answers (``model_routing.py``); absent: the default, the first.
    model: str | None = Field(default=None, max_length=256)

    @field_validator("inputs")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace text")
        return value


@functools.cache
def generate_payload(family: ContainerFamily) -> type[_Inputs]:
    """The ``inputs`` payload this family takes: ``inputs`` and ``stream``, and its own ``parameters``
    (named after them: TGI's ``GenerateParameters`` make a ``GeneratePayload``)."""
    name = family.parameters_model.__name__.replace("Parameters", "Payload")
    parameters = (family.parameters_model, Field(default_factory=family.parameters_model))
    return create_model(name, __base__=_Inputs, __module__=__name__, parameters=parameters)


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatPayload(StrictModel):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=U32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=0, le=U64_MAX)
    stop: Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES)] | StopSequence | None = None
    model: str | None = Field(default=None, max_length=256)
    stream: Literal[True] | None = None

    @field_validator("messages")
    @classmethod
    def _has_text(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.content.strip() for m in messages):
            raise ValueError("at least one message must contain non-whitespace text")
        return messages


_ALLOWED_FIELDS: dict[str, tuple[str, ...]] = {
    "inputs": (*_Inputs.model_fields, "parameters"),
    "messages": tuple(ChatPayload.model_fields),
    "message": tuple(ChatMessage.model_fields),
}


@dataclass(frozen=True)
class UpstreamRequest:
    """A validated request, ready for the endpoint."""

    kind: Literal["generate", "chat"]
    body: dict[str, Any]
    input_chars: int
    max_new_tokens: int
    prompt: str
    family: ContainerFamily
    #: Stop sequences the reader must not see at the end of the answer (TGI includes them), and the
    #: chat format's newline symbol to turn back into newlines (see answer_text.py).
    answer_stops: tuple[str, ...] = ()
    newline_symbol: str = "\n"
    #: The shape the answer must have (JSON for a schema, a tool call), settled when it ends.
    shape: AnswerShape | None = None
    #: Log probabilities asked for: ``None`` none, else how many alternatives per token (0: the chosen only).
    logprobs: int | None = None
    #: The body as sent upstream, encoded during validation so that it cannot fail later.
    encoded: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", json.dumps(self.body, ensure_ascii=False, allow_nan=False).encode())

    def answer_text(self) -> AnswerText:
        """How the reader sees the model's text: without the stop that ended it, newlines restored."""
        scored = self.logprobs is not None
        if self.shape is not None:
            return ShapedAnswer(self.shape, self.answer_stops, self.newline_symbol, self.family.stop_finish_reasons,
                                scored)
        return AnswerText(self.answer_stops, self.newline_symbol, self.family.stop_finish_reasons, scored)

    @classmethod
    def for_prompt(cls, kind: Literal["generate", "chat"], prompt: str, parameters: dict[str, Any],
                   input_chars: int, family: ContainerFamily, newline_symbol: str = "\n",
                   shape: AnswerShape | None = None, logprobs: int | None = None) -> UpstreamRequest:
        """A streamed generate request whose answer the reader sees without its stop sequence."""
        body = family.upstream_body(prompt, parameters)
        return cls(kind, body, input_chars, parameters["max_new_tokens"], prompt, family,
                   tuple(parameters.get(family.stop_parameter, ())), newline_symbol, shape, logprobs)


def parse_body(raw: bytes, settings: Settings) -> UpstreamRequest:
    """Validate a request body; raises :class:`ApiError` (4xx) naming what is wrong."""
    data = load_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object with `inputs` or `messages`")
    has_inputs, has_messages = "inputs" in data, "messages" in data
    if has_inputs == has_messages:
        raise ApiError(422, "validation_error",
                       "give exactly one of `inputs` (a prompt) or `messages` (a conversation)")
    if has_inputs:
        payload = _validate(generate_payload(settings.family), data, "inputs", settings)
        return _generate_request(payload, settings)
    return _chat_request(_validate(ChatPayload, data, "messages", settings), settings)


def _validate(model: type[StrictModel], data: dict[str, Any], kind: str, settings: Settings) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _describe(exc, kind, settings.family)) from None


#: Problems a 422 lists; the rest are counted (a body of a thousand unknown keys gets a short answer).
MAX_LISTED_PROBLEMS = 5


def _describe(exc: ValidationError, kind: str, family: ContainerFamily) -> str:
    problems = []
    errors = exc.errors(include_url=False)
    for error in errors[:MAX_LISTED_PROBLEMS]:
        location = quoted(".".join(str(part) for part in error["loc"]) or "body")
        if error["type"] == "extra_forbidden":
            parent = _parent_kind(error["loc"], kind)
            fields = family.parameters_model.model_fields if parent == "parameters" else _ALLOWED_FIELDS[parent]
            allowed = ", ".join(fields)
            problems.append(f"`{location}` is not a known field; allowed here: {allowed}")
        elif error["type"] == "literal_error" and error["loc"][-1] == "stream":
            problems.append("`stream` may only be true: this endpoint always streams")
        else:
            problems.append(f"`{location}`: {error['msg']}")
    if len(errors) > MAX_LISTED_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_LISTED_PROBLEMS} more")
    return "; ".join(problems)


def _parent_kind(loc: tuple[int | str, ...], kind: str) -> str:
    if loc[0] == "parameters" and len(loc) > 1:
        return "parameters"
    if loc[0] == "messages" and len(loc) > 2:
        return "message"
    return kind


def check_caps(input_chars: int, max_new_tokens: int | None, settings: Settings, field_name: str) -> int:
    if input_chars > settings.max_input_chars:
        raise ApiError(
            413, "input_too_large",
            f"the prompt has {input_chars} characters; this deployment allows at most {settings.max_input_chars}",
        )
    if max_new_tokens is None:
        return settings.default_max_new_tokens
    if max_new_tokens > settings.max_new_tokens:
        raise ApiError(
            422, "validation_error",
            f"`{field_name}` is {max_new_tokens}; at most {settings.max_new_tokens} are allowed here",
            param=field_name,
        )
    return max_new_tokens


def _generate_request(payload: Any, settings: Settings) -> UpstreamRequest:
    """The caller's own payload, with the deployment's caps applied and ``details`` on (the token counts)."""
    params = payload.parameters.model_dump(exclude_none=True)
    max_new_tokens = check_caps(len(payload.inputs), payload.parameters.max_new_tokens, settings,
                                 "parameters.max_new_tokens")
    truncate = params.get("truncate")
    if truncate is not None and truncate >= settings.model_max_total_tokens:
        raise ApiError(422, "validation_error", f"`parameters.truncate` is {truncate}; the model's window is "
                       f"{settings.model_max_total_tokens} tokens, input and answer together")
    params.update(max_new_tokens=max_new_tokens, details=True)
    body = settings.family.upstream_body(payload.inputs, params)
    return UpstreamRequest("generate", body, len(payload.inputs), max_new_tokens, payload.inputs, settings.family)


def _chat_request(payload: ChatPayload, settings: Settings) -> UpstreamRequest:
    """The conversation rendered in the model's own format and sent as a prompt (``model_requests.py``)."""
    turns = [Turn(m.role, m.content) for m in payload.messages]
    prompt, chat_format = render_conversation(turns, settings)
    input_chars = sum(len(m.content) for m in payload.messages)
    max_tokens = check_caps(input_chars, payload.max_tokens, settings, "max_tokens")
    parameters = sampling_parameters(settings.family, max_tokens, payload.temperature, payload.top_p, payload.stop,
                                     chat_format.stop, payload.seed)
    if payload.frequency_penalty is not None:
        parameters["frequency_penalty"] = payload.frequency_penalty
    return UpstreamRequest.for_prompt("chat", prompt, parameters, input_chars, settings.family, chat_format.newline)
