"""Sample container outputs, written out by hand in each format, and helpers to chunk them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence

import pytest

from llm_stream.tokens import StreamError


def sse_line(event: object, space: bool = False) -> bytes:
    prefix = b"data: " if space else b"data:"
    return prefix + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def tgi_token(index: int, text: str, special: bool = False) -> dict:
    return {
        "index": index,
        "token": {"id": 1000 + index, "text": text, "logprob": -0.25, "special": special},
        "generated_text": None,
        "details": None,
    }


def tgi_final(
    index: int, text: str, generated_text: str, finish_reason: str = "eos_token", special: bool = True
) -> dict:
    event = tgi_token(index, text, special)
    event["generated_text"] = generated_text
    event["details"] = {"finish_reason": finish_reason, "generated_tokens": index, "seed": None, "input_length": 7}
    return event


#: What the answer reads, token by token: Chinese, an emoji announced by an empty
#: partial-byte token, and a special EOS at the end.
TGI_TEXTS = ["建立", "网站", "可以", "是一个", " simple", " process", "", "🚀", "!"]
TGI_EXPECTED = [t for t in TGI_TEXTS if t]


def tgi_stream(texts: Sequence[str] = TGI_TEXTS, space: bool = False, details: bool = True) -> bytes:
    events = [sse_line(tgi_token(i, t), space) for i, t in enumerate(texts, start=1)]
    final = tgi_final(len(texts) + 1, "<|endoftext|>", "".join(texts))
    if not details:
        final["details"] = None
    return b"".join(events) + sse_line(final, space)


def chat_chunk(content: str | None, finish_reason: str | None = None) -> dict:
    delta = {"role": "assistant"} if content is None else {"role": "assistant", "content": content}
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": 1732400000,
        "model": "tgi",
        "system_fingerprint": "2.4.0-native",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def messages_stream(texts: Sequence[str] = TGI_TEXTS, done: bool = True) -> bytes:
    chunks = [sse_line(chat_chunk(t)) for t in texts] + [sse_line(chat_chunk("", "stop"))]
    return b"".join(chunks) + (b"data:[DONE]\n\n" if done else b"")


def lmi_stream(texts: Sequence[str] = TGI_TEXTS, trailing_newline: bool = False) -> bytes:
    lines = [json.dumps({"token": {"id": i, "text": t, "log_prob": -0.3}}, ensure_ascii=False)
             for i, t in enumerate(texts)]
    final = {
        "token": {"id": 2, "text": "</s>", "log_prob": -0.1, "special_token": True},
        "generated_text": "".join(texts),
        "details": {"finish_reason": "eos_token", "generated_tokens": len(texts) + 1},
    }
    lines.append(json.dumps(final, ensure_ascii=False))
    return ("\n".join(lines) + ("\n" if trailing_newline else "")).encode()


#: LMI's (DJL Serving 0.28) error shapes: a request it could not parse (``{"code": 424, "error": ...}``, no
#: newline) and a failure during generation (the last token line, ``finish_reason: "error"``, no message).
def lmi_pre_inference_error(message: str = "") -> bytes:
    return json.dumps({"code": 424, "error": message}).encode()


def lmi_error_line(generated_text: str, generated_tokens: int) -> bytes:
    line = {"token": {"id": -1, "text": "", "log_prob": -1, "special_token": True}, "generated_text": generated_text,
            "details": {"finish_reason": "error", "generated_tokens": generated_tokens, "inputs": "Hi"}}
    return json.dumps(line).encode() + b"\n"


def as_parts(data: bytes, cuts: Sequence[int] = ()) -> Iterator[dict]:
    """PayloadPart events whose boundaries fall at ``cuts``."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    for start, end in itertools.pairwise(bounds):
        yield {"PayloadPart": {"Bytes": data[start:end]}}


def fixed_size_parts(data: bytes, size: int) -> Iterator[dict]:
    for start in range(0, len(data), size):
        yield {"PayloadPart": {"Bytes": data[start : start + size]}}


def collect_until_error(tokens: Iterable[str]) -> tuple[list[str], StreamError]:
    """The tokens that arrived before the stream failed, and its :class:`StreamError` (which must come)."""
    seen: list[str] = []
    with pytest.raises(StreamError) as raised:
        seen.extend(tokens)  # keeps what arrived before the error
    return seen, raised.value
