"""``python -m local_mode demo`` streams one answer; ``python -m local_mode dev`` serves until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time

from stream_client.client import (
    API_KEY_VARIABLE,
    DEFAULT_WAIT_FOR_MODEL_SECONDS,
    ClientError,
    print_wait,
    stream_answer,
)

from .servers import LOCAL_KEY_NAME, LOCAL_WAKE_UP_SECONDS, LocalModeError, local_servers

SEED_PROMPT = "我该如何建立一个网站?"


def demo(max_new_tokens: int, api_key: str | None, model_id: str | None, wake_up_seconds: float | None,
         limits: str = "") -> int:
    payload = {"inputs": SEED_PROMPT, "parameters": {"max_new_tokens": max_new_tokens}}
    print("Starting the SageMaker runtime emulator and the function (uvicorn) on loopback"
          f"{f' as {model_id}' if model_id else ''}...", file=sys.stderr)
    with local_servers(api_key=api_key, model_id=model_id, wake_up_seconds=wake_up_seconds, limits=limits) as servers:
        print(f"POST {servers.function_url}  {payload}\n", file=sys.stderr)

        def show(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        result = stream_answer(servers.function_url, payload, on_token=show, auth="api_key" if api_key else "none",
                               api_key=api_key, wait_for_model=DEFAULT_WAIT_FOR_MODEL_SECONDS, on_wait=print_wait)
        print()
        print(f"\n{result.summary()}", file=sys.stderr)
        if result.error:
            print(f"error: {result.describe_error()}", file=sys.stderr)
            return 1
        if not result.tokens:
            print("error: the function streamed no tokens", file=sys.stderr)
            return 1
    return 0


def dev(port: int, emulator_port: int, api_key: str | None, model_id: str | None,
        wake_up_seconds: float | None, limits: str = "") -> int:
    with local_servers(port=port, emulator_port=emulator_port, quiet=False, api_key=api_key,
                       model_id=model_id, wake_up_seconds=wake_up_seconds, limits=limits) as servers:
        key_header = ' -H "x-api-key: $LLM_STREAM_API_KEY"' if api_key else ""
        key_note = (f"api_key auth: only the key you gave is accepted (consumer {LOCAL_KEY_NAME!r}, limits: "
                    f"{limits or 'none'}; keys, limits and usage in a DynamoDB API on loopback); "
                    f"export {API_KEY_VARIABLE}=<that key> for the commands below\n" if api_key else "")
        print(
            f"\nfunction: {servers.function_url}   emulator: {servers.emulator_url}\n{key_note}"
            f"open {servers.function_url}/ in a browser to watch answers stream\n"
            f"try:  curl -N{key_header} {servers.function_url} -d '{{\"inputs\": \"How do I build a website?\"}}'\n"
            f"      python -m stream_client --url {servers.function_url} \"{SEED_PROMPT}\"\n"
            f"      OpenAI SDKs: base_url={servers.function_url}/v1 (see docs/api.md, Use it from the OpenAI SDKs)\n"
            "Ctrl-C stops both.\n",
            file=sys.stderr, flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_mode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="stream the blog's question once, then stop")
    demo_parser.add_argument("--max-new-tokens", type=int, default=256)
    dev_parser = commands.add_parser("dev", help="serve the function and the emulator until Ctrl-C")
    dev_parser.add_argument("--port", type=int, default=8080)
    dev_parser.add_argument("--emulator-port", type=int, default=8081)
    for command in (demo_parser, dev_parser):
        command.add_argument("--api-key", help="run with api_key auth, accepting this one key (default: no auth)")
        command.add_argument("--limits", default="", help="with --api-key: that key's limits, as "
                             "'max_streams=2 rpm=30' (max_streams, rpm, tpm, monthly_tokens, max_tokens)")
        command.add_argument("--model", "--models", dest="model", metavar="ID[,ID...]",
                             help="run as this catalog model, or these (one endpoint, an inference component each, "
                             "the first the default): their settings, and their containers' request and stream "
                             "formats in the emulator (default: the default model)")
        command.add_argument("--scale-to-zero", nargs="?", type=float, const=LOCAL_WAKE_UP_SECONDS, default=None,
                             metavar="SECONDS", help="the model starts scaled to zero and wakes this long after the "
                             f"first request (default {LOCAL_WAKE_UP_SECONDS}), as with scale_to_zero=true deployed")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.max_new_tokens, args.api_key, args.model, args.scale_to_zero, args.limits)
        return dev(args.port, args.emulator_port, args.api_key, args.model, args.scale_to_zero, args.limits)
    except (LocalModeError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
