"""What a conversation or a completion becomes for the model's container: one prompt and its parameters.

Shared by ``POST /`` (``messages``) and the OpenAI-compatible routes, so a conversation is rendered
and sampled the same way whichever door it came through (the rules: ``openai_payloads.py``), and the
parameters are named as the model's container family names them (``families/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .chat_formats import FORMATS, ChatFormat, ConversationError, Turn
from .errors import ApiError
from .families import ContainerFamily
from .settings import NO_CHAT_FORMAT, Settings

#: TGI's default ``max_stop_sequences``, and OpenAI's limit; LMI sets none, the same cap keeps one contract.
MAX_STOP_SEQUENCES = 4


def render_conversation(turns: Sequence[Turn], settings: Settings, status: int = 422) -> tuple[str, ChatFormat]:
    """The model's prompt for these turns, and its chat format (whose stop and newline the answer needs)."""
    if settings.chat_format == NO_CHAT_FORMAT:
        raise ApiError(status, "model_not_chat", f"{settings.model_id} is a base model without a chat format; "
                       "send a prompt instead (`inputs`, or /v1/completions), or deploy a chat model",
                       param="messages")
    if not any(turn.content.strip() for turn in turns):
        raise ApiError(status, "validation_error", "at least one message must contain text", param="messages")
    chat_format = FORMATS[settings.chat_format]
    try:
        return chat_format.render(turns), chat_format
    except ConversationError as exc:
        raise ApiError(status, "validation_error", str(exc), param="messages") from None


def sampling_parameters(family: ContainerFamily, max_new_tokens: int, temperature: float | None,
                        top_p: float | None, stop: str | Sequence[str] | None, format_stops: Sequence[str],
                        seed: int | None, status: int = 422) -> dict[str, Any]:
    """The container's parameters for OpenAI-style sampling fields.

    ``temperature`` 0 is greedy (``do_sample: false``; TGI refuses a zero temperature, LMI forces
    greedy without ``do_sample``); absent samples at the container's default 1.0; ``top_p`` 1 means
    no nucleus sampling (TGI refuses 1.0), so it is left out; the caller's stops (one or a list) come
    first, the chat format's after.
    """
    all_stops = [*([stop] if isinstance(stop, str) else stop or ()), *format_stops]
    if len(all_stops) > MAX_STOP_SEQUENCES:
        raise ApiError(status, "validation_error", f"`stop` takes at most {MAX_STOP_SEQUENCES - len(format_stops)} "
                       "sequences with this model (its chat format uses the rest)", param="stop")
    parameters: dict[str, Any] = {"max_new_tokens": max_new_tokens, "details": True, "do_sample": temperature != 0}
    if family.send_return_full_text:
        parameters["return_full_text"] = False
    if temperature:
        parameters["temperature"] = temperature
    if top_p is not None and top_p < 1:
        parameters["top_p"] = top_p
    if all_stops:
        parameters[family.stop_parameter] = all_stops
    if seed is not None:
        parameters["seed"] = seed
    return parameters
