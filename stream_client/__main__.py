"""``python -m stream_client [--url URL | --outputs FILE] [options] PROMPT``

(``python -m stream_client keys ...`` manages API keys: ``keys --help``; ``python -m stream_client smoke``
checks a deployment: ``smoke --help``.)

Streams the answer to stdout as it arrives; TTFT, tokens and tokens/s go to stderr.
Exit status: 0 done, 1 HTTP error or error event, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from . import keys, smoke
from .client import (
    API_KEY_VARIABLE,
    AUTH_MODES,
    DEFAULT_WAIT_FOR_MODEL_SECONDS,
    AuthMode,
    ClientError,
    StreamResult,
    print_wait,
    stream_answer,
    url_from_outputs,
)
from .signing import MissingCredentials

DEFAULT_OUTPUTS = Path("outputs.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="function URL (default: read from --outputs)")
    target.add_argument("--outputs", type=Path, default=DEFAULT_OUTPUTS,
                        help="outputs file written by `make deploy` (default: %(default)s)")
    parser.add_argument("--auth", choices=AUTH_MODES, default=None,
                        help="sign with SigV4 (iam), send an API key (api_key) or nothing (none); default: the "
                             "deployment's AuthMode from --outputs, or with --url: auto (the key if given, else "
                             "SigV4 for *.lambda-url.* URLs)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_VARIABLE) or None,
                        help=f"API key for auth=api_key deployments (default: ${API_KEY_VARIABLE})")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--chat", action="store_true", help="send a conversation (messages) instead of a prompt")
    parser.add_argument("--model", help="where the deployment serves several models: which one answers (default: "
                        "its first; GET /v1/models lists them)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds (default: %(default)s)")
    parser.add_argument("--wait-for-model", type=float, default=DEFAULT_WAIT_FOR_MODEL_SECONDS, metavar="SECONDS",
                        help="with scale_to_zero: how long to keep retrying while the model starts (default: "
                             "%(default)s; 0: fail at once)")
    return parser


def build_payload(args: argparse.Namespace) -> dict[str, Any]:
    chosen = {"model": args.model} if getattr(args, "model", None) else {}
    if args.chat:
        payload: dict[str, Any] = {"messages": [{"role": "user", "content": args.prompt}],
                                   "max_tokens": args.max_new_tokens, **chosen}
        if args.temperature is not None:
            payload["temperature"] = args.temperature
        return payload
    parameters: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if args.temperature is not None:
        parameters["temperature"] = args.temperature
    return {"inputs": args.prompt, "parameters": parameters, **chosen}


def print_token(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys.main(argv[1:])
    if argv[:1] == ["smoke"]:
        return smoke.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        url: str
        auth: AuthMode
        url, auth = (args.url, "auto") if args.url else url_from_outputs(args.outputs)
        result: StreamResult = stream_answer(url, build_payload(args), auth=args.auth or auth,
                                             api_key=args.api_key, on_token=print_token, timeout=args.timeout,
                                             wait_for_model=args.wait_for_model, on_wait=print_wait)
    except (ClientError, MissingCredentials) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print()
    print(result.summary(), file=sys.stderr)
    if result.error:
        print(f"error: {result.describe_error()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
