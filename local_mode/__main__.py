"""``python -m local_mode demo`` streams one answer; ``python -m local_mode dev`` serves until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time

from stream_client.client import ClientError, stream_answer

from .servers import LocalModeError, local_servers

SEED_PROMPT = "我该如何建立一个网站?"


def demo(max_new_tokens: int) -> int:
    payload = {"inputs": SEED_PROMPT, "parameters": {"max_new_tokens": max_new_tokens}}
    print("Starting the SageMaker runtime emulator and the function (uvicorn) on loopback...", file=sys.stderr)
    with local_servers() as servers:
        print(f"POST {servers.function_url}  {payload}\n", file=sys.stderr)

        def show(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        result = stream_answer(servers.function_url, payload, on_token=show, auth="none")
        print()
        print(f"\n{result.summary()}", file=sys.stderr)
        if result.error:
            print(f"error: {result.describe_error()}", file=sys.stderr)
            return 1
        if not result.tokens:
            print("error: the function streamed no tokens", file=sys.stderr)
            return 1
    return 0


def dev(port: int, emulator_port: int) -> int:
    with local_servers(port=port, emulator_port=emulator_port, quiet=False) as servers:
        print(
            f"\nfunction: {servers.function_url}   emulator: {servers.emulator_url}\n"
            f"open {servers.function_url}/ in a browser to watch answers stream\n"
            f"try:  curl -N {servers.function_url} -d '{{\"inputs\": \"How do I build a website?\"}}'\n"
            f"      python -m stream_client --url {servers.function_url} \"{SEED_PROMPT}\"\n"
            f"      OpenAI SDKs: base_url={servers.function_url}/v1 (see README, Use it from the OpenAI SDKs)\n"
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
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.max_new_tokens)
        return dev(args.port, args.emulator_port)
    except (LocalModeError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
