"""``python -m sagemaker_emulator --port 8081``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from types import FrameType

from .faults import FAULT_KINDS, Fault
from .server import CONTAINERS, EmulatorConfig, EmulatorServer, HostedComponent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sagemaker_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port (printed at start)")
    parser.add_argument("--ttft-ms", type=float, default=EmulatorConfig.ttft_ms, help="time to first token")
    parser.add_argument("--token-ms", type=float, default=EmulatorConfig.token_ms, help="delay between tokens")
    parser.add_argument("--max-total-tokens", type=int, default=EmulatorConfig.max_total_tokens)
    parser.add_argument(
        "--endpoint", action="append", dest="endpoints", metavar="NAME",
        help="serve only these endpoint names (repeatable); default: any name",
    )
    parser.add_argument("--container", choices=sorted(CONTAINERS), default=EmulatorConfig.container,
                        help="the model container behind the endpoint: TGI or DJL/LMI (request rules, stream format)")
    parser.add_argument("--container-version", metavar="VERSION",
                        help="the container's version, e.g. 1.4.0 (TGI 1.4.0 has no grammar); default: TGI 2.4.0, "
                             "LMI 0.28.0")
    parser.add_argument("--no-split", action="store_true", help="one PayloadPart per event")
    parser.add_argument("--no-chat-template", action="store_true",
                        help="the model ships no chat template: Messages payloads get TGI's template error")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="JSON",
        help=f'inject a fault, e.g. \'{{"kind": "stall", "after_tokens": 3}}\'; kinds: {", ".join(FAULT_KINDS)}',
    )
    parser.add_argument("--inference-component", metavar="NAME",
                        help="scale to zero: the endpoint hosts its model as this inference component")
    parser.add_argument("--component", action="append", default=[], type=_component, dest="components",
                        metavar="NAME=FAMILY[:VERSION[:MAX_TOTAL_TOKENS[:COPIES]]]",
                        help="several models: the endpoint hosts this inference component, with its own container "
                             "(repeatable; instead of --inference-component)")
    parser.add_argument("--initial-copies", type=int, default=EmulatorConfig.initial_copies,
                        help="with --inference-component: copies at start (0: scaled to zero)")
    parser.add_argument("--warm-up-seconds", type=float, default=EmulatorConfig.warm_up_seconds,
                        help="with --inference-component: from the first refused invocation until a copy serves")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="with --inference-component: idle time after which the copies go to zero")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _component(text: str) -> HostedComponent:
    try:
        return HostedComponent.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        ttft_ms=args.ttft_ms,
        token_ms=args.token_ms,
        endpoints=frozenset(args.endpoints) if args.endpoints else None,
        max_total_tokens=args.max_total_tokens,
        split_parts=not args.no_split,
        chat_template=not args.no_chat_template,
        container=args.container,
        container_version=args.container_version,
        inference_component=args.inference_component,
        initial_copies=args.initial_copies,
        warm_up_seconds=args.warm_up_seconds,
        idle_seconds=args.idle_seconds,
        components=tuple(args.components),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="emulator %(levelname)s %(message)s")
    try:
        faults = [Fault.from_dict(json.loads(text)) for text in args.fault]
    except (ValueError, TypeError) as exc:
        print(f"invalid --fault: {exc}", file=sys.stderr)
        return 2
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"invalid arguments: {exc}", file=sys.stderr)
        return 2
    server = EmulatorServer(config, host=args.host, port=args.port)
    server.inject(*faults)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"SageMaker runtime emulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
