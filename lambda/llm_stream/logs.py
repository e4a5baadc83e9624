"""One structured JSON line per request on stdout (CloudWatch Logs in Lambda)."""

from __future__ import annotations

import json
import logging
import sys

from .metrics import emf_fields
from .settings import Settings
from .stats import RequestStats

_logger = logging.getLogger("llm_stream.requests")


class _StdoutHandler(logging.Handler):
    """Writes each record to whatever ``sys.stdout`` is at the time (it may be replaced after start-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


# Configured once, when the module is first imported: the lines are the function's own output,
# whatever else (uvicorn, a test) does with logging.
_logger.addHandler(_StdoutHandler())
_logger.setLevel(logging.INFO)
_logger.propagate = False


def request_record(stats: RequestStats, settings: Settings) -> dict[str, object]:
    """The request's log line; its EMF fields make CloudWatch extract the metrics from it."""
    record: dict[str, object] = {
        "event": "request",
        "request_id": stats.request_id,
        "method": stats.method,
        "path": stats.path,
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
    if stats.consumer is not None:
        record["consumer"] = stats.consumer
        record["prompt_tokens"] = stats.input_tokens
    if stats.limits_detail is not None:
        record["limits"] = stats.limits_detail
    if stats.user is not None:
        record["user"] = stats.user
    if stats.error_detail is not None:
        record["error_detail"] = stats.error_detail
    if stats.traceback is not None:
        record["traceback"] = stats.traceback
    if settings.log_prompts and stats.prompt is not None:
        record["prompt"] = stats.prompt
    if not stats.metered:  # the page, health checks, unknown routes: logged, not counted as streams
        return record
    return {**record, **emf_fields(stats, settings.metrics_namespace, settings.service_name,
                                   per_model=bool(settings.served_models))}


def log_request(stats: RequestStats, settings: Settings) -> None:
    log_event(request_record(stats, settings))


#: Characters JSON may carry raw but some readers take as a line break or a terminal control (U+0085 and
#: the other C1 controls, U+2028, U+2029): written as escapes, so one record is always one line, whatever a
#: path or a ``user`` field holds.
_LINE_BREAKERS = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029)}


def log_event(record: dict[str, object]) -> None:
    """One JSON line: a request's (``event: request``) or something an operator must know about."""
    _logger.info(json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKERS))
