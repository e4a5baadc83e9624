"""Errors the function answers with before the stream starts: an HTTP status and a JSON body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Answered as ``{"error": {"type": ..., "message": ...}}`` with ``status``."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message}}
