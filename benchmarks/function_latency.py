"""What the function adds on top of reading the endpoint directly, measured side by side in one run.

    python benchmarks/function_latency.py [--tokens 64] [--sequential 8] [--concurrency 1 50]

The emulator (its own process) stamps the wall-clock time it writes each token. Two
paths read the same kind of streams from it:

* direct: boto3 + TokenIterator in this process (the floor: what any consumer pays);
* function: HTTP SSE from the real function (uvicorn, its own process) in front of it;
* openai, responses, chat: the same function's ``/v1/completions``, ``/v1/responses`` and
  ``/v1/chat/completions``, streamed; grammar: ``/v1/chat/completions`` with a JSON schema
  (``response_format``), which the emulator follows as TGI does.

For each token, delivery latency = arrival at the reader - time the emulator wrote it.
"Added per-token latency" compares one path's distribution with another's; TTFT overhead
compares request-to-first-token. Every stream's text is checked against what the emulator
generated, so lost or reordered tokens are counted. Each stream's prompt names it
(``(stream N)``), which is how its record is found at the emulator (the Responses API has no seed).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import re
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import boto3  # noqa: E402
import httpx  # noqa: E402
import interleaved  # noqa: E402
from botocore.config import Config  # noqa: E402
from httpx_sse import EventSource  # noqa: E402

from llm_stream.tokens import TokenIterator  # noqa: E402
from local_mode.servers import LOCAL_ENDPOINT_NAME, local_servers  # noqa: E402
from sagemaker_emulator import tgi  # noqa: E402

PROMPT = "Explain, step by step, how to plan a small software project."


@dataclass
class StreamTiming:
    seed: int
    started: float  # wall clock
    arrivals: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


#: A small schema of the kind structured-output clients send (the grammar path's).
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "steps": {"type": "array", "items": {
    "type": "string"}, "minItems": 3, "maxItems": 3}, "weeks": {"type": "integer"}}, "required": ["title", "steps"]}
_STREAM_MARK = re.compile(r"\(stream (\d+)\)")


def prompt(seed: int) -> str:
    return f"{PROMPT} (stream {seed})"


def payload(seed: int, tokens: int) -> dict:
    return {"inputs": prompt(seed), "parameters": {"max_new_tokens": tokens, "seed": seed}}


def read_direct(client, seed: int, tokens: int) -> StreamTiming:
    timing = StreamTiming(seed, time.time())
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=LOCAL_ENDPOINT_NAME, Body=json.dumps({**payload(seed, tokens), "stream": True}),
        ContentType="application/json")
    for text in TokenIterator(response["Body"]):
        timing.arrivals.append(time.time())
        timing.texts.append(text)
    return timing


def read_function(http: httpx.Client, url: str, seed: int, tokens: int) -> StreamTiming:
    timing = StreamTiming(seed, time.time())
    with http.stream("POST", url, json=payload(seed, tokens), headers={"accept": "text/event-stream"}) as response:
        response.raise_for_status()
        for event in EventSource(response).iter_sse():
            if event.event == "token":
                timing.arrivals.append(time.time())
                timing.texts.append(json.loads(event.data)["text"])
            elif event.event == "error":
                raise RuntimeError(event.data)
    return timing


def read_openai(http: httpx.Client, url: str, model: str, seed: int, tokens: int) -> StreamTiming:
    """The same prompt through ``/v1/completions`` (streamed), as an OpenAI SDK would read it."""
    body = {"model": model, "prompt": prompt(seed), "max_tokens": tokens, "seed": seed, "stream": True}
    return read_events(http, f"{url}/v1/completions", body, seed, lambda chunk: chunk["choices"][0]["text"])


def read_chat(http: httpx.Client, url: str, model: str, seed: int, tokens: int,
              extra: dict | None = None) -> StreamTiming:
    """The prompt as one user message through ``/v1/chat/completions`` (streamed), with ``extra`` fields."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt(seed)}], "max_tokens": tokens,
            "seed": seed, "stream": True, **(extra or {})}
    return read_events(http, f"{url}/v1/chat/completions", body, seed,
                       lambda chunk: (chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None))


def read_responses(http: httpx.Client, url: str, model: str, seed: int, tokens: int) -> StreamTiming:
    """The prompt through ``/v1/responses`` (streamed): one ``response.output_text.delta`` per token."""
    body = {"model": model, "input": prompt(seed), "max_output_tokens": tokens, "stream": True}
    return read_events(http, f"{url}/v1/responses", body, seed,
                       lambda event: event["delta"] if event["type"] == "response.output_text.delta" else None)


def read_events(http: httpx.Client, url: str, body: dict, seed: int,
                text_of: Callable[[dict], str | None]) -> StreamTiming:
    """A streamed OpenAI route's events, each one's text (``text_of``) timed as it arrives."""
    timing = StreamTiming(seed, time.time())
    with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for event in EventSource(response).iter_sse():
            if event.data == "[DONE]":
                break
            data = json.loads(event.data)
            if "error" in data or data.get("type") == "error":
                raise RuntimeError(event.data)
            text = text_of(data)
            if text:
                timing.arrivals.append(time.time())
                timing.texts.append(text)
    return timing


def emulator_records(emulator_url: str) -> dict[int, dict]:
    with urllib.request.urlopen(f"{emulator_url}/_emulator/requests") as response:
        records = json.load(response)["requests"]
    return {int(mark[1]): r for r in records if (mark := _STREAM_MARK.search(json.loads(r["body"])["inputs"]))}


@dataclass
class PathResult:
    ttft_ms: list[float] = field(default_factory=list)
    #: TTFT less the emulator's own time from receiving the request to writing the first token: what the
    #: paths in front of it (the function, HTTP) add.
    added_ttft_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    streams: int = 0
    bad_streams: int = 0
    tokens: int = 0


def analyse(timings: list[StreamTiming], records: dict[int, dict]) -> PathResult:
    result = PathResult()
    for timing in timings:
        record = records[timing.seed]
        request = tgi.parse_request(record["body"].encode(), 2048)
        visible = tgi.visible_tokens(request)
        expected = [text for _, text in visible]
        result.streams += 1
        result.tokens += len(timing.texts)
        if timing.texts != expected:
            result.bad_streams += 1
            continue
        result.ttft_ms.append((timing.arrivals[0] - timing.started) * 1000)
        emulator_ttft = record["token_sent_at"][visible[0][0]] - record["received_at"]
        result.added_ttft_ms.append(result.ttft_ms[-1] - emulator_ttft * 1000)
        for arrival, (index, _) in zip(timing.arrivals, visible, strict=True):
            result.delivery_ms.append((arrival - record["token_sent_at"][index]) * 1000)
    return result


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_level(concurrency: int, count: int, read: Callable[[int], StreamTiming], first_seed: int,
              seeds: Iterator[int]) -> list[StreamTiming]:
    """``count`` streams, ``concurrency`` at a time, each with its own seed (the emulator's record is found by it)."""
    stream_seeds = [first_seed, *itertools.islice(seeds, count - 1)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(read, stream_seeds))


def merged(results: list[PathResult]) -> PathResult:
    """One path's rounds pooled, for its own distribution."""
    pooled = PathResult()
    for result in results:
        pooled.ttft_ms += result.ttft_ms
        pooled.added_ttft_ms += result.added_ttft_ms
        pooled.delivery_ms += result.delivery_ms
        pooled.streams += result.streams
        pooled.bad_streams += result.bad_streams
        pooled.tokens += result.tokens
    return pooled


def compared(name: str, paths: list[PathResult], baselines: list[PathResult]) -> str:
    """One path against another, round by round: the median of the per-round differences of each p50 (and the
    per-round TTFT ratio), with the interquartile range across rounds."""
    def p50s(results: list[PathResult], figure: str) -> list[float]:
        return [statistics.median(getattr(result, figure)) for result in results]

    delivery = interleaved.difference(p50s(paths, "delivery_ms"), p50s(baselines, "delivery_ms"), "ms", 2)
    ttft = interleaved.difference(p50s(paths, "ttft_ms"), p50s(baselines, "ttft_ms"), "ms", 1)
    ttft_ratio = interleaved.ratio(p50s(paths, "ttft_ms"), p50s(baselines, "ttft_ms"))
    added = interleaved.difference(p50s(paths, "added_ttft_ms"), p50s(baselines, "added_ttft_ms"), "ms", 1)
    lost = sum(path.bad_streams for path in paths)
    return (f"{name}: added per-token p50 {delivery}; TTFT p50 {ttft}, {ttft_ratio} (the emulator's own part "
            f"left out: {added}); lost or reordered: {lost} streams")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens per stream")
    parser.add_argument("--sequential", type=int, default=4, help="streams per path and round at concurrency 1")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of every path per level")
    parser.add_argument("--ttft-ms", type=float, default=100)
    parser.add_argument("--token-ms", type=float, default=30)
    args = parser.parse_args()

    emulator_args = ["--ttft-ms", str(args.ttft_ms), "--token-ms", str(args.token_ms), "--log-level", "WARNING"]
    with local_servers(emulator_args=emulator_args) as servers:
        direct = boto3.client(
            "sagemaker-runtime", endpoint_url=servers.emulator_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
            config=Config(max_pool_connections=max(args.concurrency) + 8, retries={"total_max_attempts": 1}),
        )
        http = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=max(args.concurrency) + 8))
        model = http.get(f"{servers.function_url}/v1/models").json()["data"][0]["id"]
        print(f"emulator: TTFT {args.ttft_ms:.0f} ms, {args.token_ms:.0f} ms/token; {args.tokens} tokens per stream; "
              f"{args.rounds} interleaved rounds per level, the paths' order turning each round\n")
        print(f"{'streams':>8} {'path':>9} | {'TTFT p50':>9} {'p99':>7} | {'delivery p50':>12} {'p99':>7} | "
              f"{'tokens':>7} {'bad streams':>11}   (rounds pooled)")
        print("-" * 104)
        seeds = itertools.count()
        summary = []
        for concurrency in args.concurrency:
            count = args.sequential if concurrency == 1 else concurrency
            readers: dict[str, Callable[[int], StreamTiming]] = {
                "direct": lambda s: read_direct(direct, s, args.tokens),
                "function": lambda s: read_function(http, servers.function_url, s, args.tokens),
                "openai": lambda s: read_openai(http, servers.function_url, model, s, args.tokens),
                "responses": lambda s: read_responses(http, servers.function_url, model, s, args.tokens),
                "chat": lambda s: read_chat(http, servers.function_url, model, s, args.tokens),
                "grammar": lambda s: read_chat(http, servers.function_url, model, s, max(args.tokens, 200), {
                    "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": SCHEMA}}}),
            }

            def batch(read: Callable[[int], StreamTiming], level: int = concurrency,
                      streams: int = count) -> PathResult:
                timings = run_level(level, streams, read, next(seeds), seeds)
                return analyse(timings, emulator_records(servers.emulator_url))

            results = interleaved.rounds({name: functools.partial(batch, read) for name, read in readers.items()},
                                         args.rounds)
            for name, rounds in results.items():
                r = merged(rounds)
                print(f"{concurrency:>8} {name:>9} | {statistics.median(r.ttft_ms):>7.1f}ms "
                      f"{percentile(r.ttft_ms, 99):>5.1f}ms | {statistics.median(r.delivery_ms):>10.2f}ms "
                      f"{percentile(r.delivery_ms, 99):>5.2f}ms | {r.tokens:>7} {r.bad_streams:>5} of {r.streams}")
            summary.append(compared(f"{concurrency:>3} streams, function vs direct", results["function"],
                                    results["direct"]))
            summary.append(compared(f"{concurrency:>3} streams, /v1/completions vs POST /", results["openai"],
                                    results["function"]))
            summary.append(compared(f"{concurrency:>3} streams, /v1/responses vs POST /", results["responses"],
                                    results["function"]))
            summary.append(compared(f"{concurrency:>3} streams, chat with a JSON schema vs plain chat",
                                    results["grammar"], results["chat"]))
        print("\nside by side, per round (median of the rounds, IQR across them):\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
