"""Several models behind one URL: the request's ``model`` field picks the model, and with it the settings its
request is validated with and sent by (its container family, chat format, caps, inference component:
``Settings.for_model``). A request that names none goes to the default model (the first served); one that
names a model not served is a 404 ``model_not_found`` naming those that are; a key restricted to other models
(``allowed_models``) gets a 403 ``model_not_allowed``. Both before anything reaches the endpoint.
"""

from __future__ import annotations

from starlette.types import Scope

from .errors import ApiError
from .json_body import load_json
from .key_accounting import key_record
from .lifecycle import request_stats
from .settings import Settings

#: Where the request's routed settings are kept (``scope["state"]``).
ROUTED_KEY = "llm_stream.model_settings"


#: What the log line, the metrics and the ledger name for a request whose model is not served (never the
#: caller's own string: it would make a metric dimension per string).
UNKNOWN_MODEL = "(unknown)"


def route(scope: Scope, settings: Settings, raw: bytes) -> Settings:
    """The settings of the model the body names (or the default model's), kept in ``scope`` for the way to the
    endpoint; raises :class:`ApiError` 404 or 403. A deployment of one model routes nothing: it answers as it
    always did (the OpenAI routes' own check of ``model``, ``openai_payloads.validate_body``)."""
    if not settings.served_models:
        return settings
    requested = requested_model(raw)
    chosen = settings if requested is None else settings.for_model(requested)
    stats, record = request_stats(scope), key_record(scope)
    if chosen is None:
        stats.model_id = UNKNOWN_MODEL
        served = ", ".join(repr(model) for model in usable_models(scope, settings))
        raise ApiError(404, "model_not_found", f"the model {str(requested)[:256]!r} is not served here; this "
                       f"deployment serves {served} (see /v1/models)", param="model")
    stats.model_id = chosen.model_id
    if record is not None and not may_use(record.allowed_models, chosen.model_id):
        raise ApiError(403, "model_not_allowed", f"this API key may not use {chosen.model_id}", param="model",
                       detail=f"key {record.name!r} is allowed {list(record.allowed_models or ())}")
    scope["state"][ROUTED_KEY] = chosen
    return chosen


def routed(scope: Scope, default: Settings) -> Settings:
    """The settings :func:`route` chose for this request."""
    chosen: Settings = scope["state"].get(ROUTED_KEY, default)
    return chosen


def usable_models(scope: Scope, settings: Settings) -> list[str]:
    """The models served here that the request's key may call (all of them, without keys)."""
    record = key_record(scope)
    return [model_id for model_id in settings.model_ids
            if record is None or may_use(record.allowed_models, model_id)]


def may_use(allowed_models: tuple[str, ...] | None, model_id: str) -> bool:
    """Whether a key restricted to ``allowed_models`` (``None``: unrestricted) may call ``model_id``."""
    return allowed_models is None or model_id in allowed_models


def requested_model(raw: bytes) -> str | None:
    """The body's ``model``, where it is a string; anything else is the route's own validation's to refuse."""
    try:
        data = load_json(raw)
    except ApiError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None
