"""What a DJL Serving 0.28 LMI container (``djl-inference:0.28.0-lmi10.0.0-cu124``, lmi-dist rolling batch)
does with a request, from djl-serving's source at tag v0.28.0 (``engines/python/setup/djl_python``):

* The body is ``{"inputs", "parameters", "stream"}`` (``utils._parse_inputs_params``). Unknown parameters
  are dropped with a warning (``rolling_batch.filter_unused_generation_params``); sampling needs
  ``do_sample: true`` (``lmi_dist_rolling_batch.translate_lmi_dist_params``), stops are ``stop_sequences``.
* A stream is JSON lines (``output_formatter._jsonlines_output_formatter``): ``{"token": {"id", "text",
  "log_prob"}}`` per token; the last line adds ``generated_text`` and, with ``details``, ``details``
  ``{"finish_reason", "generated_tokens", "inputs"}``. vLLM's ``stop`` is reported as ``eos_token``
  (``rolling_batch_vllm_utils.FINISH_REASON_MAPPER``); the EOS token's text is empty (vLLM skips
  special tokens when it detokenizes).
* A body it cannot parse fails before inference: with rolling batch the answer is HTTP 200 and one
  ``{"code":424,"error":"..."}`` (``huggingface.HuggingFaceService.inference``; the Java side does not
  turn the code into a status), without a newline, streamed or not.
* Sampling values vLLM refuses (``SamplingParams._verify_args``) raise inside the batch step, and
  ``rolling_batch.stop_on_any_exception`` ends *every* request in the batch (then resets it) with one last
  token ``{"id": -1, "text": "", "log_prob": -1, "special_token": true}`` and ``finish_reason: "error"``
  (no message). The emulator fails only the request at fault.
* A prompt longer than the window (``max_model_len``) is not refused: vLLM's scheduler marks it ignored
  and it ends at once with ``finish_reason: "length"`` and no text.

The emulator's own simplification: ``inputs`` must be one string (LMI also takes a list, a client-side
batch) and a chat-completions body (``messages``) is refused (the function never sends one to LMI).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import tgi
from .textgen import EOS, Token, count_tokens
from .tgi import GenerationRequest, ValidationFailure

STREAM_CONTENT_TYPE = "application/jsonlines"
#: The DJL Serving version the emulator stands for (it has no guided decoding: a ``grammar`` parameter is one of
#: the unknown ones lmi-dist drops).
LMI_VERSION = "0.28.0"
PRE_INFERENCE_STATUS = 424
#: vLLM 0.4's SamplingParams._verify_args, for the parameters lmi-dist passes on.
_SAMPLING_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("temperature", lambda v: v >= 0, "temperature must be non-negative"),
    ("top_p", lambda v: 0 < v <= 1, "top_p must be in (0, 1]"),
    ("top_k", lambda v: v == -1 or v >= 1, "top_k must be -1 (disable), or at least 1"),
    ("repetition_penalty", lambda v: 0 < v <= 2, "repetition_penalty must be in (0, 2]"),
    ("frequency_penalty", lambda v: -2 <= v <= 2, "frequency_penalty must be in [-2, 2]"),
    ("presence_penalty", lambda v: -2 <= v <= 2, "presence_penalty must be in [-2, 2]"),
    ("max_new_tokens", lambda v: v >= 1, "max_tokens must be at least 1"),
)
#: The last token of a request that failed inside the batch (``rolling_batch.stop_on_any_exception``).
FAILED = Token(id=-1, text="", special=True, logprob=-1)
#: What a request vLLM ignored (a prompt beyond the window) gets as its one token: no log_prob.
IGNORED = Token(id=-1, text="")
_IGNORED_TOKEN = {"id": -1, "text": "", "log_prob": None}


@dataclass
class LmiRequest(GenerationRequest):
    #: Why vLLM refuses the sampling parameters (the stream's only line is then an error line).
    sampling_error: str | None = None
    max_model_len: int = 4096


def parse_request(body: bytes, max_total_tokens: int, chat_template: bool = True,
                  version: str = LMI_VERSION) -> LmiRequest:
    """Parse a body as LMI does; raises :class:`ValidationFailure` (answered as LMI's 424 line) when it cannot."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ValidationFailure(str(exc)) from None
    if not isinstance(payload, dict):
        raise ValidationFailure("the body must be a JSON object")
    if "messages" in payload:
        raise ValidationFailure("the emulator's LMI mode takes {\"inputs\": ...} bodies, not chat completions")
    inputs, params = payload.get("inputs"), payload.get("parameters", {})
    if not isinstance(inputs, str) or not isinstance(params, dict):  # LMI itself fails later, inside the batch
        raise ValidationFailure("the emulator's LMI mode takes one string `inputs` and an object `parameters`")
    stops = params.get("stop_sequences") or []
    max_new_tokens = params.get("max_new_tokens", 30)  # lmi-dist's default
    return LmiRequest(
        mode="generate",
        prompt=inputs,
        stream=bool(payload.get("stream")),
        max_new_tokens=max_new_tokens if isinstance(max_new_tokens, int) else 30,
        input_tokens=count_tokens(inputs),
        stop=[stop for stop in stops if isinstance(stop, str) and stop] if isinstance(stops, list) else [],
        seed=params.get("seed"),
        details=bool(params.get("details")),
        return_full_text=bool(params.get("return_full_text", False)),
        sampling_error=_sampling_error(params),
        max_model_len=max_total_tokens,
    )


def _sampling_error(params: dict[str, Any]) -> str | None:
    for name, valid, message in _SAMPLING_RULES:
        value = params.get(name)
        if value is not None and (not isinstance(value, int | float) or not valid(value)):
            return message
    return None


def refusal(failure: ValidationFailure) -> tuple[int, str, bytes]:
    """A pre-inference failure: HTTP 200 whether streamed or not, and the one compact line."""
    message = str(failure)
    line = json.dumps({"code": PRE_INFERENCE_STATUS, "error": message}, separators=(",", ":"))
    return 200, message, line.encode("utf-8")


def generate(request: LmiRequest) -> Iterator[tuple[Token, str | None]]:
    """TGI's generation with LMI's finish reasons, ending where vLLM ends a request."""
    if request.sampling_error is not None:
        yield FAILED, "error"
        return
    if request.input_tokens > request.max_model_len:
        yield IGNORED, "length"
        return
    room = request.max_model_len - request.input_tokens
    for count, (token, finish_reason) in enumerate(tgi.generate(request), start=1):
        if token is EOS:
            yield Token(id=EOS.id, text="", logprob=EOS.logprob), "eos_token"
            return
        if finish_reason is None and count >= room:
            finish_reason = "length"
        yield token, {"stop_sequence": "eos_token"}.get(finish_reason or "", finish_reason)
        if finish_reason is not None:
            return


class EventRenderer:
    """One request's answer as LMI's JSON lines (or its one JSON object without ``"stream": true``)."""

    def __init__(self, request: LmiRequest) -> None:
        self.request = request
        self._text: list[str] = []

    def token(self, index: int, token: Token, finish_reason: str | None) -> bytes:
        self._text.append(token.text)
        # Token.as_dict: special_token only when set (here, on the failed request's last token).
        shown = {"id": token.id, "text": token.text, "log_prob": token.logprob, **({"special_token": True}
                                                                                  if token.special else {})}
        line: dict[str, Any] = {"token": _IGNORED_TOKEN if token is IGNORED else shown}
        if finish_reason is not None:
            line["generated_text"] = self._generated_text("".join(self._text))
            if self.request.details:
                line["details"] = {"finish_reason": finish_reason, "generated_tokens": index,
                                   "inputs": self.request.prompt}
            elif finish_reason == "error":
                line["details"] = {"finish_reason": "error"}
        return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"

    def _generated_text(self, text: str) -> str:
        return (self.request.prompt if self.request.return_full_text else "") + text

    def end(self) -> bytes:
        return b""

    def error(self, message: str, error_type: str) -> bytes:
        """A failure during generation: LMI's last line says ``error`` and nothing else about it."""
        return self.token(len(self._text) + 1, FAILED, "error")

    def whole_body(self) -> tuple[bytes, int]:
        generated = list(generate(self.request))
        if self.request.stream:
            lines = [self.token(index, token, finish) for index, (token, finish) in enumerate(generated, start=1)]
            return b"".join(lines), len(generated)
        answer: dict[str, Any] = {"generated_text": self._generated_text("".join(token.text for token, _ in generated))}
        if self.request.details:
            answer["details"] = {"finish_reason": generated[-1][1], "generated_tokens": len(generated),
                                 "inputs": self.request.prompt}
        return json.dumps(answer, ensure_ascii=False).encode("utf-8"), len(generated)
