"""What one request did, from its arrival to its last byte: the source of its log line and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RequestStats:
    """What one request did; logged once at its end (``lifecycle.py``)."""

    request_id: str
    method: str = ""
    path: str = ""
    started: float = field(default_factory=time.monotonic)
    model_id: str = ""
    #: Whether the request counts in the stream API's metrics (set by the streaming route).
    metered: bool = False
    kind: str | None = None
    input_chars: int | None = None
    max_new_tokens: int | None = None
    status: int = 200
    first_token_at: float | None = None
    tokens: int = 0
    finish_reason: str | None = None
    generated_tokens: int | None = None
    #: The prompt's length in tokens, as the container counted it (None when it did not say).
    input_tokens: int | None = None
    error_type: str | None = None
    #: What went wrong, for operators only: upstream text, ARNs, URLs. Never sent to the caller.
    error_detail: str | None = None
    #: The traceback of an unexpected exception (a bug), for operators only.
    traceback: str | None = None
    client_disconnected: bool = False
    #: The name of the API key the request came with (api_key auth), never the key.
    consumer: str | None = None
    #: The OpenAI ``user`` field, for the operators (never sent upstream).
    user: str | None = None
    prompt: str | None = None
    #: The key's limits could not be checked (its table did not answer in time); what happened instead.
    limits_unavailable: bool = False
    limits_detail: str | None = None

    def ttft_ms(self) -> float | None:
        return None if self.first_token_at is None else round((self.first_token_at - self.started) * 1000, 1)

    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)
