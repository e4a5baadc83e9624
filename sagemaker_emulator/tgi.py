"""What a Text Generation Inference (TGI 2.4) container does with a request.

Parsing and validation follow TGI's rules; events are rendered the way TGI
writes them on ``/invocations`` with ``"stream": true``: ``data:`` + compact
JSON (non-ASCII unescaped) + a blank line, no ``event:`` lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from . import grammar as guided
from .textgen import EOS, VOCAB_SIZE, Token, answer_tokens, count_tokens, text_tokens

MAX_STOP_SEQUENCES = 4
TGI_VERSION = "2.4.0"
#: The first versions with ``parameters.grammar`` (v1.4.1; older routers ignore the unknown field) and with
#: ``details.input_length`` in the stream's last event (v2.3.0, #2336).
GRAMMAR_SINCE = (1, 4, 1)
#: The launcher's default ``--max-top-n-tokens``.
MAX_TOP_N_TOKENS = 5
INPUT_LENGTH_SINCE = (2, 3, 0)
STREAM_CONTENT_TYPE = "text/event-stream"
_CHAT_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


class BodyRejected(Exception):
    """The container answers a non-200 status before streaming (SageMaker turns it into ModelError)."""

    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    @property
    def body(self) -> str:
        """What the container answers: axum's own text for a body its ``Json`` extractor cannot deserialize
        (``JsonDataError``, text/plain), TGI's JSON ``{"error", "error_type"}`` for the rest."""
        if self.message.startswith("Failed to deserialize"):
            return self.message
        return json.dumps({"error": self.message, "error_type": self.error_type})


class ValidationFailure(Exception):
    """TGI's input validation error; with streaming it arrives in-band with HTTP 200.

    ``mode`` and ``stream`` are filled in by :func:`parse_request` so the
    caller can answer in the request's own format.
    """

    mode: Literal["generate", "chat"] = "generate"
    stream: bool = True


@dataclass
class GenerationRequest:
    mode: Literal["generate", "chat"]
    prompt: str
    stream: bool
    max_new_tokens: int
    input_tokens: int
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    details: bool = False
    return_full_text: bool = True
    #: The checked ``parameters.grammar`` (``grammar.py``); ``None``: unconstrained.
    grammar: dict[str, Any] | None = None
    #: ``parameters.top_n_tokens``: the most likely alternatives listed with each token (``top_tokens``).
    top_n_tokens: int = 0
    version: tuple[int, ...] = tuple(int(part) for part in TGI_VERSION.split("."))


def parse_request(body: bytes, max_total_tokens: int, chat_template: bool = True,
                  version: str = TGI_VERSION) -> GenerationRequest:
    """Parse and validate a request body as TGI ``version`` does; raises :class:`BodyRejected` or
    :class:`ValidationFailure`.

    Without ``chat_template`` (the model's tokenizer ships none), TGI refuses Messages payloads."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BodyRejected(422, f"Failed to deserialize the JSON body into the target type: {exc}") from None
    if not isinstance(payload, dict):
        raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: expected a JSON object")
    chat = "messages" in payload
    if chat and not chat_template:
        raise BodyRejected(422, "Template error: template not found", "template_error")
    numbers = tuple(int(part) for part in version.split("."))
    try:
        request = _parse_chat(payload, max_total_tokens) if chat else _parse_generate(payload, max_total_tokens,
                                                                                     numbers)
        request.version = numbers
        return request
    except ValidationFailure as failure:
        failure.mode = "chat" if chat else "generate"
        failure.stream = bool(payload.get("stream"))
        raise


#: The Rust types of the fields TGI's router deserializes (``GenerateParameters``, ``GenerateRequest``,
#: ``ChatRequest``): serde refuses a JSON value of another type with 422 before any validation runs.
_FIELD_TYPES: dict[str, str] = {
    "best_of": "usize", "temperature": "f32", "repetition_penalty": "f32", "frequency_penalty": "f32",
    "top_k": "i32", "top_p": "f32", "typical_p": "f32", "do_sample": "bool", "max_new_tokens": "u32",
    "return_full_text": "bool", "stop": "a sequence", "truncate": "usize", "watermark": "bool", "details": "bool",
    "decoder_input_details": "bool", "seed": "u64", "top_n_tokens": "u32", "stream": "bool", "max_tokens": "u32",
}
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "f32": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "i32": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "a sequence": lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
}
_UNSIGNED = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731


def _check_types(fields: dict[str, Any], prefix: str = "") -> None:
    for name, value in fields.items():
        rust_type = _FIELD_TYPES.get(name)
        if rust_type is None or value is None:
            continue
        if not _JSON_TYPES.get(rust_type, _UNSIGNED)(value):
            raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: "
                               f"{prefix}{name}: invalid type: {_json_type(value)}, expected {rust_type}")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, str):
        return f"string {json.dumps(value[:32])}"
    if isinstance(value, list | dict):
        return "sequence" if isinstance(value, list) else "map"
    return f"{'floating point' if isinstance(value, float) else 'integer'} `{value!r}`"[:48]


def _parse_generate(payload: dict[str, Any], max_total_tokens: int, version: tuple[int, ...]) -> GenerationRequest:
    inputs = payload.get("inputs")
    if not isinstance(inputs, str):
        raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: "
                                "`parameters` must be an object")
    _check_types({"stream": payload.get("stream")})
    _check_types(params, "parameters.")
    stream = bool(payload.get("stream"))
    _validate_sampling(params)
    input_tokens, max_new_tokens = _token_budget(inputs, params.get("max_new_tokens"), max_total_tokens)
    if stream and params.get("best_of") not in (None, 1):
        raise ValidationFailure("`best_of` != 1 is not supported when streaming tokens")
    if stream and params.get("decoder_input_details"):
        raise ValidationFailure("`decoder_input_details` == true is not supported when streaming tokens")
    top_n_tokens = params.get("top_n_tokens") or 0
    if top_n_tokens > MAX_TOP_N_TOKENS:
        raise ValidationFailure(f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {top_n_tokens}")
    grammar = None
    if params.get("grammar") is not None and version >= GRAMMAR_SINCE:
        try:
            grammar = guided.checked(params["grammar"])
        except guided.GrammarRefused as refused:
            if refused.deserialize:
                raise BodyRejected(422, f"Failed to deserialize the JSON body into the target type: {refused}") \
                    from None
            raise ValidationFailure(str(refused)) from None
    return GenerationRequest(
        grammar=grammar,
        top_n_tokens=top_n_tokens,
        mode="generate",
        prompt=inputs,
        stream=stream,
        stop=_stop_sequences(params.get("stop")),
        seed=params.get("seed"),
        details=bool(params.get("details")),
        return_full_text=bool(params.get("return_full_text", True)),
        input_tokens=input_tokens,
        max_new_tokens=max_new_tokens,
    )


def _parse_chat(payload: dict[str, Any], max_total_tokens: int) -> GenerationRequest:
    messages = payload["messages"]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: invalid `messages`")
    _check_types({name: value for name, value in payload.items() if name != "stop"})
    _validate_sampling({k: payload.get(k) for k in ("top_p",)})
    temperature = payload.get("temperature")
    if temperature is not None and temperature < 0:
        raise ValidationFailure("`temperature` must be strictly positive")
    prompt = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    input_tokens, max_new_tokens = _token_budget(prompt, payload.get("max_tokens"), max_total_tokens)
    return GenerationRequest(
        mode="chat",
        prompt=prompt,
        stream=bool(payload.get("stream")),
        stop=_stop_sequences(payload.get("stop")),
        seed=payload.get("seed"),
        input_tokens=input_tokens,
        max_new_tokens=max_new_tokens,
    )


def _validate_sampling(params: dict[str, Any]) -> None:
    checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
        ("temperature", lambda v: v > 0, "`temperature` must be strictly positive"),
        ("top_p", lambda v: 0 < v < 1, "`top_p` must be > 0.0 and < 1.0"),
        ("top_k", lambda v: v > 0, "`top_k` must be strictly positive"),
        ("repetition_penalty", lambda v: v > 0, "`repetition_penalty` must be strictly positive"),
        ("typical_p", lambda v: 0 < v < 1, "`typical_p` must be > 0.0 and < 1.0"),
    )
    for name, valid, message in checks:
        value = params.get(name)
        if value is not None and not valid(value):
            raise ValidationFailure(message)


def _stop_sequences(stop: object) -> list[str]:
    if stop is None or isinstance(stop, str | list):
        sequences = [stop] if isinstance(stop, str) else list(stop or [])
    else:
        raise BodyRejected(422, "Failed to deserialize the JSON body into the target type: `stop` must be a list")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise ValidationFailure(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(sequences)}")
    return [s for s in sequences if isinstance(s, str) and s]


def _token_budget(prompt: str, max_new_tokens: object, max_total_tokens: int) -> tuple[int, int]:
    """(input tokens, max new tokens), as TGI's validation computes and checks them."""
    input_tokens = count_tokens(prompt)
    if input_tokens == 0:
        raise ValidationFailure("`inputs` cannot be empty")
    if max_new_tokens is None:
        max_new_tokens = max(max_total_tokens - input_tokens, 1)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValidationFailure("`max_new_tokens` must be strictly positive")
    if input_tokens + max_new_tokens > max_total_tokens:
        raise ValidationFailure(
            f"`inputs` tokens + `max_new_tokens` must be <= {max_total_tokens}. "
            f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )
    return input_tokens, max_new_tokens


def generate(request: GenerationRequest) -> Iterator[tuple[Token, str | None]]:
    """Each generated token with the finish reason it ends on (``None`` while generation goes on)."""
    text = ""
    guided_text = guided.answer_text(request.grammar, request.prompt) if request.grammar else None
    tokens = text_tokens(guided_text) if guided_text is not None else answer_tokens(request.prompt, request.seed)
    for count, token in enumerate(tokens, start=1):
        if token is EOS:
            yield token, "eos_token"
            return
        text += token.text
        tail = text[-(max((len(s) for s in request.stop), default=0) + len(token.text)) :]
        if any(s in tail for s in request.stop):
            yield token, "stop_sequence"
            return
        if count >= request.max_new_tokens:
            yield token, "length"
            return
        yield token, None



def visible_tokens(request: GenerationRequest) -> list[tuple[int, str]]:
    """(position among the generated tokens, text) of each token a client sees: not special, not empty."""
    return [(index, token.text) for index, (token, _) in enumerate(generate(request))
            if token.text and not token.special]

def top_tokens(chosen: Token, count: int) -> list[dict[str, Any]]:
    """The ``count`` most likely tokens at this step, the chosen one first (sampling may pick another; the
    emulator's never does), the rest each less likely than the one before."""
    alternatives = [chosen, *(Token(id=(chosen.id + step) % VOCAB_SIZE, text=f"{chosen.text.strip() or '_'}{step}",
                                    logprob=round(chosen.logprob - step * 0.7, 2)) for step in range(1, count))]
    return [{"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}
            for token in alternatives]


def sse(event: object) -> bytes:
    return b"data:" + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class EventRenderer:
    """Renders one request's events as TGI's generate stream or its Messages API stream."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self._created = int(time.time())
        self._text: list[str] = []

    def token(self, index: int, token: Token, finish_reason: str | None) -> bytes:
        if not token.special:
            self._text.append(token.text)
        if self.request.mode == "chat":
            return self._chat_chunk(token, finish_reason)
        generated_text = None
        details = None
        if finish_reason is not None:
            generated_text = "".join(self._text)
            if self.request.return_full_text:
                generated_text = self.request.prompt + generated_text
            if self.request.details:
                details = {"finish_reason": finish_reason, "generated_tokens": index, "seed": self.request.seed}
                if self.request.version >= INPUT_LENGTH_SINCE:
                    details["input_length"] = self.request.input_tokens
        token_json = {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}
        event = {"index": index, "token": token_json, "generated_text": generated_text, "details": details}
        if self.request.top_n_tokens:  # TGI leaves the field out when none are asked for
            event["top_tokens"] = top_tokens(token, self.request.top_n_tokens)
        return sse(event)

    def _chat_chunk(self, token: Token, finish_reason: str | None) -> bytes:
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": "" if token.special else token.text},
            "logprobs": None,
            "finish_reason": _CHAT_FINISH.get(finish_reason or ""),
        }
        chunk = {
            "object": "chat.completion.chunk",
            "id": "",
            "created": self._created,
            "model": "tgi",
            "system_fingerprint": f"{TGI_VERSION}-native",
            "choices": [choice],
            "usage": None,
        }
        return sse(chunk)

    def end(self) -> bytes:
        return b"data:[DONE]\n\n" if self.request.mode == "chat" else b""

    def error(self, message: str, error_type: str) -> bytes:
        return error_event(self.request.mode, message, error_type)

    def whole_body(self) -> tuple[bytes, int]:
        """The whole answer as one body, and how many tokens it holds: what TGI answers without
        ``"stream": true``, or the streamed events buffered (what InvokeEndpoint returns for a streamed payload)."""
        generated = list(generate(self.request))
        if self.request.stream:
            events = [self.token(index, token, finish) for index, (token, finish) in enumerate(generated, start=1)]
            return b"".join(events) + self.end(), len(generated)
        return self._non_streaming_body(generated), len(generated)

    def _non_streaming_body(self, generated: list[tuple[Token, str | None]]) -> bytes:
        """A ``chat.completion`` for a Messages payload; ``[{"generated_text", "details"?}]`` otherwise."""
        text = "".join(token.text for token, _ in generated if not token.special)
        finish_reason = generated[-1][1] or "length"
        if self.request.mode == "chat":
            usage = {"prompt_tokens": self.request.input_tokens, "completion_tokens": len(generated),
                     "total_tokens": self.request.input_tokens + len(generated)}
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": _CHAT_FINISH.get(finish_reason)}
            return json.dumps({"object": "chat.completion", "id": "", "created": self._created, "model": "tgi",
                               "system_fingerprint": f"{TGI_VERSION}-native", "choices": [choice],
                               "usage": usage}, ensure_ascii=False).encode("utf-8")
        answer: dict[str, Any] = {"generated_text": self.request.prompt + text if self.request.return_full_text
                                  else text}
        if self.request.details:
            answer["details"] = {"finish_reason": finish_reason, "generated_tokens": len(generated),
                                 "seed": self.request.seed, "prefill": [], "tokens": []}
        return json.dumps([answer], ensure_ascii=False).encode("utf-8")


def refusal(failure: ValidationFailure) -> tuple[int, str, bytes]:
    """Input validation: the status and message without streaming, the in-band event when streaming."""
    message = f"Input validation error: {failure}"
    return 422, message, error_event(failure.mode, message, "validation")


def error_event(mode: Literal["generate", "chat"], message: str, error_type: str) -> bytes:
    """An in-band error in TGI's generate format or its Messages API format."""
    if mode == "chat":
        status = 422 if error_type == "validation" else 424
        return sse({"error": {"message": message, "http_status_code": status}})
    return sse({"error": message, "error_type": error_type})
