"""``python -m stream_client smoke [--outputs FILE | --url URL --auth MODE] [--api-key KEY]`` (``make smoke``)

After ``make deploy``: does the deployment answer as it should, through its URL, with the caller's
credentials? Four checks, each printed with what it found, then one verdict line:

* ``health``: ``GET /healthz`` answers 200 and reports the auth mode the outputs file names;
* ``refusal``: a request with no signature (IAM) or no key (api_key) is refused, 403 or 401 (with
  ``auth=none`` the URL is public: reported, not failed);
* ``stream``: a signed (or keyed) streaming request yields tokens and a ``done`` event: TTFT, tokens/s and
  the finish reason; where the function serves several models (``GET /v1/models``), one ``stream:<model>``
  check per model, each asked once;
* ``bad-request``: an invalid request gets a 4xx JSON error with a request id, and never a stream.

Exit status 0 when all pass, 1 when any fails, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .client import (
    API_KEY_VARIABLE,
    AUTH_MODES,
    DEFAULT_WAIT_FOR_MODEL_SECONDS,
    AuthMode,
    ClientError,
    StreamResult,
    print_wait,
    request_headers,
    stream_answer,
    url_from_outputs,
)
from .signing import MissingCredentials

SMOKE_PROMPT = "Say hello in five words."
SMOKE_MAX_NEW_TOKENS = 32
#: Seconds for the short requests, and for the streamed answer (a cold function and a busy endpoint).
REQUEST_TIMEOUT_SECONDS = 30.0
STREAM_TIMEOUT_SECONDS = 300.0
#: What each auth mode answers a request that carries no credentials.
REFUSAL_STATUS = {"iam": 403, "api_key": 401}
#: Refused by the function's validation before the endpoint is called.
BAD_REQUEST: dict[str, Any] = {"inputs": SMOKE_PROMPT, "parameters": {"max_new_tokens": -1}}


class SmokeFailed(Exception):
    pass


@dataclass(frozen=True)
class Target:
    url: str
    auth: AuthMode
    api_key: str | None

    def headers(self, body: bytes = b"", method: str = "POST") -> dict[str, str]:
        return request_headers(self.url, body, self.auth, self.api_key, method=method)


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool
    found: str


def check_health(target: Target) -> str:
    response = httpx.get(f"{target.url.rstrip('/')}/healthz", headers=target.headers(method="GET"),
                         timeout=REQUEST_TIMEOUT_SECONDS)
    if response.status_code != 200:
        raise SmokeFailed(f"GET /healthz answered HTTP {response.status_code}: {response.text[:200]}")
    health = _json(response)
    if health.get("status") != "ok":
        raise SmokeFailed(f"GET /healthz answered {health}")
    if health.get("auth") != target.auth:
        raise SmokeFailed(f"the function runs with auth {health.get('auth')!r}, the outputs say {target.auth!r}")
    return f"200, status ok, auth {health.get('auth')}"


def check_refusal(target: Target) -> str:
    if target.auth == "none":
        return "auth none: the URL is public, anyone who learns it may call it (nothing to refuse)"
    expected = REFUSAL_STATUS.get(target.auth)
    response = httpx.post(target.url, json={"inputs": SMOKE_PROMPT}, timeout=REQUEST_TIMEOUT_SECONDS)
    if expected is None or response.status_code != expected:
        raise SmokeFailed(f"a request without credentials answered HTTP {response.status_code} "
                          f"(expected {expected} under auth {target.auth})")
    return f"a request without credentials is refused: HTTP {response.status_code} {_message(response)}"


def served_models(target: Target) -> list[str]:
    """The models the function serves to this caller, where it says (``GET /v1/models``); empty otherwise, and
    then the stream check asks the default model."""
    try:
        response = httpx.get(f"{target.url.rstrip('/')}/v1/models", headers=target.headers(method="GET"),
                             timeout=REQUEST_TIMEOUT_SECONDS)
        listed = response.json()["data"] if response.status_code == 200 else []
        return [str(entry["id"]) for entry in listed]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, ClientError, MissingCredentials):
        return []


def check_stream(target: Target, model: str | None = None) -> StreamResult:
    payload: dict[str, Any] = {"inputs": SMOKE_PROMPT, "parameters": {"max_new_tokens": SMOKE_MAX_NEW_TOKENS},
                               **({"model": model} if model else {})}
    result = stream_answer(target.url, payload, auth=target.auth, api_key=target.api_key,
                           timeout=STREAM_TIMEOUT_SECONDS, wait_for_model=DEFAULT_WAIT_FOR_MODEL_SECONDS,
                           on_wait=print_wait)
    if result.error is not None:
        raise SmokeFailed(f"the stream ended with an error event after {result.tokens} tokens: "
                          f"{result.describe_error()}")
    if not result.tokens:
        raise SmokeFailed("the stream carried no tokens")
    return result


def check_bad_request(target: Target) -> str:
    body = json.dumps(BAD_REQUEST).encode()
    response = httpx.post(target.url, content=body, headers=target.headers(body), timeout=REQUEST_TIMEOUT_SECONDS)
    if response.status_code in REFUSAL_STATUS.values():
        raise SmokeFailed(f"an invalid request was refused for its credentials (HTTP {response.status_code}) before "
                          "the function could validate it")
    if not 400 <= response.status_code < 500:
        raise SmokeFailed(f"an invalid request (max_new_tokens -1) answered HTTP {response.status_code}, not 4xx")
    error = _json(response).get("error")
    if not isinstance(error, dict) or not {"type", "message", "request_id"} <= error.keys():
        raise SmokeFailed(f"HTTP {response.status_code} without the JSON error body: {response.text[:200]}")
    return f"HTTP {response.status_code} {error['type']} (request {error['request_id']})"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise SmokeFailed(f"HTTP {response.status_code} is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise SmokeFailed(f"HTTP {response.status_code} is not a JSON object: {response.text[:200]!r}")
    return body


def _message(response: httpx.Response) -> str:
    """Lambda's own refusal is ``{"Message": ...}``, the function's ``{"error": {"type", ...}}``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("type", ""))
    return str(body.get("Message", ""))[:80] if isinstance(body, dict) else ""


def run_smoke(target: Target, on_outcome: Callable[[Outcome], None] = lambda outcome: None) -> tuple[
        list[Outcome], StreamResult | None]:
    """Every check, each failure caught and described; the streamed answer when there was one."""
    outcomes: list[Outcome] = []
    streamed: StreamResult | None = None

    def stream(model: str | None = None) -> str:
        nonlocal streamed
        streamed = check_stream(target, model)
        return streamed.summary()

    models = served_models(target)  # the only one the key may call is named, as the default may be another
    streams: list[tuple[str, Callable[[], str]]] = [
        (f"stream:{model}", functools.partial(stream, model)) for model in models] if len(models) > 1 else [
        ("stream", functools.partial(stream, models[0] if models else None))]
    checks: tuple[tuple[str, Callable[[], str]], ...] = (
        ("health", lambda: check_health(target)), ("refusal", lambda: check_refusal(target)),
        *streams, ("bad-request", lambda: check_bad_request(target)))
    for name, check in checks:
        try:
            outcome = Outcome(name, True, check())
        except (SmokeFailed, ClientError, MissingCredentials) as exc:
            outcome = Outcome(name, False, str(exc))
        except httpx.HTTPError as exc:
            outcome = Outcome(name, False, f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes, streamed


def verdict(target: Target, outcomes: list[Outcome], streamed: StreamResult | None) -> str:
    failed = [outcome.check for outcome in outcomes if not outcome.passed]
    if failed:
        return f"smoke: FAIL {target.url}: {len(failed)} of {len(outcomes)} checks failed ({', '.join(failed)})"
    figures = f": {streamed.summary()}" if streamed else ""
    return f"smoke: PASS {target.url} (auth {target.auth}), all {len(outcomes)} checks{figures}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream_client smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--outputs", type=Path, default=Path("outputs.json"),
                        help="outputs file written by `make deploy` (default: %(default)s)")
    target.add_argument("--url", help="function URL (then --auth says how it is guarded)")
    parser.add_argument("--auth", choices=AUTH_MODES[1:], help="with --url: iam, api_key or none")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_VARIABLE) or None,
                        help=f"API key for auth=api_key deployments (default: ${API_KEY_VARIABLE})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url and not args.auth:
        parser.error("--url needs --auth (iam, api_key or none)")
    try:
        url, auth = (args.url, args.auth) if args.url else url_from_outputs(args.outputs)
    except ClientError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    if auth == "api_key" and not args.api_key:
        print(f"smoke: this deployment uses API keys: set {API_KEY_VARIABLE} (make api-key NAME=smoke issues one)",
              file=sys.stderr)
        return 2
    target = Target(url, auth, args.api_key)

    def show(outcome: Outcome) -> None:
        print(f"  {'ok  ' if outcome.passed else 'FAIL'}  {outcome.check:<12} {outcome.found}", flush=True)

    print(f"smoke: {url} (auth {auth})")
    outcomes, streamed = run_smoke(target, show)
    line = verdict(target, outcomes, streamed)
    print(line, file=sys.stdout if line.startswith("smoke: PASS") else sys.stderr)
    return 0 if all(outcome.passed for outcome in outcomes) else 1
