"""Errors the function answers with before the stream starts: an HTTP status and a JSON body.

What a caller sees is safe to show anyone: a type, a short message and the request id. What only
an operator should see (ARNs, account ids, URLs, the container's own text) is the ``detail``,
which goes to the request's log line and nowhere else.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Answered as ``{"error": {"type", "message", "request_id"}}`` with ``status``."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None,
                 detail: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}
        self.detail = detail
        #: The request field at fault, where one is (the OpenAI-compatible routes report it).
        self.param = param

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.error_type, self.message, request_id)

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse(self.body(request_id), status_code=self.status,
                            headers={**self.headers, "x-request-id": request_id})


def error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "request_id": request_id}}


#: What a caller learns of a bug: only that it happened (the request id says which request it was).
INTERNAL_ERROR_MESSAGE = "the function failed unexpectedly; quote the request id to its operators"


def internal_error(detail: str | None = None) -> ApiError:
    """A bug, as an error answer; ``detail`` (the traceback) is for the log."""
    return ApiError(500, "internal_error", INTERNAL_ERROR_MESSAGE, detail=detail)
