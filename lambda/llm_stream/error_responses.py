"""The one place an :class:`~llm_stream.errors.ApiError` becomes the caller's answer, and the request's record.

The OpenAI error shape on the OpenAI-compatible routes (``/v1/...``), the function's own elsewhere; the
error's type and detail go to the request's log line. Routes raise; the app's exception handler, the key
gate and the whole-answer path all answer through here.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Scope

from .errors import ApiError
from .lifecycle import request_stats
from .openai_responses import openai_error

OPENAI_PREFIX = "/v1/"


def error_response(error: ApiError, scope: Scope) -> JSONResponse:
    stats = request_stats(scope)
    stats.error_type, stats.error_detail = error.error_type, error.detail
    if scope["path"].startswith(OPENAI_PREFIX):
        return openai_error(error, stats.request_id)
    return error.response(stats.request_id)
