"""``GET /openapi.json``: the API described for any tool, built from the request models on first request.

The request models (pydantic) are the schemas, so the document cannot drift from what is validated;
nothing of it is built on the way to ready (``preload.py``). No ``/docs`` or ``/redoc``: such pages load
their scripts from a third-party CDN, which the page's Content-Security-Policy forbids.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .openai_payloads import ChatCompletionRequest, CompletionRequest
from .payloads import ChatPayload, generate_payload
from .responses_api_payloads import ResponsesApiRequest
from .settings import READINESS_PATH, Settings

_REF = "#/components/schemas/{model}"
_STREAM_ERRORS = {
    "400": "invalid JSON, or not valid HTTP", "403": "foreign web origin", "408": "the body arrived too slowly",
    "413": "body or prompt too large", "415": "unsupported content type", "422": "invalid request",
    "429": "endpoint throttled", "431": "request head too large", "502": "model or upstream error",
    "503": "endpoint missing, overloaded or waking up, or every stream slot busy", "504": "endpoint timed out",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    container_payload = generate_payload(settings.family)  # the deployed container's own parameters
    _, definitions = models_json_schema(
        [(model, "validation") for model in (container_payload, ChatPayload, ChatCompletionRequest, CompletionRequest,
                                             ResponsesApiRequest)], ref_template=_REF)
    invoke = _post("invoke__post", "Stream an answer", [container_payload.__name__, "ChatPayload"], {
        "200": {"description": "token events then done or error (SSE), or the raw text",
                "content": {"text/event-stream": {}, "text/plain": {}}},
        **{status: {"description": description} for status, description in _STREAM_ERRORS.items()},
    })
    openai_answer = {"200": {"description": "the answer (JSON), or its chunks (SSE) with stream: true",
                             "content": {"application/json": {}, "text/event-stream": {}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM streaming function",
                 "summary": f"Streams {', '.join(settings.model_ids)} token by token", "version": "0.1.0"},
        "paths": {
            READINESS_PATH: {"get": _get("healthz_healthz_get", "Readiness: never calls the endpoint; says which "
                                         "auth mode is in force", {"type": "object",
                                                                   "additionalProperties": {"type": "string"}})},
            "/": {"post": invoke},
            "/v1/models": {"get": _get("models_v1_models_get",
                                       "The models served here (those the key may call), as OpenAI lists models",
                                       {"type": "object", "additionalProperties": True})},
            "/v1/chat/completions": {"post": _post("chat_completions_v1_chat_completions_post",
                                                   "OpenAI-compatible chat (streamed or not)",
                                                   ["ChatCompletionRequest"], openai_answer)},
            "/v1/completions": {"post": _post("completions_v1_completions_post",
                                              "OpenAI-compatible text completion (streamed or not)",
                                              ["CompletionRequest"], openai_answer)},
            "/v1/models/{model_id}": {"get": {
                **_get("model_v1_models_get", "A model served here by its id, as OpenAI retrieves a model",
                       {"type": "object", "additionalProperties": True}),
                "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}]}},
            "/v1/responses": {"post": _post("responses_v1_responses_post",
                                            "OpenAI's Responses API, stateless (a response, or its events with "
                                            "stream: true)", ["ResponsesApiRequest"], openai_answer)},
        },
        "components": {"schemas": definitions["$defs"]},
    }


# The operation ids are those FastAPI generated before (code generators name their methods after them).
def _get(operation_id: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}}


def _post(operation_id: str, summary: str, schemas: list[str], responses: dict[str, Any]) -> dict[str, Any]:
    refs = [{"$ref": _REF.format(model=name)} for name in schemas]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"operationId": operation_id, "summary": summary, "responses": responses,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
