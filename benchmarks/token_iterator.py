"""Token iterator throughput and peak memory, this project's vs the blog's, side by side.

    python benchmarks/token_iterator.py [--tokens 20000]

Both parse the same TGI streams (rendered by the emulator's TGI renderer) cut
into PayloadParts of several sizes. Throughput: interleaved rounds (``interleaved.py``), each
parser's median tokens/s and the median of the per-round ratios with its interquartile range;
peak memory is measured in a separate run under tracemalloc.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks")]  # its siblings (not a package); the project's are installed

from interleaved import quartiles, ratio, rounds  # noqa: E402
from seed_token_iterator import TokenIterator as SeedTokenIterator  # noqa: E402

from llm_stream.tokens import TokenIterator  # noqa: E402
from sagemaker_emulator import tgi  # noqa: E402
from sagemaker_emulator.textgen import EOS, answer_tokens  # noqa: E402

Parser = Callable[[Iterable[dict]], Iterator[str]]
PARSERS: dict[str, Parser] = {"this project": TokenIterator, "blog (seed)": SeedTokenIterator}


def tgi_body(token_count: int) -> bytes:
    prompt_cycle = itertools.cycle(["How do I build a website?", "我该如何建立一个网站?"])
    pieces = (t for prompt in prompt_cycle for t in answer_tokens(prompt) if not t.special)
    request = tgi.GenerationRequest(mode="generate", prompt="", stream=True, max_new_tokens=token_count,
                                    input_tokens=1, details=True, return_full_text=False)
    renderer = tgi.EventRenderer(request)
    events = [renderer.token(i, next(pieces), None) for i in range(1, token_count)]
    events.append(renderer.token(token_count, EOS, "eos_token"))
    return b"".join(events)


def cut(body: bytes, size: int | None) -> list[dict]:
    if size is None:  # one part per event
        return [{"PayloadPart": {"Bytes": e + b"\n\n"}} for e in body.split(b"\n\n") if e]
    return [{"PayloadPart": {"Bytes": body[i : i + size]}} for i in range(0, len(body), size)]


def consume(parser: Parser, parts: list[dict]) -> int:
    return sum(1 for _ in parser(parts))


def tokens_per_second(parser: Parser, parts: list[dict], token_count: int) -> float:
    started = time.perf_counter()
    consume(parser, parts)
    return token_count / (time.perf_counter() - started)


def peak_kib(parser: Parser, parts: list[dict]) -> float:
    tracemalloc.start()
    try:
        consume(parser, parts)
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--tokens", type=int, default=20_000)
    arguments.add_argument("--rounds", type=int, default=9)
    args = arguments.parse_args()
    body = tgi_body(args.tokens)
    ours, seed = PARSERS
    print(f"TGI stream: {args.tokens:,} tokens, {len(body) / 1024:,.0f} KiB; {args.rounds} interleaved rounds: "
          "median tokens/s, and the per-round ratio this/blog (median, IQR); peak memory under tracemalloc\n")
    header = (f"{'part size':>12} | {ours:>14} tok/s | {seed:>14} tok/s | {'this / blog':>24} | "
              f"{'peak KiB ' + ours:>22} | {'peak KiB ' + seed:>21}")
    print(header)
    print("-" * len(header))
    for size in (1, 16, 256, None, 65536):
        parts = cut(body, size)
        speeds = rounds({name: functools.partial(tokens_per_second, parser, parts, args.tokens)
                         for name, parser in PARSERS.items()}, args.rounds)
        print(f"{'per event' if size is None else size:>12} | {quartiles(speeds[ours])[1]:>20,.0f} | "
              f"{quartiles(speeds[seed])[1]:>20,.0f} | {ratio(speeds[ours], speeds[seed]):>24} | "
              f"{peak_kib(PARSERS[ours], parts):>22,.1f} | {peak_kib(PARSERS[seed], parts):>21,.1f}")

    print("\nPeak memory vs stream length (256-byte parts). TGI's final event repeats the whole")
    print("generated text, so the longest event grows with the answer; the rest of the stream should not count:")
    for count in (args.tokens // 10, args.tokens, args.tokens * 5):
        body = tgi_body(count)
        longest = max(len(event) for event in body.split(b"\n\n")) / 1024
        parts = cut(body, 256)
        memory = "  ".join(f"{name}: {peak_kib(p, parts):>9,.1f} KiB" for name, p in PARSERS.items())
        print(f"{count:>10,} tokens  stream {len(body) / 1024:>8,.0f} KiB  "
              f"longest event {longest:>7,.1f} KiB  {memory}")


if __name__ == "__main__":
    main()
