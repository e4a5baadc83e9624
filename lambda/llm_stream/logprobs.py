"""Token log probabilities: what a caller may ask for, what the container is asked, and OpenAI's shapes.

* Chat (``logprobs: true``, ``top_logprobs`` 0 to :data:`MAX_TOP_LOGPROBS`) -> each chunk's
  ``logprobs.content``: ``{token, logprob, bytes, top_logprobs}`` per token.
* Completions (``logprobs`` 0 to :data:`MAX_TOP_LOGPROBS`) -> ``{tokens, token_logprobs, top_logprobs,
  text_offset}``.
* Responses API (``include: ["message.output_text.logprobs"]``, ``top_logprobs``) -> each
  ``response.output_text.delta``'s ``logprobs`` and the output text's, in chat's entry shape.

The container's own numbers, read from its stream (``tokens.ScoredText``): TGI's ``token.logprob`` and, with
``parameters.top_n_tokens``, its ``top_tokens``; LMI's ``log_prob`` (the chosen token's only: asking for
alternatives there is refused). Tokens held back and then dropped (a stop sequence) are not listed.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .settings import Settings
from .tokens import ScoredText

#: TGI's default ``max_top_n_tokens`` (the launcher's): more alternatives than this are refused by its router.
MAX_TOP_LOGPROBS = 5


def requested(top: int | None, settings: Settings, param: str) -> int:
    """How many alternatives per token the caller asked for, checked against what the container can give."""
    top = top or 0
    if not settings.can("logprobs"):
        raise ApiError(400, "unsupported_parameter", f"`{param}` needs token log probabilities, which the container "
                       f"serving {settings.model_id} does not report", param=param)
    if top > MAX_TOP_LOGPROBS:
        raise ApiError(400, "validation_error", f"`{param}` asks for {top} alternatives per token; at most "
                       f"{MAX_TOP_LOGPROBS}", param=param)
    if top and not settings.can("top_logprobs"):
        raise ApiError(400, "unsupported_parameter", f"`{param}` asks for {top} alternatives per token; the container "
                       f"serving {settings.model_id} reports the chosen token's log probability only: send 0",
                       param=param)
    return top


def with_top_tokens(parameters: dict[str, Any], top: int | None) -> dict[str, Any]:
    """The container's parameters asking for ``top`` alternatives per token (TGI's ``top_n_tokens``)."""
    return {**parameters, "top_n_tokens": top} if top else parameters


def scored(tokens: list[str]) -> list[ScoredText]:
    """The tokens the container scored (a Messages API stream, or a placeholder token, has none)."""
    return [token for token in tokens if isinstance(token, ScoredText) and token.logprob is not None]


def chat_content(tokens: list[str]) -> list[dict[str, Any]]:
    """Chat's ``logprobs.content`` for these tokens."""
    return [{"token": str(token), "logprob": token.logprob, "bytes": list(token.encode()),
             "top_logprobs": [{"token": text, "logprob": value, "bytes": list(text.encode())}
                              for text, value in token.top]}
            for token in scored(tokens)]


def completion_logprobs(tokens: list[str], offset: int) -> dict[str, Any]:
    """The completions API's ``logprobs`` for these tokens, the first starting at character ``offset``."""
    listed = scored(tokens)
    offsets, position = [], offset
    for token in listed:
        offsets.append(position)
        position += len(token)
    return {"tokens": [str(token) for token in listed], "token_logprobs": [token.logprob for token in listed],
            "top_logprobs": [dict(token.top) for token in listed], "text_offset": offsets}
