"""Stream one answer from the function URL, token by token, and time it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource

from .signing import function_url_region, sign_headers

AuthMode = Literal["auto", "iam", "none", "api_key"]
AUTH_MODES: tuple[AuthMode, ...] = ("auto", "iam", "none", "api_key")
#: Where the client finds an API key when none is passed.
API_KEY_VARIABLE = "LLM_STREAM_API_KEY"
#: The only hosts an API key may be sent to without TLS (a local `make dev`).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: A deployment with scale_to_zero answers this (503, with ``Retry-After``) while its model wakes.
WAKING_UP = "model_waking_up"
#: How long the command-line client keeps retrying a waking model by default (AWS measured about 5 minutes
#: from zero for an 8B model; a TGI container without fast loading takes longer).
DEFAULT_WAIT_FOR_MODEL_SECONDS = 900.0
#: Waits between tries: doubling from the first, never past the next, nor past the server's Retry-After
#: (an estimate of what is left: trying sooner costs one fast 503).
FIRST_RETRY_SECONDS = 5.0
LONGEST_RETRY_SECONDS = 60.0


class ClientError(Exception):
    """The request failed before streaming (HTTP error) or the outputs file is unusable."""


class ModelWakingUp(ClientError):
    """503 ``model_waking_up``: the model scaled to zero and is starting; ``retry_after`` seconds is the
    function's estimate of what is left."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class StreamResult:
    status: int
    text_parts: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    duration_s: float = 0.0
    #: Seconds spent waiting for a scaled-to-zero model before the answering request (not in the figures).
    waited_s: float = 0.0
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def describe_error(self) -> str | None:
        """The error event as one line: ``type: message (request id)``."""
        return None if self.error is None else describe_error(self.error)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tokens(self) -> int:
        return len(self.text_parts)

    def tokens_per_second(self) -> float | None:
        """Generation rate after the first token (what a reader sees once text starts)."""
        if self.ttft_s is None or self.tokens < 2 or self.duration_s <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.duration_s - self.ttft_s)

    def summary(self) -> str:
        rate = self.tokens_per_second()
        ttft = "n/a" if self.ttft_s is None else f"{self.ttft_s * 1000:.0f} ms"
        parts = [f"TTFT {ttft}", f"{self.tokens} tokens in {self.duration_s:.2f} s"]
        if rate is not None:
            parts.append(f"{rate:.1f} tokens/s")
        if self.done and self.done.get("finish_reason"):
            parts.append(f"finish: {self.done['finish_reason']}")
        if self.waited_s:
            parts.append(f"after {self.waited_s:.0f} s waiting for the model to start")
        return ", ".join(parts)


def describe_error(error: dict[str, Any]) -> str:
    """``type: message (request id)``: the function's errors carry the id its operators can look up."""
    described = f"{error['type']}: {error['message']}"
    return f"{described} (request {error['request_id']})" if error.get("request_id") else described


def stack_outputs(path: Path, output: str, remedy: str, absent: str) -> dict[str, Any]:
    """The outputs of the stack that has ``output``, from the file ``cdk deploy --outputs-file`` wrote;
    :class:`ClientError` saying ``remedy`` when there is no file, and ``absent`` when no stack has it."""
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClientError(f"{path} does not exist: {remedy}") from None
    except ValueError as exc:
        raise ClientError(f"{path} is not valid JSON: {exc}") from None
    for outputs_of_stack in outputs.values():
        if isinstance(outputs_of_stack, dict) and output in outputs_of_stack:
            return outputs_of_stack
    raise ClientError(absent)


def url_from_outputs(path: Path) -> tuple[str, AuthMode]:
    """The function URL and auth mode from the file ``cdk deploy --outputs-file`` wrote."""
    outputs = stack_outputs(path, "FunctionUrl", "deploy first (make deploy) or pass --url",
                            f"no stack in {path} has a FunctionUrl output")
    auth = outputs.get("AuthMode", "iam")
    if auth not in AUTH_MODES[1:]:
        raise ClientError(f"{path}: AuthMode {auth!r} is none of {', '.join(AUTH_MODES[1:])}")
    return str(outputs["FunctionUrl"]), auth


def request_headers(url: str, body: bytes, auth: AuthMode, api_key: str | None = None,
                    method: str = "POST") -> dict[str, str]:
    """``auto``: the API key if one is given, else SigV4 for a Lambda function URL, else nothing."""
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    region = function_url_region(url)
    if auth == "api_key" or (auth == "auto" and api_key):
        if not api_key:
            raise ClientError(f"this deployment needs an API key: pass --api-key or set {API_KEY_VARIABLE} "
                              "(its operators issue one with `make api-key NAME=...`)")
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            raise ClientError(f"refusing to send an API key over plain {parts.scheme} to {parts.hostname}: use https")
        headers["authorization"] = f"Bearer {api_key}"
    elif auth == "iam" or (auth == "auto" and region is not None):
        if region is None:
            raise ClientError(f"cannot sign for {url}: IAM auth needs a Lambda function URL "
                              "(*.lambda-url.<region>.on.aws)")
        headers = sign_headers(method, url, body, headers, region)
    return headers


def print_wait(seconds: float) -> None:
    """What the command-line tools show while a scaled-to-zero model starts."""
    print(f"the model is starting (scaled to zero while idle), retrying in {seconds:.0f} s", file=sys.stderr,
          flush=True)


def stream_answer(
    url: str,
    payload: dict[str, Any],
    *,
    auth: AuthMode = "auto",
    api_key: str | None = None,
    on_token: Callable[[str], None] = lambda text: None,
    timeout: float = 900.0,
    wait_for_model: float = 0.0,
    on_wait: Callable[[float], None] = lambda seconds: None,
    sleep: Callable[[float], None] = time.sleep,
) -> StreamResult:
    """POST ``payload`` and call ``on_token`` for each token as it arrives. While a scaled-to-zero model
    wakes (503 ``model_waking_up``), try again for up to ``wait_for_model`` seconds, calling ``on_wait``
    with each wait; after that, :class:`ModelWakingUp`."""
    started = time.monotonic()
    tries, slept = 0, 0.0
    while True:
        try:
            result = _stream_once(url, payload, auth, api_key, on_token, timeout)
        except ModelWakingUp as waking:
            left = wait_for_model - max(time.monotonic() - started, slept)
            if left <= 0:
                raise
            wait = min(FIRST_RETRY_SECONDS * 2 ** min(tries, 10), LONGEST_RETRY_SECONDS, left,
                       waking.retry_after if waking.retry_after else LONGEST_RETRY_SECONDS)
            on_wait(wait)
            sleep(wait)
            tries, slept = tries + 1, slept + wait
            continue
        if tries:
            result.waited_s = time.monotonic() - started - result.duration_s
        return result


def _stream_once(url: str, payload: dict[str, Any], auth: AuthMode, api_key: str | None,
                 on_token: Callable[[str], None], timeout: float) -> StreamResult:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = request_headers(url, body, auth, api_key)
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0)) as http, \
            http.stream("POST", url, content=body, headers=headers) as response:
        result = StreamResult(status=response.status_code)
        if response.status_code != 200:
            response.read()
            _raise_if_waking(response)
            raise ClientError(_describe_http_error(response))
        # httpx-sse splits lines only where SSE does (CR, LF): a token may hold U+2028 and friends.
        for event in EventSource(response).iter_sse():
            data = json.loads(event.data)
            if event.event == "token":
                if result.ttft_s is None:
                    result.ttft_s = time.monotonic() - started
                result.text_parts.append(data["text"])
                on_token(data["text"])
            elif event.event == "done":
                result.done = data
            elif event.event == "error":
                result.error = data
    result.duration_s = time.monotonic() - started
    if result.done is None and result.error is None:
        result.error = {"type": "incomplete", "message": "the stream ended without a done or error event"}
    return result


def _raise_if_waking(response: httpx.Response) -> None:
    if response.status_code != 503:
        return
    try:
        error = response.json()["error"]
        waking = WAKING_UP in (error.get("type"), error.get("code"))  # POST / and the OpenAI routes
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    if waking:
        retry_after = response.headers.get("retry-after", "")
        raise ModelWakingUp(_describe_http_error(response), float(retry_after) if retry_after.isdigit() else None)


def _describe_http_error(response: httpx.Response) -> str:
    try:
        detail = describe_error(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        detail = response.text[:500] or response.reason_phrase
    hint = ""
    if response.status_code == 401:
        hint = (f" (API key auth: pass a valid key with --api-key or {API_KEY_VARIABLE}; "
                "`python -m stream_client keys list` shows which keys exist)")
    elif response.status_code == 403:
        hint = " (IAM auth: are your credentials allowed lambda:InvokeFunctionUrl on this function?)"
    return f"HTTP {response.status_code}: {detail}{hint}"
