"""The function's request log lines, captured as they are emitted."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any


class LogRecords(list[dict[str, Any]]):
    """Request log lines as they are emitted (the last one comes after the response has ended)."""

    def wait_for(self, count: int, timeout: float = 5.0) -> LogRecords:
        deadline = time.monotonic() + timeout
        while len(self) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self


@contextlib.contextmanager
def collect_request_logs() -> Iterator[LogRecords]:
    """The function's request log lines, parsed, while the block runs."""
    records = LogRecords()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(record.getMessage()))

    logger = logging.getLogger("llm_stream.requests")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
