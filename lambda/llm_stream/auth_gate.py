"""api_key auth: an ASGI middleware that refuses a request without a valid key before any route runs.

It sits inside :class:`~llm_stream.lifecycle.RequestLifecycle` (so a refusal is logged like any request)
and in front of every route, so no route can forget it: nothing of the body is read and the endpoint is
never called for a refused request. Open without a key: ``GET``/``HEAD`` of ``/healthz`` (the Web
Adapter's readiness check) and of the page's files, which hold no secret.

A key comes as ``Authorization: Bearer <key>`` (what the OpenAI SDKs send) or ``x-api-key: <key>``.
The key's name becomes the request's ``consumer`` (log line, metrics); the key itself goes nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .api_keys import KeyRecord
from .error_responses import error_response
from .errors import ApiError
from .key_accounting import KEY_RECORD_STATE
from .key_store import KeyStore
from .lifecycle import request_stats
from .model_routing import may_use

_OPEN_METHODS = ("GET", "HEAD")
HOW_TO_SEND = "send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"


class ApiKeyGate:
    def __init__(self, app: ASGIApp, store: KeyStore, open_paths: Iterable[str], realm: str,
                 model_ids: tuple[str, ...]) -> None:
        self.app = app
        self.store = store
        self.open_paths = frozenset(open_paths)
        self.realm = realm
        self.model_ids = model_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] in _OPEN_METHODS and scope["path"] in self.open_paths):
            await self.app(scope, receive, send)
            return
        stats = request_stats(scope)
        try:
            record = await self._record(Headers(scope=scope))
        except ApiError as refusal:  # logged like any request, with its error_type; not metered as a stream
            await error_response(refusal, scope)(scope, receive, send)
            return
        stats.consumer = record.name
        scope["state"][KEY_RECORD_STATE] = record  # its limits, for admission (key_accounting.py)
        await self.app(scope, receive, send)

    async def _record(self, headers: Headers) -> KeyRecord:
        """The record of the key the request carries; :class:`ApiError` when there is no valid one."""
        presented = _presented_keys(headers)
        if None in presented:
            raise self._unauthorized("invalid_api_key",
                                     f"the API key is not in a form this function reads: {HOW_TO_SEND}")
        if not presented:
            raise self._unauthorized("missing_api_key", f"this function needs an API key: {HOW_TO_SEND}",
                                     invalid=False)
        if len(presented) > 1:
            raise self._unauthorized("invalid_api_key", "the request carries more than one different API key")
        ring = await self.store.ring()
        if ring is None:
            raise ApiError(503, "key_store_unavailable", "API keys cannot be checked right now; try again shortly",
                           headers={"retry-after": str(self.store.retry_after_seconds())},
                           detail=f"no key document young enough from {self.store.source.description}")
        record = ring.find(str(presented.pop()))
        if record is None:
            raise self._unauthorized("invalid_api_key", "the API key is not valid (unknown or revoked)")
        now = datetime.now(UTC)
        if record.expired(now):
            raise self._unauthorized("expired_api_key", "the API key has expired: ask the operators for a new one",
                                     detail=f"key {record.name!r} expired at {record.expires_at}")
        if not any(may_use(record.allowed_models, model_id) for model_id in self.model_ids):
            raise ApiError(403, "model_not_allowed", f"this API key may not use {', '.join(self.model_ids)}, the "
                           "model(s) served here", detail=f"key {record.name!r} is allowed "
                           f"{list(record.allowed_models or ())}")
        return record  # which of several models it may call: model_routing.py, where the request's model is known

    def _unauthorized(self, error_type: str, message: str, invalid: bool = True,
                      detail: str | None = None) -> ApiError:
        # RFC 6750 section 3: a request with no token gets the bare challenge; a bad token, error="invalid_token".
        challenge = f'Bearer realm="{self.realm}"' + (', error="invalid_token"' if invalid else "")
        return ApiError(401, error_type, message, headers={"www-authenticate": challenge}, detail=detail)


def _presented_keys(headers: Headers) -> set[str | None]:
    """The distinct keys the request carries; ``None`` stands for a credential in another form (another
    ``Authorization`` scheme, such as a SigV4 signature or a bare key, or a key that is not printable ASCII,
    which no issued key is)."""
    keys: set[str | None] = {value.strip() for value in headers.getlist("x-api-key") if value.strip()}
    for value in headers.getlist("authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            keys.add(token.strip())
        elif value.strip():
            keys.add(None)
    return {key if key is None or _printable_ascii(key) else None for key in keys}


def _printable_ascii(key: str) -> bool:
    return key.isascii() and key.isprintable()

