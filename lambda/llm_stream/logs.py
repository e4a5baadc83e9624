"""One structured JSON line per request on stdout (CloudWatch Logs in Lambda)."""

from __future__ import annotations

import json
import logging
import sys

from .responses import StreamStats

_logger = logging.getLogger("llm_stream.requests")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of each record (it may be replaced after start-up)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _configure() -> None:
    if not _logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        _logger.addHandler(handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False


def request_record(stats: StreamStats, log_prompts: bool) -> dict[str, object]:
    record: dict[str, object] = {
        "event": "request",
        "request_id": stats.request_id,
        "model": stats.model_id,
        "kind": stats.kind,
        "status": stats.status,
        "input_chars": stats.input_chars,
        "max_new_tokens": stats.max_new_tokens,
        "tokens": stats.tokens,
        "ttft_ms": stats.ttft_ms(),
        "duration_ms": stats.duration_ms(),
        "finish_reason": stats.finish_reason,
        "error_type": stats.error_type,
        "client_disconnected": stats.client_disconnected,
    }
    if log_prompts and stats.prompt is not None:
        record["prompt"] = stats.prompt
    return record


def log_request(stats: StreamStats, log_prompts: bool) -> None:
    _configure()
    _logger.info(json.dumps(request_record(stats, log_prompts), ensure_ascii=False))
